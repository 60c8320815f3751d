"""Binding datasets to sources and syncing them into new directory versions.

A sync reads the source in record batches, renames source columns to data items,
and hands the batches to the directory, which checks them like an upload and
stores them atomically as the next version. No transaction is held while a source
is read: the run is recorded as running by this process first, the data is checked
into a temporary file (named after the process), and the version is stored in one
short transaction at the end. When anything fails (schema drift, a refused row, a
source that stops answering mid-way) the last good version stays the one served and
the failed run is recorded with the reason; a run whose process was killed is ended
as interrupted by ``recover_interrupted``. ``run_sync`` and ``sync_due`` own their
transactions; the other functions take the session first and flush, never commit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from connectors.errors import InvalidSource, SchemaDrift, SourceNotBound, SyncRunning
from connectors.models import SourceBinding, SyncRun
from connectors.sources import CONNECT_TIMEOUT_SECONDS, SOURCES, parse_watermark
from directory import loading
from directory import service as directory
from directory.errors import VersionConflict
from directory.models import Dataset
from govshare import audit, processes
from govshare.db import quote_identifier, utcnow
from govshare.errors import GovshareError
from govshare.keys import KeyStore
from govshare.storage import Store

log = logging.getLogger("govshare.connectors")

MODES = ("full", "incremental")
RETRY_AFTER = timedelta(hours=1)  # a scheduled sync that failed is tried again after this long
HEARTBEAT_SECONDS = 1.0  # how often a running sync records that it is alive, with the rows read so far
STALE_AFTER = timedelta(seconds=60)  # a running sync silent this long (on another host) was interrupted
Progress = Callable[[int], None]
"""Called with the number of source rows read so far."""
FREQUENCY_DAYS = {"realtime": 1, "daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}


class Source(Protocol):
    kind: str

    def columns(self) -> dict[str, str]: ...

    def batches(self, columns: list[str], *, update_column: str | None = None, since: Any = None) -> Iterator[pa.RecordBatch]: ...


def get_binding(session: Session, *, dataset: Dataset) -> SourceBinding:
    """The source bound to ``dataset``, or ``SourceNotBound``."""
    binding = session.execute(select(SourceBinding).where(SourceBinding.dataset_id == dataset.id)).scalar_one_or_none()
    if binding is None:
        raise SourceNotBound(f"dataset {dataset.code} has no source bound")
    return binding


def open_source(
    binding: SourceBinding, *, keystore: KeyStore, files_root: Path | None = None, connect_timeout: float = CONNECT_TIMEOUT_SECONDS
) -> Source:
    """The adapter for a binding, with its credential decrypted."""
    secret = keystore.decrypt(binding.secret_encrypted) if binding.secret_encrypted else None
    return SOURCES[binding.kind](binding.config, secret, files_root=files_root, connect_timeout=connect_timeout)


@dataclass(frozen=True)
class InspectedSource:
    """A source as read for binding: its configuration without the credential, the credential, and its columns."""

    kind: str
    config: dict[str, Any]
    secret: str | None
    columns: dict[str, str]


def inspect_source(
    *, kind: str, config: dict[str, Any], files_root: Path | None = None, connect_timeout: float = CONNECT_TIMEOUT_SECONDS
) -> InspectedSource:
    """Read a source's columns, for binding it: source I/O only, so call it with no transaction open."""
    if kind not in SOURCES:
        raise InvalidSource(f"kind: '{kind}' is not a source kind this exchange reads ({', '.join(sorted(SOURCES))})")
    clean, secret = SOURCES[kind].split_secret(config)
    source = SOURCES[kind](clean, secret, files_root=files_root, connect_timeout=connect_timeout)
    return InspectedSource(kind, clean, secret, source.columns())


