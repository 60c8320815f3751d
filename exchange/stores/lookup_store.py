"""Lookup stores: per snapshot version, a SQLite file built for point reads by the lookup key.

DuckDB's index probe costs far more CPU than a lookup's budget leaves (issue 22's
measurements); SQLite's B-tree probe costs almost nothing. So key lookups and pages
filtered by the key read a SQLite file: table ``records`` ``WITHOUT ROWID`` with the
primary key ``(key, _row)`` (keys may repeat; ``_row`` is the row's position in the
snapshot, as in the keyed store, and orders a key's rows). The grant's row filter and
masks are compiled for it by the scope (``dialect="sqlite"``), from their one
definition. Values SQLite has no type for are kept as DuckDB writes them: dates as ISO
text, datetimes as UTC text (``rowfilter.SQLITE_DATETIME``), booleans as 0/1; the text
DuckDB gives numbers and datetimes (what a keyed hash hashes) is kept beside them.

Built once per version (a job, or the first lookup) from the Parquet snapshot in record
batches (bounded memory), under a temporary name and renamed into place, in the
replica's cache folder (``GOVSHARE_CACHE_DIR``): a replica's disk holds caches only. Read through
one read-only connection per thread.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from approvals import masks, rowfilter
from govshare import processes
from govshare.db import quote_identifier
from govshare.storage import Store

log = logging.getLogger(__name__)
ROW_COLUMN = "_row"
BATCH_ROWS = 65_536
SQLITE_TYPES = {"string": "TEXT", "integer": "INTEGER", "number": "REAL", "boolean": "INTEGER", "date": "TEXT", "datetime": "TEXT"}
_build_lock = threading.Lock()


SUFFIX = ".lookup.sqlite"


def store_path(snapshot: Path, store: Store | None = None) -> Path:
    """Where the lookup store of ``snapshot`` lives: this replica's cache folder (``Store.derived_path``); beside the
    snapshot when no data store is named (a snapshot of a test's own)."""
    return snapshot.with_suffix(SUFFIX) if store is None else store.derived_path(snapshot, SUFFIX)


def _select_for_build(items: list[dict[str, Any]], key: str) -> str:
    """DuckDB's SELECT over the snapshot giving each row with a key as the lookup store keeps it.

    Positions are counted over every row (as the keyed store counts them); rows without a key are left out, since
    nothing finds them by key.
    """
    parts = [ROW_COLUMN]
    for item in items:
        column, kind = quote_identifier(item["name"]), item["type"]
        if kind == "datetime":
            parts.append(f"strftime({column} AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M:%S.%f') AS {column}")
        elif kind == "date":
            parts.append(f"CAST({column} AS VARCHAR) AS {column}")
        elif kind == "boolean":
            parts.append(f"CAST({column} AS INTEGER) AS {column}")
        else:
            parts.append(column)
    for item in items:
        if item["type"] in masks.TEXT_KEPT:
            parts.append(f"CAST({quote_identifier(item['name'])} AS VARCHAR) AS {quote_identifier(masks.text_column(item['name']))}")
    return (f"SELECT {', '.join(parts)} FROM (SELECT row_number() OVER () AS {ROW_COLUMN}, * FROM read_parquet(?)) "
            f"WHERE {quote_identifier(key)} IS NOT NULL")


def ensure_store(snapshot: Path, *, key: str, items: list[dict[str, Any]], store: Store | None = None) -> Path:
    """The lookup store of ``snapshot`` (``store``: the data store it came from), built if missing (one builder at a
    time in a process; atomic rename)."""
    target = store_path(snapshot, store)
    if target.exists():
        return target
    with _build_lock:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            build(snapshot, target, key=key, items=items)
    return target


def build(snapshot: Path, target: Path, *, key: str, items: list[dict[str, Any]]) -> None:
    """Write the lookup store of ``snapshot`` to ``target``, streaming record batches from DuckDB into SQLite."""
    temp = target.with_name(processes.temp_name("lookup", f".{target.name}"))
    columns = [ROW_COLUMN, *(item["name"] for item in items),
               *(masks.text_column(item["name"]) for item in items if item["type"] in masks.TEXT_KEPT)]
    definitions = [f"{ROW_COLUMN} INTEGER NOT NULL"] + [f"{quote_identifier(item['name'])} {SQLITE_TYPES[item['type']]}" for item in items]
    definitions += [f"{quote_identifier(masks.text_column(item['name']))} TEXT" for item in items if item["type"] in masks.TEXT_KEPT]
    primary = f"PRIMARY KEY ({quote_identifier(key)}, {ROW_COLUMN})"
    try:
        writer = sqlite3.connect(temp, isolation_level=None)
        try:
            writer.execute("PRAGMA journal_mode = OFF")
            writer.execute("PRAGMA synchronous = OFF")
            writer.execute("PRAGMA cache_size = -65536")  # 64 MiB: bounded, whatever the snapshot's size
            writer.execute(f"CREATE TABLE records ({', '.join(definitions)}, {primary}) WITHOUT ROWID")
            insert = f"INSERT INTO records ({', '.join(quote_identifier(c) for c in columns)}) VALUES ({', '.join('?' for _ in columns)})"
            reader = duckdb.connect(config={"threads": 1, "memory_limit": "256MiB"})
            try:
                batches = reader.sql(_select_for_build(items, key), params=[str(snapshot)]).to_arrow_reader(BATCH_ROWS)
                writer.execute("BEGIN")
                for batch in batches:
                    writer.executemany(insert, zip(*(batch.column(index).to_pylist() for index in range(batch.num_columns)),
                                                   strict=True))
                writer.execute("COMMIT")
            finally:
                reader.close()
            writer.execute("ANALYZE")
        finally:
            writer.close()
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


_local = threading.local()
READ_CACHE_PAGES = 64


def _connection(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path`` for this thread (sqlite3 connections stay in their thread)."""
    connections: dict[str, sqlite3.Connection] | None = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    key = str(path)
    connection = connections.get(key)
    if connection is None:
        connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=True)
        # A small page cache per connection: each of the server's threads keeps one, and the file's pages stay
        # in the operating system's cache anyway (shared, and outside the process's memory).
        connection.execute(f"PRAGMA cache_size = {READ_CACHE_PAGES}")
        connection.create_function(masks.SQLITE_SHA256, 1, masks.sqlite_sha256, deterministic=True)
        connections[key] = connection
    return connection


def _decoder(item_type: str | None) -> Callable[[Any], Any] | None:
    """How a value read from a lookup store becomes the value DuckDB gives (None: as read)."""
    if item_type == "boolean":
        return lambda value: None if value is None else bool(value)
    if item_type == "date":
        return lambda value: None if value is None else date.fromisoformat(value)
    if item_type == "datetime":
        return lambda value: None if value is None else datetime.strptime(value, rowfilter.SQLITE_DATETIME).replace(tzinfo=UTC)
    return None


def decoders(columns: list[str], masked: Iterable[str], items: list[dict[str, Any]]) -> list[Callable[[Any], Any] | None]:
    """Per projected column, how its values are decoded (a masked column is what the mask gave: text or a year)."""
    types, hidden = {item["name"]: item["type"] for item in items}, set(masked)
    return [None if column in hidden else _decoder(types.get(column)) for column in columns]


def _records(names: list[str], rows: list[tuple], decode: list[Callable[[Any], Any] | None]) -> list[dict[str, Any]]:
    if any(decode):
        rows = [tuple(value if convert is None else convert(value) for value, convert in zip(row, decode, strict=True))
                for row in rows]
    return [dict(zip(names, row, strict=True)) for row in rows]


INSIDE = "__govshare_inside"


def lookup_many(path: Path, *, key: str, values: list[Any], projection: masks.Projection, scope: rowfilter.CompiledFilter,
                names: list[str], decode: list[Callable[[Any], Any] | None], limit: int = 1000) -> dict[Any, list[dict[str, Any]]]:
    """For each of ``values``, the rows with that key within ``scope`` (in snapshot order), as ``projection`` shows them.

    One probe of the primary key per value; ``values`` absent or outside the scope are left out.
    """
    connection = _connection(path)
    found: dict[Any, list[dict[str, Any]]] = {}
    if len(values) == 1:  # the single lookup: one probe, no grouping
        sql = (f"SELECT {projection.sql} FROM records WHERE {quote_identifier(key)} = ? AND ({scope.sql}) "
               f"ORDER BY {ROW_COLUMN} LIMIT {int(limit)}")
        rows = connection.execute(sql, [*projection.params, values[0], *scope.params]).fetchall()
        if rows:
            found[values[0]] = _records(names, rows, decode)
        return found
    # A batch: one statement probing the primary key once per distinct value (SQLite turns IN into probes).
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), IN_CHUNK):
        chunk = unique[start:start + IN_CHUNK]
        sql = (f"SELECT {quote_identifier(key)} AS {KEY_ALIAS}, {projection.sql} FROM records "
               f"WHERE {quote_identifier(key)} IN ({', '.join('?' for _ in chunk)}) AND ({scope.sql}) "
               f"ORDER BY {KEY_ALIAS}, {ROW_COLUMN}")
        # Records made as the rows come (a thousand keys' rows: no list of tuples first, no per-key pass).
        converted = [(name, convert) for name, convert in zip(names, decode, strict=True) if convert is not None]
        for row in connection.execute(sql, [*projection.params, *chunk, *scope.params]):
            records = found.get(row[0])
            if records is None:
                records = found[row[0]] = []
            elif len(records) >= limit:
                continue
            record = dict(zip(names, row[1:], strict=True))
            for name, convert in converted:
                record[name] = convert(record[name])
            records.append(record)
    return found


IN_CHUNK = 500  # values a statement: well under SQLite's limit on bound parameters
KEY_ALIAS = "__govshare_key"


def page_by_key(path: Path, *, key: str, value: Any, projection: masks.Projection, scope: rowfilter.CompiledFilter,
                equals: dict[str, Any], after_row: int, limit: int, names: list[str],
                decode: list[Callable[[Any], Any] | None]) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the rows with key ``value`` (and ``equals``) within ``scope``, after position ``after_row``; and the last position."""
    conditions = [f"{quote_identifier(key)} = ?", f"({scope.sql})", f"{ROW_COLUMN} > ?"]
    conditions += [f"{quote_identifier(name)} = ?" for name in equals]
    sql = (f"SELECT {ROW_COLUMN}, {projection.sql} FROM records WHERE {' AND '.join(conditions)} "
           f"ORDER BY {ROW_COLUMN} LIMIT {int(limit)}")
    rows = _connection(path).execute(sql, [*projection.params, value, *scope.params, after_row, *equals.values()]).fetchall()
    if not rows:
        return [], None
    return _records(names, [row[1:] for row in rows], decode), rows[-1][0]
