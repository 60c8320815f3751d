"""The record store: engine, sessions, the declarative base and a UTC timestamp type.

The request owns the transaction (see ``get_db``); services only ``flush()``.
On SQLite, write transactions start with ``BEGIN IMMEDIATE`` so two writers queue
on the database lock instead of failing half-way with "database is locked".
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from govshare import changestamp  # its session events watch every session of every store
from govshare.readonly import DEFAULT_BUSY_TIMEOUT_SECONDS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


Model = TypeVar("Model")


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


def quote_path(path: Any) -> str:
    """A file path of ours as a SQL string literal: for DuckDB's ``COPY ... TO``, which binds no parameter there."""
    return "'" + str(path).replace("'", "''") + "'"


def get_or_raise(session: Session, model: type[Model], ident: Any, *, missing: Exception, for_update: bool = False) -> Model:
    """The ``model`` row with primary key ``ident``, else raises ``missing``.

    ``for_update`` locks it to the end of the transaction (read afresh, not from the
    session's identity map), so a concurrent change waits, then finds the row as left.
    """
    found = session.get(model, ident, with_for_update=True if for_update else None)
    if found is None:
        raise missing
    return found


def utcnow() -> datetime:
    """Now, in UTC, at microsecond precision (what every backend stores exactly)."""
    return datetime.now(UTC)


TEXT_CLEANED = "govshare_text_cleaned"  # an execution option: the statement's text values hold no NUL (checked by the writer)
RESOLVED_MAX = 10_000
STAMP_CONNECTIONS_KEPT = 8  # idle connections of the change-stamp reader (about the calls in flight at once)


