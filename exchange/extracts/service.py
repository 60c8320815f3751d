"""Extracts: DuckDB projects exactly a grant's columns and rows of a snapshot into a file.

The query runs inside DuckDB straight from the Parquet snapshot to the output file
(``COPY (SELECT ...) TO``), so the data never passes through Python. The file is
written under a temporary name and renamed into place only once complete, with a
manifest (rows, columns, SHA-256, format, snapshot version) signed by the exchange.
A job interrupted by a restart is taken up again (its partial file discarded), at
most ``MAX_ATTEMPTS`` times, then ends as failed with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from approvals.models import Grant
from directory import service as directory
from directory.loading import file_sha256
from directory.models import Dataset, DatasetVersion
from approvals import service as approvals
from exchange import crypto
from exchange.citizens import service as citizens
from exchange.stores import keyed_store
from exchange.errors import InvalidQuery, NoData
from exchange.extracts.files import extract_key
from exchange.models import DepartmentKey, Extract
from exchange.service import Scope, scope_of
from govshare import audit, processes
from govshare.audit import canonical_json
from govshare.db import Database, quote_identifier, quote_path, utcnow
from govshare.keys import KeyStore, Signature
from govshare.settings import get_settings
from govshare.storage import Store

log = logging.getLogger("govshare.extracts")
FORMATS = {"parquet": ".parquet", "csv": ".csv", "arrow": ".arrow"}
MAX_ATTEMPTS = 3
STALE_AFTER = timedelta(seconds=60)
LINK_LIFETIME = timedelta(hours=1)


def request_extract(
    session: Session, *, scope: Scope, actor: str, format: str, version: int | None, encrypt: bool, csv_formula_guard: bool = True,
) -> Extract:
    """Queue an extract of ``scope``'s grant (newest version unless one is named).

    ``csv_formula_guard``: in a CSV extract, text cells that a spreadsheet would run as a
    formula get a leading ``'`` (OWASP's CSV injection advice); off for machine consumers.
    """
    if format not in FORMATS:
        raise InvalidQuery(f"format: one of {', '.join(FORMATS)}")
    chosen = _version(session, scope, version) if version is not None else directory.latest_version(session, dataset=scope.dataset)
    if chosen is None and version is not None:
        raise InvalidQuery(f"version: dataset {scope.dataset.code} has no version {version}")
    if chosen is None:
        raise NoData(f"dataset {scope.dataset.code} has no data yet")
    scope_of(session, scope.grant, version=chosen).check()
    if encrypt and session.get(DepartmentKey, scope.grant.department_code) is None:
        raise InvalidQuery("encrypt: your department has registered no public key (PUT /api/v1/departments/{code}/public-key)")
    extract = Extract(
        id=str(uuid.uuid4()), grant_id=scope.grant.id, department_code=scope.grant.department_code,
        dataset_code=scope.dataset.code, format=format, version_number=version, encrypt=encrypt,
        csv_formula_guard=csv_formula_guard, status="queued",
        progress=0.0, attempts=0, requested_by=actor,
    )
    session.add(extract)
    session.flush()
    return extract


def _version(session: Session, scope: Scope, number: int) -> DatasetVersion | None:
    return session.execute(select(DatasetVersion).where(DatasetVersion.dataset_id == scope.dataset.id,
                                                        DatasetVersion.number == number)).scalar_one_or_none()


def _claim(database: Database, *, now: datetime | None = None) -> tuple[str, int] | None:
    """Take one queued extract (atomically: two workers, on any replica, never take the same one).

    Returns its id and the attempt taken: the attempt fences a worker whose claim was
    taken over (its heartbeat lapsed) from recording a result over its successor's.
    """
    with database.transaction() as session:
        for extract_id in session.execute(select(Extract.id).where(Extract.status == "queued").order_by(Extract.created_at).limit(5)).scalars():
            moment = now or utcnow()
            taken = session.execute(
                update(Extract).where(Extract.id == extract_id, Extract.status == "queued")
                .values(status="running", started_at=moment, heartbeat_at=moment, attempts=Extract.attempts + 1, progress=0.0,
                        worker_host=processes.HOST, worker_pid=os.getpid())
            ).rowcount
            if taken:
                return extract_id, session.get(Extract, extract_id).attempts
    return None


def recover(database: Database, *, now: datetime | None = None, stale_after: timedelta = STALE_AFTER) -> int:
    """Running extracts whose worker ended or stopped beating for ``stale_after`` (a dead replica's lease) go back
    to the queue, or fail after ``MAX_ATTEMPTS``."""
    now = now or utcnow()
    with database.transaction() as session:
        running = session.execute(select(Extract).where(Extract.status == "running")).scalars().all()
        stale = [extract for extract in running
                 if (extract.heartbeat_at or extract.started_at or now) < now - stale_after
                 or processes.process_is_gone(extract.worker_host, extract.worker_pid, since=extract.started_at and extract.started_at.timestamp())]
        for extract in stale:
            if extract.attempts >= MAX_ATTEMPTS:
                extract.status, extract.finished_at = "failed", now
                extract.error = f"interrupted {extract.attempts} times (server restarts); giving up"
            else:
                extract.status, extract.progress = "queued", 0.0
        return len(stale)


def run_pending(database: Database, *, store: Store, keystore: KeyStore, pause_dir: Path | None = None) -> int:
    """Build every queued extract; returns how many were finished (done or failed)."""
    finished = 0
    while (claimed := _claim(database)) is not None:
        extract_id, attempt = claimed
        if pause_dir is not None:
            _pause(database, extract_id, pause_dir)
        _build(database, extract_id, store=store, keystore=keystore, attempt=attempt)
        finished += 1
    return finished


def _pause(database: Database, extract_id: str, pause_dir: Path) -> None:
    """Tests only (GOVSHARE_TEST_PAUSE_DIR): say which process claimed the extract, then wait, beating, while
    ``pause_dir/pause`` exists, so a test can kill this replica at a known point of a build."""
    (pause_dir / f"claimed-{extract_id}-{os.getpid()}").touch()
    while (pause_dir / "pause").exists():
        with database.transaction() as session:
            session.execute(update(Extract).where(Extract.id == extract_id, Extract.status == "running").values(heartbeat_at=utcnow()))
        threading.Event().wait(0.2)


def _heartbeat(database: Database, extract_id: str, connection: duckdb.DuckDBPyConnection, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        try:
            progress = max(0.0, min(0.99, float(connection.query_progress()) / 100))
        except Exception:  # progress is best effort
            progress = None
        with database.transaction() as session:
            values: dict[str, Any] = {"heartbeat_at": utcnow()}
            if progress is not None and progress > 0:
                values["progress"] = progress
            session.execute(update(Extract).where(Extract.id == extract_id, Extract.status == "running").values(**values))


def _build(database: Database, extract_id: str, *, store: Store, keystore: KeyStore, attempt: int | None = None) -> None:
    with database.transaction(write=False) as session:
        extract = session.get(Extract, extract_id)
        grant = session.get(Grant, extract.grant_id)
        dataset = session.get(Dataset, grant.dataset_id)
        version = (session.execute(select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id,
                                                                DatasetVersion.number == extract.version_number)).scalar_one()
                   if extract.version_number else directory.latest_version(session, dataset=dataset))
        scope = scope_of(session, grant, version=version)
        scope.check()  # a newer version since the request may have dropped a granted item: failed, saying so
        snapshot_key = version.path
        number, fmt, encrypt, department = version.number, extract.format, extract.encrypt, extract.department_code
        formula_guard = extract.csv_formula_guard
        public_key = session.get(DepartmentKey, department).public_key_pem if encrypt else None
        consents = consented = None
        if citizens.consent_required(dataset):  # only the rows of citizens consenting now, joined in DuckDB
            consents = citizens.consented_keys(session, department=department, dataset_id=dataset.id,
                                               today=approvals.today(get_settings()))
            consented = keyed_store.Consented(scope.lookup_key, citizens.consented_table(consents))
    key = extract_key(f"{extract_id}{FORMATS[fmt]}{'.enc' if encrypt else ''}")
    temp = store.staging_path(key, "extract")
    plain = store.staging_path(key, "extract")
    published = False
    try:
        rows, delivered = _write(store.local_path(snapshot_key), scope, fmt, plain, database, extract_id, formula_guard=formula_guard,
                                 consented=consented)
        if encrypt:
            crypto.encrypt_file(plain, temp, public_key)
            plain.unlink()
        else:
            plain.replace(temp)
        manifest = {
            "extract_id": extract_id, "dataset": scope.dataset.code, "grant_id": scope.grant.id,
            "department": department, "version": number, "format": fmt, "encrypted": encrypt,
            "rows": rows, "columns": list(scope.columns), "row_filter": scope.grant.row_filter,
            "masks": dict(scope.grant.masks or {}),
            "sha256": file_sha256(temp), "bytes": temp.stat().st_size, "created_at": utcnow().isoformat(),
        }
        if fmt == "csv":
            manifest["csv_formula_guard"] = formula_guard
        signature = keystore.sign(canonical_json(manifest).encode())
        manifest["signature"] = {"alg": "ES256", "kid": signature.key_id, "value": signature.value}
        with database.transaction() as session:
            extract = session.get(Extract, extract_id, with_for_update=True)
            if attempt is not None and (extract.status != "running" or extract.attempts != attempt):
                log.warning("extract %s was taken over by another worker; this build's result is dropped", extract_id)
                return
            store.publish(temp, key)  # before the commit that names it; removed again if that fails
            published = True
            extract.status, extract.progress, extract.finished_at = "done", 1.0, utcnow()
            extract.path, extract.manifest = key, manifest
            if consents is not None:  # whose rows it holds, under which consent: the citizen's log, and downloads after a withdrawal
                citizens.record_delivered(session, file_id=extract_id, consents=consents, delivered=delivered)
            audit.record(session, actor=extract.requested_by, action="extract.created", subject=f"extract:{extract_id}",
                         details={"grant_id": scope.grant.id, "rows": rows, "sha256": manifest["sha256"], "version": number})
    except Exception as error:
        log.exception("extract %s failed", extract_id)
        if published:
            store.delete(key)
        with database.transaction() as session:
            extract = session.get(Extract, extract_id)
            if attempt is not None and (extract.status != "running" or extract.attempts != attempt):
                return
            extract.status, extract.finished_at, extract.error = "failed", utcnow(), f"{type(error).__name__}: {error}"
    finally:
        temp.unlink(missing_ok=True)
        plain.unlink(missing_ok=True)


def _write(snapshot: Path, scope: Scope, fmt: str, target: Path, database: Database, extract_id: str, *, formula_guard: bool,
           consented: keyed_store.Consented | None = None) -> tuple[int, list[str]]:
    """Write the extract; its row count, and (``consented``) the keys of the consenting citizens whose rows it holds."""
    connection = duckdb.connect()
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(database, extract_id, connection, stop), daemon=True)
    beat.start()
    try:
        rows = _copy_scoped(connection, snapshot, scope, fmt, target, formula_guard=formula_guard, consented=consented)
        return rows, (_consented_keys_held(connection, snapshot, scope, consented) if consented is not None else [])
    finally:
        stop.set()
        beat.join(timeout=5)
        connection.close()


def build_scoped_file(snapshot: Path, scope: Scope, target: Path, *, fmt: str = "parquet",
                      consented: keyed_store.Consented | None = None) -> tuple[int, list[str]]:
    """Write exactly ``scope``'s columns (masked) and rows of ``snapshot`` to ``target`` (only consenting citizens' rows,
    with ``consented``); returns the row count and the consenting citizens' keys the file holds (none without ``consented``).

    The one place a grant's rows become a file: extracts and Delta Sharing files both come from here.
    """
    connection = duckdb.connect()
    try:
        rows = _copy_scoped(connection, snapshot, scope, fmt, target, consented=consented)
        return rows, (_consented_keys_held(connection, snapshot, scope, consented) if consented is not None else [])
    finally:
        connection.close()


def _consented_keys_held(connection: duckdb.DuckDBPyConnection, snapshot: Path, scope: Scope,
                         consented: keyed_store.Consented) -> list[str]:
    """The keys (as text) of the consenting citizens with a row within the scope: those a file written under it holds."""
    connection.register(keyed_store.CONSENTED, consented.table)
    try:
        return [key for key, in connection.execute(
            f"SELECT DISTINCT CAST({quote_identifier(consented.key)} AS VARCHAR) FROM read_parquet(?) "
            f"WHERE ({scope.row_filter.sql}) AND {consented.condition}", [str(snapshot), *scope.row_filter.params]).fetchall()]
    finally:
        connection.unregister(keyed_store.CONSENTED)


def _copy_scoped(
    connection: duckdb.DuckDBPyConnection, snapshot: Path, scope: Scope, fmt: str, target: Path, *, formula_guard: bool = True,
    consented: keyed_store.Consented | None = None,
) -> int:
    select_sql = f"SELECT {scope.projection.sql} FROM read_parquet(?) WHERE {scope.row_filter.sql}"
    params = [*scope.projection.params, str(snapshot), *scope.row_filter.params]
    if consented is not None:
        # The consented keys are a table beside the query (never text in it), semi-joined by DuckDB.
        connection.register(keyed_store.CONSENTED, consented.table)
        select_sql = (f"SELECT {scope.projection.sql} FROM read_parquet(?) WHERE ({scope.row_filter.sql}) "
                      f"AND {consented.condition}")
    if fmt == "csv" and formula_guard:
        select_sql = _formula_guarded(connection, select_sql, params)
    if fmt == "arrow":
        reader = connection.sql(select_sql, params=params).to_arrow_reader(65536)
        rows = 0
        with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_file(sink, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER true"
    # The target path is ours (a uuid under the data folder), never a caller's text.
    return int(connection.execute(f"COPY ({select_sql}) TO {quote_path(target)} ({options})", params).fetchone()[0])


# OWASP's list of what makes a spreadsheet cell a formula: = + - @, a tab, a carriage return.
FORMULA_STARTS_SQL = "'=', '+', '-', '@', chr(9), chr(13)"
SINGLE_QUOTE_SQL = "''''"


def _formula_guarded(connection: duckdb.DuckDBPyConnection, select_sql: str, params: list[Any]) -> str:
    """``select_sql`` with each text column's formula-like cells prefixed with ``'``, so a spreadsheet shows them as text."""
    described = connection.execute(f"DESCRIBE {select_sql}", params).fetchall()  # (name, type, ...) per column
    columns = []
    for name, column_type, *_ in described:
        quoted = quote_identifier(name)  # named after the dataset's items
        if column_type == "VARCHAR":
            columns.append(f"CASE WHEN left({quoted}, 1) IN ({FORMULA_STARTS_SQL}) THEN {SINGLE_QUOTE_SQL} || {quoted} "
                           f"ELSE {quoted} END AS {quoted}")
        else:
            columns.append(quoted)
    return f"SELECT {', '.join(columns)} FROM ({select_sql}) AS scoped"


def verify_manifest(manifest: dict[str, Any], keystore: KeyStore) -> bool:
    """Whether a manifest's signature is the exchange's."""
    body = {key: value for key, value in manifest.items() if key != "signature"}
    signature = manifest.get("signature") or {}
    return keystore.verify(canonical_json(body).encode(), Signature(signature.get("kid", ""), signature.get("value", "")))


def link_secret(keystore: KeyStore) -> bytes:
    """The key that signs download links (derived from a secret generated at init)."""
    return hashlib.sha256(b"govshare extract links:" + keystore.session_secret().encode()).digest()


def _link_mac(secret: bytes, extract_id: str, expires: int) -> str:
    return hmac.new(secret, f"{extract_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def download_link(extract_id: str, *, secret: bytes, now: datetime | None = None) -> str:
    """A relative link to one extract that stops working after ``LINK_LIFETIME``."""
    expires = int(((now or utcnow()) + LINK_LIFETIME).timestamp())
    return f"/api/v1/extracts/{extract_id}/download?expires={expires}&signature={_link_mac(secret, extract_id, expires)}"


def link_is_valid(extract_id: str, *, expires: int, signature: str, secret: bytes, now: datetime | None = None) -> bool:
    if expires < int((now or utcnow()).timestamp()):
        return False
    # As bytes: compare_digest refuses (TypeError) a str with non-ASCII characters, which anyone can send.
    return hmac.compare_digest(_link_mac(secret, extract_id, expires).encode(), signature.encode("utf-8", "surrogatepass"))


def register_public_key(session: Session, *, department: str, public_key_pem: str, actor: str) -> DepartmentKey:
    """Register (or replace) the department's public key for encrypted extracts."""
    crypto.load_public_key(public_key_pem)
    key = session.get(DepartmentKey, department)
    if key is None:
        key = DepartmentKey(department_code=department, public_key_pem=public_key_pem)
        session.add(key)
    else:
        key.public_key_pem, key.registered_at = public_key_pem, utcnow()
    session.flush()
    audit.record(session, actor=actor, action="department.public_key", subject=f"department:{department}")
    return key
