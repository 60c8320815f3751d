"""The data manager's dashboard under /ui/dashboard: metrics, charts and the lists to act on.

Charts are inline SVG drawn here on the server (no script, no external library),
each with a title, a description and the same figures as a table, in the web shell's
layout (``govshare.web``: sign-in, session).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from approvals import service as approvals
from approvals.dependencies import readable_application
from approvals.models import Application
from directory.errors import DatasetNotFound
from directory.models import Dataset
from evaluation import service
from evaluation.api import period_of
from govshare import web
from govshare.db import DbSession, utcnow
from govshare.errors import InvalidInput
from govshare.models import User
from govshare.permissions import OVERSEERS

TEMPLATES_DIR = Path(__file__).parent / "templates"

router = APIRouter(prefix="/ui", include_in_schema=False)

# The dashboard is a data manager's page, like the queue: the same role check and message first.
MetricsUser = Annotated[User, Depends(web.person_allowed("metrics.read", first=web.manager_user))]
NAVIGATION = (web.NavLink("Dashboard", "/ui/dashboard", OVERSEERS),)
DEFAULT_DAYS = 30
SCORE_LABELS = {"review_speed": "Review speed", "data_quality": "Data quality", "stability": "Service stability",
                "application_quality": "Application form"}
CHART_WIDTH, CHART_HEIGHT = 640, 220


# --- presenting numbers --------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def duration(seconds: float | None) -> str:
    return "—" if seconds is None else web.duration_words(timedelta(seconds=seconds))


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.{digits}f}"


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    x: float
    y: float
    width: float
    height: float
    href: str | None = None


def column_bars(points: list[tuple[str, float]], *, width: int = CHART_WIDTH, height: int = CHART_HEIGHT) -> list[Bar]:
    """Vertical bars filling ``width`` x ``height`` (the tallest reaches the top)."""
    if not points:
        return []
    top = max(value for _, value in points) or 1
    slot = width / len(points)
    gap = min(4.0, slot * 0.2)
    return [
        Bar(label, value, x=index * slot + gap / 2, y=height - value / top * height, width=slot - gap, height=value / top * height)
        for index, (label, value) in enumerate(points)
    ]


def row_bars(points: list[tuple[str, float, str | None]], *, width: int = 420, row: int = 28) -> list[Bar]:
    """Horizontal bars, one a row, for labelled counts (the longest fills ``width``)."""
    top = max((value for _, value, _ in points), default=0) or 1
    return [Bar(label, value, x=0, y=index * row, width=value / top * width, height=row - 8, href=href)
            for index, (label, value, href) in enumerate(points)]


def trend_points(days: list[dict[str, Any]], field: str) -> tuple[list[tuple[str, float]], str]:
    """Daily figures, or weekly sums when the period is longer than nine weeks."""
    if len(days) <= 63:
        return [(day["day"], day[field]) for day in days], "day"
    weeks = [days[start:start + 7] for start in range(0, len(days), 7)]
    return [(f"week of {week[0]['day']}", sum(day[field] for day in week)) for week in weeks], "week"


def _period_of(start: str, end: str) -> service.Period:
    """The period from ``start`` to ``end`` (days, both included); by default the last 30 days, today included."""
    now = utcnow()
    if not end:
        end = now.date().isoformat()
    if not start:
        start = (date.fromisoformat(end) - timedelta(days=DEFAULT_DAYS - 1)).isoformat() if len(end) == 10 else ""
    try:
        return period_of(start or None, end, now=now)
    except (InvalidInput, ValueError) as problem:
        raise InvalidInput(f"The period is not valid: {getattr(problem, 'detail', problem)}.") from None


@dataclass(frozen=True)
class ChosenPeriod:
    """The period the form asks for, or (when it asks for an impossible one) the default, with what was typed and why."""

    period: service.Period
    form: dict[str, str]
    error: str | None = None


def _chosen_period(request: Request) -> ChosenPeriod:
    start, end = request.query_params.get("from", "").strip()[:40], request.query_params.get("to", "").strip()[:40]
    try:
        period = _period_of(start, end)
    except InvalidInput as problem:
        # Said beside the form, which keeps what was typed; the figures meanwhile are the default period's.
        fallback = _period_of("", "")
        return ChosenPeriod(fallback, {"from": start, "to": end},
                            f"{problem.detail[:-1] if problem.detail.endswith('.') else problem.detail}. "
                            f"Shown instead: the last {DEFAULT_DAYS} days.")
    return ChosenPeriod(period, _period_words(period))


def _period_words(period: service.Period) -> dict[str, str]:
    last_day = (period.end - timedelta(microseconds=1)).date()
    return {"from": period.start.date().isoformat(), "to": last_day.isoformat()}


def _period_label(period: service.Period) -> str:
    """The period as the pages write dates: '1 Oct 2026 to 31 Oct 2026'."""
    last_day = (period.end - timedelta(microseconds=1)).date()
    return f"{web.Formats.day(period.start.date())} to {web.Formats.day(last_day)}"


def _day_label(label: str) -> str:
    """A trend's 'YYYY-MM-DD' (or 'week of YYYY-MM-DD') in the pages' date format."""
    prefix, _, day = label.rpartition(" ")
    try:
        return (prefix + " " if prefix else "") + web.Formats.day(date.fromisoformat(day))
    except ValueError:
        return label


def iso_day(text: str | None) -> str:
    """An ISO date or time written in a document ('2026-10-03T...') in the pages' date format."""
    return web.Formats.day(date.fromisoformat(text[:10])) if text else "—"


