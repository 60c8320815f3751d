"""The access ledger writer: calls hand their line to a queue and go on; a thread writes in batches.

A call never waits on the ledger's write. Lines are committed within
``FLUSH_SECONDS`` (or sooner when ``BATCH`` accumulate); ``flush()`` waits for
everything queued so far (shutdown and tests use it). What a hard kill of the
process takes with it is at most the lines not yet committed.

When the record store is busy or away (SQLite's lock held past its busy timeout, a
PostgreSQL connection dropped, a serialization failure; see ``govshare.db.is_transient``)
the batch is kept and tried again, backing off from ``FIRST_RETRY_SECONDS`` to
``MAX_RETRY_SECONDS``, for as long as the process runs; the lines queued meanwhile wait
behind it, in order. Each batch writes a row of its own (``ledger_batches``) in its
transaction, so a retry after a COMMIT whose answer was lost finds it and does not write
the lines twice. Only a line the store refuses for what it holds is dropped (and
logged). Should the unwritten backlog reach its limit, ``record`` refuses the call
(``LedgerUnavailable``, a 503) rather than let it serve data the ledger could not
account for. ``stop()`` tries for ``STOP_RETRY_SECONDS`` more, then logs what it could
not write.

Backpressure: calls on the event loop first ask ``room`` for their lines. Below the high-water
mark it answers at once; above it the call waits, on the loop, until the writer has brought the
backlog (and the lines of calls let in and not yet recorded) back under the mark, and is refused
(``LedgerUnavailable``) only when that has not happened within ``wait_seconds`` (the store down or
refusing). Calls that serve faster than the writer commits are thus slowed to its pace instead of
refused once the backlog reaches its limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy import exc as sa_exc

from exchange import rollups
from exchange.errors import LedgerUnavailable
from exchange.models import AccessLogEntry, AccessLogKey, LedgerBatch
from govshare import audit
from govshare.db import TEXT_CLEANED, Database, is_transient, utcnow
from govshare.observability import LedgerMetrics

log = logging.getLogger("govshare.ledger")
BATCH = 500
TAKE_AT_MOST = 50_000  # lines a write takes at most when more are already queued (a backlog is written in big batches)
FLUSH_SECONDS = 0.2
MAX_KEYS_PER_LINE = 1000
KEY_LENGTH = AccessLogKey.__table__.c.key.type.length
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
STOP_RETRY_SECONDS = 5.0  # how long stop() keeps trying a store that refuses
STOP_GRACE_SECONDS = 5.0  # and how much longer it waits for a write already under way (a busy timeout running)
DEFAULT_BACKLOG_LIMIT = 100_000
DEFAULT_HIGH_WATER = 50_000  # backlog above which calls wait for the writer (room())
DEFAULT_WAIT_SECONDS = 10.0  # how long a call waits for the writer before it is refused
BATCH_MARKS_KEPT = timedelta(days=1)  # far longer than a batch is retried in practice
BATCH_MARKS_PRUNED_EVERY = 60.0  # seconds


@dataclass
class LedgerLine:
    kind: str
    client_id: str
    department: str
    dataset: str
    grant_id: int | None
    application_id: int | None
    service_item: str | None
    basis: str | None
    rows: int
    keys: list[str] = field(default_factory=list)
    status: int = 200
    latency_ms: float | None = None
    extract_id: str | None = None
    at: datetime = field(default_factory=utcnow)
    # A live call's message: digests of the request sent to the provider and of its answer, and when each went.
    request_sha256: str | None = None
    answer_sha256: str | None = None
    requested_at: datetime | None = None
    answered_at: datetime | None = None
    # consent_required datasets: the consent each key was delivered under (key -> consent id), kept with the key.
    consents: dict[str, int] = field(default_factory=dict)
    purpose: str | None = None  # the application's purpose, shown in the citizen's access log


@dataclass
class KeyLines:
    """Lines alike but for their key: one access_log line per key (a batch lookup's keys delivered), each with
    its own row count and consent, everything else ``line``'s (its ``keys``, ``rows`` and ``consents`` unused).

    What a batch call hands the writer instead of a thousand ``LedgerLine``: the writer expands it straight
    into rows, and what the lines share (their time, text, rollup) it prepares once. The rows stored are the
    same as for one ``LedgerLine(keys=[key], rows=..., consents={key: consent})`` a key.
    """

    line: LedgerLine
    keys: list[str]
    rows: list[int]
    consents: list[int | None] | None = None  # the consent each key was delivered under, in the keys' order

    def __post_init__(self) -> None:
        if len(self.rows) != len(self.keys) or (self.consents is not None and len(self.consents) != len(self.keys)):
            raise ValueError("a KeyLines needs one row count (and consent) a key")

    def __len__(self) -> int:
        return len(self.keys)

    def lines(self) -> list[LedgerLine]:
        """The same lines one by one (how a batch the store refused is written again, a line at a time)."""
        consents = self.consents if self.consents is not None else [None] * len(self.keys)
        return [dataclasses.replace(self.line, keys=[key], rows=rows, consents={} if consent is None else {key: consent})
                for key, rows, consent in zip(self.keys, self.rows, consents, strict=True)]


Item = LedgerLine | KeyLines


def _count(items: list[Item]) -> int:
    return sum(len(item) if isinstance(item, KeyLines) else 1 for item in items)


def _single_lines(items: list[Item]) -> list[LedgerLine]:
    return [line for item in items for line in (item.lines() if isinstance(item, KeyLines) else (item,))]


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class _Room:
    """What ``LedgerWriter.room`` gives: entered once the writer has room for a call's lines."""

    def __init__(self, writer: LedgerWriter, lines: int) -> None:
        self.writer, self.lines = writer, lines

    async def __aenter__(self) -> None:
        await self.writer._enter(self.lines)

    async def __aexit__(self, *exc) -> None:
        self.writer._exit(self.lines)


class _GaveUp(Exception):
    """Stopping, and the store still refuses: the lines in hand are not written."""


class LedgerWriter:
    def __init__(self, database: Database, *, backlog_limit: int = DEFAULT_BACKLOG_LIMIT,
                 high_water: int = DEFAULT_HIGH_WATER, wait_seconds: float = DEFAULT_WAIT_SECONDS,
                 metrics: LedgerMetrics | None = None) -> None:
        self.database = database
        self.backlog_limit = backlog_limit
        self.high_water = min(high_water, backlog_limit)
        self.wait_seconds = wait_seconds
        self.metrics = metrics or LedgerMetrics()
        self.metrics.backlog.set_function(lambda: self.backlog)
        # Items are (count, lines) (a call's lines go in at once: a batch lookup's thousand, as one KeyLines, in one
        # put), or None to stop.
        self._queue: queue.Queue[tuple[int, list[Item]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending = 0  # recorded, neither committed nor given up
        self._refusing = False
        self._wake = threading.Event()  # cuts a pause between attempts short when stopping
        self._stopping = threading.Event()  # cuts a batch's gathering short when stopping
        self._give_up_at: float | None = None  # set by stop(): when to stop trying a refusing store
        self._gave_up = False
        self._abandoned = 0  # lines given up on at stop
        self._prune_at = 0.0  # when old batch marks are next removed (monotonic)
        self._promised = 0  # lines of calls let in by room() and not yet recorded
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []  # calls waiting in room()
        self._waiting_too_long = False

    @property
    def backlog(self) -> int:
        """Lines recorded and not yet committed."""
        return self._pending

    def start(self) -> None:
        if self._thread is None:
            self._give_up_at, self._gave_up, self._abandoned = None, False, 0
            self._wake.clear()
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="govshare-ledger", daemon=True)
            self._thread.start()

    def admit(self) -> None:
        """Refuse the call (``LedgerUnavailable``) while the unwritten backlog is at its limit.

        For a call that serves before it records (a stream): ask before serving, then
        ``record(line, admitted=True)``.
        """
        if self._pending < self.backlog_limit:
            if self._refusing:
                self._refusing = False
                log.warning("the access ledger is writing again (%d lines waiting); interface calls are served again",
                            self._pending)
            return
        if not self._refusing:
            self._refusing = True
            log.error("%d access ledger lines wait for the record store (limit %d): interface calls are refused "
                      "with 503 until they are written", self._pending, self.backlog_limit)
        raise LedgerUnavailable()

    @property
    def waiting(self) -> int:
        """Calls waiting in ``room`` for the writer."""
        return len(self._waiters)

    def room(self, lines: int) -> _Room:
        """``async with writer.room(lines):`` around a call that records about ``lines`` lines, before it serves anything.

        Below the high-water mark the call goes on at once; above it, it waits on the event loop (holding no
        thread) until the writer has brought the backlog under the mark, and raises ``LedgerUnavailable`` should
        that take more than ``wait_seconds``. The lines are counted against the mark from entry to exit: the
        calls let in together cannot take the backlog far past it.
        """
        return _Room(self, lines)

    def _let_in(self, lines: int) -> bool:
        with self._lock:
            if self._pending + self._promised < self.high_water:
                self._promised += lines
                return True
            return False

    async def _enter(self, lines: int) -> None:
        if self._let_in(lines):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        while True:
            waiter = (loop, loop.create_future())
            with self._lock:
                if self._pending + self._promised < self.high_water:
                    self._promised += lines
                    break
                self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter[1], max(0.0, deadline - loop.time()))
            except TimeoutError:
                if not self._waiting_too_long:
                    self._waiting_too_long = True
                    log.error("calls waited %.0f s for the access ledger (%d lines not yet written): interface calls "
                              "are refused with 503 until it writes again", self.wait_seconds, self._pending)
                raise LedgerUnavailable() from None
            finally:
                with self._lock:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
        if self._waiting_too_long:
            self._waiting_too_long = False
            log.warning("the access ledger is writing again (%d lines waiting); interface calls are served again",
                        self._pending)

    def _exit(self, lines: int) -> None:
        with self._lock:
            self._promised -= lines
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        """Wake the calls waiting in ``room`` when there is room again (each checks for itself, in its own loop)."""
        if not self._waiters:
            return
        with self._lock:
            if self._pending + self._promised >= self.high_water:
                return
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # its loop has closed: nobody waits there any more
                pass

    def record(self, line: LedgerLine, *, admitted: bool = False) -> None:
        """Queue one line; returns at once. Raises ``LedgerUnavailable`` (unless ``admitted``) when the backlog is at its limit."""
        self.record_many([line], admitted=admitted)

    def record_many(self, lines: list[Item], *, admitted: bool = False) -> None:
        """Queue a call's lines at once (``record``, one hand-over for all of them; a ``KeyLines`` counts its keys)."""
        count = _count(lines)
        if not count:
            return
        if not admitted:
            self.admit()
        with self._lock:
            self._pending += count
        self._queue.put((count, lines))

    def flush(self) -> None:
        """Block until every line queued before this call is committed (or dropped for what it holds)."""
        if self._thread is None:
            self._drain_now()
            return
        self._queue.join()

    def stop(self) -> None:
        """Write what is queued, trying a refusing store for ``STOP_RETRY_SECONDS`` at most; log what could not be written."""
        self._give_up_at = time.monotonic() + STOP_RETRY_SECONDS
        self._wake.set()
        self._stopping.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=STOP_RETRY_SECONDS + STOP_GRACE_SECONDS)
            if self._thread.is_alive():
                log.error("stopping: the ledger writer is still in a write after %.0f s; %d access ledger lines are "
                          "not written and are lost if the process exits now",
                          STOP_RETRY_SECONDS + STOP_GRACE_SECONDS, self.backlog)
                return
            self._thread = None
        self._drain_now()
        if self._abandoned:
            log.error("stopping: the record store still refused after %.0f s; %d access ledger lines could not be "
                      "written and are lost", STOP_RETRY_SECONDS, self._abandoned)
            self._abandoned = 0

    def _drain_now(self) -> None:
        lines = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                lines.extend(item[1])
            self._queue.task_done()
        if lines:
            self._write_all(lines)

    def _settled(self, count: int, *, lost: int = 0) -> None:
        """``count`` lines are off the backlog, ``lost`` of them not written."""
        with self._lock:
            self._pending -= count
        self._wake_waiters()
        if lost:
            self.metrics.lines_lost.inc(lost)

    def _write_all(self, items: list[Item]) -> None:
        """Write a batch, waiting out a busy or absent store; should the store refuse the batch
        for what it holds, each line alone, so one bad line does not take the others with it."""
        count = _count(items)
        try:
            self._write_patiently(items)
        except _GaveUp:
            self._abandon(count)
            return
        except Exception:
            log.exception("could not write %d ledger lines at once; writing them one by one", count)
        else:
            self._settled(count)
            return
        lines = _single_lines(items)
        for index, line in enumerate(lines):
            try:
                self._write_patiently([line])
            except _GaveUp:
                self._abandon(len(lines) - index)
                return
            except Exception as problem:  # keep serving; the loss is in the log, without the citizens' keys
                log.error("lost a ledger line (%s): %s call of client %s on %s at %s, status %d, %d key(s)",
                          type(problem).__name__, line.kind, line.client_id, line.dataset, line.at.isoformat(),
                          line.status, len(line.keys))
                self._settled(1, lost=1)
            else:
                self._settled(1)

    def _abandon(self, count: int) -> None:
        self._abandoned += count
        self._settled(count, lost=count)

    def _write_patiently(self, lines: list[Item]) -> None:
        """Write ``lines``, trying again while the store is busy or away; raises what the lines themselves caused,
        or ``_GaveUp`` once stopping and past its deadline."""
        delay, failures = FIRST_RETRY_SECONDS, 0
        batch = uuid.uuid4().hex
        while True:
            if self._gave_up:
                raise _GaveUp
            try:
                # After a failure, the last attempt's COMMIT may have landed with its answer lost.
                if not (failures and self._landed(batch)):
                    self._write(lines, batch)
            except Exception as error:
                if not is_transient(error):
                    raise
                failures += 1
                give_up_at = self._give_up_at
                if give_up_at is not None and time.monotonic() >= give_up_at:
                    self._gave_up = True
                    raise _GaveUp from error
                if failures & (failures - 1) == 0:  # the 1st, 2nd, 4th, 8th... failure: the log says it, without a flood
                    log.warning("the record store refused %d ledger lines (%s: %s); trying again (failure %d)",
                                _count(lines), type(error).__name__, getattr(error, "orig", error), failures)
                self.metrics.batch_retries.inc()
                pause = delay if give_up_at is None else min(delay, max(0.0, give_up_at - time.monotonic()))
                if self._wake.wait(pause):
                    self._wake.clear()
                delay = min(delay * 2, MAX_RETRY_SECONDS)
            else:
                if failures:
                    log.warning("wrote %d ledger lines after %d refusals of the record store", _count(lines), failures)
                return

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.task_done()
                return
            # A batch gathers for FLUSH_SECONDS from its first line (or until BATCH lines): the
            # cost of writing it (a transaction, the rollup upserts, a commit) is mostly per
            # batch, and under load a batch that ended at the first short gap held a few lines.
            # It gathers asleep, then takes what came: taking each line as it came woke this
            # thread, and handed it the GIL, once per interface call.
            count, lines = first[0], list(first[1])
            items, stop = 1, False
            if count < BATCH and self._queue.qsize() < BATCH - count:
                self._stopping.wait(FLUSH_SECONDS)
            # Then it takes what is queued, up to TAKE_AT_MOST lines: batch lookups hand over a thousand
            # lines a call, and a transaction's own cost is then paid once for several calls.
            while count < TAKE_AT_MOST:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                count += item[0]
                lines.extend(item[1])
                items += 1
            try:
                self._write_all(lines)
            finally:
                for _ in range(items + (1 if stop else 0)):
                    self._queue.task_done()
            if stop:
                return

    def _landed(self, batch: str) -> bool:
        with self.database.transaction(write=False) as session:
            return session.execute(select(LedgerBatch.id).where(LedgerBatch.id == batch)).first() is not None

    def _write(self, items: list[Item], batch: str) -> None:
        # Core and driver statements, not ORM objects: a line is written for every interface call, and the ORM's
        # unit of work cost more per line than the rest of the writing together.
        now, prune = utcnow(), time.monotonic() >= self._prune_at
        rollup, messages = rollups.Rollup(), []
        with self.database.transaction() as session:
            session.execute(insert(LedgerBatch.__table__), [{"id": batch, "written_at": now}])
            if prune:  # marks are needed only while their batch may be tried again
                session.execute(delete(LedgerBatch).where(LedgerBatch.written_at < now - BATCH_MARKS_KEPT))
            if self.database.dialect == "sqlite":
                _write_sqlite(session, items, rollup, messages)
            elif _copies(session, items):
                _write_copy(session, items, rollup, messages)
            else:
                _write_rows(session, items, rollup, messages)
            if messages:
                # The batch's live messages, signed on the audit chain in the same transaction: altering a
                # line's digests or times afterwards makes verify name this entry (check_signed_messages).
                audit.record(session, actor="ledger", action=MESSAGES_ACTION, subject=f"ledger-batch:{batch}",
                             details={"messages": messages})
            rollups.apply(session, rollup)
        if prune:
            self._prune_at = time.monotonic() + BATCH_MARKS_PRUNED_EVERY


