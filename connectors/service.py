"""Binding datasets to sources and syncing them into new directory versions.

A sync reads the source in record batches, renames source columns to data items,
and hands the batches to the directory, which checks them like an upload and
stores them atomically as the next version. The sync's work happens inside a
savepoint: when anything fails (schema drift, a refused row, a source that stops
answering mid-way) the savepoint is rolled back, the last good version stays the
one served, and the failed run is recorded with the reason. Functions take the
session first and flush, never commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from connectors.errors import InvalidSource, SchemaDrift, SourceNotBound
from connectors.models import SourceBinding, SyncRun
from connectors.sources import SOURCES, parse_watermark
from directory import loading
from directory import service as directory
from directory.models import Dataset
from govshare import audit
from govshare.db import quote_identifier, utcnow
from govshare.errors import GovshareError
from govshare.keys import KeyStore

log = logging.getLogger("govshare.connectors")

MODES = ("full", "incremental")
RETRY_AFTER = timedelta(hours=1)  # a scheduled sync that failed is tried again after this long
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


def open_source(binding: SourceBinding, *, keystore: KeyStore, files_root: Path | None = None) -> Source:
    """The adapter for a binding, with its credential decrypted."""
    secret = keystore.decrypt(binding.secret_encrypted) if binding.secret_encrypted else None
    return SOURCES[binding.kind](binding.config, secret, files_root=files_root)


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
) -> SourceBinding:
    """Bind ``dataset`` to a source (replacing any binding): checked against the source's columns now."""
    if kind not in SOURCES:
        raise InvalidSource(f"kind: '{kind}' is not a source kind this exchange reads ({', '.join(sorted(SOURCES))})")
    if mode not in MODES:
        raise InvalidSource(f"mode: must be one of {', '.join(MODES)}")
    items = dataset.document["items"]
    names = [item["name"] for item in items]
    clean, secret = SOURCES[kind].split_secret(config)
    source = SOURCES[kind](clean, secret, files_root=files_root)
    columns = source.columns()
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


def check_drift(binding: SourceBinding, current: dict[str, str]) -> None:
    """``SchemaDrift`` when a column the sync uses is gone or has another type than when last synced."""
    recorded = binding.source_schema or {}
    problems = []
    for column in _used_columns(binding):
        if column not in current:
            problems.append(f"column {column} is gone")
        elif column in recorded and recorded[column] != current[column]:
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


def run_sync(
    session: Session,
    *,
    dataset: Dataset,
    data_dir: Path,
    keystore: KeyStore,
    actor: str,
    source: Source | None = None,
    full: bool = False,
    files_root: Path | None = None,
    progress: Progress | None = None,
) -> SyncRun:
    """Sync ``dataset`` from its bound source into a new version; the run records how it ended.

    A failed sync is not raised: its work is rolled back to a savepoint (the last good
    version stays served) and the run is returned with ``outcome`` "failed" and the
    reason, so the caller can commit the record of it. ``full`` forces a full read.
    """
    binding = get_binding(session, dataset=dataset)
    mode = "full" if full or binding.mode == "full" or binding.watermark is None or dataset.latest_version is None else "incremental"
    run = SyncRun(binding_id=binding.id, mode=mode, started_at=utcnow(), outcome="running", actor=actor)
    session.add(run)
    session.flush()
    secret = keystore.decrypt(binding.secret_encrypted) if binding.secret_encrypted else None
    source = source or open_source(binding, keystore=keystore, files_root=files_root)
    try:
        with session.begin_nested():
            current = source.columns()
            check_drift(binding, current)
            if mode == "full":
                version, counts, read, watermark = _full(
                    session, dataset=dataset, binding=binding, source=source, data_dir=data_dir, actor=actor, progress=progress
                )
            else:
                version, counts, read, watermark = _incremental(
                    session, dataset=dataset, binding=binding, source=source, current=current, data_dir=data_dir, actor=actor,
                    progress=progress,
                )
            binding.source_schema = current
            if watermark is not None:
                binding.watermark = watermark.isoformat() if hasattr(watermark, "isoformat") else str(watermark)
            session.flush()
    except Exception as error:  # any failure: recorded on the run, the last good version kept
        run.outcome = "failed"
        if isinstance(error, GovshareError):
            run.error_type = error.type
        else:  # a connection reset or a driver error mid-way is the source's; anything else is ours
            run.error_type = "source-failed" if isinstance(error, (OSError, SQLAlchemyError)) else "sync-failed"
        detail = error.detail if isinstance(error, GovshareError) else f"{type(error).__name__}: {error}"
        run.error = _redact(detail, secret)[:4000]
        log.warning("sync of %s failed: %s", dataset.code, run.error_type)
    else:
        run.outcome, run.version, run.rows_read = "ok", version.number, read
        run.rows_added, run.rows_changed, run.rows_removed = counts
        audit.record(
            session, actor=actor, action="source.synced", subject=f"dataset:{dataset.code}",
            details={"version": version.number, "mode": mode, "added": counts[0], "changed": counts[1], "removed": counts[2]},
        )
    run.finished_at = utcnow()
    session.flush()
    return run


