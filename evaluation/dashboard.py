"""The dashboard's series: applications and calls per day, review durations in buckets."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from approvals import service as approvals
from approvals.models import Application
from evaluation.metrics import seconds_between, split_days, utc_day_of
from evaluation.period import Period
from exchange.models import AccessLogEntry, LedgerDayCount

DURATION_BUCKETS = ((0, 1, "under 1 day"), (1, 2, "1–2 days"), (2, 5, "2–5 days"), (5, 10, "5–10 days"),
                    (10, 20, "10–20 days"), (20, None, "20 days or more"))


def daily_trend(session: Session, *, period: Period, dataset: str | None = None) -> list[dict[str, Any]]:
    """Per UTC day of the period: applications filed, approved, rejected, and ledger calls."""
    def by_day(column: Any, *where: Any) -> dict[str, int]:
        day = utc_day_of(session, column)
        return {str(d): n for d, n in session.execute(select(day, func.count()).where(*where).group_by(day))}

    app_filter = [Application.dataset_code == dataset] if dataset else []
    filed = by_day(Application.filed_at, Application.filed_at >= period.start, Application.filed_at < period.end, *app_filter)
    decided = [Application.decided_at >= period.start, Application.decided_at < period.end, *app_filter]
    approved = by_day(Application.decided_at, *decided, Application.status == approvals.Status.approved.value)
    rejected = by_day(Application.decided_at, *decided, Application.status == approvals.Status.rejected.value)
    calls = _calls_by_day(session, period, dataset)
    days, day = [], period.start.date()
    while datetime.combine(day, datetime.min.time(), tzinfo=period.start.tzinfo) < period.end:
        key = day.isoformat()
        days.append({"day": key, "filed": filed.get(key, 0), "approved": approved.get(key, 0),
                     "rejected": rejected.get(key, 0), "calls": calls.get(key, 0)})
        day += timedelta(days=1)
    return days


def _calls_by_day(session: Session, period: Period, dataset: str | None) -> dict[str, int]:
    """Ledger lines per UTC day: whole days from the rollups, the period's edges from the lines."""
    first_day, end_day, edges = split_days(period)
    calls: dict[str, int] = {}
    rolled_up = select(LedgerDayCount.day, func.sum(LedgerDayCount.calls)).where(
        LedgerDayCount.dimension == "dataset", LedgerDayCount.day >= first_day, LedgerDayCount.day < end_day,
        *([LedgerDayCount.key == dataset] if dataset else []),
    ).group_by(LedgerDayCount.day)
    for day, count in session.execute(rolled_up):
        calls[day.isoformat()] = int(count)
    day = utc_day_of(session, AccessLogEntry.at)
    for lower, upper in edges:
        lines = select(day, func.count()).where(
            AccessLogEntry.at >= lower, AccessLogEntry.at < upper, *([AccessLogEntry.dataset_code == dataset] if dataset else []),
        ).group_by(day)
        for key, count in session.execute(lines):
            calls[str(key)] = calls.get(str(key), 0) + count
    return calls


def review_duration_histogram(session: Session, *, period: Period, dataset: str | None = None) -> list[dict[str, Any]]:
    """How many decisions of the period took how long from filing, in day buckets."""
    seconds = seconds_between(session, Application.filed_at, Application.decided_at)
    bucket = case(*[(seconds < upper * 86400, index) for index, (_, upper, _) in enumerate(DURATION_BUCKETS) if upper is not None],
                  else_=len(DURATION_BUCKETS) - 1)
    query = select(bucket, func.count()).where(
        Application.decided_at >= period.start, Application.decided_at < period.end, Application.filed_at.is_not(None),
        Application.status.in_([approvals.Status.approved.value, approvals.Status.rejected.value]),
        *([Application.dataset_code == dataset] if dataset else []),
    ).group_by(bucket)
    counts = dict(session.execute(query).all())
    return [{"label": label, "count": counts.get(index, 0)} for index, (_, _, label) in enumerate(DURATION_BUCKETS)]
