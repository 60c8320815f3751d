"""Delta Sharing for extract grants: shares, bearer tokens, the files served and their signed URLs.

Each extract grant is one share (``grant-{id}``) holding one schema (the providing
department) and one table (the dataset). A table version is a snapshot version; its
data is one Parquet file built by the extract code from exactly the grant's columns
(masked) and rows, made on first use and cached. The share's bearer tokens are stored
as SHA-256, end with the grant's period, and are checked against the grant on every
request, so revocation stops them at once; one token can also be revoked on its own
(a leaked profile), leaving the grant's other tokens working. File URLs are signed,
short-lived and tied to the token that asked for them, which is checked again at each
fetch; a refresh token lets a long read get new ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from approvals import service as approvals
from approvals.models import Grant
from directory import service as directory
from directory.loading import file_sha256
from directory.models import DatasetVersion
from exchange.citizens import service as citizens
from exchange.extracts import service as extracts
from exchange.errors import SharingTokenNotFound, SharingTokenRevoked
from exchange.models import SharingFile, SharingToken
from exchange.service import Scope, scope_of
from exchange.stores import keyed_store
from govshare import audit
from govshare.db import quote_identifier, utcnow
from govshare.errors import GovshareError
from govshare.keys import KeyStore
from govshare.settings import Settings
from govshare.storage import Store


# --- errors: problem+json that also carries the protocol's errorCode and message ------------------


class SharingError(GovshareError):
    status, type, title, error_code = 400, "sharing-invalid-parameter", "Invalid Delta Sharing request", "INVALID_PARAMETER_VALUE"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.extra = {"errorCode": self.error_code, "message": detail, **self.extra}


class SharingUnauthenticated(SharingError):
    status, type, title, error_code = 401, "sharing-unauthenticated", "Sharing token missing, unknown or expired", "UNAUTHENTICATED"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="govshare delta sharing"'})
        super().__init__(detail, **kwargs)


class SharingForbidden(SharingError):
    status, type, title, error_code = 403, "sharing-forbidden", "The grant does not allow this", "PERMISSION_DENIED"


class SharingGrantPaused(SharingForbidden):
    type, title = "grant-paused", "The grant is paused"


class SharingNotFound(SharingError):
    status, type, title, error_code = 404, "sharing-not-found", "No such share, schema, table or version", "RESOURCE_DOES_NOT_EXIST"


class SharingRateLimited(SharingError):
    status, type, title, error_code = 429, "rate-limited", "Too many requests", "RESOURCE_LIMIT_EXCEEDED"


# --- names -------------------------------------------------------------------------------------


def share_name(grant: Grant) -> str:
    return f"grant-{grant.id}"


def schema_name(scope: Scope) -> str:
    return scope.dataset.department_code.lower()


def table_name(scope: Scope) -> str:
    return scope.dataset.code.lower()


def table_id(grant: Grant) -> str:
    """A stable id for the grant's table (clients use it to notice a table was replaced)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"govshare:grant:{grant.id}"))


# --- tokens and profiles -------------------------------------------------------------------------


def token_hash(token: str) -> str:
    # 256 random bits: a fast hash is enough (a slow one would slow every request), as for client secrets.
    return hashlib.sha256(token.encode()).hexdigest()


def grant_ends_at(grant: Grant, settings: Settings) -> datetime:
    """The moment a grant's period ends: midnight after its last day, in the exchange's time zone."""
    end = datetime.combine(grant.valid_until + timedelta(days=1), time(0), tzinfo=ZoneInfo(settings.timezone))
    return end.astimezone(UTC)


def issue_profile(session: Session, *, scope: Scope, actor: str, settings: Settings) -> dict[str, Any]:
    """A new bearer token for the grant's share, as a Delta Sharing profile file (the token is shown only here)."""
    token = secrets.token_urlsafe(32)
    expires_at = grant_ends_at(scope.grant, settings)
    session.add(SharingToken(token_hash=token_hash(token), grant_id=scope.grant.id, department_code=scope.grant.department_code,
                             created_by=actor, expires_at=expires_at))
    session.flush()
    return {
        "shareCredentialsVersion": 1,
        "endpoint": f"{settings.issuer}/delta-sharing",
        "bearerToken": token,
        "expirationTime": expires_at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    }


