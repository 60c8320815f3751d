"""The record store: engine, sessions, the declarative base and a UTC timestamp type.

The request owns the transaction (see ``get_db``); services only ``flush()``.
On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so two writers queue
on the database lock instead of failing half-way with "database is locked".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every table, in every domain."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier. Only for names from a known list (a dataset's items)."""
    return '"' + name.replace('"', '""') + '"'


def utcnow() -> datetime:
    """Now, in UTC, at microsecond precision (what every backend stores exactly)."""
    return datetime.now(UTC)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own transaction handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("govshare_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_db_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings each backend needs."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """One record store: an engine and the sessions made from it."""

    def __init__(self, url: str, *, keystore: Any = None) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        # session.info carries the infrastructure services need (the audit log signs entries).
        info = {"keystore": keystore}
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(govshare_write=True), expire_on_commit=False, info=info
        )

    def new_session(self, *, write: bool) -> Session:
        """A session the caller commits or rolls back and closes itself."""
        return (self._write_sessions if write else self._read_sessions)()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on any error."""
        session = self.new_session(write=write)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def get_database(request: Request) -> Database:
    """The app's record store."""
    return request.app.state.database


def get_db(request: Request) -> Iterator[Session]:
    """One transaction per request: committed on success, rolled back on error."""
    database: Database = request.app.state.database
    with database.transaction(write=request.method not in ("GET", "HEAD", "OPTIONS")) as session:
        yield session


# scope="function": commit before the response is sent. With FastAPI's default the
# commit ran after it, so a client could act on a 2xx whose write was not yet visible
# (or never happened, had the commit failed).
DbSession = Annotated[Session, Depends(get_db, scope="function")]
