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
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from sqlalchemy import delete, func, insert, select

from exchange import rollups
from exchange.errors import LedgerUnavailable
from exchange.models import AccessLogEntry, AccessLogKey, LedgerBatch
from govshare import audit
from govshare.db import TEXT_CLEANED, Database, is_transient, utcnow
from govshare.observability import LedgerMetrics

log = logging.getLogger("govshare.ledger")
BATCH = 500
TAKE_AT_MOST = 5000  # lines a write takes at most when more are already queued
FLUSH_SECONDS = 0.2
MAX_KEYS_PER_LINE = 1000
KEY_LENGTH = AccessLogKey.__table__.c.key.type.length
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
STOP_RETRY_SECONDS = 5.0  # how long stop() keeps trying a store that refuses
STOP_GRACE_SECONDS = 5.0  # and how much longer it waits for a write already under way (a busy timeout running)
DEFAULT_BACKLOG_LIMIT = 100_000
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


class _GaveUp(Exception):
    """Stopping, and the store still refuses: the lines in hand are not written."""


class LedgerWriter:
    def __init__(self, database: Database, *, backlog_limit: int = DEFAULT_BACKLOG_LIMIT,
                 metrics: LedgerMetrics | None = None) -> None:
        self.database = database
        self.backlog_limit = backlog_limit
        self.metrics = metrics or LedgerMetrics()
        self.metrics.backlog.set_function(lambda: self.backlog)
        # Items are lists of lines (a call's lines go in at once: a batch lookup's thousand in one put), or None to stop.
        self._queue: queue.Queue[list[LedgerLine] | None] = queue.Queue()
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

    def record(self, line: LedgerLine, *, admitted: bool = False) -> None:
        """Queue one line; returns at once. Raises ``LedgerUnavailable`` (unless ``admitted``) when the backlog is at its limit."""
        self.record_many([line], admitted=admitted)

    def record_many(self, lines: list[LedgerLine], *, admitted: bool = False) -> None:
        """Queue a call's lines at once (``record``, one hand-over for all of them)."""
        if not lines:
            return
        if not admitted:
            self.admit()
        with self._lock:
            self._pending += len(lines)
        self._queue.put(lines)

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
                lines.extend(item)
            self._queue.task_done()
        if lines:
            self._write_all(lines)

    def _settled(self, count: int, *, lost: int = 0) -> None:
        """``count`` lines are off the backlog, ``lost`` of them not written."""
        with self._lock:
            self._pending -= count
        if lost:
            self.metrics.lines_lost.inc(lost)

    def _write_all(self, lines: list[LedgerLine]) -> None:
        """Write a batch, waiting out a busy or absent store; should the store refuse the batch
        for what it holds, each line alone, so one bad line does not take the others with it."""
        try:
            self._write_patiently(lines)
        except _GaveUp:
            self._abandon(len(lines))
            return
        except Exception:
            log.exception("could not write %d ledger lines at once; writing them one by one", len(lines))
        else:
            self._settled(len(lines))
            return
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

    def _write_patiently(self, lines: list[LedgerLine]) -> None:
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
                                len(lines), type(error).__name__, getattr(error, "orig", error), failures)
                self.metrics.batch_retries.inc()
                pause = delay if give_up_at is None else min(delay, max(0.0, give_up_at - time.monotonic()))
                if self._wake.wait(pause):
                    self._wake.clear()
                delay = min(delay * 2, MAX_RETRY_SECONDS)
            else:
                if failures:
                    log.warning("wrote %d ledger lines after %d refusals of the record store", len(lines), failures)
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
            lines, items, stop = list(first), 1, False
            if len(lines) < BATCH and self._queue.qsize() < BATCH - len(lines):
                self._stopping.wait(FLUSH_SECONDS)
            # Then it takes what is queued, up to TAKE_AT_MOST lines: batch lookups hand over a thousand
            # lines a call, and a transaction's own cost is then paid once for several calls.
            while len(lines) < TAKE_AT_MOST:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                lines.extend(item)
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

    def _write(self, lines: list[LedgerLine], batch: str) -> None:
        rows = [_row(line) for line in lines]  # a key from a caller's URL may hold anything
        # Core inserts, not ORM objects: a line is written for every interface call, and the
        # ORM's unit of work cost more per line than the rest of the writing together.
        entries, keys_table = AccessLogEntry.__table__, AccessLogKey.__table__
        now, prune = utcnow(), time.monotonic() >= self._prune_at
        with self.database.transaction() as session:
            session.execute(insert(LedgerBatch.__table__), [{"id": batch, "written_at": now}])
            if prune:  # marks are needed only while their batch may be tried again
                session.execute(delete(LedgerBatch).where(LedgerBatch.written_at < now - BATCH_MARKS_KEPT))
            if self.database.dialect == "sqlite":
                # One executemany, where INSERT ... RETURNING in the lines' order runs one statement per line on
                # SQLite. This transaction holds SQLite's write lock from its start (BEGIN IMMEDIATE), so the ids
                # after the largest one are the batch's own.
                first = session.execute(select(func.coalesce(func.max(entries.c.id), 0))).scalar_one() + 1
                ids = list(range(first, first + len(rows)))
                _insert_many(session, entries, [{"id": entry_id, **row} for entry_id, row in zip(ids, rows, strict=True)])
            else:
                ids = session.execute(insert(entries).returning(entries.c.id, sort_by_parameter_order=True), rows,
                                      execution_options=CLEANED).scalars().all()
            keys = [{"entry_id": entry_id, "key": key, "consent_id": consent_id}
                    for entry_id, line in zip(ids, lines, strict=True) for key, consent_id in _keys(line).items()]
            if keys and self.database.dialect == "sqlite":
                _insert_many(session, keys_table, keys)
            elif keys:
                session.execute(insert(keys_table), keys, execution_options=CLEANED)
            messages = [message_record(entry_id, row) for entry_id, row in zip(ids, rows, strict=True) if row["request_sha256"]]
            if messages:
                # The batch's live messages, signed on the audit chain in the same transaction: altering a
                # line's digests or times afterwards makes verify name this entry (check_signed_messages).
                audit.record(session, actor="ledger", action=MESSAGES_ACTION, subject=f"ledger-batch:{batch}",
                             details={"messages": messages})
            rollup = rollups.Rollup()
            for row in rows:
                rollup.add(SimpleNamespace(**row))
            rollups.apply(session, rollup)
        if prune:
            self._prune_at = time.monotonic() + BATCH_MARKS_PRUNED_EVERY


