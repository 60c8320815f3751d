"""Evaluation's services, one module per idea: ``ratings`` (two-way ratings), ``corrections``
(wrong values reported and answered), ``metrics`` (supply and demand figures) and
``dashboard`` (the charts' series), over one ``Period``. The routes and pages reach them here.
"""

from __future__ import annotations

from evaluation.corrections import (
    CORRECTION_OUTCOMES,
    answer_correction,
    correction_document,
    corrections,
    corrections_under_grant,
    file_correction,
    get_correction,
)
from evaluation.dashboard import (
    DURATION_BUCKETS,
    daily_trend,
    review_duration_histogram,
)
from evaluation.metrics import (
    APPLICATION_KEYS,
    CORRECTION_KEYS,
    GROUPINGS,
    LEDGER_KEYS,
    LIST_LENGTH,
    PERCENTS,
    PROMISED_DAYS,
    PROMOTE_MIN_DECISIONS,
    PROMOTE_MIN_PASS_RATE,
    RATING_KEYS,
    REASON_CODES,
    freshness,
    group_metrics,
    manager_lists,
    problems_of,
    seconds_between,
    split_days,
    summary,
    utc_day_of,
    waiting_longest,
)
from evaluation.period import (
    Period,
)
from evaluation.ratings import (
    DEMANDER_SCORES,
    PROVIDER_SCORES,
    RATING_EDITABLE_DAYS,
    SCORES,
    delivered,
    party_of,
    rate,
    rating_document,
    ratings_given,
    ratings_of,
)

__all__ = [
    "CORRECTION_OUTCOMES",
    "answer_correction",
    "correction_document",
    "corrections",
    "corrections_under_grant",
    "file_correction",
    "get_correction",
    "DURATION_BUCKETS",
    "daily_trend",
    "review_duration_histogram",
    "APPLICATION_KEYS",
    "CORRECTION_KEYS",
    "GROUPINGS",
    "LEDGER_KEYS",
    "LIST_LENGTH",
    "PERCENTS",
    "PROMISED_DAYS",
    "PROMOTE_MIN_DECISIONS",
    "PROMOTE_MIN_PASS_RATE",
    "RATING_KEYS",
    "REASON_CODES",
    "freshness",
    "group_metrics",
    "manager_lists",
    "problems_of",
    "seconds_between",
    "split_days",
    "summary",
    "utc_day_of",
    "waiting_longest",
    "Period",
    "DEMANDER_SCORES",
    "PROVIDER_SCORES",
    "RATING_EDITABLE_DAYS",
    "SCORES",
    "delivered",
    "party_of",
    "rate",
    "rating_document",
    "ratings_given",
    "ratings_of",
]