# access_log's columns as the writer sends them: the id and row count first, then what a KeyLines' lines share.
ENTRY_NAMES = ("id", "rows", "at", "kind", "client_id", "department_code", "dataset_code", "grant_id", "application_id",
               "service_item", "basis", "purpose", "status", "latency_ms", "extract_id", "request_sha256", "answer_sha256",
               "requested_at", "answered_at")
SHARED_NAMES = ENTRY_NAMES[2:]
KEY_NAMES = ("entry_id", "key", "consent_id")
INSERT_VALUES_AT_MOST = 30_000  # bound values a statement (SQLite's own limit is 32,766 at the least)
COPY_FROM_LINES = 200  # on PostgreSQL (psycopg), a batch of this many lines or more is written with COPY


def _shared_row(item: KeyLines, rollup: rollups.Rollup) -> tuple[dict, list[int | None]]:
    """A KeyLines' one access_log row (its lines differ only in id and row count), counted in ``rollup`` once for all
    its lines, and each key's consent (None where there is none)."""
    row = _row(item.line)
    rollup.add_alike(SimpleNamespace(**row), count=len(item.keys), rows=sum(item.rows))
    return row, item.consents if item.consents is not None else [None] * len(item.keys)


def _lines_of(items: list[Item], rollup: rollups.Rollup, messages: list[dict], next_id, shared):
    """Each line of ``items`` as (access_log values, its keys), added to ``rollup`` and ``messages`` as it goes.

    Yields ``(entry_id, rows, shared_values, keys)``: ``next_id(count)`` gives the ids of ``count`` lines (a range),
    ``shared(row)`` the values of SHARED_NAMES as the caller sends them (prepared once for a KeyLines' lines),
    ``keys`` ``[(key, consent)]`` made storable."""
    for item in items:
        if isinstance(item, KeyLines):
            if not item.keys:
                continue
            row, consents = _shared_row(item, rollup)
            values = shared(row)
            ids = next_id(len(item.keys))
            for entry_id, key, rows, consent in zip(ids, item.keys, item.rows, consents, strict=True):
                yield entry_id, rows, values, ((_text(key, KEY_LENGTH), consent),)
            if row["request_sha256"]:
                messages.extend(message_record(entry_id, row) for entry_id in ids)
        else:
            row = _row(item)
            (entry_id,) = next_id(1)
            rollup.add(SimpleNamespace(**row))
            if row["request_sha256"]:
                messages.append(message_record(entry_id, row))
            yield entry_id, row["rows"], shared(row), _keys(item).items()