def tokens_of(session: Session, *, grant: Grant) -> list[SharingToken]:
    """The grant's sharing tokens, newest first (revoked and expired ones too)."""
    return list(session.execute(select(SharingToken).where(SharingToken.grant_id == grant.id)
                                .order_by(SharingToken.created_at.desc(), SharingToken.id.desc())).scalars())


def token_state(token: SharingToken, now: datetime | None = None) -> str:
    """``revoked``, ``expired`` or ``active`` (the token's own state; its grant is checked on every request too)."""
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if token.expires_at <= (now or utcnow()) else "active"


def revoke_token(session: Session, *, grant: Grant, token_id: int, actor: str, now: datetime | None = None) -> SharingToken:
    """Revoke one of the grant's sharing tokens: it and the file URLs it was given stop at once; the grant goes on."""
    # Locked: of two revocations at once, one wins and the other finds it revoked (409), as for grants.
    token = session.execute(select(SharingToken).where(SharingToken.id == token_id, SharingToken.grant_id == grant.id)
                            .with_for_update()).scalar_one_or_none()
    if token is None:
        raise SharingTokenNotFound(f"grant {grant.id} has no sharing token {token_id}")
    if token.revoked_at is not None:
        raise SharingTokenRevoked(f"sharing token {token_id} of grant {grant.id} was revoked already")
    token.revoked_at, token.revoked_by = now or utcnow(), actor
    session.flush()
    audit.record(session, actor=actor, action="sharing.token_revoked", subject=f"grant:{grant.id}",
                 details={"token": token.id, "department": token.department_code})
    return token


@dataclass(frozen=True)
class Access:
    """A request under a sharing token: the token and what its grant lets it see."""

    token: SharingToken
    scope: Scope

    @property
    def grant(self) -> Grant:
        return self.scope.grant


def authenticate(session: Session, *, bearer: str, settings: Settings, now: datetime | None = None) -> Access:
    """The access a bearer token gives, checked against its grant now (revoked or ended: refused)."""
    now = now or utcnow()
    # A revoked token is not found: it gets exactly the answer of one never issued.
    token = session.execute(select(SharingToken).where(SharingToken.token_hash == token_hash(bearer),
                                                       SharingToken.revoked_at.is_(None))).scalar_one_or_none() if bearer else None
    if token is None:
        raise SharingUnauthenticated("the bearer token is missing or not a sharing token of this exchange")
    grant = _grant_in_force(session, token, settings=settings, now=now, expired=SharingUnauthenticated(
        "the sharing token has expired with its grant; the grant's period is over"))
    return Access(token, scope_of(session, grant))


def _grant_in_force(session: Session, token: SharingToken, *, settings: Settings, now: datetime, expired: Exception) -> Grant:
    """The token's grant, if the token has not expired (else ``expired``) and the grant is active now (checked at every use)."""
    if token.expires_at <= now:
        raise expired
    grant = session.get(Grant, token.grant_id)
    state = approvals.grant_state(grant, approvals.today(settings, now))
    if state == approvals.GrantState.paused:
        raise SharingGrantPaused(f"grant {grant.id} is paused: its share serves nothing until it is resumed")
    if state != approvals.GrantState.active:
        raise SharingForbidden(f"grant {grant.id} is {state}: its share serves nothing")
    return grant


def check_share(access: Access, share: str) -> None:
    # Another grant's share answers exactly as one that does not exist.
    if share.lower() != share_name(access.grant):
        raise SharingNotFound(f"share {share} does not exist or is not yours")


def check_table(access: Access, share: str, schema: str, table: str | None = None) -> None:
    check_share(access, share)
    if schema.lower() != schema_name(access.scope):
        raise SharingNotFound(f"schema {schema} does not exist in share {share}")
    if table is not None and table.lower() != table_name(access.scope):
        raise SharingNotFound(f"table {table} does not exist in {share}.{schema}")


# --- versions -------------------------------------------------------------------------------------


