"""Supply and demand metrics over the records the exchange keeps.

Metrics are SQL aggregates over ``applications``, ``grants``, ``dataset_versions``,
``access_log``, ``ratings`` and ``corrections``; percentiles are nearest-rank (the
smallest value with at least p% of the values at or below it), found with one
window query that returns only the rows at those ranks, or, over the whole ledger,
with the daily latency histograms that say which few values to fetch. Ledger
counts come from the daily rollups (``exchange.rollups``) for the period's whole
UTC days and from the lines only for part-days at its edges. Nothing here writes
to another domain's tables.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, case, cast, extract, func, literal_column, or_, select, text
from sqlalchemy.orm import Session

from approvals import service as approvals
from approvals.models import Application, Grant
from directory.models import Dataset, DatasetVersion
from evaluation import disclosures, live_services
from evaluation.models import Correction, Rating
from evaluation.period import Period
from evaluation.ratings import SCORES
from exchange import rollups
from exchange.models import AccessLogEntry, GrantFirstLine, LedgerDayCount, LedgerDayLatency
from govshare.db import utcnow

# Days a promised update frequency allows between two versions; realtime and irregular are not judged.
PROMISED_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}
PERCENTS = (50, 90, 99)
GROUPINGS = ("dataset", "department", "service_item", "provider")  # provider: the department providing the dataset
REASON_CODES = tuple(code.value for code in approvals.ReasonCode)
LIST_LENGTH = 10
PROMOTE_MIN_DECISIONS = 3
PROMOTE_MIN_PASS_RATE = 0.8


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def seconds_between(session: Session, start: Any, end: Any) -> Any:
    """Seconds from ``start`` to ``end``, computed by the database."""
    if _dialect(session) == "postgresql":
        return cast(extract("epoch", end - start), Float)
    # julianday is a double of days: round away its last bits (to the millisecond).
    return func.round((func.julianday(end) - func.julianday(start)) * 86400.0, 3)


def utc_day_of(session: Session, column: Any) -> Any:
    """The UTC calendar day of a timestamp, as text YYYY-MM-DD."""
    if _dialect(session) == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.date(column)


def _scan_column(session: Session, column: Any, period: Period) -> Any:
    """``column`` as the period filter should use it: on SQLite, hidden from its index when the period covers most lines.

    SQLite's planner takes an index for any range; reading most of a big table through
    it costs a random row read per line, several times a plain scan.
    """
    if _dialect(session) != "sqlite":
        return column
    first, last = session.execute(select(func.min(column), func.max(column))).one()
    if first is None:
        return column
    first, last = (value if isinstance(value, datetime) else datetime.fromisoformat(value) for value in (first, last))
    first, last = (value.replace(tzinfo=period.start.tzinfo) if value.tzinfo is None else value for value in (first, last))
    span = (last - first).total_seconds() or 1
    covered = (min(last, period.end) - max(first, period.start)).total_seconds()
    return func.coalesce(column, column) if covered / span > 0.2 else column


def _group_key(by: str | None, columns: dict[str, Any]) -> Any:
    """The column a family of records is grouped by, or a constant for the overall figure."""
    if by is None:
        return literal_column("0")
    return columns.get(by)


def _grouped_rows(session: Session, query: Any, by: str | None, key: Any) -> list[Any]:
    return list(session.execute(query.group_by(key) if by is not None else query))


def _distribution(session: Session, source: Any, *, grouped: bool) -> dict[Any, dict[str, Any]]:
    """Count, average and nearest-rank p50/p90/p99 of ``source.c.v`` per ``source.c.k``, in one pass over ``source``."""
    key = source.c.k
    partition = {"partition_by": key} if grouped else {}
    ranked = select(
        key.label("k"), source.c.v.label("v"),
        func.row_number().over(order_by=source.c.v, **partition).label("rn"),
        func.count().over(**partition).label("n"),
        func.avg(source.c.v).over(**partition).label("average"),
    ).subquery()
    # Rank r holds percentile p when it is the smallest with r * 100 >= p * n.
    at_a_percentile = or_(*[
        and_(ranked.c.rn * 100 >= percent * ranked.c.n, (ranked.c.rn - 1) * 100 < percent * ranked.c.n) for percent in PERCENTS
    ])
    found: dict[Any, dict[str, Any]] = {}
    rows = select(ranked.c.k, ranked.c.v, ranked.c.rn, ranked.c.n, ranked.c.average).where(at_a_percentile)
    for k, value, rank, count, average in session.execute(rows):
        entry = found.setdefault(k if grouped else None, {"count": count, "avg": float(average)})
        for percent in PERCENTS:
            if rank * 100 >= percent * count and (rank - 1) * 100 < percent * count:
                entry[f"p{percent}"] = float(value)
    return found


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --- metrics: one family each -------------------------------------------------------------------------

APPLICATION_KEYS = {"dataset": Application.dataset_code, "department": Application.department_code,
                    "service_item": Application.service_item, "provider": Application.provider_department}
# Ledger lines and ratings name the dataset only: their provider is the dataset's department (see _provider_join).
LEDGER_KEYS = {"dataset": AccessLogEntry.dataset_code, "department": AccessLogEntry.department_code,
               "service_item": AccessLogEntry.service_item, "provider": Dataset.department_code}
RATING_KEYS = {"dataset": Rating.dataset_code, "department": Rating.applicant_department, "service_item": Rating.service_item,
               "provider": Dataset.department_code}
CORRECTION_KEYS = {"dataset": Correction.dataset_code, "department": Correction.department_code,
                   "provider": Correction.provider_department}


def _provider_join(by: str | None, dataset_code: Any) -> list[Any]:
    """Grouped by provider, records that name only a dataset are joined to it for its department."""
    return [Dataset.code == dataset_code] if by == "provider" else []


def _only(columns: dict[str, Any], by: str | None, only: str | None) -> list[Any]:
    return [columns[by] == only] if by is not None and only is not None and by in columns else []


def _demand(
    session: Session, period: Period, by: str | None, only: str | None, counted_by_dataset: list[dict[str, Any]] | None = None,
) -> dict[Any, dict[str, Any]]:
    if by is None and counted_by_dataset is not None:
        filed = sum(entry["applications_filed"] for entry in counted_by_dataset)
        return {None: {"applications_filed": filed}} if filed else {}
    key = _group_key(by, APPLICATION_KEYS)
    filed = select(key, func.count()).where(
        Application.filed_at >= period.start, Application.filed_at < period.end, *_only(APPLICATION_KEYS, by, only)
    )
    return {(k if by else None): {"applications_filed": count} for k, count in _grouped_rows(session, filed, by, key)}


def _decisions(
    session: Session, period: Period, by: str | None, only: str | None, distributions: bool = True,
    counted_by_dataset: list[dict[str, Any]] | None = None,
) -> dict[Any, dict[str, Any]]:
    """Applications decided (approved or rejected) within the period, their reasons and review durations."""
    key = _group_key(by, APPLICATION_KEYS)
    decided = [
        Application.decided_at >= period.start, Application.decided_at < period.end,
        Application.status.in_([approvals.Status.approved.value, approvals.Status.rejected.value]),
        *_only(APPLICATION_KEYS, by, only),
    ]
    out: dict[Any, dict[str, Any]] = {}

    def add(k: Any, approved: int, rejected: int, reasons: dict[str, int]) -> None:
        entry = out.setdefault(k, {"approved": 0, "rejected": 0, "rejection_reasons": {}})
        entry["approved"] += approved
        entry["rejected"] += rejected
        for reason, count in reasons.items():
            entry["rejection_reasons"][reason] = entry["rejection_reasons"].get(reason, 0) + count

    if by is None and counted_by_dataset is not None:
        for counted in counted_by_dataset:
            if counted["approved"] or counted["rejected"]:
                add(None, counted["approved"], counted["rejected"], counted["rejection_reasons"])
    else:
        counts = select(key, Application.status, Application.reason_code, func.count()).where(*decided)
        counts = counts.group_by(Application.status, Application.reason_code, *([key] if by else []))
        for k, status, reason, count in session.execute(counts):
            if status == approvals.Status.approved:
                add(k if by else None, count, 0, {})
            else:
                add(k if by else None, 0, count, {reason or "other": count})
    if not distributions:
        return out
    seconds = seconds_between(session, Application.filed_at, Application.decided_at)
    measured = [*decided, Application.filed_at.is_not(None)]
    if by is None:
        found = {None: _percentiles_by_histogram(session, seconds, measured, bucket_width=3600)}
    else:
        found = _distribution(session, select(key.label("k"), seconds.label("v")).where(*measured).subquery(), grouped=True)
    for k, stats in found.items():
        if stats:
            out[k].update(review_seconds_avg=stats["avg"], review_seconds_median=stats.get("p50"), review_seconds_p90=stats.get("p90"))
    return out


def _first_deliveries(session: Session, period: Period, by: str | None, only: str | None) -> dict[Any, dict[str, Any]]:
    """For grants created in the period: how long from approval to the first line on the ledger."""
    keys = {"dataset": Grant.dataset_code, "department": Grant.department_code, "service_item": Application.service_item,
            "provider": Application.provider_department}
    key = _group_key(by, keys)
    # The earliest of all a grant's lines, kept as they are written: lines come after their grant, so for a grant
    # made in the period it is also its first line in the period.
    seconds = seconds_between(session, Grant.created_at, GrantFirstLine.first_at)
    where = [GrantFirstLine.grant_id == Grant.id, Grant.created_at >= period.start, Grant.created_at < period.end,
             *_only(keys, by, only)]
    if by in ("service_item", "provider"):
        where.append(Application.id == Grant.application_id)
    if by is None:
        found = {None: _percentiles_by_histogram(session, seconds, where, bucket_width=3600)}
    else:
        found = _distribution(session, select(key.label("k"), seconds.label("v")).where(*where).subquery(), grouped=True)
    return {
        k: {"grants_delivered": stats["count"], "first_delivery_seconds_avg": stats["avg"],
            "first_delivery_seconds_median": stats.get("p50")}
        for k, stats in found.items() if stats
    }


def _percentiles_by_histogram(session: Session, value: Any, where: list[Any], *, bucket_width: float) -> dict[str, Any]:
    """Count, average and nearest-rank p50/p90/p99 of ``value``: two passes and no sort of all the values.

    The first counts the values per bucket (``bucket_width`` wide); the second fetches only
    the values of the buckets where the wanted ranks fall, which are ordered here. Exact:
    buckets only narrow down where to look. (A window over all rows sorts them all: on
    SQLite about twice the work for the tens of thousands of decisions of a year.)
    """
    scaled = value / bucket_width
    bucket = func.floor(scaled) if _dialect(session) == "postgresql" else cast(scaled, Integer)
    counts: dict[int, int] = {}
    summed = 0.0
    for b, n, part in session.execute(select(bucket, func.count(), func.sum(value)).where(*where).group_by(bucket)):
        if b is not None:
            counts[int(b)] = n
            summed += float(part)
    total = sum(counts.values())
    if not total:
        return {}
    wanted = _ranks_in_buckets(counts, total)
    values: dict[int, list[float]] = {b: [] for b, _ in wanted.values()}
    for b, v in session.execute(select(bucket, value).where(*where, bucket.in_(sorted(values)))):
        values[int(b)].append(float(v))
    for held in values.values():
        held.sort()
    return {"count": total, "avg": summed / total, **{f"p{percent}": values[b][rank - 1] for percent, (b, rank) in wanted.items()}}


def _ranks_in_buckets(counts: dict[int, int], total: int) -> dict[int, tuple[int, int]]:
    """For each percentile, the bucket its nearest rank falls in and the rank within that bucket (from 1)."""
    wanted: dict[int, tuple[int, int]] = {}
    ordered = sorted(counts.items())
    for percent in PERCENTS:
        rank, below = (percent * total + 99) // 100, 0
        for bucket, n in ordered:
            if below + n >= rank:
                wanted[percent] = (bucket, rank - below)
                break
            below += n
    return wanted


def _ledger_entry(calls: int, rows: int, interface_calls: int, server_errors: int, errors: int) -> dict[str, Any]:
    return {
        "calls": calls, "rows": int(rows), "interface_calls": int(interface_calls),
        "interface_server_errors": int(server_errors),
        "availability": None if not interface_calls else 1 - server_errors / interface_calls,
        "errors": int(errors), "error_rate": errors / calls,
    }


def split_days(period: Period) -> tuple[date, date, list[tuple[datetime, datetime]]]:
    """The UTC days the period covers whole (first, and the day after the last) and the part-days at its edges.

    Whole days are read from the ledger's daily rollups; only the edges from its lines.
    """
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    first_day = start.date() if start.time() == time(0) else start.date() + timedelta(days=1)
    end_day = end.date()
    if first_day >= end_day:
        return first_day, first_day, [(start, end)] if start < end else []
    edges = []
    day_start = datetime.combine(first_day, time(0), tzinfo=UTC)
    day_end = datetime.combine(end_day, time(0), tzinfo=UTC)
    if start < day_start:
        edges.append((start, day_start))
    if day_end < end:
        edges.append((day_end, end))
    return first_day, end_day, edges


def _rolled_up_key(by: str | None, key: str) -> Any:
    return None if by == "service_item" and key == rollups.NO_SERVICE_ITEM else key


def _ledger_counts(session: Session, period: Period, by: str | None, only: str | None) -> dict[Any, list[int]]:
    """Calls, rows, interface calls, their server errors and errors, per group: rollups for whole days, lines for the rest."""
    first_day, end_day, edges = split_days(period)
    found: dict[Any, list[int]] = {}

    def add(key: Any, counts: Any) -> None:
        sums = found.setdefault(key, [0] * len(rollups.COUNTS))
        for index, value in enumerate(counts):
            sums[index] += int(value or 0)

    if first_day < end_day:
        sums = [func.sum(getattr(LedgerDayCount, name)) for name in rollups.COUNTS]
        rolled_key = Dataset.department_code if by == "provider" else LedgerDayCount.key
        query = select(rolled_key if by else literal_column("0"), *sums).where(
            LedgerDayCount.dimension == (by if by in rollups.DIMENSIONS else "dataset"),
            LedgerDayCount.day >= first_day, LedgerDayCount.day < end_day, *_provider_join(by, LedgerDayCount.key),
        )
        if by is not None and only is not None:
            query = query.where(rolled_key == only)
        for k, *counts in session.execute(query.group_by(rolled_key) if by else query):
            if counts[0]:
                add(_rolled_up_key(by, k) if by else None, counts)
    key = _group_key(by, LEDGER_KEYS)
    interface = AccessLogEntry.kind.in_(rollups.INTERFACE_KINDS)
    for lower, upper in edges:
        totals = select(
            key, func.count(), func.coalesce(func.sum(AccessLogEntry.rows), 0),
            func.sum(case((interface, 1), else_=0)), func.sum(case((and_(interface, AccessLogEntry.status >= 500), 1), else_=0)),
            func.sum(case((rollups.error_condition(AccessLogEntry.status), 1), else_=0)),
        ).where(AccessLogEntry.at >= lower, AccessLogEntry.at < upper, *_only(LEDGER_KEYS, by, only),
                *_provider_join(by, AccessLogEntry.dataset_code))
        for k, *counts in _grouped_rows(session, totals, by, key):
            if counts[0]:
                add(k if by else None, counts)
    return found


def _ledger(
    session: Session, period: Period, by: str | None, only: str | None, distributions: bool = True,
    counted_by_dataset: list[dict[str, Any]] | None = None,
) -> dict[Any, dict[str, Any]]:
    """Calls, rows, availability, errors and latency from the access ledger lines of the period.

    Overall counts are the sums of ``counted_by_dataset`` when given (every line names its
    dataset), which spares reading them again.
    """
    out: dict[Any, dict[str, Any]] = {}
    if by is None and counted_by_dataset is not None:
        sums = [sum(entry[name] for entry in counted_by_dataset) for name in rollups.COUNTS]
        if sums[0]:
            out[None] = _ledger_entry(*sums)
    else:
        out = {k: _ledger_entry(*counts) for k, counts in _ledger_counts(session, period, by, only).items()}
    if not distributions:
        return out
    if by is None:
        stats = _latency_percentiles(session, period)
        if stats and None in out:
            out[None].update({f"latency_ms_p{percent}": stats[percent] for percent in PERCENTS})
        return out
    key = _group_key(by, LEDGER_KEYS)
    at = _scan_column(session, AccessLogEntry.at, period) if only is None else AccessLogEntry.at
    if at is not AccessLogEntry.at:
        key = func.coalesce(key, key)  # a sort of the scanned lines beats walking the key's index
    measured = [at >= period.start, at < period.end, *_only(LEDGER_KEYS, by, only), *_provider_join(by, AccessLogEntry.dataset_code),
                AccessLogEntry.kind.in_(rollups.INTERFACE_KINDS), AccessLogEntry.latency_ms.is_not(None)]
    latencies = select(key.label("k"), AccessLogEntry.latency_ms.label("v")).where(*measured).subquery()
    for k, stats in _distribution(session, latencies, grouped=True).items():
        out[k].update({f"latency_ms_p{percent}": stats.get(f"p{percent}") for percent in PERCENTS})
    return out


def _latency_percentiles(session: Session, period: Period) -> dict[int, float]:
    """Nearest-rank p50/p90/p99 of the period's interface latencies, exact, without reading every line.

    The daily latency histograms (and the edges' lines) say how many values each bucket
    holds, hence which bucket each wanted rank falls in; only those buckets' values are
    then read, through the index on latency, and ordered here.
    """
    first_day, end_day, edges = split_days(period)
    counts: dict[int, int] = {}
    if first_day < end_day:
        histogram = select(LedgerDayLatency.bucket, func.sum(LedgerDayLatency.calls)).where(
            LedgerDayLatency.day >= first_day, LedgerDayLatency.day < end_day,
        ).group_by(LedgerDayLatency.bucket)
        for bucket, calls in session.execute(histogram):
            counts[bucket] = counts.get(bucket, 0) + int(calls)
    interface = [AccessLogEntry.kind.in_(rollups.INTERFACE_KINDS), AccessLogEntry.latency_ms.is_not(None)]
    for lower, upper in edges:
        for (latency,) in session.execute(
            select(AccessLogEntry.latency_ms).where(AccessLogEntry.at >= lower, AccessLogEntry.at < upper, *interface)
        ):
            bucket = rollups.latency_bucket(latency)
            counts[bucket] = counts.get(bucket, 0) + 1
    total = sum(counts.values())
    if not total:
        return {}
    wanted = _ranks_in_buckets(counts, total)
    values: dict[int, list[float]] = {}
    # SQLite would rather walk the index on time, which for a long period is every line: hide time from it.
    at = func.coalesce(AccessLogEntry.at, AccessLogEntry.at) if _dialect(session) == "sqlite" else AccessLogEntry.at
    for bucket in sorted({bucket for bucket, _ in wanted.values()}):
        lower, upper = rollups.bucket_range(bucket)
        query = select(AccessLogEntry.latency_ms).where(at >= period.start, at < period.end, *interface)
        if lower is not None:
            query = query.where(AccessLogEntry.latency_ms >= lower)
        if upper is not None:
            query = query.where(AccessLogEntry.latency_ms < upper)
        values[bucket] = sorted(value for (value,) in session.execute(query))
    return {percent: values[bucket][rank - 1] for percent, (bucket, rank) in wanted.items()}


def _ratings(session: Session, period: Period, by: str | None, only: str | None) -> dict[Any, dict[str, Any]]:
    key = _group_key(by, RATING_KEYS)
    query = select(key, func.count(), *[func.avg(getattr(Rating, name)) for name in SCORES]).where(
        Rating.created_at >= period.start, Rating.created_at < period.end, *_only(RATING_KEYS, by, only),
        *_provider_join(by, Rating.dataset_code),
    )
    out = {}
    for k, count, *averages in _grouped_rows(session, query, by, key):
        if count:
            out[k if by else None] = {"ratings": count, **{
                f"rating_{name}": None if average is None else float(average) for name, average in zip(SCORES, averages)
            }}
    return out


def _corrections(session: Session, period: Period, by: str | None, only: str | None, now: datetime) -> dict[Any, dict[str, Any]]:
    """Correction requests filed in the period; those open, and overdue, now."""
    if by is not None and by not in CORRECTION_KEYS:
        return {}
    key = _group_key(by, CORRECTION_KEYS)
    in_period = and_(Correction.filed_at >= period.start, Correction.filed_at < period.end)
    is_open = Correction.status == "open"
    query = select(
        key, func.sum(case((in_period, 1), else_=0)), func.sum(case((is_open, 1), else_=0)),
        func.sum(case((and_(is_open, Correction.due_at < now), 1), else_=0)),
    ).where(or_(in_period, is_open), *_only(CORRECTION_KEYS, by, only))
    return {
        (k if by else None): {"corrections_filed": int(filed or 0), "corrections_open": int(open_ or 0),
                              "corrections_overdue": int(overdue or 0)}
        for k, filed, open_, overdue in _grouped_rows(session, query, by, key)
        if filed or open_
    }


def freshness(session: Session, *, as_of: datetime, dataset: str | None = None) -> dict[str, dict[str, Any]]:
    """Per active dataset: the promised update frequency, its newest version by ``as_of`` and whether that is fresh enough."""
    latest = select(DatasetVersion.dataset_id, func.max(DatasetVersion.created_at).label("last_at")).where(
        DatasetVersion.created_at <= as_of
    ).group_by(DatasetVersion.dataset_id).subquery()
    query = select(Dataset.code, Dataset.update_frequency, latest.c.last_at).outerjoin(
        latest, latest.c.dataset_id == Dataset.id
    ).where(Dataset.status == "active", Dataset.created_at <= as_of)
    if dataset is not None:
        query = query.where(Dataset.code == dataset)
    out = {}
    for code, frequency, last_at in session.execute(query):
        if isinstance(last_at, str):  # a bare aggregate over a SQLite column comes back as text
            last_at = datetime.fromisoformat(last_at)
        if last_at is not None and last_at.tzinfo is None:
            last_at = last_at.replace(tzinfo=as_of.tzinfo)
        promised = PROMISED_DAYS.get(frequency)
        age_days = (as_of - last_at).total_seconds() / 86400 if last_at else None
        fresh = None if promised is None else (age_days is not None and age_days <= promised)
        out[code] = {"update_frequency": frequency, "promised_days": promised,
                     "last_version_at": last_at.isoformat() if last_at else None, "age_days": age_days, "fresh": fresh}
    return out


# --- metrics: what clients and the dashboard read -------------------------------------------------------


def _empty(by: str | None, key: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {by: key} if by else {}
    entry.update(
        applications_filed=0, approved=0, rejected=0, decided=0, pass_rate=None, rejection_rate=None, rejection_reasons={},
        review_seconds_avg=None, review_seconds_median=None, review_seconds_p90=None,
        grants_delivered=0, first_delivery_seconds_avg=None, first_delivery_seconds_median=None,
        calls=0, rows=0, interface_calls=0, interface_server_errors=0, availability=None, errors=0, error_rate=None,
        latency_ms_p50=None, latency_ms_p90=None, latency_ms_p99=None,
        ratings=0, **{f"rating_{name}": None for name in SCORES},
        corrections_filed=0, corrections_open=0, corrections_overdue=0,
    )
    return entry


def group_metrics(
    session: Session, *, period: Period, by: str | None, only: str | None = None, now: datetime | None = None,
    distributions: bool = True, counted_by_dataset: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every metric for the period, overall (``by`` None) or per dataset, department, service item or providing department.

    ``distributions=False`` leaves out durations and latencies (averages, percentiles, first
    deliveries): what the manager's lists need is counted without them, much faster.
    ``counted_by_dataset`` (the per-dataset entries of the same period) gives the overall
    application, decision and ledger counts without counting again.
    """
    if by is not None and by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}")
    now = now or utcnow()
    if _dialect(session) == "postgresql":
        # Grouping a million ledger lines by grant spills to disk at the default 4 MB; for this transaction only.
        session.execute(text("SET LOCAL work_mem = '64MB'"))
    families = [
        _demand(session, period, by, only, counted_by_dataset),
        _decisions(session, period, by, only, distributions, counted_by_dataset),
        _first_deliveries(session, period, by, only) if distributions else {},
        _ledger(session, period, by, only, distributions, counted_by_dataset),
        _ratings(session, period, by, only), _corrections(session, period, by, only, now),
    ]
    judges_freshness = by in (None, "dataset", "provider")
    fresh = freshness(session, as_of=min(period.end, now), dataset=only if by == "dataset" else None) if judges_freshness else {}
    keys: set[Any] = set()
    for family in families:
        keys.update(family.keys())
    if by == "dataset":
        keys.update(fresh)
    fresh_by_provider: dict[str, list[dict[str, Any]]] = {}
    if by == "provider":
        for code, provider in session.execute(select(Dataset.code, Dataset.department_code).where(Dataset.status == "active")):
            if code in fresh:
                fresh_by_provider.setdefault(provider, []).append(fresh[code])
        keys.update(fresh_by_provider)
    if by is None:
        keys = {None}
    if only is not None:
        keys = {only} if by is not None else keys
    entries = []
    for key in sorted(keys, key=lambda value: (value is None, str(value))):
        entry = _empty(by, key)
        for family in families:
            entry.update(family.get(key, {}))
        entry["decided"] = entry["approved"] + entry["rejected"]
        entry["pass_rate"] = _ratio(entry["approved"], entry["decided"])
        entry["rejection_rate"] = _ratio(entry["rejected"], entry["decided"])
        if by == "dataset":
            entry.update(fresh.get(key) or {"update_frequency": None, "promised_days": None, "last_version_at": None,
                                             "age_days": None, "fresh": None})
        elif by == "provider":
            entry.update(_freshness_counts(fresh_by_provider.get(key, [])))
        entries.append(entry)
    if by is None:
        entries[0].update(_freshness_counts(list(fresh.values())))
    return entries