def _key_item(dataset: Dataset, binding: SourceBinding) -> str | None:
    if binding.key_column:
        return binding.key_column
    keys = [item["name"] for item in dataset.document["items"] if item.get("is_key")]
    return dataset.document.get("lookup_key") or (keys[0] if keys else None)


def _full(
    session: Session, *, dataset: Dataset, binding: SourceBinding, source: Source, data_dir: Path, actor: str, progress: Progress | None = None
):
    previous = directory.latest_version(session, dataset=dataset)
    previous_path = directory.snapshot_path(data_dir, previous) if previous else None
    watermark: list[Any] = [None]
    counted = [0]
    batches = _renamed(source.batches(_used_columns(binding)), binding, watermark, counted, progress)
    version = directory.add_version_from_batches(
        session, dataset=dataset, batches=batches, source_format=binding.kind,
        source_name=f"{binding.kind} source sync", data_dir=data_dir, actor=actor,
    )
    placed = directory.snapshot_path(data_dir, version)
    try:
        counts = _changes(previous_path, placed, _key_item(dataset, binding))
    except BaseException:
        placed.unlink(missing_ok=True)  # the savepoint rolls back its row; the file must go too
        raise
    return version, counts, counted[0], watermark[0]


def _key_batches(source: Source, column: str) -> Iterator[pa.RecordBatch]:
    for batch in source.batches([column]):
        yield pa.RecordBatch.from_arrays([pc.cast(batch.column(0), pa.string())], names=["k"])


def _incremental(
    session: Session, *, dataset: Dataset, binding: SourceBinding, source: Source, current: dict[str, str], data_dir: Path, actor: str,
    progress: Progress | None = None,
):
    """Only rows whose update column passed the watermark are read (and checked); with the source's
    full key set they are applied to the previous snapshot in DuckDB: kept rows, minus deleted keys,
    plus changed and new rows, streamed into the next version."""
    previous = directory.latest_version(session, dataset=dataset)
    if previous is None or previous.items != dataset.document["items"]:
        return _full(session, dataset=dataset, binding=binding, source=source, data_dir=data_dir, actor=actor, progress=progress)
    previous_path = directory.snapshot_path(data_dir, previous)
    key = binding.key_column
    since = parse_watermark(binding.watermark, current.get(binding.update_column, ""))
    folder = data_dir / "datasets" / dataset.code
    stem = uuid.uuid4().hex
    changed_path, keys_path = folder / f".sync-{stem}.changed.tmp", folder / f".sync-{stem}.keys.tmp"
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
        [(added, changed_count, removed)] = connection.execute(
            f"""WITH prev AS (SELECT DISTINCT {k} AS k FROM read_parquet($prev)),
                     changed AS (SELECT DISTINCT {k} AS k FROM read_parquet($changed)),
                     keys AS (SELECT DISTINCT k FROM read_parquet($keys))
                SELECT (SELECT count(*) FROM changed WHERE k NOT IN (SELECT k FROM prev)),
                       (SELECT count(*) FROM changed WHERE k IN (SELECT k FROM prev)),
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
        version = directory.add_version_from_batches(
            session, dataset=dataset, batches=reader, source_format=binding.kind,
            source_name=f"{binding.kind} source sync (incremental)", data_dir=data_dir, actor=actor,
        )
    finally:
        connection.close()
        changed_path.unlink(missing_ok=True)
        keys_path.unlink(missing_ok=True)
    return version, (added, changed_count, removed), counted[0], watermark[0]


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


def sync_due(database: Any, *, data_dir: Path, keystore: KeyStore, files_root: Path | None = None, now: datetime | None = None) -> list[SyncRun]:
    """Sync every dataset that is due, each in its own transaction (a job owns its transactions)."""
    now = now or utcnow()
    with database.transaction(write=False) as session:
        due = due_datasets(session, now=now)
    runs = []
    for dataset_id in due:
        with database.transaction() as session:
            # Lock the binding so two job workers do not sync one dataset twice (PostgreSQL; SQLite serialises writers).
            binding = session.execute(
                select(SourceBinding).where(SourceBinding.dataset_id == dataset_id).with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            dataset = session.get(Dataset, dataset_id)
            if binding is None or dataset is None or not is_due(session, binding=binding, dataset=dataset, now=now):
                continue  # another worker has it, or has just synced it
            runs.append(run_sync(session, dataset=dataset, data_dir=data_dir, keystore=keystore, actor="job:source-syncs", files_root=files_root))
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