def table_version(session: Session, scope: Scope, *, version: int | None = None, timestamp: str | None = None,
                  starting_timestamp: str | None = None) -> DatasetVersion:
    """The snapshot version a request means: the newest, a named one, the one current at a time, or the first since a time."""
    versions = list(session.execute(select(DatasetVersion).where(DatasetVersion.dataset_id == scope.dataset.id)
                                    .order_by(DatasetVersion.number)).scalars())
    if not versions:
        raise SharingNotFound(f"table {table_name(scope)} has no data yet")
    if version is not None:
        for row in versions:
            if row.number == version:
                return row
        raise SharingNotFound(f"table {table_name(scope)} has no version {version} (versions 1 to {versions[-1].number})")
    if timestamp is not None:
        moment = _timestamp(timestamp, "timestamp")
        current = [row for row in versions if row.created_at <= moment]
        if not current:
            raise SharingError(f"timestamp: the table has no version as early as {timestamp}")
        return current[-1]
    if starting_timestamp is not None:
        moment = _timestamp(starting_timestamp, "startingTimestamp")
        since = [row for row in versions if row.created_at >= moment]
        if not since:
            raise SharingError(f"startingTimestamp: no version was made at or after {starting_timestamp}")
        return since[0]
    newest = directory.latest_version(session, dataset=scope.dataset)
    return newest or versions[-1]


