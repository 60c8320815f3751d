"""The evaluation API: metrics (JSON or CSV), two-way ratings, correction requests."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from approvals import service as approvals
from approvals.dependencies import ApplicationForReader
from evaluation import service
from evaluation.dependencies import CorrectionForProvider, CorrectionForReader, CorrectionParty, RaterOfApplication
from evaluation.errors import InvalidPeriod
from govshare.auth import Caller, require
from govshare.db import DbSession, utcnow

router = APIRouter(prefix="/api/v1", tags=["evaluation"])
DEFAULT_PERIOD_DAYS = 30

# ?format=csv answers CSV; the default, JSON.
JSON_OR_CSV: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {"schema": {"type": "object"}},
                                                                  "text/csv": {"schema": {"type": "string"}}}}}
MetricsReader = Annotated[Caller, Depends(require("metrics.read"))]


# --- the period and the format ------------------------------------------------------------------


def _moment(value: str, *, end: bool) -> datetime:
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            # A day given as the end of a period includes that whole day.
            return datetime.combine(day + timedelta(days=1) if end else day, time.min, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidPeriod(f"{'to' if end else 'from'}: {value!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def period_of(start: str | None, end: str | None, *, now: datetime) -> service.Period:
    """The period ``from``..``to`` names: dates include the whole day; by default the last 30 days."""
    finish = _moment(end, end=True) if end else now
    begin = _moment(start, end=False) if start else finish - timedelta(days=DEFAULT_PERIOD_DAYS)
    if begin >= finish:
        raise InvalidPeriod("'from' must come before 'to'")
    return service.Period(begin, finish)


def requested_period(
    start: Annotated[str | None, Query(alias="from", description="start: YYYY-MM-DD or an ISO 8601 time (default: 30 days before 'to')")] = None,
    end: Annotated[str | None, Query(alias="to", description="end: YYYY-MM-DD (that day included) or an ISO 8601 time (default: now)")] = None,
) -> service.Period:
    return period_of(start, end, now=utcnow())


RequestedPeriod = Annotated[service.Period, Depends(requested_period)]
Format = Annotated[str, Query(pattern="^(json|csv)$", description="json (default) or csv")]


def flat(entry: dict[str, Any]) -> dict[str, Any]:
    """A metrics entry as one CSV row: the rejection reasons become columns of their own."""
    row = {key: value for key, value in entry.items() if not isinstance(value, dict | list)}
    reasons = entry.get("rejection_reasons") or {}
    row.update({f"rejections_{code}": reasons.get(code, 0) for code in service.REASON_CODES})
    return row


def csv_response(rows: list[dict[str, Any]], filename: str) -> Response:
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else ["metric", "value"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- metrics -------------------------------------------------------------------------------------------


@router.get("/metrics/summary", responses=JSON_OR_CSV)
def metrics_summary(request: Request, session: DbSession, caller: MetricsReader, period: RequestedPeriod,
                    format: Format = "json") -> Response:
    """Every metric over the period, and the lists a manager acts on."""
    summary = service.summary(session, period=period, today=approvals.today(request.app.state.settings))
    if format == "csv":
        return csv_response([{"metric": key, "value": value} for key, value in flat(summary).items()], "metrics-summary.csv")
    return JSONResponse(summary)


def _groups(session, period: service.Period, by: str, format: str, filename: str) -> Response:
    entries = service.group_metrics(session, period=period, by=by)
    if format == "csv":
        return csv_response([flat(entry) for entry in entries], filename)
    return JSONResponse({"from": period.start.isoformat(), "to": period.end.isoformat(), "items": entries})


@router.get("/metrics/datasets", responses=JSON_OR_CSV)
def metrics_by_dataset(session: DbSession, caller: MetricsReader, period: RequestedPeriod, format: Format = "json") -> Response:
    """Every metric per dataset, with freshness against its promised update frequency."""
    return _groups(session, period, "dataset", format, "metrics-datasets.csv")


@router.get("/metrics/departments", responses=JSON_OR_CSV)
def metrics_by_department(session: DbSession, caller: MetricsReader, period: RequestedPeriod, format: Format = "json") -> Response:
    """Every metric per applying (and calling) department."""
    return _groups(session, period, "department", format, "metrics-departments.csv")


@router.get("/metrics/service-items", responses=JSON_OR_CSV)
def metrics_by_service_item(session: DbSession, caller: MetricsReader, period: RequestedPeriod, format: Format = "json") -> Response:
    """Every metric per public service item."""
    return _groups(session, period, "service_item", format, "metrics-service-items.csv")


@router.get("/metrics/providers", responses=JSON_OR_CSV)
def metrics_by_provider(session: DbSession, caller: MetricsReader, period: RequestedPeriod, format: Format = "json") -> Response:
    """Every metric per providing department (the department whose datasets were asked for and delivered)."""
    return _groups(session, period, "provider", format, "metrics-providers.csv")


# --- ratings ---------------------------------------------------------------------------------------------


@router.post("/applications/{application_id}/ratings", status_code=201)
def rate_application(
    session: DbSession, rater: RaterOfApplication,
    body: Annotated[dict[str, Any], Body(description="schemas/rating.json: the demander gives review_speed, data_quality, stability; the provider application_quality; 1 to 5, and a comment")],
) -> JSONResponse:
    """Rate a delivered application: one rating per party, editable for 30 days (201 new, 200 changed)."""
    rating, created = service.rate(
        session, application=rater.application, party=rater.party, department=rater.caller.department,
        actor=rater.caller.actor, document=body,
    )
    return JSONResponse(service.rating_document(rating), status_code=201 if created else 200)


@router.get("/applications/{application_id}/ratings")
def application_ratings(session: DbSession, application: ApplicationForReader) -> dict[str, Any]:
    """Both parties' ratings of an application."""
    return {"items": [service.rating_document(rating) for rating in service.ratings_of(session, application_id=application.id)]}


