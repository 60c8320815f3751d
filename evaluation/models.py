"""Tables of evaluation: two-way ratings of applications and correction requests against datasets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from govshare.db import Base, UTCDateTime, utcnow


class Rating(Base):
    """One party's rating of one delivered application: the demander's or the provider's, 1 to 5."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("application_id", "party", name="uq_ratings_application_id_party"),
        Index("ix_ratings_dataset_code", "dataset_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"))
    party: Mapped[str] = mapped_column(String(10))  # demander, provider
    department_code: Mapped[str] = mapped_column(String(32))  # the rating party's department
    applicant_department: Mapped[str] = mapped_column(String(32))
    dataset_code: Mapped[str] = mapped_column(String(64))
    service_item: Mapped[str] = mapped_column(String(200))
    review_speed: Mapped[int | None] = mapped_column(Integer)
    data_quality: Mapped[int | None] = mapped_column(Integer)
    stability: Mapped[int | None] = mapped_column(Integer)
    application_quality: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    rated_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Correction(Base):
    """A demander's report of wrong data in what it received, and the provider's answer."""

    __tablename__ = "corrections"
    __table_args__ = (
        Index("ix_corrections_dataset_code_status", "dataset_code", "status"),
        Index("ix_corrections_department_code", "department_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    dataset_code: Mapped[str] = mapped_column(String(64))
    provider_department: Mapped[str] = mapped_column(String(32))
    department_code: Mapped[str] = mapped_column(String(32))  # the reporting department
    grant_id: Mapped[int | None] = mapped_column(Integer)
    item: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))  # open, corrected, rejected
    filed_by: Mapped[str] = mapped_column(String(200))
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_by: Mapped[str | None] = mapped_column(String(200))
    answer: Mapped[str | None] = mapped_column(Text)
