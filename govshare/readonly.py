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
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0  # GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS's default (govshare.settings, govshare.db)


def store_from_environment(environ: Mapping[str, str] | None = None) -> tuple[str, float] | None:
    """The record store's URL and SQLite busy timeout, read from the environment as
    ``govshare.settings.Settings`` reads them (``GOVSHARE_`` names in any case), without
    loading pydantic-settings (a tenth of a list command's CPU); ``None`` when anything is
    out of the ordinary (a name set twice in two cases, a timeout it would refuse), and the
    caller reads the full settings, which also report the mistake."""
    names = ("home", "database_url", "sqlite_busy_timeout_seconds")
    found: dict[str, str] = {}
    for key, value in (os.environ if environ is None else environ).items():
        name = key.lower().removeprefix("govshare_") if key.lower().startswith("govshare_") else None
        if name in names:
            if name in found:
                return None
            found[name] = value
    try:
        timeout = float(found.get("sqlite_busy_timeout_seconds", DEFAULT_BUSY_TIMEOUT_SECONDS))
    except ValueError:
        return None
    if not 0 < timeout <= 600 or found.get("home") == "":
        return None
    if found.get("database_url"):
        return found["database_url"], timeout
    home = Path(found.get("home", ".govshare")).expanduser().resolve()
    return f"sqlite:///{home / 'govshare.db'}", timeout


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


def connect_to_the_configured_store(settings: Callable[[], tuple[str, float]]) -> AbstractContextManager[Reader | None]:
    """``connect`` to the store the environment names (``store_from_environment``), or where
    ``settings`` (the full settings' ``resolved_database_url`` and busy timeout) says when that reads ``None``."""
    url, busy_timeout_seconds = store_from_environment() or settings()
    return connect(url, busy_timeout_seconds=busy_timeout_seconds)


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
