"""Tables of the exchange: the access ledger and submit-once intake records."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from govshare.db import Base, UTCDateTime, utcnow

BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class AccessLogEntry(Base):
    """One delivery or interface call: who, under which grant, for which service, how many rows."""

    __tablename__ = "access_log"
    __table_args__ = (
        Index("ix_access_log_at", "at"),
        Index("ix_access_log_dataset_code_at", "dataset_code", "at"),
        Index("ix_access_log_grant_id", "grant_id"),
        # Covers the percentile lookup: the latencies within one bucket, in the period, of interface calls.
        Index("ix_access_log_latency_ms_at_kind", "latency_ms", "at", "kind"),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(20))  # lookup, query, stream, extract, deposit
    client_id: Mapped[str] = mapped_column(String(64))
    department_code: Mapped[str] = mapped_column(String(32))
    dataset_code: Mapped[str] = mapped_column(String(64))
    grant_id: Mapped[int | None] = mapped_column(Integer)
    application_id: Mapped[int | None] = mapped_column(Integer)
    service_item: Mapped[str | None] = mapped_column(String(200))
    basis: Mapped[str | None] = mapped_column(Text)
    purpose: Mapped[str | None] = mapped_column(Text)  # the application's purpose (None before it was recorded, and for deposits)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer, default=200)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    extract_id: Mapped[str | None] = mapped_column(String(36))
    # A live call's message to the provider and its answer: digests and times (signed into the audit chain by batch).
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    answer_sha256: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- the ledger rolled up (kept in step by exchange.rollups) ---


class LedgerDayCount(Base):
    """Ledger lines of one UTC day summed for one dataset, department or service item."""

    __tablename__ = "ledger_day_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    dimension: Mapped[str] = mapped_column(String(12), primary_key=True)  # dataset, department, service_item
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    calls: Mapped[int] = mapped_column(BIGINT)
    rows: Mapped[int] = mapped_column(BIGINT)
    interface_calls: Mapped[int] = mapped_column(BIGINT)
    interface_server_errors: Mapped[int] = mapped_column(BIGINT)
    errors: Mapped[int] = mapped_column(BIGINT)


class LedgerDayLatency(Base):
    """Interface calls of one UTC day with a latency in one bucket (``exchange.rollups.LATENCY_BOUNDS``)."""

    __tablename__ = "ledger_day_latencies"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    calls: Mapped[int] = mapped_column(BIGINT)


class GrantFirstLine(Base):
    """When a grant's first ledger line was written (approval to first delivery without a scan of the ledger)."""

    __tablename__ = "grant_first_lines"

    grant_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AccessLogKey(Base):
    """A key (citizen ID) an access touched: what lets a citizen find their lines."""

    __tablename__ = "access_log_keys"
    __table_args__ = (Index("ix_access_log_keys_key", "key"),)

    entry_id: Mapped[int] = mapped_column(BIGINT, ForeignKey("access_log.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The citizen's consent the delivery of this key was made under (consent_required datasets): one line of a
    # page or batch covers many citizens, each under their own consent, so it is kept per key.
    consent_id: Mapped[int | None] = mapped_column(Integer)


class LedgerBatch(Base):
    """A batch of ledger lines, written in the batch's own transaction: a retry after a commit
    whose answer was lost (the connection dropped during COMMIT) finds it and writes nothing twice.
    Needed only for as long as a batch may be retried; older rows are removed."""

    __tablename__ = "ledger_batches"
    __table_args__ = (Index("ix_ledger_batches_written_at", "written_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IntakeRecord(Base):
    """A record a service system deposited into an intake dataset ("submit once"), upserted by key."""

    __tablename__ = "intake_records"
    __table_args__ = (UniqueConstraint("dataset_id", "key", name="uq_intake_records_dataset_id_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    key: Mapped[str] = mapped_column(String(64))
    record: Mapped[dict] = mapped_column(JSON)
    consent_ref: Mapped[str] = mapped_column(String(200))
    department_code: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(64))
    deposited_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Extract(Base):
    """A table extract of one grant: a job, then an immutable file with a signed manifest."""

    __tablename__ = "extracts"
    __table_args__ = (Index("ix_extracts_status", "status"), Index("ix_extracts_grant_id", "grant_id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    department_code: Mapped[str] = mapped_column(String(32))
    dataset_code: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(10))
    version_number: Mapped[int | None] = mapped_column(Integer)
    encrypt: Mapped[bool] = mapped_column(Boolean, default=False)
    # CSV only: text cells a spreadsheet would run as a formula get a leading ' (off for machine consumers).
    csv_formula_guard: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    status: Mapped[str] = mapped_column(String(10))  # queued, running, done, failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    path: Mapped[str | None] = mapped_column(String(500))
    manifest: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The process building it: after a restart, an extract of an ended process is taken up at once.
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)


class DepartmentKey(Base):
    """A department's public key (RSA, PEM): extracts can be encrypted so only it can read them."""

    __tablename__ = "department_keys"

    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"), primary_key=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SharingToken(Base):
    """A Delta Sharing bearer token for one extract grant's share; stored only as its SHA-256, revocable on its own."""

    __tablename__ = "sharing_tokens"
    __table_args__ = (Index("ix_sharing_tokens_grant_id", "grant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    department_code: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when this one token is revoked (its grant and the grant's other tokens go on).
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class SharingFile(Base):
    """The grant-scoped Parquet file of one snapshot version, served as that table version's data."""

    __tablename__ = "sharing_files"
    __table_args__ = (UniqueConstraint("grant_id", "version_number", name="uq_sharing_files_grant_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    version_number: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(500))
    rows: Mapped[int] = mapped_column(BIGINT)
    size_bytes: Mapped[int] = mapped_column(BIGINT)
    sha256: Mapped[str] = mapped_column(String(64))
    schema: Mapped[dict] = mapped_column(JSON)
    stats: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # consent_required datasets: a digest of the consents it was built under (``exchange.citizens.service.consent_digest``);
    # the next table query builds it again when they changed.
    consent_digest: Mapped[str | None] = mapped_column(String(64))


# --- citizen control: consents and explicit requests (exchange.citizens) ---


class Consent(Base):
    """A citizen's consent that one department may receive their rows of one ``consent_required`` dataset, until a day.

    ``status`` is what was recorded (``active`` or ``withdrawn``); an active consent past
    ``valid_until`` reads as ``expired`` (``exchange.citizens.service.consent_status``).
    """

    __tablename__ = "consents"
    __table_args__ = (
        # A lookup asks for one citizen's consent to one department on one dataset: found by this index alone (with
        # the index below instead, SQLite scanned every consent of the department on the dataset: 3.5 ms at 5,000).
        Index("ix_consents_citizen_id_dataset_id_department_code", "citizen_id", "dataset_id", "department_code"),
        # Every delivery of a consent dataset asks: which of this department's consents on it are active?
        Index("ix_consents_dataset_id_department_code_status", "dataset_id", "department_code", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    citizen_id: Mapped[str] = mapped_column(String(64))
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    dataset_code: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(Text)
    valid_until: Mapped[date] = mapped_column(Date)  # the last day it holds (inclusive, in the configured zone)
    status: Mapped[str] = mapped_column(String(12))  # active, withdrawn
    given_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    given_by: Mapped[str] = mapped_column(String(200))  # the portal client (or the citizen's page) that recorded it
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    withdrawn_by: Mapped[str | None] = mapped_column(String(200))


class CitizenRequest(Base):
    """A service's request for one citizen's rows of an ``explicit_request`` dataset: previewed, decided by the
    citizen, delivered once.

    ``preview`` holds exactly the records the service receives, taken under its grant when
    it asked: what the citizen approves is what is sent. It is erased once delivered, refused or
    expired. ``status``: awaiting_citizen, approved, refused, delivered, expired (recorded by the
    retention job; a lapsing request past its last day is expired on every read before that).
    """

    __tablename__ = "citizen_requests"
    __table_args__ = (
        Index("ix_citizen_requests_citizen_id", "citizen_id"),
        Index("ix_citizen_requests_department_code", "department_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    citizen_id: Mapped[str] = mapped_column(String(64))  # the key asked for
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"))
    client_id: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    dataset_code: Mapped[str] = mapped_column(String(64))
    grant_id: Mapped[int] = mapped_column(ForeignKey("grants.id"))
    version_number: Mapped[int | None] = mapped_column(Integer)  # the snapshot version the preview was read from
    preview: Mapped[list | None] = mapped_column(JSON)
    consent_id: Mapped[int | None] = mapped_column(Integer)  # the consent it was taken under (consent_required datasets)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveredConsent(Base):
    """A citizen whose row a file (an extract or a Delta Sharing file) of a ``consent_required`` dataset holds, and the
    consent it was delivered under: what the citizen's access log names, and how it knows the file held their row."""

    __tablename__ = "delivered_consents"

    file_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # Extract.id or SharingFile.id
    citizen_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    consent_id: Mapped[int] = mapped_column(Integer)