def _freshness_counts(datasets: list[dict[str, Any]]) -> dict[str, int]:
    judged = [value["fresh"] for value in datasets if value["fresh"] is not None]
    return {"datasets_fresh": sum(judged), "datasets_stale": len(judged) - sum(judged), "datasets_not_judged": len(datasets) - len(judged)}


def problems_of(entry: dict[str, Any]) -> list[tuple[str, int]]:
    """A dataset's supply problems in the period, each with its weight (see ``supply_problems``)."""
    found = []
    not_shareable = entry["rejection_reasons"].get(approvals.ReasonCode.data_not_shareable, 0)
    if not_shareable:
        found.append((f"{not_shareable} rejected as data not shareable", not_shareable))
    if entry.get("fresh") is False:
        found.append(("stale data" if entry["last_version_at"] else "no data loaded", 3))
    if entry["availability"] is not None and entry["availability"] < 0.99:
        found.append((f"interface availability {entry['availability']:.1%}", 3))
    if entry["error_rate"] is not None and entry["error_rate"] > 0.05:
        found.append((f"error rate {entry['error_rate']:.1%}", 3))
    if entry["rating_data_quality"] is not None and entry["rating_data_quality"] < 3:
        found.append((f"data quality rated {entry['rating_data_quality']:.1f} of 5", 3))
    if entry["corrections_open"]:
        found.append((f"{entry['corrections_open']} open correction request(s)", entry["corrections_open"]))
    if entry["corrections_overdue"]:
        found.append((f"{entry['corrections_overdue']} overdue correction request(s)", entry["corrections_overdue"]))
    return found


