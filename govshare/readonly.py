"""Reads for the command line's list commands, through the store's own driver, without SQLAlchemy.

Importing SQLAlchemy and mapping every domain's tables costs a command about half a second
of CPU before it reads a row; the list commands (``govshare departments list``, ``clients
list``, ``datasets list``) print a few rows. So they read with the standard library's
``sqlite3`` (the embedded store) or ``psycopg`` (PostgreSQL) directly, with parameterised
SQL, and print exactly what they printed through the ORM (tests compare both). Any other
store (or a URL this module does not read) answers ``None`` from ``connect``, and the
command takes its SQLAlchemy path.

Only reads: nothing here writes, begins a write transaction or creates a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class Reader:
    """One read-only connection; SQL is written with ``?`` placeholders on every store."""

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection, self.dialect = connection, dialect

    def rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")  # our SQL holds no other '?' and no '%'
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, tuple(parameters))
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def code_order(self, column: str) -> str:
        """``ORDER BY`` text putting ``column`` in code-point order (Python's string order) on every store."""
        return f'{column} COLLATE "C"' if self.dialect == "postgresql" else column

    def json(self, value: Any) -> Any:
        """A JSON column's value: SQLite hands back its text, psycopg the parsed value."""
        return json.loads(value) if isinstance(value, str | bytes) else value

    def timestamp(self, value: Any) -> datetime | None:
        """A UTC timestamp column (``govshare.db.UTCDateTime``) as an aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):  # SQLite: SQLAlchemy's text form, naive UTC
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix):]
    return Path(path) if path and path != ":memory:" else None


def _postgres_conninfo(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql+psycopg", "postgresql+psycopg3"):
        return None
    return parts._replace(scheme="postgresql").geturl()


@contextmanager
def connect(url: str, *, busy_timeout_seconds: float) -> Iterator[Reader | None]:
    """A read-only ``Reader`` on the store at ``url`` (SQLAlchemy URL), or ``None`` where this module does not read it.

    A SQLite file that does not exist yet is ``None`` too: the SQLAlchemy path reports it as it always did.
    """
    path = _sqlite_path(url)
    if path is not None:
        if not path.is_file():
            yield None
            return
        import sqlite3

        # mode=ro: a list command can neither write nor create the file; the busy timeout as the server's.
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout_seconds)
        try:
            yield Reader(connection, "sqlite")
        finally:
            connection.close()
        return
    conninfo = _postgres_conninfo(url)
    if conninfo is None:
        yield None
        return
    import psycopg

    with psycopg.connect(conninfo) as connection:
        connection.read_only = True
        try:
            yield Reader(connection, "postgresql")
        finally:
            connection.rollback()