pages = web.Pages(
    TEMPLATES_DIR, iso_day=iso_day, percent=percent, duration=duration, number=number, chart_width=CHART_WIDTH, chart_height=CHART_HEIGHT,
    reason_labels={str(code): label for code, label in approvals.REASON_LABELS.items()},
)
render = pages.render


def _charts(session, period: service.Period, entry: dict[str, Any], dataset: str | None = None) -> dict[str, Any]:
    days = service.daily_trend(session, period=period, dataset=dataset)
    filed, unit = trend_points(days, "filed")
    calls, _ = trend_points(days, "calls")
    filed = [(_day_label(label), value) for label, value in filed]
    calls = [(_day_label(label), value) for label, value in calls]
    reasons = sorted(entry["rejection_reasons"].items(), key=lambda item: (-item[1], item[0]))
    histogram = service.review_duration_histogram(session, period=period, dataset=dataset)
    return {
        "trend_unit": unit, "filed_bars": column_bars(filed), "calls_bars": column_bars(calls),
        "filed_total": sum(value for _, value in filed), "calls_total": sum(value for _, value in calls),
        "reason_bars": row_bars([(approvals.REASON_LABELS.get(code, code), count, None) for code, count in reasons]),
        "duration_bars": column_bars([(bucket["label"], bucket["count"]) for bucket in histogram]),
    }


@router.get("/dashboard.css")
def stylesheet() -> Response:
    return Response((TEMPLATES_DIR / "dashboard.css").read_text(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


# --- pages ------------------------------------------------------------------------------------------------


@router.get("/dashboard")
def dashboard(request: Request, session: DbSession, user: MetricsUser) -> Response:
    chosen = _chosen_period(request)
    period = chosen.period
    summary = service.summary(session, period=period, today=approvals.today(request.app.state.settings))
    query = urlencode(_period_words(period))
    demanded = row_bars([(item["dataset"], item["applications_filed"], f"/ui/dashboard/datasets/{item['dataset']}?{query}")
                         for item in summary["most_demanded"]])
    return render(
        request, "dashboard.html", user=user, summary=summary, period=_period_words(period), period_form=chosen.form,
        period_error=chosen.error, period_label=_period_label(period), status_code=422 if chosen.error else 200,
        demanded_bars=demanded, period_query=query, **_charts(session, period, summary),
    )


def dataset_for_dashboard(code: str, session: DbSession, user: MetricsUser) -> Dataset:
    dataset = session.execute(select(Dataset).where(Dataset.code == code)).scalar_one_or_none()
    if dataset is None:
        raise DatasetNotFound(f"There is no dataset {code}.")
    return dataset


@router.get("/dashboard/datasets/{code}")
def dataset_dashboard(
    request: Request, session: DbSession, user: MetricsUser, dataset: Annotated[Dataset, Depends(dataset_for_dashboard)],
) -> Response:
    chosen = _chosen_period(request)
    period = chosen.period
    entry = service.group_metrics(session, period=period, by="dataset", only=dataset.code)[0]
    now = utcnow()
    corrections = [service.correction_document(correction, now)
                   for correction in service.corrections(session, department=None, provider_department=None, dataset=dataset.code, limit=50)]
    ratings = [service.rating_document(rating) for rating in service.ratings_given(session, dataset=dataset.code, period=period)]
    return render(
        request, "dataset_dashboard.html", user=user, dataset=dataset, entry=entry, period=_period_words(period),
        period_form=chosen.form, period_error=chosen.error, period_label=_period_label(period),
        status_code=422 if chosen.error else 200,
        problems=[words for words, _ in service.problems_of(entry)], corrections=corrections, ratings=ratings,
        score_labels=SCORE_LABELS, **_charts(session, period, entry, dataset=dataset.code),
    )


def application_for_dashboard(application_id: int, session: DbSession, user: MetricsUser) -> Application:
    return readable_application(session, application_id, user)


@router.get("/dashboard/applications/{application_id}")
def application_dashboard(
    request: Request, session: DbSession, user: MetricsUser,
    application: Annotated[Application, Depends(application_for_dashboard)],
) -> Response:
    """One application as evaluation sees it: both parties' ratings, and what was reported against its grant."""
    now = utcnow()
    ratings = [service.rating_document(rating) for rating in service.ratings_of(session, application_id=application.id)]
    corrections = [service.correction_document(correction, now)
                   for correction in service.corrections_under_grant(session, grant_id=application.grant_id)]
    return render(
        request, "application_dashboard.html", user=user, application=application, ratings=ratings,
        corrections=corrections, score_labels=SCORE_LABELS, delivered=service.delivered(session, application=application),
        editable_days=service.RATING_EDITABLE_DAYS,
    )