def _write_sqlite(session, items: list[Item], rollup: rollups.Rollup, messages: list[dict]) -> None:
    """The lines' rows on SQLite, in multi-row INSERT statements through the DBAPI, in the batch's transaction.

    The ids are given here: the transaction holds SQLite's write lock from its start (BEGIN IMMEDIATE), so the
    ids after the largest one are the batch's own. Each value goes through its column type's own bind processor,
    as SQLAlchemy's insert would pass it, once for each distinct value (a batch's lines mostly share their
    time and text). Many rows a statement, not an executemany: SQLite's driver lets go of the interpreter's
    lock around each statement's step, and a writer taking it back once per row waited behind the calls'
    threads each time, falling behind them under load.
    """
    entries = AccessLogEntry.__table__
    connection = session.connection()
    dialect = connection.dialect
    first = connection.execute(select(func.coalesce(func.max(entries.c.id), 0))).scalar_one() + 1
    counter = [first]

    def next_id(count: int) -> range:
        ids = range(counter[0], counter[0] + count)
        counter[0] += count
        return ids

    processors = [(index, process, {}) for index, name in enumerate(SHARED_NAMES)
                  if (process := entries.c[name].type.dialect_impl(dialect).bind_processor(dialect)) is not None]

    def shared(row: dict) -> tuple:
        values = [row[name] for name in SHARED_NAMES]
        for index, process, done in processors:
            value = values[index]
            if value is not None:
                found = done.get(value)
                values[index] = found if found is not None else done.setdefault(value, process(value))
        return tuple(values)

    for name in ("id", "rows"):  # sent as they are (an integer column has no bind processor on SQLite)
        assert entries.c[name].type.dialect_impl(dialect).bind_processor(dialect) is None
    entry_values: list = []  # the single lines' rows, one after the other
    groups: list[tuple[tuple, list]] = []  # a KeyLines' shared values, and its lines' (id, rows) one after the other
    key_values: list = []
    for item in items:
        if isinstance(item, KeyLines):
            if not item.keys:
                continue
            row, consents = _shared_row(item, rollup)
            ids = next_id(len(item.keys))
            groups.append((shared(row), [value for pair in zip(ids, item.rows, strict=True) for value in pair]))
            for entry_id, key, consent in zip(ids, item.keys, consents, strict=True):
                key_values.append(entry_id)
                key_values.append(_text(key, KEY_LENGTH))
                key_values.append(consent)
            if row["request_sha256"]:
                messages.extend(message_record(entry_id, row) for entry_id in ids)
            continue
        for entry_id, rows, values, keys in _lines_of([item], rollup, messages, next_id, shared):
            entry_values.append(entry_id)
            entry_values.append(rows)
            entry_values.extend(values)
            for key, consent in keys:
                key_values.append(entry_id)
                key_values.append(key)
                key_values.append(consent)
    if entry_values:
        _insert_flat(connection, entries.name, ENTRY_NAMES, entry_values)
    if groups:
        _insert_alike(connection, entries.name, groups)
    if key_values:
        _insert_flat(connection, AccessLogKey.__table__.name, KEY_NAMES, key_values)


