"""Tables of the shell: departments, identities, issued tokens and the audit log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from govshare.db import Base, UTCDateTime, utcnow


class Role(StrEnum):
    """What a client or a person may act as. A client's roles are its OAuth2 scopes."""

    provider = "provider"
    demander = "demander"
    manager = "manager"
    service = "service"
    citizen_portal = "citizen_portal"
    admin = "admin"


class Department(Base):
    __tablename__ = "departments"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Client(Base):
    """A machine client (a department's system) authenticating with OAuth2."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    department_code: Mapped[str] = mapped_column(ForeignKey("departments.code"), index=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    secret_hash: Mapped[str | None] = mapped_column(String(128))
    public_jwks: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    department: Mapped[Department] = relationship(lazy="joined")

    @property
    def active(self) -> bool:
        return self.disabled_at is None


class User(Base):
    """A person who signs in to the web UI."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    department_code: Mapped[str | None] = mapped_column(ForeignKey("departments.code"))
    roles: Mapped[list[str]] = mapped_column(JSON)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def department(self) -> str | None:
        """The person's department, as a client's ``Caller.department`` (authorization reads both alike)."""
        return self.department_code

    def has_role(self, *roles: Role | str) -> bool:
        return any(str(role) in self.roles for role in roles)


class IssuedToken(Base):
    """One access token handed out: kept so that revocation takes effect at once."""

    __tablename__ = "issued_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), index=True)
    scope: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsedAssertion(Base):
    """A private_key_jwt assertion's jti, remembered until it expires to refuse replays."""

    __tablename__ = "used_assertions"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEntry(Base):
    """One decision or delivery; each entry carries the hash of the one before, and is signed."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(300))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON, exactly as hashed
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(100))
    signature: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_audit_entries_subject", "subject"), Index("ix_audit_entries_action_at", "action", "at"))


class AuditHead(Base):
    """The newest entry of the chain, one row: appends lock it, so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class JobLease(Base):
    """Which replica runs a periodic job now, until when (renewed while it works; taken over once expired)."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebSession(Base):
    """A person signed in to the web UI from one browser. The browser holds only a random id, stored here hashed
    (a copy of this table does not sign anyone in); deleting the row ends the session.

    Either a person of the staff (``user_id``) or a citizen signed in through the identity provider
    (``citizen_id``, from the verified ID token), never both: a citizen's session holds no roles."""

    __tablename__ = "web_sessions"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (citizen_id IS NULL)", name="staff_or_citizen"),
        Index("ix_web_sessions_citizen_id", "citizen_id"),
    )

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True, nullable=True)
    citizen_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LoginThrottle(Base):
    """Failed sign-ins of one account or from one address, counted in the record store so that every replica
    sees the same count; while ``blocked_until`` lies ahead, sign-ins under this key are refused unchecked."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # "account:<name>" or "address:<ip>"
    failures: Mapped[int] = mapped_column(Integer)
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChangeStamp(Base):
    """One row whose stamp changes with any change to the state an interface call checks (``govshare.changestamp``)."""

    __tablename__ = "change_stamp"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stamp: Mapped[str] = mapped_column(String(32))