# --- corrections -------------------------------------------------------------------------------------------


class CorrectionBody(BaseModel):
    item: str = Field(min_length=1, max_length=200, description="the data item that is wrong")
    key: str = Field(min_length=1, max_length=200, description="the record's key (e.g. the citizen ID)")
    description: str = Field(min_length=1, max_length=4000, description="what is wrong, and what it should be")


class AnswerBody(BaseModel):
    outcome: Literal["corrected", "rejected"] = Field(description="corrected or rejected")
    answer: str = Field(min_length=1, max_length=4000)


@router.post("/datasets/{code}/corrections", status_code=201)
def file_correction(
    request: Request, code: str, body: CorrectionBody, session: DbSession,
    caller: Annotated[Caller, Depends(require("corrections.file"))],
) -> dict[str, Any]:
    """Report wrong data received from a dataset; its provider must answer within the working days allowed."""
    correction = service.file_correction(
        session, dataset_code=code, department=caller.department, actor=caller.actor, item=body.item, key=body.key,
        description=body.description, settings=request.app.state.settings,
    )
    return service.correction_document(correction, utcnow())


@router.post("/corrections/{correction_id}/answer")
def answer_correction(
    body: AnswerBody, session: DbSession, correction: CorrectionForProvider,
    caller: Annotated[Caller, Depends(require("corrections.answer"))],
) -> dict[str, Any]:
    """The providing department answers a correction request: corrected, or rejected with a reason."""
    service.answer_correction(session, correction=correction, actor=caller.actor, outcome=body.outcome, answer=body.answer)
    return service.correction_document(correction, utcnow())


@router.get("/corrections/{correction_id}")
def read_correction(correction: CorrectionForReader) -> dict[str, Any]:
    """One correction request: what was reported, when it is due, and the provider's answer."""
    return service.correction_document(correction, utcnow())


@router.get("/corrections")
def list_corrections(
    session: DbSession, party: CorrectionParty,
    status: Annotated[str | None, Query(pattern="^(open|overdue|answered)$")] = None, dataset: str | None = None,
) -> dict[str, Any]:
    """Correction requests: a department sees those it filed and those against its datasets; managers see all."""
    now = utcnow()
    found = service.corrections(session, department=party, provider_department=party, status=status, dataset=dataset, now=now)
    return {"items": [service.correction_document(correction, now) for correction in found]}