def _insert_alike(connection, table: str, groups: list[tuple[tuple, list]]) -> None:
    """INSERT KeyLines' rows on SQLite: each group's shared values (SHARED_NAMES) bound once, its lines' id and row
    count (one after the other in its list) from a VALUES list; the groups of a batch in few statements
    (``INSERT ... SELECT ... FROM (VALUES ...) UNION ALL SELECT ...``). Bound as a row each, the shared values
    were most of what the driver bound with the interpreter's lock held, and each statement's step lets go of
    that lock, which the writer then waits to take back behind the calls' threads."""
    quote = connection.dialect.identifier_preparer.quote
    head = f"INSERT INTO {table} ({', '.join(quote(name) for name in ENTRY_NAMES)}) "
    width = len(SHARED_NAMES)
    select = f"SELECT column1, column2, {', '.join('?' for _ in SHARED_NAMES)} FROM (VALUES "
    step = (INSERT_VALUES_AT_MOST - width) // 2 * 2  # a group's pairs a SELECT at most
    parts: list[str] = []
    params: list = []

    def run() -> None:
        connection.exec_driver_sql(head + " UNION ALL ".join(parts), tuple(params), execution_options=CLEANED)
        parts.clear()
        params.clear()

    for shared, pairs in groups:
        for start in range(0, len(pairs), step):
            chunk = pairs[start:start + step]
            if parts and (len(params) + width + len(chunk) > INSERT_VALUES_AT_MOST or len(parts) >= COMPOUND_SELECTS_AT_MOST):
                run()
            parts.append(select + ", ".join(["(?, ?)"] * (len(chunk) // 2)) + ")")
            params.extend(shared)
            params.extend(chunk)
    if parts:
        run()


COMPOUND_SELECTS_AT_MOST = 400  # SELECTs a UNION ALL (SQLite's limit is 500)


def _insert_flat(connection, table: str, names: tuple[str, ...], values: list) -> None:
    """INSERT rows of ``names`` given one after the other in ``values`` (bound values ready for the driver, text
    already cleaned), many rows a statement (``INSERT ... VALUES (...), (...), ...``)."""
    quote = connection.dialect.identifier_preparer.quote
    head = f"INSERT INTO {table} ({', '.join(quote(name) for name in names)}) VALUES "
    one = f"({', '.join('?' for _ in names)})"
    width = len(names)
    step = max(1, INSERT_VALUES_AT_MOST // width) * width
    for start in range(0, len(values), step):
        chunk = values[start:start + step]
        connection.exec_driver_sql(head + ", ".join([one] * (len(chunk) // width)), tuple(chunk),
                                   execution_options=CLEANED)


def _copies(session, items: list[Item]) -> bool:
    """Whether the batch is written with PostgreSQL's COPY: psycopg, and lines enough to pay for its statements."""
    return session.get_bind().dialect.driver == "psycopg" and _count(items) >= COPY_FROM_LINES


def _utc(value: datetime | None) -> datetime | None:
    """What UTCDateTime binds on PostgreSQL."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(timezone.utc)


def _write_copy(session, items: list[Item], rollup: rollups.Rollup, messages: list[dict]) -> None:
    """The lines' rows on PostgreSQL with COPY (psycopg), in the batch's transaction: the ids drawn from
    access_log's own sequence first, the rows of both tables then streamed."""
    entries = AccessLogEntry.__table__
    count = _count(items)
    ids = iter(session.execute(
        text("SELECT nextval(pg_get_serial_sequence('access_log', 'id')) AS id FROM generate_series(1, :count) ORDER BY id"),
        {"count": count}).scalars().all())

    def next_id(lines: int) -> list[int]:
        return [next(ids) for _ in range(lines)]

    def shared(row: dict) -> tuple:
        values = [row[name] for name in SHARED_NAMES]
        for index in DATETIME_INDEXES:
            values[index] = _utc(values[index])
        return tuple(values)

    key_rows = []
    connection = session.connection()
    dialect, raw = connection.dialect, connection.connection.dbapi_connection
    quote = dialect.identifier_preparer.quote
    cursor = raw.cursor()
    statement = f"COPY {entries.name} ({', '.join(quote(name) for name in ENTRY_NAMES)}) FROM STDIN"
    try:
        with cursor.copy(statement) as copy:
            for entry_id, rows, values, keys in _lines_of(items, rollup, messages, next_id, shared):
                copy.write_row((entry_id, rows, *values))
                key_rows.extend((entry_id, key, consent) for key, consent in keys)
        if key_rows:
            statement = f"COPY {AccessLogKey.__table__.name} ({', '.join(quote(name) for name in KEY_NAMES)}) FROM STDIN"
            with cursor.copy(statement) as copy:
                for row in key_rows:
                    copy.write_row(row)
    except dialect.loaded_dbapi.Error as error:
        # The driver's own error, as SQLAlchemy gives it for its statements (is_transient tells them apart), and a
        # dropped connection left to the pool to replace.
        dropped = dialect.is_disconnect(error, raw, cursor)
        if dropped:
            connection.invalidate(error)
        raise sa_exc.DBAPIError.instance(statement, None, error, dialect.loaded_dbapi.Error, hide_parameters=True,
                                         dialect=dialect, connection_invalidated=dropped) from error
    finally:
        cursor.close()


DATETIME_INDEXES = [index for index, name in enumerate(SHARED_NAMES) if name in ("at", "requested_at", "answered_at")]


def _write_rows(session, items: list[Item], rollup: rollups.Rollup, messages: list[dict]) -> None:
    """The lines' rows with Core inserts (PostgreSQL, a batch too small for COPY or another driver): the ids come
    back from INSERT ... RETURNING, in the lines' order."""
    entries, keys_table = AccessLogEntry.__table__, AccessLogKey.__table__
    rows, row_keys = [], []
    for item in items:
        if isinstance(item, KeyLines):
            if not item.keys:
                continue
            row, consents = _shared_row(item, rollup)
            for key, count, consent in zip(item.keys, item.rows, consents, strict=True):
                rows.append({**row, "rows": count})
                row_keys.append(((_text(key, KEY_LENGTH), consent),))
        else:
            row = _row(item)
            rollup.add(SimpleNamespace(**row))
            rows.append(row)
            row_keys.append(_keys(item).items())
    ids = session.execute(insert(entries).returning(entries.c.id, sort_by_parameter_order=True), rows,
                          execution_options=CLEANED).scalars().all()
    keys = [{"entry_id": entry_id, "key": key, "consent_id": consent_id}
            for entry_id, pairs in zip(ids, row_keys, strict=True) for key, consent_id in pairs]
    if keys:
        session.execute(insert(keys_table), keys, execution_options=CLEANED)
    messages.extend(message_record(entry_id, row) for entry_id, row in zip(ids, rows, strict=True) if row["request_sha256"])


MESSAGES_ACTION = "ledger.messages"
CLEANED = {TEXT_CLEANED: True}  # the lines' text went through _text: no NUL to look for again


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat() if value.tzinfo else value.replace(tzinfo=timezone.utc).isoformat()


def message_record(entry_id: int, row) -> dict:
    """What is signed of one ledger line's message: its id, digests and times (``row``: a mapping or an AccessLogEntry)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return {"entry": entry_id, "request_sha256": get("request_sha256"), "answer_sha256": get("answer_sha256"),
            "requested_at": _iso(get("requested_at")), "answered_at": _iso(get("answered_at"))}


@audit.entry_check(MESSAGES_ACTION)
def check_signed_messages(session, details: dict) -> str | None:
    """Why the ledger lines signed in an entry no longer match it (altered or removed), or None."""
    signed = details.get("messages", [])
    found = {entry.id: entry for entry in session.execute(
        select(AccessLogEntry).where(AccessLogEntry.id.in_([message["entry"] for message in signed]))).scalars()}
    for message in signed:
        entry = found.get(message["entry"])
        if entry is None:
            return f"access ledger line {message['entry']} it signs is missing"
        if message_record(entry.id, entry) != message:
            return f"access ledger line {message['entry']} differs from the digests and times it signs (altered)"
    return None


def _text(value: str | None, length: int | None = None) -> str | None:
    """``value`` as every record store accepts it: no NUL, no lone surrogate, at most ``length`` characters."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():  # only text beyond ASCII can hold a lone surrogate
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:length] if length else value


_COLUMNS = AccessLogEntry.__table__.c
_LENGTHS = {"kind": _COLUMNS.kind.type.length, "client_id": _COLUMNS.client_id.type.length,
            "department": _COLUMNS.department_code.type.length, "dataset": _COLUMNS.dataset_code.type.length,
            "service_item": _COLUMNS.service_item.type.length, "basis": None, "purpose": None, "extract_id": _COLUMNS.extract_id.type.length}


def cleaned(line: LedgerLine) -> LedgerLine:
    """The line with its text made storable: cut to its column's length, without NUL or lone surrogates."""
    return dataclasses.replace(line, **{name: _text(getattr(line, name), length) for name, length in _LENGTHS.items()},
                               keys=[_text(key, KEY_LENGTH) for key in line.keys[:MAX_KEYS_PER_LINE]])


def _keys(line: LedgerLine) -> dict[str, int | None]:
    """The line's keys made storable, once each, with the consent each was delivered under."""
    return {_text(key, KEY_LENGTH): line.consents.get(key) for key in line.keys[:MAX_KEYS_PER_LINE]}


def _row(line: LedgerLine) -> dict:
    """The access_log row of ``line``, its text made storable as ``cleaned`` makes it (without a copy of the line)."""
    return {"at": line.at, "kind": _text(line.kind, _LENGTHS["kind"]), "client_id": _text(line.client_id, _LENGTHS["client_id"]),
            "department_code": _text(line.department, _LENGTHS["department"]),
            "dataset_code": _text(line.dataset, _LENGTHS["dataset"]), "grant_id": line.grant_id,
            "application_id": line.application_id, "service_item": _text(line.service_item, _LENGTHS["service_item"]),
            "basis": _text(line.basis), "purpose": _text(line.purpose), "rows": line.rows, "status": line.status, "latency_ms": line.latency_ms,
            "extract_id": _text(line.extract_id, _LENGTHS["extract_id"]), "request_sha256": line.request_sha256,
            "answer_sha256": line.answer_sha256, "requested_at": line.requested_at, "answered_at": line.answered_at}
