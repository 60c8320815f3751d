"""Keyed stores: per snapshot version, a DuckDB file with the rows and an index on the lookup key.

Built once per version (at first use, or ahead of time by a job) next to the snapshot,
under a temporary name and renamed into place. A lookup is then an index probe
(about half a millisecond on 10 million rows), never a scan. Each row keeps its
position in the snapshot (``_row``), which orders paged queries stably.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from approvals.masks import Projection
from approvals.rowfilter import CompiledFilter
from govshare import processes
from govshare.db import quote_identifier
from govshare.storage import Store

log = logging.getLogger(__name__)
_build_lock = threading.Lock()
ROW_COLUMN = "_row"



SUFFIX = ".keyed.duckdb"


def store_path(snapshot: Path, store: Store | None = None) -> Path:
    """Where the keyed store of ``snapshot`` lives: this replica's cache folder (``Store.derived_path``); beside the
    snapshot when no data store is named (a snapshot of a test's own)."""
    return snapshot.with_suffix(SUFFIX) if store is None else store.derived_path(snapshot, SUFFIX)


# What a build's DuckDB connection may hold in memory. ART indexes must fit in memory
# while they are built (DuckDB's documentation); the table itself, and the numbering of
# its rows, spill to a temporary directory beside the store. So the limit is what the
# two indexes need, estimated from the rows and the key's length, with a margin and a
# floor: a base plus bytes a row beyond the key's own, fitted to the smallest limits that
# built (evaluation/bench/REPORT.md, "Figures behind the code's choices").
BUILD_MEMORY_FLOOR = 256 * 1024**2
BUILD_MEMORY_BASE = 64 * 1024**2
INDEX_BYTES_PER_ROW = 20  # both indexes, beyond the key's own bytes
BUILD_MEMORY_MARGIN = 1.25
KEY_SAMPLE_ROWS = 10_000


def build_memory_limit(snapshot: Path, key: str | None) -> int:
    """Bytes of memory the keyed-store build of ``snapshot`` may use (see ``INDEX_BYTES_PER_ROW``)."""
    connection = duckdb.connect()
    try:
        rows = connection.execute("SELECT sum(num_rows) FROM parquet_file_metadata(?)", [str(snapshot)]).fetchone()[0] or 0
        key_bytes = 0.0
        if key:
            column = quote_identifier(key)
            key_bytes = connection.execute(
                f"SELECT avg(strlen(CAST({column} AS VARCHAR))) FROM (SELECT {column} FROM read_parquet(?) LIMIT ?)",
                [str(snapshot), KEY_SAMPLE_ROWS],
            ).fetchone()[0] or 0.0
    finally:
        connection.close()
    needed = BUILD_MEMORY_BASE + rows * (key_bytes + INDEX_BYTES_PER_ROW)
    return max(BUILD_MEMORY_FLOOR, int(needed * BUILD_MEMORY_MARGIN))


def ensure_store(snapshot: Path, key: str | None, *, store: Store | None = None) -> Path:
    """The keyed store for ``snapshot``, built if missing (safe against concurrent builders).

    The build's memory is bounded (``build_memory_limit``); should the estimate prove short
    (DuckDB runs out of memory), it is tried once more with twice the limit before failing.
    A failed build leaves nothing behind: the next call (or the keyed-store job) tries again.
    """
    target = store_path(snapshot, store)
    if target.exists():
        return target
    with _build_lock:
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        limit = build_memory_limit(snapshot, key)
        try:
            _build(snapshot, key, target, limit)
        except duckdb.OutOfMemoryException:
            log.warning("keyed store of %s: out of memory within %d MiB; trying again with twice that", snapshot, limit >> 20)
            _build(snapshot, key, target, 2 * limit)
    return target


def _build(snapshot: Path, key: str | None, target: Path, memory_limit: int) -> None:
    temp = target.with_name(processes.temp_name("keyed", f".{target.name}"))
    spill = Path(str(temp) + ".spill")
    try:
        connection = duckdb.connect(str(temp), config={"memory_limit": f"{memory_limit >> 20}MiB", "temp_directory": str(spill)})
        try:
            connection.execute(
                f"CREATE TABLE records AS SELECT row_number() OVER () AS {ROW_COLUMN}, * FROM read_parquet(?)",
                [str(snapshot)],
            )
            if key:
                connection.execute(f"CREATE INDEX records_key ON records ({quote_identifier(key)})")
            connection.execute(f"CREATE UNIQUE INDEX records_row ON records ({ROW_COLUMN})")
            connection.execute("CHECKPOINT")
        finally:
            connection.close()
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
        Path(str(temp) + ".wal").unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)


