"""Tables of approvals: applications, their history (also the events feed), grants, webhooks."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from govshare.db import Base, UTCDateTime, utcnow


class Application(Base):
    """A demanding department's request for exactly the data one public service needs."""

    __tablename__ = "applications"
    __table_args__ = (
        Index("ix_applications_status_filed_at", "status", "filed_at"),
        Index("ix_applications_department_code", "department_code"),
        Index("ix_applications_dataset_id", "dataset_id"),
        # Cover evaluation's demand and decision counts and review durations (read without the wide rows).
        Index("ix_applications_filed_at_dataset_code", "filed_at", "dataset_code"),
        Index("ix_applications_decided_at_status", "decided_at", "status", "reason_code", "dataset_code", "filed_at"),
        # The few applications with a delayed disclosure, for the metrics' counts (evaluation.disclosures) without a scan.
        Index("ix_applications_disclosure_delay_until", "disclosure_delay_until", "grant_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    dataset_code: Mapped[str] = mapped_column(String(64))
    provider_department: Mapped[str] = mapped_column(String(32))
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"))
    applicant: Mapped[str] = mapped_column(String(200))
    service_item: Mapped[str] = mapped_column(String(200))
    scenario: Mapped[str | None] = mapped_column(Text)
    basis: Mapped[str] = mapped_column(Text)
    purpose: Mapped[str] = mapped_column(Text)
    items: Mapped[list] = mapped_column(JSON)
    justifications: Mapped[dict] = mapped_column(JSON)
    row_filter: Mapped[dict | None] = mapped_column(JSON)
    delivery: Mapped[str] = mapped_column(String(20))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    inspection: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    filed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    inspection_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    reason_code: Mapped[str | None] = mapped_column(String(40))
    decision_comment: Mapped[str | None] = mapped_column(Text)
    conditions: Mapped[list] = mapped_column(JSON, default=list)
    masks: Mapped[dict] = mapped_column(JSON, default=dict)
    grant_id: Mapped[int | None] = mapped_column(Integer)
    # Delayed disclosure: the grant's ledger lines stay out of citizens' access logs until this day (on this basis).
    disclosure_delay_until: Mapped[date | None] = mapped_column(Date)
    disclosure_basis: Mapped[str | None] = mapped_column(Text)
    # Optimistic lock: two managers deciding at once cannot both succeed.
    lock_version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": lock_version}


class ApplicationEvent(Base):
    """One step in an application's or grant's life: its history and the parties' event feed."""

    __tablename__ = "application_events"
    __table_args__ = (
        Index("ix_application_events_application_id", "application_id"),
        Index("ix_application_events_kind_at", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(60))
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    grant_id: Mapped[int | None] = mapped_column(Integer)
    applicant_department: Mapped[str] = mapped_column(String(32))
    provider_department: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    reason_code: Mapped[str | None] = mapped_column(String(40))
    comment: Mapped[str | None] = mapped_column(Text)


class Grant(Base):
    """What an approval allows: exact columns, rows, delivery mode and validity window."""

    __tablename__ = "grants"
    __table_args__ = (
        Index("ix_grants_department_code", "department_code"),
        Index("ix_grants_dataset_id", "dataset_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), unique=True)
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    dataset_code: Mapped[str] = mapped_column(String(64))
    columns: Mapped[list] = mapped_column(JSON)
    row_filter: Mapped[dict | None] = mapped_column(JSON)
    delivery: Mapped[str] = mapped_column(String(20))
    conditions: Mapped[list] = mapped_column(JSON, default=list)
    masks: Mapped[dict] = mapped_column(JSON, default=dict)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    # Paused (``grant_state`` says paused): every delivery refuses it until it is resumed.
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_by: Mapped[str | None] = mapped_column(String(200))
    pause_reason: Mapped[str | None] = mapped_column(Text)


class Webhook(Base):
    """A department's endpoint for event notifications, signed with HMAC-SHA256."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The feed position already delivered: deliveries resume from here after a restart.
    delivered_event_id: Mapped[int] = mapped_column(Integer, default=0)
