"""Daily rollups of the access ledger, kept in step with it: what metrics read instead of every line.

Each ledger line adds, in the transaction that writes it, to three small tables:
``ledger_day_counts`` (per UTC day, one row per dataset, per department and per
service item: calls, rows, interface calls, their server errors, errors),
``ledger_day_latencies`` (per UTC day, interface calls per latency bucket) and
``grant_first_lines`` (when each grant's first line was written). Grouped one
dimension at a time, not by their product: a grant's lines are few per day, so
day x dataset x department x service item would be nearly as long as the ledger.

The ledger writer inserts its lines with Core and calls ``apply`` itself, in the same
transaction; any ORM write of an ``AccessLogEntry`` (the demo, tests) rolls up through
the ``after_flush`` hook below; bulk loads call ``rebuild``. The ledger is append-only,
so lines are never taken back out.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, and_, case, cast, delete, event, func, insert, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from exchange.models import AccessLogEntry, GrantFirstLine, LedgerDayCount, LedgerDayLatency

INTERFACE_KINDS = ("lookup", "query", "stream")
DIMENSIONS = {"dataset": "dataset_code", "department": "department_code", "service_item": "service_item"}
NO_SERVICE_ITEM = ""  # a key column cannot be NULL; lines without a service item are kept under ''
# Latency bucket b holds [LATENCY_BOUNDS[b], LATENCY_BOUNDS[b + 1]) ms (the first starts at -inf, the last ends
# at +inf): 2% wide, so a percentile's bucket holds about 2% of the values around it.
LATENCY_BOUNDS = [0.0, *(0.01 * 1.02**step for step in range(1050))]
COUNTS = ("calls", "rows", "interface_calls", "interface_server_errors", "errors")
READ_CHUNK = 50_000
UPSERT_VALUES_AT_MOST = 10_000  # bound values an upsert statement (SQLite's limit is 32,766, PostgreSQL's 65,535)


def is_error(status: int) -> bool:
    """A 5xx, or a 4xx other than 404 (a lookup that finds nothing has answered)."""
    return status >= 500 or (status >= 400 and status != 404)


def error_condition(status: Any) -> Any:
    """``is_error`` as SQL over a status column."""
    return or_(status >= 500, and_(status >= 400, status != 404))


def latency_bucket(latency_ms: float) -> int:
    return max(0, bisect.bisect_right(LATENCY_BOUNDS, latency_ms) - 1)


def bucket_range(bucket: int) -> tuple[float | None, float | None]:
    """The latencies bucket ``bucket`` holds, from (included) to (excluded); None where it is open."""
    lower = None if bucket == 0 else LATENCY_BOUNDS[bucket]
    upper = LATENCY_BOUNDS[bucket + 1] if bucket + 1 < len(LATENCY_BOUNDS) else None
    return lower, upper


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


class Rollup:
    """Ledger lines added up, ready to be added to the rollup tables."""

    def __init__(self) -> None:
        self.counts: dict[tuple[date, str, str], list[int]] = {}
        self.latencies: dict[tuple[date, int], int] = {}
        self.first_lines: dict[int, datetime] = {}

    def add(self, line: AccessLogEntry) -> None:
        """Add one ledger line."""
        self.add_alike(line, count=1, rows=line.rows or 0)

    def add_alike(self, line: Any, *, count: int, rows: int) -> None:
        """Add ``count`` ledger lines that are ``line`` but for their row counts, which sum to ``rows`` (a batch
        lookup's line per key): what one line adds, ``count`` times, added at once."""
        at = line.at if line.at.tzinfo else line.at.replace(tzinfo=UTC)
        day = utc_day(at)
        interface = line.kind in INTERFACE_KINDS
        added = (count, rows, count * interface, count * int(interface and line.status >= 500), count * int(is_error(line.status)))
        for dimension, column in DIMENSIONS.items():
            key = getattr(line, column)
            sums = self.counts.setdefault((day, dimension, NO_SERVICE_ITEM if key is None else key), [0] * len(COUNTS))
            for index, value in enumerate(added):
                sums[index] += value
        if interface and line.latency_ms is not None:
            bucket = (day, latency_bucket(line.latency_ms))
            self.latencies[bucket] = self.latencies.get(bucket, 0) + count
        if line.grant_id is not None:
            known = self.first_lines.get(line.grant_id)
            if known is None or at < known:
                self.first_lines[line.grant_id] = at

    def count_rows(self) -> list[dict[str, Any]]:
        # Sorted so that concurrent writers lock rows in the same order (no deadlock).
        return [{"day": day, "dimension": dimension, "key": key, **dict(zip(COUNTS, sums, strict=True))}
                for (day, dimension, key), sums in sorted(self.counts.items())]

    def latency_rows(self) -> list[dict[str, Any]]:
        return [{"day": day, "bucket": bucket, "calls": calls} for (day, bucket), calls in sorted(self.latencies.items())]

    def first_line_rows(self) -> list[dict[str, Any]]:
        return [{"grant_id": grant_id, "first_at": at} for grant_id, at in sorted(self.first_lines.items())]


def _upsert(session: Session, model: Any, rows: list[dict[str, Any]], *, keys: list[str], adds: Iterable[str] = (),
            earliest: Iterable[str] = ()) -> None:
    """Insert ``rows``; where one exists already, add to its ``adds`` columns and keep the earlier of ``earliest``."""
    if not rows:
        return
    table = model.__table__
    dialect = session.get_bind().dialect.name
    statement = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    new = statement.excluded
    changes = {name: table.c[name] + new[name] for name in adds}
    changes.update({name: case((new[name] < table.c[name], new[name]), else_=table.c[name]) for name in earliest})
    # One multi-row statement, not an executemany: SQLite's driver lets go of the interpreter's lock around each
    # row's step, and the ledger writer, busy calls beside it, waited to take it back once per row (a batch of
    # interface calls spreads over many latency buckets). The rows' keys are distinct (a Rollup sums by key), so
    # no statement touches a row twice (PostgreSQL refuses that).
    step = max(1, UPSERT_VALUES_AT_MOST // len(rows[0]))
    connection = session.connection()
    for start in range(0, len(rows), step):
        connection.execute(statement.values(rows[start:start + step]).on_conflict_do_update(index_elements=keys, set_=changes))


def apply(session: Session, rollup: Rollup) -> None:
    """Add ``rollup`` to the rollup tables, in the session's transaction."""
    _upsert(session, LedgerDayCount, rollup.count_rows(), keys=["day", "dimension", "key"], adds=COUNTS)
    _upsert(session, LedgerDayLatency, rollup.latency_rows(), keys=["day", "bucket"], adds=["calls"])
    _upsert(session, GrantFirstLine, rollup.first_line_rows(), keys=["grant_id"], earliest=["first_at"])


@event.listens_for(Session, "after_flush")
def _roll_up_new_lines(session: Session, _flush_context: Any) -> None:
    lines = [instance for instance in session.new if isinstance(instance, AccessLogEntry)]
    if lines:
        rollup = Rollup()
        for line in lines:
            rollup.add(line)
        apply(session, rollup)


def _utc_day_of(session: Session, column: Any) -> Any:
    """The UTC day of a timestamp column, computed by the database, as a date."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite keeps UTC as text: its date is the text's first ten characters


def rebuild(session: Session) -> None:
    """Recompute the rollups from every ledger line (after a bulk load, and to back-fill them once).

    Counts and first lines are grouped by the database; latency buckets are placed here,
    with the bounds the writer uses, reading only the interface calls' time and latency.
    """
    for model in (LedgerDayCount, LedgerDayLatency, GrantFirstLine):
        session.execute(delete(model))
    line = AccessLogEntry
    day = _utc_day_of(session, line.at)
    interface = line.kind.in_(INTERFACE_KINDS)
    for dimension, column in DIMENSIONS.items():
        key = func.coalesce(getattr(line, column), NO_SERVICE_ITEM)
        sums = select(
            day, literal(dimension), key, func.count(), func.coalesce(func.sum(line.rows), 0),
            func.sum(case((interface, 1), else_=0)), func.sum(case((and_(interface, line.status >= 500), 1), else_=0)),
            func.sum(case((error_condition(line.status), 1), else_=0)),
        ).group_by(day, key)
        session.execute(insert(LedgerDayCount).from_select(["day", "dimension", "key", *COUNTS], sums))
    first = select(line.grant_id, func.min(line.at)).where(line.grant_id.is_not(None)).group_by(line.grant_id)
    session.execute(insert(GrantFirstLine).from_select(["grant_id", "first_at"], first))
    latencies: dict[tuple[date, int], int] = {}
    measured = select(line.id, line.at, line.latency_ms).where(interface, line.latency_ms.is_not(None)).order_by(line.id)
    after = None
    while True:  # in pages by id, so memory holds the counts, not the ledger
        query = measured if after is None else measured.where(line.id > after)
        page = session.execute(query.limit(READ_CHUNK)).all()
        for _, at, latency in page:
            bucket = (utc_day(at), latency_bucket(latency))
            latencies[bucket] = latencies.get(bucket, 0) + 1
        if len(page) < READ_CHUNK:
            break
        after = page[-1].id
    rows = [{"day": day, "bucket": bucket, "calls": calls} for (day, bucket), calls in sorted(latencies.items())]
    for start in range(0, len(rows), READ_CHUNK):
        session.execute(insert(LedgerDayLatency), rows[start:start + READ_CHUNK])
    session.flush()