def bind_source(
    session: Session,
    *,
    dataset: Dataset,
    kind: str,
    config: dict[str, Any],
    mapping: dict[str, str] | None,
    mode: str,
    update_column: str | None,
    key_column: str | None,
    keystore: KeyStore,
    actor: str,
    files_root: Path | None = None,
    inspected: InspectedSource | None = None,
) -> SourceBinding:
    """Bind ``dataset`` to a source (replacing any binding): checked against the source's columns.

    ``inspected``: the source as ``inspect_source`` read it before this transaction began (the
    API does so, so that no write lock is held while a slow source answers); read here otherwise.
    """
    if mode not in MODES:
        raise InvalidSource(f"mode: must be one of {', '.join(MODES)}")
    items = dataset.document["items"]
    names = [item["name"] for item in items]
    if inspected is None or inspected.kind != kind:
        inspected = inspect_source(kind=kind, config=config, files_root=files_root)
    clean, secret, columns = inspected.config, inspected.secret, inspected.columns
    mapping = dict(mapping) if mapping else {name: name for name in names if name in columns}
    for item, column in mapping.items():
        if item not in names:
            raise InvalidSource(f"mapping.{item}: not a data item of {dataset.code}")
        if column not in columns:
            raise InvalidSource(f"mapping.{item}: the source has no column {column}")
    for item in items:
        if (item.get("required") or item.get("is_key")) and item["name"] not in mapping:
            raise InvalidSource(f"mapping: the required item {item['name']} is not mapped to a source column")
    if mode == "incremental":
        if not update_column or update_column not in columns:
            raise InvalidSource("update_column: an incremental source needs an update column the source has")
        key_column = key_column or dataset.document.get("lookup_key")
        if not key_column or key_column not in mapping:
            raise InvalidSource("key_column: an incremental source needs a key item mapped to a source column")
    elif update_column is not None and update_column not in columns:
        raise InvalidSource(f"update_column: the source has no column {update_column}")
    binding = session.execute(select(SourceBinding).where(SourceBinding.dataset_id == dataset.id)).scalar_one_or_none()
    if binding is None:
        binding = SourceBinding(dataset_id=dataset.id, created_at=utcnow())
        session.add(binding)
    binding.kind, binding.config, binding.mapping, binding.mode = kind, clean, mapping, mode
    binding.secret_encrypted = keystore.encrypt(secret) if secret else None
    binding.update_column, binding.key_column = update_column, key_column
    binding.source_schema = columns
    binding.watermark = None  # a new binding starts from a full read
    binding.actor, binding.updated_at = actor, utcnow()
    session.flush()
    audit.record(
        session, actor=actor, action="source.bound", subject=f"dataset:{dataset.code}",
        details={"kind": kind, "mode": mode, "mapping": mapping},
    )
    return binding


def _used_columns(binding: SourceBinding) -> list[str]:
    used = list(dict.fromkeys(binding.mapping.values()))
    if binding.update_column and binding.update_column not in used:
        used.append(binding.update_column)
    return used


def _same_type(recorded: str, current: str) -> bool:
    # A type recorded with less detail (a query column "unknown", CSV text "string") is no change.
    return recorded == current or recorded == "unknown" or current.startswith(f"{recorded} holding ")


def check_drift(binding: SourceBinding, current: dict[str, str]) -> None:
    """``SchemaDrift`` when a column the sync uses is gone or has another type than when last synced."""
    recorded = binding.source_schema or {}
    problems = []
    for column in _used_columns(binding):
        if column not in current:
            problems.append(f"column {column} is gone")
        elif column in recorded and not _same_type(recorded[column], current[column]):
            problems.append(f"column {column} changed type from {recorded[column]} to {current[column]}")
    if problems:
        raise SchemaDrift(
            f"the source's schema changed since the last sync: {'; '.join(problems)}; nothing was replaced "
            "(bind the source again to accept the new schema)",
            extra={"problems": problems},
        )


def _renamed(
    batches: Iterator[pa.RecordBatch], binding: SourceBinding, watermark: list[Any], counted: list[int], progress: Progress | None = None
) -> Iterator[pa.RecordBatch]:
    """Batches with source columns renamed to items; tracks the newest update value and the rows read."""
    for batch in batches:
        counted[0] += batch.num_rows
        if progress:
            progress(counted[0])
        if binding.update_column and batch.num_rows:
            newest = pc.max(batch.column(binding.update_column)).as_py()
            if newest is not None and (watermark[0] is None or newest > watermark[0]):
                watermark[0] = newest
        arrays = [batch.column(column) for column in binding.mapping.values()]
        yield pa.RecordBatch.from_arrays(arrays, names=list(binding.mapping))


