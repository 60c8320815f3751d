"""The providers' live services as the exchange saw them: availability, latency and error rate of live calls.

Read from the access ledger's ``live`` lines of the period. A call counts as an attempt on
the provider when it passed the grant's checks (its status is an answer, 404, or a
provider failure: 502 error or malformed answer, 503 circuit open, 504 timeout); refusals
of the caller (401, 403, 429) say nothing about the provider.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.models import AccessLogEntry

ANSWERED = (200, 404)
FAILED = (502, 503, 504)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _percentile(session: Session, where: list[Any], count: int, fraction: float) -> float | None:
    """The ``fraction`` percentile of the calls' latency (nearest rank), one indexed row read."""
    if not count:
        return None
    rank = max(0, min(count - 1, int(fraction * count + 0.5) - 1))
    value = session.execute(select(AccessLogEntry.latency_ms).where(*where, AccessLogEntry.latency_ms.is_not(None))
                            .order_by(AccessLogEntry.latency_ms).offset(rank).limit(1)).scalar()
    return round(value, 2) if value is not None else None


def summary(session: Session, *, period: Any) -> dict[str, Any]:
    """``{"calls", "answered", "errors", "timeouts", "unavailable", "availability", "error_rate", "latency_ms_p50",
    "latency_ms_p95", "datasets"}`` of the period's live calls; ``datasets`` holds the same per dataset."""
    in_period = [AccessLogEntry.kind == "live", AccessLogEntry.at >= period.start, AccessLogEntry.at < period.end,
                 AccessLogEntry.status.in_(ANSWERED + FAILED)]
    counts: dict[str, dict[int, int]] = {}
    for dataset, status, calls in session.execute(
            select(AccessLogEntry.dataset_code, AccessLogEntry.status, func.count()).where(*in_period)
            .group_by(AccessLogEntry.dataset_code, AccessLogEntry.status)):
        counts.setdefault(dataset, {})[status] = calls

    def figures(by_status: dict[int, int], where: list[Any]) -> dict[str, Any]:
        calls = sum(by_status.values())
        answered = sum(by_status.get(status, 0) for status in ANSWERED)
        errors, unavailable, timeouts = by_status.get(502, 0), by_status.get(503, 0), by_status.get(504, 0)
        answered_where = [*where, AccessLogEntry.status.in_(ANSWERED)]
        return {"calls": calls, "answered": answered, "errors": errors, "timeouts": timeouts, "unavailable": unavailable,
                "availability": _ratio(answered, calls), "error_rate": _ratio(errors + timeouts + unavailable, calls),
                "latency_ms_p50": _percentile(session, answered_where, answered, 0.5),
                "latency_ms_p95": _percentile(session, answered_where, answered, 0.95)}

    overall: dict[int, int] = {}
    for by_status in counts.values():
        for status, calls in by_status.items():
            overall[status] = overall.get(status, 0) + calls
    return {**figures(overall, in_period),
            "datasets": [{"dataset": dataset, **figures(counts[dataset], [*in_period, AccessLogEntry.dataset_code == dataset])}
                         for dataset in sorted(counts)]}
