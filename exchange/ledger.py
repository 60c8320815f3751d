"""The access ledger writer: calls hand their line to a queue and go on; a thread writes in batches.

A call never waits on the ledger's write. Lines are committed within
``FLUSH_SECONDS`` (or sooner when ``BATCH`` accumulate); ``flush()`` waits for
everything queued so far (shutdown and tests use it). What a hard kill of the
process takes with it is at most the last fraction of a second of lines.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from sqlalchemy import insert

from exchange import rollups
from exchange.models import AccessLogEntry, AccessLogKey
from govshare.db import Database, utcnow

log = logging.getLogger("govshare.ledger")
BATCH = 500
FLUSH_SECONDS = 0.2
MAX_KEYS_PER_LINE = 1000
KEY_LENGTH = AccessLogKey.__table__.c.key.type.length


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


class LedgerWriter:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._queue: queue.Queue[LedgerLine | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="govshare-ledger", daemon=True)
            self._thread.start()

    def record(self, line: LedgerLine) -> None:
        """Queue one line; returns at once."""
        self._queue.put(line)

    def flush(self) -> None:
        """Block until every line queued before this call is committed."""
        if self._thread is None:
            self._drain_now()
            return
        self._queue.join()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        self._drain_now()

    def _drain_now(self) -> None:
        lines = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                lines.append(line)
            self._queue.task_done()
        if lines:
            self._write_all(lines)

    def _write_all(self, lines: list[LedgerLine]) -> None:
        """Write a batch; should it fail, each line alone, so one bad line does not take the others with it."""
        try:
            self._write(lines)
            return
        except Exception:
            log.exception("could not write %d ledger lines at once; writing them one by one", len(lines))
        for line in lines:
            try:
                self._write([line])
            except Exception as problem:  # keep serving; the loss is in the log
                log.error("lost a ledger line (%s): %r", problem, line)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.task_done()
                return
            # A batch gathers for FLUSH_SECONDS from its first line (or until BATCH lines): the
            # cost of writing it (a transaction, the rollup upserts, a commit) is mostly per
            # batch, and under load a batch that ended at the first 10 ms gap held a few lines.
            lines, stop = [first], False
            deadline = time.monotonic() + FLUSH_SECONDS
            while len(lines) < BATCH:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    line = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
                if line is None:
                    stop = True
                    break
                lines.append(line)
            try:
                self._write_all(lines)
            finally:
                for _ in range(len(lines) + (1 if stop else 0)):
                    self._queue.task_done()
            if stop:
                return

    def _write(self, lines: list[LedgerLine]) -> None:
        lines = [cleaned(line) for line in lines]  # a key from a caller's URL may hold anything
        rows = [
            {"at": line.at, "kind": line.kind, "client_id": line.client_id, "department_code": line.department,
             "dataset_code": line.dataset, "grant_id": line.grant_id, "application_id": line.application_id,
             "service_item": line.service_item, "basis": line.basis, "rows": line.rows, "status": line.status,
             "latency_ms": line.latency_ms, "extract_id": line.extract_id}
            for line in lines
        ]
        # Core inserts, not ORM objects: a line is written for every interface call, and the
        # ORM's unit of work cost more per line than the rest of the writing together.
        entries, keys_table = AccessLogEntry.__table__, AccessLogKey.__table__
        with self.database.transaction() as session:
            ids = session.execute(insert(entries).returning(entries.c.id, sort_by_parameter_order=True), rows).scalars().all()
            keys = [{"entry_id": entry_id, "key": key}
                    for entry_id, line in zip(ids, lines, strict=True) for key in dict.fromkeys(line.keys)]
            if keys:
                session.execute(insert(keys_table), keys)
            rollup = rollups.Rollup()
            for row in rows:
                rollup.add(SimpleNamespace(**row))
            rollups.apply(session, rollup)


def _text(value: str | None, length: int | None = None) -> str | None:
    """``value`` as every record store accepts it: no NUL, no lone surrogate, at most ``length`` characters."""
    if value is None:
        return None
    value = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return value[:length] if length else value


def cleaned(line: LedgerLine) -> LedgerLine:
    """The line with its text made storable: cut to its column's length, without NUL or lone surrogates."""
    columns = AccessLogEntry.__table__.c
    return dataclasses.replace(
        line,
        kind=_text(line.kind, columns.kind.type.length), client_id=_text(line.client_id, columns.client_id.type.length),
        department=_text(line.department, columns.department_code.type.length),
        dataset=_text(line.dataset, columns.dataset_code.type.length),
        service_item=_text(line.service_item, columns.service_item.type.length), basis=_text(line.basis),
        extract_id=_text(line.extract_id, columns.extract_id.type.length),
        keys=[_text(key, KEY_LENGTH) for key in line.keys[:MAX_KEYS_PER_LINE]],
    )