INSERT_VALUES_AT_MOST = 30_000  # bound values a statement (SQLite's own limit is 32,766 at the least)


def _insert_many(session, table, rows: list[dict]) -> None:
    """INSERT ``rows`` (dicts with the same keys, text already cleaned) into ``table`` on SQLite, in statements of
    many rows each (``INSERT ... VALUES (...), (...), ...``).

    Each value goes through its column type's own bind processor, as SQLAlchemy's insert would pass it; what is
    left out is the insert's per-row parameter building, which cost a third of the ledger writer's time. Many
    rows a statement, not an executemany: SQLite's driver lets go of the interpreter's lock around each
    statement's step, and a writer taking it back once per row waited behind the calls' threads each time,
    falling behind them under load.
    """
    connection = session.connection()
    dialect = connection.dialect
    names = list(rows[0])
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
    values = [list(row.values()) for row in rows]
    for index, process in enumerate(processors):
        if process is None:
            continue
        done: dict = {}  # a batch's lines mostly share their time: each distinct value processed once
        for row in values:
            value = row[index]
            if value is not None:
                found = done.get(value)
                row[index] = found if found is not None else done.setdefault(value, process(value))
    head = f"INSERT INTO {table.name} ({', '.join(dialect.identifier_preparer.quote(name) for name in names)}) VALUES "
    one = f"({', '.join('?' for _ in names)})"
    step = max(1, INSERT_VALUES_AT_MOST // len(names))
    for start in range(0, len(values), step):
        chunk = values[start:start + step]
        connection.exec_driver_sql(head + ", ".join([one] * len(chunk)), tuple(value for row in chunk for value in row),
                                   execution_options=CLEANED)


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
