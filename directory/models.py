"""Tables of the directory: datasets, their metadata history, data versions, search terms."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from govshare.db import Base, UTCDateTime, utcnow

BIGINT = BigInteger().with_variant(Integer(), "sqlite")
# Prefix search compares terms byte-wise; the "C" collation keeps PostgreSQL's
# b-tree order byte-wise whatever the database's default collation is.
TERM = String(64).with_variant(String(64, collation="C"), "postgresql")
FILTERS_AFTER = {
    # Codes usually start with the department's code, so a department's page is read in code order.
    "department_code": ("code", "domain", "share_type", "offers_extract", "offers_interface"),
    "domain": ("share_type", "department_code", "offers_extract", "offers_interface", "code"),
    "share_type": ("domain", "department_code", "offers_extract", "offers_interface", "code"),
    "id": ("offers_extract", "offers_interface", "code"),
}


class Dataset(Base):
    """A data resource in the directory: the current metadata document plus filter columns."""

    __tablename__ = "datasets"
    # Search counts and pages are answered from these covering indexes alone (no row
    # reads): one led by each filter, and one led by id for the ids full text matched.
    __table_args__ = (
        Index("ix_datasets_status_department_code", "status", "department_code", *FILTERS_AFTER["department_code"]),
        Index("ix_datasets_status_domain", "status", "domain", *FILTERS_AFTER["domain"]),
        Index("ix_datasets_status_share_type", "status", "share_type", *FILTERS_AFTER["share_type"]),
        Index("ix_datasets_id_filters", "id", "status", "department_code", "domain", "share_type", *FILTERS_AFTER["id"]),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"))
    title: Mapped[str] = mapped_column(String(300))
    domain: Mapped[str] = mapped_column(String(100))
    share_type: Mapped[str] = mapped_column(String(20))
    open_type: Mapped[str] = mapped_column(String(20))
    update_frequency: Mapped[str] = mapped_column(String(20))
    offers_extract: Mapped[bool] = mapped_column(Boolean, default=False)
    offers_interface: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="active")
    document: Mapped[dict] = mapped_column(JSON)
    search_text: Mapped[str] = mapped_column(Text)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    latest_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DatasetRevision(Base):
    """One state of a dataset's metadata: the full document after each change."""

    __tablename__ = "dataset_revisions"
    __table_args__ = (UniqueConstraint("dataset_id", "revision", name="uq_dataset_revisions_dataset_id_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    revision: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    document: Mapped[dict] = mapped_column(JSON)


class DatasetVersion(Base):
    """One accepted load of a dataset's data: an immutable Parquet snapshot and its quality report."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_dataset_id_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    number: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(BIGINT)
    source_format: Mapped[str] = mapped_column(String(20))
    source_name: Mapped[str | None] = mapped_column(String(300))
    path: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BIGINT)
    sha256: Mapped[str] = mapped_column(String(64))
    items: Mapped[list] = mapped_column(JSON)
    quality: Mapped[dict] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetTerm(Base):
    """Inverted index for full-text search: one row per (term, dataset); prefix-matched."""

    __tablename__ = "dataset_terms"
    __table_args__ = (Index("ix_dataset_terms_dataset_id", "dataset_id"), {"sqlite_with_rowid": False})

    term: Mapped[str] = mapped_column(TERM, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)


class DirectoryState(Base):
    """One row whose stamp changes, in the same transaction, with every change to the directory's datasets.

    Search keeps the datasets' filter columns in memory (``directory.search``) and reads
    them again when the stamp differs. A random stamp, not a counter: a store emptied or
    restored cannot bring back a stamp a server has seen.
    """

    __tablename__ = "directory_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stamp: Mapped[str] = mapped_column(String(32))


class LiveCredential(Base):
    """A live dataset's credentials for its provider's own API, encrypted with the exchange's key; never in the document."""

    __tablename__ = "live_credentials"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    auth_type: Mapped[str] = mapped_column(String(40))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