def _changes(previous: Path | None, current: Path, key: str | None) -> tuple[int, int, int]:
    """Rows added, changed and removed between two snapshots, by key (DuckDB, bounded memory)."""
    connection = duckdb.connect(config={"threads": 2, "memory_limit": "256MB"})
    try:
        if previous is None:
            return connection.execute("SELECT count(*) FROM read_parquet(?)", [str(current)]).fetchone()[0], 0, 0
        if key is None:
            new = connection.execute("SELECT count(*) FROM read_parquet(?)", [str(current)]).fetchone()[0]
            old = connection.execute("SELECT count(*) FROM read_parquet(?)", [str(previous)]).fetchone()[0]
            return new, 0, old
        quoted = quote_identifier(key)
        query = f"""
            WITH old AS (SELECT {quoted} AS k, list_sort(list(hash(r))) AS h FROM read_parquet(?) AS r GROUP BY 1),
                 new AS (SELECT {quoted} AS k, list_sort(list(hash(r))) AS h FROM read_parquet(?) AS r GROUP BY 1)
            SELECT count(*) FILTER (WHERE old.k IS NULL),
                   count(*) FILTER (WHERE old.k IS NOT NULL AND new.k IS NOT NULL AND old.h <> new.h),
                   count(*) FILTER (WHERE new.k IS NULL)
            FROM old FULL OUTER JOIN new ON old.k = new.k
        """
        added, changed, removed = connection.execute(query, [str(previous), str(current)]).fetchone()
        return added, changed, removed
    finally:
        connection.close()



def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _interrupted(run: SyncRun, now: datetime) -> str | None:
    """Why a run still marked running is no longer being done, or None while its process is at it."""
    if processes.process_is_gone(run.host, run.pid, since=run.started_at.timestamp()):
        return "interrupted: process ended"
    beat = run.heartbeat_at or run.started_at
    if now - beat > STALE_AFTER:
        return f"interrupted: no heartbeat since {beat.isoformat()}"
    return None


def _end_interrupted(run: SyncRun, reason: str, now: datetime) -> None:
    run.outcome, run.error_type, run.error, run.finished_at = "failed", "sync-interrupted", reason, now


def recover_interrupted(database: Any, *, now: datetime | None = None) -> int:
    """Runs left "running" by a process that ended (or stopped beating) are ended as failed, with why."""
    now = now or utcnow()
    with database.transaction() as session:
        ended = 0
        for run in session.execute(select(SyncRun).where(SyncRun.outcome == "running")).scalars():
            reason = _interrupted(run, now)
            if reason:
                _end_interrupted(run, reason, now)
                ended += 1
        if ended:
            log.warning("%d interrupted sync run(s) ended as failed", ended)
        return ended


def start_run(session: Session, *, dataset: Dataset, actor: str, full: bool = False, due_at: datetime | None = None) -> SyncRun | None:
    """Record a sync of ``dataset`` as running, by this process (None: ``due_at`` given and it is not due).

    One run of a binding at a time: a run still going in a live process refuses a second
    (``SyncRunning``); one whose process has ended is first ended as interrupted.
    """
    # Lock the binding so two processes do not start one dataset's sync twice (PostgreSQL; SQLite serialises writers).
    binding = session.execute(
        select(SourceBinding).where(SourceBinding.dataset_id == dataset.id).with_for_update()
    ).scalar_one_or_none()
    if binding is None:
        raise SourceNotBound(f"dataset {dataset.code} has no source bound")
    now = utcnow()
    for running in session.execute(select(SyncRun).where(SyncRun.binding_id == binding.id, SyncRun.outcome == "running")).scalars():
        reason = _interrupted(running, now)
        if reason is None:
            raise SyncRunning(f"a sync of {dataset.code} is running (run {running.id}, started {running.started_at.isoformat()})")
        _end_interrupted(running, reason, now)
    session.flush()
    if due_at is not None and not is_due(session, binding=binding, dataset=dataset, now=due_at):
        return None
    mode = "full" if full or binding.mode == "full" or binding.watermark is None or dataset.latest_version is None else "incremental"
    run = SyncRun(
        binding_id=binding.id, mode=mode, started_at=now, outcome="running", actor=actor,
        host=processes.HOST, pid=os.getpid(), heartbeat_at=now,
    )
    session.add(run)
    session.flush()
    return run