def _timestamp(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SharingError(f"{field}: {text!r} is not a timestamp such as 2026-12-01T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- files ----------------------------------------------------------------------------------------


def ensure_file(session: Session, *, scope: Scope, version: DatasetVersion, store: Store, today: date) -> SharingFile:
    """The grant-scoped Parquet file of ``version``: built on first use (recorded in ``session``), then reused.

    On a ``consent_required`` dataset it holds only the rows of citizens consenting now, and is
    built again (the old file erased) whenever those consents changed: a withdrawal holds from
    the next query, and a new consent shows there too.
    """
    if citizens.explicit_request(scope.dataset):
        raise SharingForbidden(f"dataset {scope.dataset.code} is delivered only on the citizen's approval of a request; "
                               "it is not shared as a table")
    consents = consented = digest = None
    if citizens.consent_required(scope.dataset):
        consents = citizens.consented_keys(session, department=scope.grant.department_code, dataset_id=scope.dataset.id,
                                           today=today)
        consented, digest = keyed_store.Consented(scope.lookup_key, citizens.consented_table(consents)), citizens.consent_digest(consents)
    existing = _file_of(session, scope.grant.id, version.number)
    if existing is not None:
        if existing.consent_digest == digest:
            return existing
        # Built under other consents: erased, so none of its URLs serves again (servable_file finds no row).
        with session.begin_nested():
            session.execute(delete(SharingFile).where(SharingFile.id == existing.id))
        stale_path = existing.path
        # Its object goes once the row's removal is committed: a rollback leaves row and object as they were.
        event.listen(session, "after_commit", lambda _session: store.delete(stale_path), once=True)
    scope = scope_of(session, scope.grant, version=version)
    scope.check()
    file_id = str(uuid.uuid4())
    key = f"sharing/{file_id}.parquet"
    temp = store.staging_path(key, "sharing")
    snapshot = directory.snapshot_path(store, version)
    try:
        rows, delivered = extracts.build_scoped_file(snapshot, scope, temp, consented=consented)
        schema = delta_schema(pq.read_schema(temp))
        stats = file_stats(temp, rows)
        sha256 = file_sha256(temp)
        size = store.publish(temp, key)
        record = SharingFile(id=file_id, grant_id=scope.grant.id, version_number=version.number,
                             path=key, rows=rows, size_bytes=size, sha256=sha256, schema=schema, stats=stats,
                             consent_digest=digest)
        with session.begin_nested():
            session.add(record)
            session.flush()
            if consents is not None:
                citizens.record_delivered(session, file_id=file_id, consents=consents, delivered=delivered)
        return record
    except IntegrityError:
        # Another request built the same version at the same time: keep theirs.
        store.delete(key)
        return _file_of(session, scope.grant.id, version.number)
    finally:
        temp.unlink(missing_ok=True)


def _file_of(session: Session, grant_id: int, version_number: int) -> SharingFile | None:
    return session.execute(select(SharingFile).where(SharingFile.grant_id == grant_id,
                                                     SharingFile.version_number == version_number)).scalar_one_or_none()


_DELTA_TYPES = [
    (pa.types.is_string, "string"), (pa.types.is_large_string, "string"), (pa.types.is_boolean, "boolean"),
    (pa.types.is_int8, "byte"), (pa.types.is_int16, "short"), (pa.types.is_int32, "integer"), (pa.types.is_int64, "long"),
    (pa.types.is_float32, "float"), (pa.types.is_float64, "double"), (pa.types.is_date32, "date"),
    (pa.types.is_timestamp, "timestamp"), (pa.types.is_null, "string"), (pa.types.is_decimal, "double"),
]


def delta_schema(schema: pa.Schema) -> dict[str, Any]:
    """The Delta schema (a struct of fields) of a Parquet file's columns."""
    fields = []
    for column in schema:
        delta_type = next((name for test, name in _DELTA_TYPES if test(column.type)), "string")
        fields.append({"name": column.name, "type": delta_type, "nullable": True, "metadata": {}})
    return {"type": "struct", "fields": fields}


def file_stats(path: Path, rows: int) -> dict[str, Any]:
    """Per-file statistics in the protocol's shape: row count, and each column's minimum, maximum and nulls."""
    schema = pq.read_schema(path)
    stats: dict[str, Any] = {"numRecords": rows, "minValues": {}, "maxValues": {}, "nullCount": {}}
    connection = duckdb.connect()
    try:
        for column in schema:
            if pa.types.is_null(column.type):
                stats["nullCount"][column.name] = rows
                continue
            quoted = quote_identifier(column.name)
            low, high, nulls = connection.execute(
                f"SELECT min({quoted}), max({quoted}), count(*) - count({quoted}) FROM read_parquet(?)", [str(path)]).fetchone()
            stats["nullCount"][column.name] = int(nulls)
            if low is not None and not isinstance(low, bool):
                stats["minValues"][column.name] = low.isoformat() if hasattr(low, "isoformat") else low
                stats["maxValues"][column.name] = high.isoformat() if hasattr(high, "isoformat") else high
    finally:
        connection.close()
    return stats


def _url_mac(secret: bytes, file_id: str, token_id: int, expires: int) -> str:
    return hmac.new(secret, f"{file_id}:{token_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def url_secret(keystore: KeyStore) -> bytes:
    """The key that signs file URLs (derived from a secret generated at init)."""
    return hashlib.sha256(b"govshare delta sharing urls:" + keystore.session_secret().encode()).digest()


def file_url(*, file: SharingFile, token: SharingToken, settings: Settings, secret: bytes,
             now: datetime | None = None) -> tuple[str, int]:
    """A signed URL to ``file`` for ``token``'s holder, and when it expires (epoch milliseconds)."""
    expires = int(((now or utcnow()) + timedelta(seconds=settings.sharing_url_seconds)).timestamp())
    signature = _url_mac(secret, file.id, token.id, expires)
    url = f"{settings.issuer}/delta-sharing/files/{file.id}?token={token.id}&expires={expires}&signature={signature}"
    return url, expires * 1000


def url_is_valid(*, file_id: str, token_id: int, expires: int, signature: str, secret: bytes, now: datetime | None = None) -> bool:
    if expires < int((now or utcnow()).timestamp()):
        return False
    # As bytes: compare_digest refuses (TypeError) a str with non-ASCII characters, which anyone can send.
    return hmac.compare_digest(_url_mac(secret, file_id, token_id, expires).encode(), signature.encode("utf-8", "surrogatepass"))


def servable_file(session: Session, *, file_id: str, token_id: int, settings: Settings, now: datetime | None = None) -> SharingFile:
    """The file a signed URL names, if its token and grant still allow it (checked at each fetch)."""
    now = now or utcnow()
    token = session.get(SharingToken, token_id)
    file = session.get(SharingFile, file_id)
    if token is None or file is None or file.grant_id != token.grant_id:
        raise SharingNotFound(f"file {file_id} does not exist")
    if token.revoked_at is not None:
        raise SharingForbidden("the sharing token that asked for this file has been revoked")
    grant = _grant_in_force(session, token, settings=settings, now=now,
                            expired=SharingForbidden("the sharing token that asked for this file has expired"))
    if file.consent_digest is not None and citizens.consent_lapsed(session, file_id=file.id, today=approvals.today(settings, now)):
        raise SharingForbidden(f"a citizen whose row file {file_id} holds has withdrawn their consent (or it ended); "
                               f"query table {grant.dataset_code} again")
    return file


# --- refresh tokens -------------------------------------------------------------------------------


def _refresh_serializer(keystore: KeyStore) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keystore.session_secret(), salt="govshare delta sharing refresh")


def refresh_token(keystore: KeyStore, *, access: Access, version: int) -> str:
    """A token with which this read gets new URLs for the same files (same version, same token)."""
    return _refresh_serializer(keystore).dumps({"t": access.token.id, "g": access.grant.id, "v": version})


def refreshed_version(keystore: KeyStore, *, access: Access, refresh: str, settings: Settings) -> int:
    """The version a refresh token was issued for, if it is ours, fresh, and was issued to this token."""
    try:
        payload = _refresh_serializer(keystore).loads(refresh, max_age=settings.sharing_refresh_seconds)
    except BadSignature:  # also SignatureExpired
        raise SharingError("refreshToken: not a refresh token of this read, or older than the refresh window; query again") from None
    if payload.get("t") != access.token.id or payload.get("g") != access.grant.id:
        raise SharingError("refreshToken: issued to another sharing token")
    return int(payload["v"])


# --- hints ------------------------------------------------------------------------------------------


def _literal(value: Any, value_type: str) -> Any:
    if value_type in ("int", "long", "short", "byte"):
        return int(value)
    if value_type in ("float", "double"):
        return float(value)
    if value_type == "date":
        return date.fromisoformat(str(value))
    if value_type == "boolean":
        return str(value).lower() == "true"
    if value_type == "string":
        return str(value)
    raise ValueError(value_type)


def may_match(predicate: dict[str, Any], stats: dict[str, Any], *, hidden: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether a file whose statistics are ``stats`` may hold rows satisfying a JSON predicate hint.

    Conservative: anything not understood may match. Hints only ever drop whole files of the
    grant's own data; they never add anything. Hints on ``hidden`` columns (the grant's masked
    items) are ignored: a clear value compared with a masked column's statistics would test
    clear values, a key above all, against what the grant disguises.
    """
    op = predicate.get("op")
    children = predicate.get("children") or []
    if op == "and":
        return all(may_match(child, stats, hidden=hidden) for child in children)
    if op == "or":
        return any(may_match(child, stats, hidden=hidden) for child in children)
    columns = [child for child in children if child.get("op") == "column"]
    literals = [child for child in children if child.get("op") == "literal"]
    if any(column.get("name") in hidden for column in columns):
        return True
    if op == "isNull" and len(columns) == 1:
        nulls = stats.get("nullCount", {}).get(columns[0].get("name"))
        return nulls is None or nulls > 0
    comparisons = {"equal", "lessThan", "lessThanOrEqual", "greaterThan", "greaterThanOrEqual"}
    if op not in comparisons or len(columns) != 1 or len(literals) != 1 or children[0] is not columns[0]:
        return True
    name, value_type = columns[0].get("name"), literals[0].get("valueType", "")
    if name not in stats.get("nullCount", {}):
        return True  # not a column of this file: ignored
    if name not in stats.get("minValues", {}):
        return stats["nullCount"][name] < stats.get("numRecords", 0)  # all null: no comparison holds
    try:
        value = _literal(literals[0].get("value"), value_type)
        low = _literal(stats["minValues"][name], value_type)
        high = _literal(stats["maxValues"][name], value_type)
    except (ValueError, TypeError):
        return True
    return {
        "equal": low <= value <= high, "lessThan": low < value, "lessThanOrEqual": low <= value,
        "greaterThan": high > value, "greaterThanOrEqual": high >= value,
    }[op]


def parse_predicate(text: str | None) -> dict[str, Any] | None:
    """A jsonPredicateHints string as a dict; an invalid one is skipped, as the protocol asks."""
    if not text:
        return None
    try:
        predicate = json.loads(text)
    except ValueError:
        return None
    return predicate if isinstance(predicate, dict) else None


# --- listing pages ----------------------------------------------------------------------------------


def page(items: list[dict[str, Any]], *, max_results: int | None, page_token: str | None) -> dict[str, Any]:
    """One page of a listing, with ``nextPageToken`` when more remain."""
    if max_results is not None and not 1 <= max_results <= 1000:
        raise SharingError("maxResults: a whole number from 1 to 1000")
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)).decode())
        except (ValueError, UnicodeDecodeError):
            raise SharingError("pageToken: not a page token this server issued") from None
    size = max_results or 1000
    body: dict[str, Any] = {"items": items[start:start + size]}
    if start + size < len(items):
        body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode().rstrip("=")
    return body
