"""Tables of the connectors: a dataset's source binding and the record of each sync."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from govshare.db import Base, UTCDateTime, utcnow

BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class SourceBinding(Base):
    """Where a dataset's data lives and how a sync reads it; the credential only encrypted."""

    __tablename__ = "source_bindings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    config: Mapped[dict] = mapped_column(JSON)  # never holds the credential
    secret_encrypted: Mapped[str | None] = mapped_column(Text)  # KeyStore.encrypt (Fernet)
    mapping: Mapped[dict] = mapped_column(JSON)  # data item -> source column
    mode: Mapped[str] = mapped_column(String(20), default="full")
    update_column: Mapped[str | None] = mapped_column(String(200))
    key_column: Mapped[str | None] = mapped_column(String(200))
    source_schema: Mapped[dict | None] = mapped_column(JSON)  # source column -> type, as last synced
    watermark: Mapped[str | None] = mapped_column(String(100))
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncRun(Base):
    """One sync of a binding: when, how it ended and why, what changed, which version it made."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_binding_id_started_at", "binding_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    binding_id: Mapped[int] = mapped_column(ForeignKey("source_bindings.id"))
    mode: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(20))  # running, ok, failed
    error_type: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    rows_read: Mapped[int | None] = mapped_column(BIGINT)
    rows_added: Mapped[int | None] = mapped_column(BIGINT)
    rows_changed: Mapped[int | None] = mapped_column(BIGINT)
    rows_removed: Mapped[int | None] = mapped_column(BIGINT)
    version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    # The process doing the sync, and when it last showed it was alive: a run still "running"
    # whose process has ended (or stopped beating) was interrupted.
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