class _Heartbeat:
    """Beats a running sync's heartbeat (and rows read so far) in short transactions of its own."""

    def __init__(self, database: Any, run_id: int) -> None:
        self.database, self.run_id, self.rows = database, run_id, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"govshare-sync-{run_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.database.transaction() as session:
                    session.execute(
                        update(SyncRun).where(SyncRun.id == self.run_id, SyncRun.outcome == "running")
                        .values(heartbeat_at=utcnow(), rows_read=self.rows)
                    )
            except SQLAlchemyError:  # a missed beat is told by the next; the sync itself decides the outcome
                log.warning("sync run %s: heartbeat not recorded", self.run_id, exc_info=True)


def run_sync(
    database: Any,
    *,
    dataset_code: str,
    store: Store,
    keystore: KeyStore,
    actor: str,
    source: Source | None = None,
    full: bool = False,
    files_root: Path | None = None,
    progress: Progress | None = None,
    due_at: datetime | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> SyncRun | None:
    """Sync a dataset from its bound source into a new version; the run records how it ended.

    No transaction is held while the source is read: the run is recorded as running (with
    this process and a heartbeat) in one short transaction, the data is read and checked
    into a temporary file, and the version, the binding and the run's end are written in
    another. A failed sync is not raised: the last good version stays served and the run
    is returned with ``outcome`` "failed" and the reason. A process killed mid-way leaves
    the run "running"; ``recover_interrupted`` ends it. ``full`` forces a full read;
    with ``due_at`` the sync happens only if the dataset is due then (None otherwise).
    """
    with database.transaction() as session:
        dataset = directory.get_dataset(session, dataset_code)
        run = start_run(session, dataset=dataset, actor=actor, full=full, due_at=due_at)
        if run is None:
            return None
        binding = get_binding(session, dataset=dataset)
        previous = directory.latest_version(session, dataset=dataset)
    # From here on ``dataset``, ``binding`` and ``previous`` are detached copies: read, never written.
    secret = keystore.decrypt(binding.secret_encrypted) if binding.secret_encrypted else None
    snapshot = None
    try:
        with _Heartbeat(database, run.id) as heartbeat:
            def counted(rows: int) -> None:
                heartbeat.rows = rows
                if progress:
                    progress(rows)

            source = source or open_source(binding, keystore=keystore, files_root=files_root, connect_timeout=connect_timeout)
            current = source.columns()
            check_drift(binding, current)
            if run.mode == "full":
                snapshot, counts, read, watermark = _full(
                    dataset=dataset, binding=binding, previous=previous, source=source, store=store, progress=counted
                )
            else:
                snapshot, counts, read, watermark = _incremental(
                    dataset=dataset, binding=binding, previous=previous, source=source, current=current, store=store,
                    progress=counted,
                )
        with database.transaction() as session:
            finished = _finish(
                session, run_id=run.id, dataset_id=dataset.id, previous=previous, snapshot=snapshot, counts=counts, read=read,
                watermark=watermark, current=current, store=store, actor=actor,
            )
        return finished
    except Exception as error:  # any failure: recorded on the run, the last good version kept
        if snapshot is not None:
            snapshot.temp_path.unlink(missing_ok=True)
        if isinstance(error, GovshareError):
            error_type = error.type
        else:  # a connection reset or a driver error mid-way is the source's; anything else is ours
            error_type = "source-failed" if isinstance(error, (OSError, SQLAlchemyError)) else "sync-failed"
        detail = error.detail if isinstance(error, GovshareError) else f"{type(error).__name__}: {error}"
        log.warning("sync of %s failed: %s", dataset.code, error_type)
        with database.transaction() as session:
            failed = session.get(SyncRun, run.id)
            if failed.outcome == "running":  # else already ended as interrupted by another process
                failed.outcome, failed.error_type, failed.error = "failed", error_type, _redact(detail, secret)[:4000]
                failed.finished_at = utcnow()
        return failed


def _finish(
    session: Session, *, run_id: int, dataset_id: int, previous: Any, snapshot: loading.Snapshot, counts: tuple[int, int, int],
    read: int, watermark: Any, current: dict[str, str], store: Store, actor: str,
) -> SyncRun:
    """Store the checked snapshot as the next version and end the run as ok, in the caller's transaction."""
    run = session.get(SyncRun, run_id)
    dataset = session.execute(select(Dataset).where(Dataset.id == dataset_id).with_for_update()).scalar_one()
    if run.outcome != "running":
        raise SyncRunning(f"sync run {run_id} was ended meanwhile ({run.error}); nothing was replaced")
    if run.mode == "incremental" and dataset.latest_version != (previous.number if previous else None):
        # The changes were applied to a version that is no longer the latest: applying them would drop the newer one.
        raise VersionConflict(f"another version of {dataset.code} was stored during the sync; nothing was replaced, sync again")
    binding = session.execute(select(SourceBinding).where(SourceBinding.dataset_id == dataset_id)).scalar_one()
    version = directory.store_checked(
        session, dataset=dataset, snapshot=snapshot, store=store, actor=actor,
        source_name=f"{binding.kind} source sync" + (" (incremental)" if run.mode == "incremental" else ""),
    )
    binding.source_schema = current
    if watermark is not None:
        binding.watermark = watermark.isoformat() if hasattr(watermark, "isoformat") else str(watermark)
    run.outcome, run.version, run.rows_read, run.finished_at = "ok", version.number, read, utcnow()
    run.rows_added, run.rows_changed, run.rows_removed = counts
    session.flush()
    audit.record(
        session, actor=actor, action="source.synced", subject=f"dataset:{dataset.code}",
        details={"version": version.number, "mode": run.mode, "added": counts[0], "changed": counts[1], "removed": counts[2]},
    )
    return run


def _key_item(dataset: Dataset, binding: SourceBinding) -> str | None:
    if binding.key_column:
        return binding.key_column
    keys = [item["name"] for item in dataset.document["items"] if item.get("is_key")]
    return dataset.document.get("lookup_key") or (keys[0] if keys else None)


def _full(*, dataset: Dataset, binding: SourceBinding, previous: Any, source: Source, store: Store, progress: Progress):
    previous_path = directory.snapshot_path(store, previous) if previous else None
    watermark: list[Any] = [None]
    counted = [0]
    batches = _renamed(source.batches(_used_columns(binding)), binding, watermark, counted, progress)
    snapshot = directory.check_batches(dataset=dataset, batches=batches, source_format=binding.kind, store=store)
    try:
        counts = _changes(previous_path, snapshot.temp_path, _key_item(dataset, binding))
    except BaseException:
        snapshot.temp_path.unlink(missing_ok=True)
        raise
    return snapshot, counts, counted[0], watermark[0]


def _key_batches(source: Source, column: str) -> Iterator[pa.RecordBatch]:
    for batch in source.batches([column]):
        yield pa.RecordBatch.from_arrays([pc.cast(batch.column(0), pa.string())], names=["k"])


def _incremental(
    *, dataset: Dataset, binding: SourceBinding, previous: Any, source: Source, current: dict[str, str], store: Store,
    progress: Progress,
):
    """Only rows whose update column reached the watermark are read (and checked); with the source's
    full key set they are applied to the previous snapshot in DuckDB: kept rows, minus deleted keys,
    plus changed and new rows, streamed into the next version.

    The watermark itself is read again (``>=``): a row committed late with exactly the newest
    time seen is not missed. Applying a row that is already in the snapshot changes nothing
    and is not counted as changed, so reading it twice is harmless."""
    if previous is None or previous.items != dataset.document["items"]:
        return _full(dataset=dataset, binding=binding, previous=previous, source=source, store=store, progress=progress)
    previous_path = directory.snapshot_path(store, previous)
    key = binding.key_column
    since = parse_watermark(binding.watermark, current.get(binding.update_column, ""))
    changed_path = store.staging_path(f"datasets/{dataset.code}/changed.parquet", "sync")
    keys_path = store.staging_path(f"datasets/{dataset.code}/keys.parquet", "sync")
    watermark: list[Any] = [since]
    counted = [0]
    connection = duckdb.connect(config={"threads": 2, "memory_limit": "256MB"})
    try:
        changed_rows = _renamed(
            source.batches(_used_columns(binding), update_column=binding.update_column, since=since), binding, watermark, counted, progress
        )
        loading.write_batches(changed_rows, items=dataset.document["items"], source_format=binding.kind, temp_path=changed_path)
        with pq.ParquetWriter(keys_path, pa.schema([pa.field("k", pa.string())])) as writer:
            for batch in _key_batches(source, binding.mapping[key]):
                writer.write_batch(batch)
        k = f"CAST({quote_identifier(key)} AS VARCHAR)"
        prev, changed, keys = str(previous_path), str(changed_path), str(keys_path)
        # A row counts as changed only when its values differ (hash(r) over the whole row).
        [(added, changed_count, removed)] = connection.execute(
            f"""WITH prev AS (SELECT {k} AS k, list_sort(list(hash(r))) AS h FROM read_parquet($prev) AS r GROUP BY 1),
                     changed AS (SELECT {k} AS k, list_sort(list(hash(r))) AS h FROM read_parquet($changed) AS r GROUP BY 1),
                     keys AS (SELECT DISTINCT k FROM read_parquet($keys))
                SELECT (SELECT count(*) FROM changed WHERE k NOT IN (SELECT k FROM prev)),
                       (SELECT count(*) FROM changed JOIN prev USING (k) WHERE changed.h <> prev.h),
                       (SELECT count(*) FROM prev WHERE k NOT IN (SELECT k FROM keys))""",
            {"prev": prev, "changed": changed, "keys": keys},
        ).fetchall()
        # .sql() streams: the rows are never all in memory at once.
        reader = connection.sql(
            f"""SELECT * FROM read_parquet(?)
                WHERE {k} IN (SELECT k FROM read_parquet(?))
                  AND {k} NOT IN (SELECT {k} FROM read_parquet(?))
                UNION ALL SELECT * FROM read_parquet(?)""",
            params=[prev, keys, changed, changed],
        ).to_arrow_reader(loading.PARQUET_BATCH_ROWS)
        snapshot = directory.check_batches(dataset=dataset, batches=reader, source_format=binding.kind, store=store)
    finally:
        connection.close()
        changed_path.unlink(missing_ok=True)
        keys_path.unlink(missing_ok=True)
    return snapshot, (added, changed_count, removed), counted[0], watermark[0]


def run_view(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "mode": run.mode,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "outcome": run.outcome,
        "error_type": run.error_type,
        "error": run.error,
        "rows_read": run.rows_read,
        "rows_added": run.rows_added,
        "rows_changed": run.rows_changed,
        "rows_removed": run.rows_removed,
        "version": run.version,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
    }


def list_runs(session: Session, *, binding: SourceBinding, limit: int = 100) -> list[SyncRun]:
    """A binding's sync runs, newest first."""
    query = select(SyncRun).where(SyncRun.binding_id == binding.id).order_by(SyncRun.id.desc()).limit(limit)
    return list(session.execute(query).scalars())


def is_fresh(dataset: Dataset, last_ok: SyncRun | None, *, now: datetime | None = None) -> bool | None:
    """Whether the last good sync is within the dataset's promised update frequency (None: no promise)."""
    days = FREQUENCY_DAYS.get(dataset.update_frequency)
    if days is None:
        return None
    if last_ok is None or last_ok.finished_at is None:
        return False
    return (now or utcnow()) - last_ok.finished_at <= timedelta(days=days)


def last_runs(session: Session, *, binding: SourceBinding) -> tuple[SyncRun | None, SyncRun | None]:
    """The newest run, and the newest successful one."""
    newest = session.execute(select(SyncRun).where(SyncRun.binding_id == binding.id).order_by(SyncRun.id.desc()).limit(1)).scalar_one_or_none()
    ok = session.execute(
        select(SyncRun).where(SyncRun.binding_id == binding.id, SyncRun.outcome == "ok").order_by(SyncRun.id.desc()).limit(1)
    ).scalar_one_or_none()
    return newest, ok


def binding_view(session: Session, *, dataset: Dataset, binding: SourceBinding) -> dict[str, Any]:
    """A binding as the API shows it: never the credential, only whether there is one."""
    newest, ok = last_runs(session, binding=binding)
    return {
        "dataset": dataset.code,
        "kind": binding.kind,
        "config": binding.config,
        "has_credential": binding.secret_encrypted is not None,
        "mapping": binding.mapping,
        "mode": binding.mode,
        "update_column": binding.update_column,
        "key_column": binding.key_column,
        "source_schema": binding.source_schema,
        "watermark": binding.watermark,
        "updated_at": binding.updated_at.isoformat(),
        "last_sync": run_view(newest) if newest else None,
        "last_good_sync": run_view(ok) if ok else None,
        "update_frequency": dataset.update_frequency,
        "fresh": is_fresh(dataset, ok),
    }


def is_due(session: Session, *, binding: SourceBinding, dataset: Dataset, now: datetime) -> bool:
    """Whether the last good sync is older than the promised update frequency (and no failed try within RETRY_AFTER)."""
    days = FREQUENCY_DAYS.get(dataset.update_frequency)
    if days is None or dataset.status != "active":
        return False  # irregular: synced on demand only
    newest, ok = last_runs(session, binding=binding)
    if ok is not None and ok.finished_at is not None and now - ok.finished_at < timedelta(days=days):
        return False
    return not (newest is not None and newest.outcome != "ok" and now - newest.started_at < RETRY_AFTER)


def due_datasets(session: Session, *, now: datetime) -> list[int]:
    """Ids of the datasets a scheduled sync should refresh now."""
    rows = session.execute(select(SourceBinding, Dataset).join(Dataset, Dataset.id == SourceBinding.dataset_id))
    return [dataset.id for binding, dataset in rows if is_due(session, binding=binding, dataset=dataset, now=now)]


def sync_due(
    database: Any, *, store: Store, keystore: KeyStore, files_root: Path | None = None, now: datetime | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
) -> list[SyncRun]:
    """Sync every dataset that is due, each in transactions of its own (a job owns its transactions)."""
    now = now or utcnow()
    with database.transaction(write=False) as session:
        due = [session.get(Dataset, dataset_id).code for dataset_id in due_datasets(session, now=now)]
    runs = []
    for code in due:
        try:
            # Checked again when the run is recorded: another worker may have just synced it.
            run = run_sync(database, dataset_code=code, store=store, keystore=keystore, actor="job:source-syncs",
                           files_root=files_root, due_at=now, connect_timeout=connect_timeout)
        except SyncRunning:
            continue  # another worker has it
        if run is not None:
            runs.append(run)
    return runs


def sync_summary(session: Session, dataset: Dataset) -> dict[str, Any]:
    """What the directory shows of a dataset's source (nothing when none is bound): last sync, outcome, freshness."""
    binding = session.execute(select(SourceBinding).where(SourceBinding.dataset_id == dataset.id)).scalar_one_or_none()
    if binding is None:
        return {}
    newest, ok = last_runs(session, binding=binding)
    return {
        "sync": {
            "kind": binding.kind,
            "last_sync_at": newest.started_at.isoformat() if newest else None,
            "last_outcome": newest.outcome if newest else None,
            "last_good_sync_at": ok.finished_at.isoformat() if ok and ok.finished_at else None,
            "fresh": is_fresh(dataset, ok),
        }
    }