def _configure_sqlite(engine: Engine, busy_timeout_seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own transaction handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_seconds * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("govshare_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse_nul(_connection: Any, _cursor: Any, _statement: str, parameters: Any, context: Any, _executemany: bool) -> None:
        # PostgreSQL's text cannot hold a NUL character, and psycopg refuses it; SQLite would keep
        # it. Refused here as psycopg does (a driver DataError, rolled back, answered 422 by
        # field), so what one deployment accepts, every one does.
        if context is not None and context.execution_options.get(TEXT_CLEANED):
            return  # the writer removed NUL itself (the ledger's thousands of lines a batch)
        # Parameters come as one row, a list of rows (executemany), or one flat row of many
        # (a batched INSERT's VALUES, also flagged executemany): rows are dicts or sequences.
        for part in (parameters if isinstance(parameters, list | tuple) else (parameters,)):
            values = part.values() if isinstance(part, dict) else part if isinstance(part, list | tuple) else (part,)
            if any(isinstance(value, str) and "\x00" in value for value in values):
                raise sqlite3.DataError("text fields cannot contain NUL (0x00) bytes")


def create_db_engine(url: str, *, busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> Engine:
    """An engine for ``url`` with the settings each backend needs.

    ``busy_timeout_seconds``: how long a SQLite writer waits for the lock before giving up
    (the request then answers 503 store-busy).
    Statement parameters are left out of errors and their log lines (``hide_parameters``):
    they carry citizens' IDs and data, which have no place in a server log.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_seconds},
                               pool_size=10, max_overflow=10, hide_parameters=True)
        _configure_sqlite(engine, busy_timeout_seconds)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, hide_parameters=True)


# SQLite result codes (the primary code, the low byte of an extended one) that say the store
# is busy or briefly unable to write, not that the statement or its values are wrong:
# BUSY, LOCKED, IOERR, FULL (the disk), CANTOPEN.
SQLITE_BUSY = 5
_SQLITE_TRANSIENT_CODES = {SQLITE_BUSY, 6, 10, 13, 14}
# Of those, contention: another writer held on past the busy timeout (SQLite), or PostgreSQL's
# "try again" states: deadlock detected, serialization failure, lock not available.
_CONTENTION_SQLSTATES = {"40P01", "40001", "55P03"}


def _sqlite_code(error: sa_exc.DBAPIError) -> int | None:
    """SQLite's primary result code for ``error`` (the low byte of an extended one), or None on another store."""
    code = getattr(error.orig, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_contention(error: sa_exc.DBAPIError) -> bool:
    """Whether the record store refused for contention (another writer held on too long), not for a fault."""
    if getattr(error.orig, "sqlstate", None) in _CONTENTION_SQLSTATES:
        return True
    return _sqlite_code(error) == SQLITE_BUSY  # "database is locked", once the busy timeout has run out
# PostgreSQL SQLSTATE classes and codes of the same kind: 08 connection exception, 40 transaction
# rollback (serialization failure, deadlock, completion unknown), 53 insufficient resources
# (disk full, out of memory, too many connections), 57P01-57P03 shutdown and cannot connect
# now, 57014 statement cancelled (statement_timeout, or by an administrator), 55P03 lock not
# available (lock_timeout), 58 system error (I/O), 25006 read-only transaction (a fail-over
# to a standby not yet promoted).
_POSTGRES_TRANSIENT_CLASSES = {"08", "40", "53", "58"}
_POSTGRES_TRANSIENT_CODES = {"57P01", "57P02", "57P03", "57014", "55P03", "25006"}


def is_transient(error: BaseException) -> bool:
    """Whether the record store refused for a reason of its own (busy, away, restarting), so the same write may succeed later.

    Decided by exception class and result code, not message text. A refusal for what was
    written (IntegrityError, DataError, a value no column takes) is not transient.
    """
    if isinstance(error, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):  # the pool: no connection to be had now
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if isinstance(error, (sa_exc.IntegrityError, sa_exc.DataError, sa_exc.ProgrammingError, sa_exc.NotSupportedError)):
        return False
    sqlite_code = _sqlite_code(error)
    if sqlite_code is not None:
        return sqlite_code in _SQLITE_TRANSIENT_CODES
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate:
        return sqlstate[:2] in _POSTGRES_TRANSIENT_CLASSES or sqlstate in _POSTGRES_TRANSIENT_CODES
    # A driver's OperationalError with no SQLSTATE: the server never answered (refused, reset, closed).
    return isinstance(error, sa_exc.OperationalError)


class Database:
    """One record store: an engine and the sessions made from it."""

    def __init__(self, url: str, *, keystore: Any = None, busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.engine = create_db_engine(url, busy_timeout_seconds=busy_timeout_seconds)
        # Requests holding a session at once (see ``get_db``): half the pool, since a request
        # may take a second connection for a write of its own (an audit entry, a new token).
        self._request_slots = LoopSemaphores(max(1, _pool_capacity(self.engine) // 2))
        # session.info carries the infrastructure services need (the audit log signs entries).
        info = {"keystore": keystore}
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(govshare_write=True), expire_on_commit=False, info=info
        )
        self._stamp_connections: list[Any] = []  # list.pop and append: safe between threads under the GIL
        # What calls resolved (a token's caller, a grant's scope) with the change stamp it was resolved at: trusted
        # while the store's stamp is unchanged (``govshare.changestamp``). Bounded by ``remember``.
        self.resolved: dict[Any, tuple[str, Any]] = {}

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
        except BaseException:
            end_session(session, commit=False)
            raise
        end_session(session, commit=True)

    @contextmanager
    def session_on_demand(self) -> Iterator[Any]:
        """A function giving a read session, opened on its first call only and ended with the block (committed on
        success, rolled back on error): for a call that needs the store only when its cached state is stale."""
        opened: list[Session] = []

        def session() -> Session:
            if not opened:
                opened.append(self.new_session(write=False))
            return opened[0]

        try:
            yield session
        except BaseException:
            if opened:
                end_session(opened[0], commit=False)
            raise
        if opened:
            end_session(opened[0], commit=True)

    def change_stamp(self) -> str | None:
        """The store's change stamp (``govshare.changestamp``), or None when it cannot be read now.

        The one read of the record store on an interface call that finds its state unchanged:
        a plain DBAPI connection kept for it (no session, no pool checkout, no transaction;
        autocommit), reused by whichever thread reads next. None (on any failure, or a store
        without the row) sends the call down the full path, which reads and reports as usual.
        """
        try:
            connection = self._stamp_connections.pop()
        except IndexError:
            try:
                connection = self._stamp_connection()
            except Exception:
                return None
        try:
            cursor = connection.cursor()
            cursor.execute(changestamp.READ_SQL)
            row = cursor.fetchone()
            cursor.close()
        except Exception:
            try:
                connection.close()
            except Exception:
                pass
            return None
        if len(self._stamp_connections) < STAMP_CONNECTIONS_KEPT:
            self._stamp_connections.append(connection)
        else:
            connection.close()
        return None if row is None else row[0]

    def _stamp_connection(self) -> Any:
        pooled = self.engine.raw_connection()  # the engine's own connect settings (SQLite's pragmas, the URL's options)
        pooled.detach()  # this one is the stamp reader's, outside the pool's count
        connection = pooled.dbapi_connection
        if self.dialect != "sqlite":
            connection.autocommit = True  # each read sees what is committed now, and holds no transaction open
        return connection

    def recall(self, key: Any, stamp: str | None) -> Any:
        """What was resolved under ``key`` at change stamp ``stamp`` (None: not known at that stamp)."""
        found = self.resolved.get(key)
        return found[1] if found is not None and stamp is not None and found[0] == stamp else None

    def remember(self, key: Any, stamp: str | None, value: Any) -> None:
        if stamp is None:
            return
        if len(self.resolved) >= RESOLVED_MAX:
            self.resolved.clear()  # bounded; a server serves a few tokens and grants at a time
        self.resolved[key] = (stamp, value)

    def dispose(self) -> None:
        while self._stamp_connections:
            try:
                self._stamp_connections.pop().close()
            except Exception:
                pass
        self.engine.dispose()

    @property
    def request_concurrency(self) -> int:
        return self._request_slots.size

    @request_concurrency.setter
    def request_concurrency(self, size: int) -> None:
        self._request_slots.size = size

    def request_slots(self) -> asyncio.Semaphore:
        """The running event loop's semaphore of request sessions."""
        return self._request_slots.current()


class LoopSemaphores:
    """An asyncio semaphore of ``size`` per running event loop (one loop's cannot be awaited in another; tests run several)."""

    def __init__(self, size: int) -> None:
        self.size = size  # read when a loop's semaphore is made
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()

    def current(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._by_loop.get(loop)
        if semaphore is None:
            semaphore = self._by_loop[loop] = asyncio.Semaphore(self.size)
        return semaphore


def _pool_capacity(engine: Engine) -> int:
    """How many connections the engine's pool hands out at most."""
    pool = engine.pool
    size = pool.size() if hasattr(pool, "size") else 1
    return size + max(0, getattr(pool, "_max_overflow", 0))


def get_database(request: Request) -> Database:
    """The app's record store."""
    return request.app.state.database


async def get_db(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed on success, rolled back on error.

    A request first takes one of the database's request slots, waiting on the event loop.
    Waiting for a pooled connection in a worker thread instead could deadlock: with more
    requests in flight than connections, every worker thread ended up waiting for a
    connection while the requests holding the connections waited for a thread. (It also
    saves the thread hops a sync dependency costs: the session opens without one.)
    """
    database: Database = request.app.state.database
    slots = database.request_slots()
    await slots.acquire()
    slot = _HeldSlot(slots, asyncio.get_running_loop())
    try:
        session = database.new_session(write=request.method not in ("GET", "HEAD", "OPTIONS"))
        session.info[_SLOT] = slot
        try:
            yield session
        except BaseException:
            await run_in_threadpool(end_session, session, commit=False)
            raise
        await run_in_threadpool(end_session, session, commit=True)
    finally:
        slot.release()


_SLOT = "govshare_request_slot"


class _HeldSlot:
    """A request's slot, given back once: by ``release_request_session`` (any thread) or when the request ends."""

    def __init__(self, semaphore: asyncio.Semaphore, loop: asyncio.AbstractEventLoop) -> None:
        self._semaphore, self._loop = semaphore, loop
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._semaphore.release()
        else:  # asyncio's semaphore is not thread-safe: released on its own loop
            self._loop.call_soon_threadsafe(self._semaphore.release)


def release_request_session(session: Session) -> None:
    """Commit and close the request's session and give back its slot, before long work that needs neither.

    For routes that then work for minutes (checking an uploaded file, reading a source):
    holding the slot would make every other request wait once a few such uploads ran.
    What they write afterwards goes in short transactions of their own.
    """
    end_session(session, commit=True)
    slot = session.info.get(_SLOT)
    if slot is not None:
        slot.release()


def end_session(session: Session, *, commit: bool) -> None:
    """Commit (or roll back) and close: how every session ends, in a request or not."""
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def __getattr__(name: str) -> Any:
    """``DbSession``, the routes' session dependency, built on first use: FastAPI is imported
    by the app that mounts routes, not by every command that opens the store."""
    if name != "DbSession":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from fastapi import Depends

    global DbSession
    # scope="function": commit before the response is sent. With FastAPI's default the
    # commit ran after it, so a client could act on a 2xx whose write was not yet visible
    # (or never happened, had the commit failed).
    DbSession = Annotated[Session, Depends(get_db, scope="function")]
    return DbSession