def manager_lists(datasets: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """What a manager acts on, from the per-dataset metrics: most demanded, supply problems, to promote (no problem, good results)."""
    demanded = sorted((entry for entry in datasets if entry["applications_filed"]), key=lambda e: (-e["applications_filed"], e["dataset"]))
    problems = []
    for entry in datasets:
        found = problems_of(entry)
        if found:
            problems.append({"dataset": entry["dataset"], "points": sum(weight for _, weight in found),
                             "problems": [words for words, _ in found]})
    problems.sort(key=lambda item: (-item["points"], item["dataset"]))
    promote = sorted(
        (entry for entry in datasets
         if entry["decided"] >= PROMOTE_MIN_DECISIONS and entry["pass_rate"] >= PROMOTE_MIN_PASS_RATE
         and not problems_of(entry)),
        key=lambda e: (-e["pass_rate"], -e["approved"], e["dataset"]),
    )
    return {
        "most_demanded": [{"dataset": e["dataset"], "applications_filed": e["applications_filed"]} for e in demanded[:LIST_LENGTH]],
        "supply_problems": problems[:LIST_LENGTH],
        "to_promote": [{"dataset": e["dataset"], "pass_rate": e["pass_rate"], "approved": e["approved"], "decided": e["decided"]}
                       for e in promote[:LIST_LENGTH]],
    }


def waiting_longest(session: Session, *, now: datetime | None = None, limit: int = LIST_LENGTH) -> list[dict[str, Any]]:
    """Open applications, longest waiting first."""
    now = now or utcnow()
    return [
        {"id": application.id, "dataset": application.dataset_code, "department": application.department_code,
         "service_item": application.service_item, "status": application.status,
         "filed_at": application.filed_at.isoformat() if application.filed_at else None,
         "waiting_seconds": (now - application.filed_at).total_seconds() if application.filed_at else None,
         "overdue": bool(application.decision_due and application.decision_due < now)}
        for application in approvals.queue(session, now=now, limit=limit)
    ]


def summary(session: Session, *, period: Period, now: datetime | None = None, today: date | None = None) -> dict[str, Any]:
    """The overall metrics of the period and the lists a manager acts on (``today``: the configured zone's date)."""
    now = now or utcnow()
    datasets = group_metrics(session, period=period, by="dataset", now=now, distributions=False)
    overall = group_metrics(session, period=period, by=None, now=now, counted_by_dataset=datasets)[0]
    return {
        "from": period.start.isoformat(), "to": period.end.isoformat(), **overall,
        **manager_lists(datasets), "waiting_longest": waiting_longest(session, now=now),
        "live_services": live_services.summary(session, period=period),
        **disclosures.summary(session, period=period, today=today or now.date()),
    }