Source = Path | duckdb.DuckDBPyConnection
"""A keyed store file, or a connection whose ``records`` table holds the rows (intake datasets)."""


def in_memory(table: pa.Table) -> duckdb.DuckDBPyConnection:
    """A connection serving ``table`` (which has a ``_row`` column) as ``records``."""
    connection = duckdb.connect()
    # A table, not a registered view: cursors (other connections to this database) must see it.
    connection.register("incoming", table)
    connection.execute("CREATE TABLE records AS SELECT * FROM incoming")
    connection.unregister("incoming")
    return connection


# Reading a store takes one DuckDB thread per connection. With DuckDB's default (a thread
# per core) an index probe spent more CPU handing its little work between threads, and
# scans were no faster (evaluation/bench/REPORT.md); requests already run side by side,
# each on its own cursor. DuckDB keeps one instance per file and process and
# refuses a second connection with other settings, so every reader opens it with these.
READ_CONFIG = {"threads": 1}


def open_read(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a built store, with the settings every reader of it shares."""
    return duckdb.connect(str(path), read_only=True, config=READ_CONFIG)


_open: dict[str, duckdb.DuckDBPyConnection] = {}
_open_lock = threading.Lock()


def _connection(path: Source) -> duckdb.DuckDBPyConnection:
    """One read-only connection per store for the whole process; callers take a cursor per call.

    (DuckDB's pattern for threads. Connections kept per thread instead were destroyed in
    worker threads at interpreter exit, which aborted the process.)
    """
    if isinstance(path, duckdb.DuckDBPyConnection):
        return path
    key = str(path)
    with _open_lock:
        connection = _open.get(key)
        if connection is None:
            connection = open_read(key)
            _open[key] = connection
        return connection


_idle: dict[str, list[duckdb.DuckDBPyConnection]] = {}
MAX_IDLE_CURSORS = 64  # per store: about the server's worker threads


@contextmanager
def _cursor(path: Source) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor on the store, reused across calls: opening one costs about as much as a lookup.

    Idle cursors are kept in a shared list (not per thread), so they are closed at exit in
    the main thread with their connection.
    """
    if isinstance(path, duckdb.DuckDBPyConnection):
        cursor = path.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
        return
    key = str(path)
    with _open_lock:
        idle = _idle.setdefault(key, [])
        cursor = idle.pop() if idle else None
    if cursor is None:
        cursor = _connection(path).cursor()
    try:
        yield cursor
    except BaseException:
        cursor.close()  # its state is unknown: not reused
        raise
    with _open_lock:
        if len(idle) < MAX_IDLE_CURSORS:
            idle.append(cursor)
            return
    cursor.close()


@atexit.register
def close_all() -> None:
    """Close every store cursor and connection (at exit, in the main thread)."""
    with _open_lock:
        for cursors in _idle.values():
            for cursor in cursors:
                cursor.close()
        _idle.clear()
        for connection in _open.values():
            connection.close()
        _open.clear()
        _last_rows.clear()


def memory_bytes() -> int:
    """Bytes DuckDB holds in memory for the open store files (its buffer pools; /metrics shows it)."""
    with _open_lock:
        connections = list(_open.values())
    total = 0
    for connection in connections:
        cursor = connection.cursor()
        try:
            total += cursor.execute("SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()").fetchone()[0]
        except duckdb.ConnectionException:  # closed meanwhile (at exit)
            pass
        finally:
            cursor.close()
    return int(total)


_last_rows: dict[str, int] = {}


def _last_row(path: Source, cursor: duckdb.DuckDBPyConnection) -> int:
    """The store's last position: asked of a store file once, since a built store never changes.

    DuckDB answers max(_row) from its statistics as a one-row table in a block of its buffer
    pool, whose handle it kept after each query: asked on every page, about 0.4 KB a page (issue 9).
    """
    key = None if isinstance(path, duckdb.DuckDBPyConnection) else str(path)
    last = _last_rows.get(key) if key is not None else None
    if last is None:
        last = cursor.execute(f"SELECT max({ROW_COLUMN}) FROM records").fetchone()[0] or 0
        if key is not None:
            _last_rows[key] = last
    return last


INSIDE, POSITION = "__govshare_inside", "__govshare_row"  # helper columns of a lookup, never returned


def lookup_query(*, key: str, value: Any, projection: Projection, scope: CompiledFilter) -> tuple[str, list[Any]]:
    """The SQL and parameters of a lookup (see ``lookup``)."""
    return (f"SELECT {projection.sql}, ({scope.sql}) AS {INSIDE}, {ROW_COLUMN} AS {POSITION} "
            f"FROM records WHERE {quote_identifier(key)} = ?",
            [*projection.params, *scope.params, value])


def lookup(path: Source, *, key: str, value: Any, projection: Projection, scope: CompiledFilter, limit: int = 1000) -> list[dict[str, Any]]:
    """Rows whose ``key`` equals ``value`` and which lie within ``scope``, as ``projection`` shows them.

    DuckDB probes its index only for a lone equality on the indexed column: any further
    condition in the WHERE clause turns the query into a full scan. So the key's rows (a
    handful) are taken by the index alone, with the scope evaluated as a column beside
    them, and only rows where it is true (not false, not NULL: as a WHERE would) are kept.
    """
    with _cursor(path) as cursor:
        return lookup_in(cursor, key=key, value=value, projection=projection, scope=scope, limit=limit)


def lookup_in(cursor: duckdb.DuckDBPyConnection, *, key: str, value: Any, projection: Projection, scope: CompiledFilter,
              limit: int = 1000) -> list[dict[str, Any]]:
    """``lookup`` on a cursor whose ``records`` are already in view (a live answer registered on it)."""
    result = cursor.execute(*lookup_query(key=key, value=value, projection=projection, scope=scope))
    names = [column[0] for column in result.description][:-2]
    rows = [row for row in result.fetchall() if row[-2] is True]
    rows.sort(key=lambda row: row[-1])
    return [dict(zip(names, row[:-2], strict=True)) for row in rows[:limit]]


CONSENTED, CONSENT_KEY = "__govshare_consented", "__govshare_key"  # the consented keys' table; a record's key beside it


@dataclass(frozen=True)
class Consented:
    """Only rows whose ``key`` is one of ``table``'s ``citizen_id`` (an Arrow table: the keys with an active consent).

    The table is registered on the reading cursor and semi-joined in DuckDB: the keys are data
    beside the query, never text inside it. Each record read under it also carries its key as
    text in ``CONSENT_KEY`` (for the ledger, even when the grant does not give the key).
    """

    key: str
    table: pa.Table

    @property
    def condition(self) -> str:
        return f"CAST({quote_identifier(self.key)} AS VARCHAR) IN (SELECT citizen_id FROM {CONSENTED})"

    @property
    def column(self) -> str:
        return f", CAST({quote_identifier(self.key)} AS VARCHAR) AS {CONSENT_KEY}"


@contextmanager
def _consented_on(cursor: duckdb.DuckDBPyConnection, consented: Consented | None) -> Iterator[None]:
    if consented is None:
        yield
        return
    cursor.register(CONSENTED, consented.table)
    try:
        yield
    finally:
        cursor.unregister(CONSENTED)  # the cursor is reused by later calls


PAGE_WINDOW = 131_072  # rows of _row scanned per step: about one row group, pruned by its min/max


def page(
    path: Source, *, projection: Projection, scope: CompiledFilter, equals: dict[str, Any], after_row: int, limit: int,
    consented: Consented | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of rows within ``scope`` matching ``equals``, after position ``after_row``; and the last position.

    Walks forward in windows of ``_row`` so each step reads only the row groups it needs
    (an ORDER BY ... LIMIT over the whole table would scan all of it for every page).
    The page's positions are found first, reading ``_row`` and the filtered columns alone;
    its columns are then read for the span those positions cover, where the same conditions
    hold for exactly those rows. (Asked for in one query with a LIMIT of at most 50, DuckDB
    makes that split itself, "late materialization", by a hash join whose block handles its
    buffer pool kept after each query: about 2 KB a page, up to some 45 MB per open store,
    issue 9. This way is no slower, and faster for pages over 50 rows.)
    """
    conditions = [f"({scope.sql})"] + [f"{quote_identifier(name)} = ?" for name in equals]
    if consented is not None:
        conditions.append(consented.condition)
    params = [*scope.params, *equals.values()]
    positions_sql = (f"SELECT {ROW_COLUMN} FROM records WHERE {' AND '.join(conditions)} "
                     f"AND {ROW_COLUMN} > ? AND {ROW_COLUMN} <= ? ORDER BY {ROW_COLUMN} LIMIT ?")
    with _cursor(path) as cursor, _consented_on(cursor, consented):
        last_row = _last_row(path, cursor)
        positions: list[int] = []
        start = after_row
        while len(positions) < limit and start < last_row:
            end = start + PAGE_WINDOW
            positions += [row for row, in cursor.execute(positions_sql, [*params, start, end, limit - len(positions)]).fetchall()]
            start = end
        if not positions:
            return [], None
        result = cursor.execute(
            f"SELECT {ROW_COLUMN}, {projection.sql}{consented.column if consented else ''} FROM records "
            f"WHERE {' AND '.join(conditions)} "
            f"AND {ROW_COLUMN} BETWEEN ? AND ?", [*projection.params, *params, positions[0], positions[-1]])
        names = [column[0] for column in result.description]
        rows = sorted(result.fetchall(), key=lambda row: row[0])
    records = [dict(zip(names[1:], row[1:], strict=True)) for row in rows]
    return records, rows[-1][0]


class ArrowStream:
    """Rows within a scope as Arrow record batches, read lazily (bounded memory); close when done."""

    def __init__(self, path: Source, *, projection: Projection, scope: CompiledFilter, equals: dict[str, Any], batch_rows: int = 65536,
                 consented: Consented | None = None) -> None:
        conditions = [f"({scope.sql})"] + [f"{quote_identifier(name)} = ?" for name in equals]
        if consented is not None:
            conditions.append(consented.condition)
        sql = (f"SELECT {projection.sql}{consented.column if consented else ''} FROM records "
               f"WHERE {' AND '.join(conditions)} ORDER BY {ROW_COLUMN}")
        # Its own connection: a stream outlives the request thread that opened it.
        self._connection = path if isinstance(path, duckdb.DuckDBPyConnection) else open_read(path)
        if consented is not None:
            self._connection.register(CONSENTED, consented.table)  # its own connection: gone when it closes
        self.reader = self._connection.sql(sql, params=[*projection.params, *scope.params, *equals.values()]).to_arrow_reader(batch_rows)
        self.schema: pa.Schema = self.reader.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        yield from self.reader

    def close(self) -> None:
        self._connection.close()

