"""The approvals API: applications, decisions, grants and the event feed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

import schemas
from approvals import service, webhooks
from approvals.dependencies import (
    ApplicationForApplicant,
    ApplicationForManager,
    ApplicationForProvider,
    ApplicationForReader,
    GrantForManager,
    GrantForPauser,
    GrantForReader,
    VisibleGrants,
    applications_visible_to,
)
from approvals.models import Application, Grant
from govshare.auth import Caller, require
from govshare.db import DbSession, utcnow
from govshare.permissions import OVERSEERS

router = APIRouter(prefix="/api/v1", tags=["approvals"])


class DecisionBody(BaseModel):
    decision: Literal["approve", "reject", "return"] = Field(description="approve, reject or return")
    reason_code: service.ReasonCode | None = Field(default=None, description="with reject: no_legal_basis, items_beyond_need, duplicate, data_not_shareable, other")
    comment: str | None = Field(default=None, max_length=4000)
    conditions: list[str] = Field(default_factory=list, max_length=20, description="with approve: conditions named in the dataset's share conditions")
    masks: dict[str, Any] = Field(default_factory=dict, description='with approve: per item, {"keep_first": N}, {"keep_last": N}, "keyed_hash", "year_only" or "null"')


class WebhookBody(BaseModel):
    url: str = Field(min_length=8, max_length=500, pattern=r"^https?://[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]{1,5})?(/[!-~]*)?$",
                     description="absolute http(s) URL that receives POSTed events")


class RevokeBody(BaseModel):
    reason: str = Field(min_length=1, max_length=4000)


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=service.MAX_PAUSE_REASON, description="why deliveries stop (required)")


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=service.MAX_PAUSE_REASON, description="why deliveries start again")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def application_json(application: Application, now: datetime) -> dict[str, Any]:
    """An application as clients see it."""
    document = service.document_of(application)
    open_ = application.status in service.OPEN_STATES
    return {
        "id": application.id,
        "status": application.status,
        **document,
        "department": application.department_code,
        "provider_department": application.provider_department,
        "applicant": application.applicant,
        "inspection": application.inspection,
        "grant_id": application.grant_id,
        "created_at": _iso(application.created_at),
        "filed_at": _iso(application.filed_at),
        "inspection_due": _iso(application.inspection_due),
        "decision_due": _iso(application.decision_due),
        "overdue": bool(open_ and application.decision_due and application.decision_due < now),
        "waiting_seconds": int((now - application.filed_at).total_seconds()) if open_ and application.filed_at else None,
        "decided_at": _iso(application.decided_at),
        "decided_by": application.decided_by,
        "reason_code": application.reason_code,
        "comment": application.decision_comment,
        "conditions": list(application.conditions or []),
        "masks": dict(application.masks or {}),
    }


def grant_json(grant: Grant, today) -> dict[str, Any]:
    return {
        "id": grant.id,
        "application_id": grant.application_id,
        "department": grant.department_code,
        "dataset": grant.dataset_code,
        "columns": list(grant.columns),
        "row_filter": grant.row_filter,
        "delivery": grant.delivery,
        "conditions": list(grant.conditions or []),
        "masks": dict(grant.masks or {}),
        "valid_from": grant.valid_from.isoformat(),
        "valid_until": grant.valid_until.isoformat(),
        "state": service.grant_state(grant, today),
        "status": service.grant_state(grant, today),  # the contract's name (DESIGN.md, "Grant lifecycle"); ``state`` kept for existing clients
        "created_at": _iso(grant.created_at),
        "revoked_at": _iso(grant.revoked_at),
        "revoked_by": grant.revoked_by,
        "revoke_reason": grant.revoke_reason,
        "paused_at": _iso(grant.paused_at),
        "paused_by": grant.paused_by,
        "pause_reason": grant.pause_reason,
    }


def _today(request: Request):
    return service.today(request.app.state.settings)


async def row_filter_within_limits(request: Request) -> None:
    """Refuse a row filter past its size limits before the request opens its session, so before any lock is taken.

    Declared before the session: dependencies run in order, and authenticating the caller
    already begins the request's (write) transaction.
    """
    try:
        document = await request.json()
    except ValueError:
        return  # not JSON: the body's own validation says so
    if isinstance(document, dict):
        schemas.check_row_filter_limits(document.get("row_filter"))


FilterWithinLimits = Annotated[None, Depends(row_filter_within_limits)]


@router.post("/applications", status_code=201, summary="File an application (or save a draft with ?draft=true)")
def file_application(
    _: FilterWithinLimits, request: Request, session: DbSession, caller: Annotated[Caller, Depends(require("applications.file"))],
    document: Annotated[dict[str, Any], Body()], draft: bool = False,
) -> JSONResponse:
    application = service.file_application(
        session, department=caller.department, actor=caller.actor, document=document, draft=draft,
        settings=request.app.state.settings,
    )
    return JSONResponse(application_json(application, utcnow()), status_code=201,
                        headers={"Location": f"/api/v1/applications/{application.id}"})


@router.get("/applications", summary="Applications the caller may see; the manager's queue with ?status=")
def list_applications(
    session: DbSession, caller: Annotated[Caller, Depends(require("applications.read"))],
    status: Annotated[list[service.Status] | None, Query()] = None, dataset: str | None = None, department: str | None = None,
    overdue: bool = False, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    now = utcnow()
    query = select(Application).where(applications_visible_to(caller))
    if status:
        query = query.where(Application.status.in_(status))
    if dataset:
        query = query.where(Application.dataset_code == dataset)
    if department:
        query = query.where(Application.department_code == department.upper())
    if overdue:
        query = query.where(Application.status.in_(list(service.OPEN_STATES)), Application.decision_due < now)
    rows = session.execute(query.order_by(Application.filed_at.asc().nullslast(), Application.id).limit(limit)).scalars()
    return {"items": [application_json(row, now) for row in rows]}


@router.get("/applications/{application_id}", summary="One application, with its inspection")
def get_application(application: ApplicationForReader) -> dict[str, Any]:
    return application_json(application, utcnow())


@router.put("/applications/{application_id}", summary="Edit a draft or returned application")
def edit_application(_: FilterWithinLimits, request: Request, session: DbSession, application: ApplicationForApplicant,
                     caller: Annotated[Caller, Depends(require("applications.file"))],
                     document: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    service.update_application(session, application=application, actor=caller.actor, document=document,
                               settings=request.app.state.settings)
    return application_json(application, utcnow())


@router.post("/applications/{application_id}/submit", summary="Submit a draft or returned application for review")
def submit_application(request: Request, session: DbSession, application: ApplicationForApplicant,
                       caller: Annotated[Caller, Depends(require("applications.file"))]) -> dict[str, Any]:
    service.submit(session, application=application, actor=caller.actor, settings=request.app.state.settings)
    return application_json(application, utcnow())


@router.post("/applications/{application_id}/withdraw", summary="Withdraw an application not yet decided")
def withdraw_application(session: DbSession, application: ApplicationForApplicant,
                         caller: Annotated[Caller, Depends(require("applications.file"))]) -> dict[str, Any]:
    service.withdraw(session, application=application, actor=caller.actor)
    return application_json(application, utcnow())


@router.post("/applications/{application_id}/decision", summary="The data manager decides: approve, reject or return")
def decide(request: Request, session: DbSession, application: ApplicationForManager, body: DecisionBody,
           caller: Annotated[Caller, Depends(require("applications.decide"))]) -> dict[str, Any]:
    decision = service.Decision(body.decision, body.reason_code, body.comment, tuple(body.conditions), body.masks)
    service.decide(session, application=application, actor=caller.actor, decision=decision, settings=request.app.state.settings)
    return application_json(application, utcnow())


@router.post("/applications/{application_id}/provider-decision", summary="The providing department signs off (conditional datasets)")
def provider_decide(request: Request, session: DbSession, application: ApplicationForProvider, body: DecisionBody,
                    caller: Annotated[Caller, Depends(require("applications.provider_decide"))]) -> dict[str, Any]:
    decision = service.Decision(body.decision, body.reason_code, body.comment, tuple(body.conditions), body.masks)
    service.provider_decide(session, application=application, actor=caller.actor, decision=decision,
                            settings=request.app.state.settings)
    return application_json(application, utcnow())


@router.get("/applications/{application_id}/history", summary="Every step of an application, with who and when")
def application_history(session: DbSession, application: ApplicationForReader) -> dict[str, Any]:
    return {"items": [service.event_document(event) for event in service.history(session, application_id=application.id)]}


@router.get("/grants", summary="Grants the caller's department holds (all, for managers)")
def list_grants(request: Request, session: DbSession, visible: VisibleGrants, dataset: str | None = None) -> dict[str, Any]:
    query = select(Grant).where(visible)
    if dataset:
        query = query.where(Grant.dataset_code == dataset)
    today = _today(request)
    return {"items": [grant_json(grant, today) for grant in session.execute(query.order_by(Grant.id)).scalars()]}


@router.get("/grants/{grant_id}", summary="One grant: exact columns, rows, mode and validity")
def get_grant(request: Request, grant: GrantForReader) -> dict[str, Any]:
    return grant_json(grant, _today(request))


@router.post("/grants/{grant_id}/revoke", summary="Revoke a grant, with a reason")
def revoke_grant(request: Request, session: DbSession, grant: GrantForManager, body: RevokeBody,
                 caller: Annotated[Caller, Depends(require("grants.revoke"))]) -> dict[str, Any]:
    service.revoke_grant(session, grant=grant, actor=caller.actor, reason=body.reason)
    return grant_json(grant, _today(request))


@router.post("/grants/{grant_id}/pause", summary="Pause a grant, with a reason: every delivery under it answers 403 until resumed")
def pause_grant(request: Request, session: DbSession, grant: GrantForPauser, body: PauseBody,
                caller: Annotated[Caller, Depends(require("grants.pause"))]) -> dict[str, Any]:
    service.pause_grant(session, grant=grant, actor=caller.actor, reason=body.reason, today=_today(request))
    return grant_json(grant, _today(request))


@router.post("/grants/{grant_id}/resume", summary="Resume a paused grant: it delivers again from the next call")
def resume_grant(request: Request, session: DbSession, grant: GrantForPauser,
                 caller: Annotated[Caller, Depends(require("grants.pause"))],
                 body: Annotated[ResumeBody | None, Body()] = None) -> dict[str, Any]:
    service.resume_grant(session, grant=grant, actor=caller.actor, reason=body.reason if body else None, today=_today(request))
    return grant_json(grant, _today(request))


@router.get("/events", summary="State changes that concern the caller's department, after a cursor")
def list_events(session: DbSession, caller: Annotated[Caller, Depends(require("events.read"))],
                since: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    events = service.events_for(session, department=caller.department, sees_all=caller.has_role(*OVERSEERS),
                                since=since, limit=limit)
    return {"items": [service.event_document(event) for event in events], "next_cursor": events[-1].id if events else since}


@router.post("/webhooks", status_code=201, summary="Register a webhook for the caller's department; the secret is shown once")
def register_webhook(session: DbSession, caller: Annotated[Caller, Depends(require("webhooks.manage"))],
                     body: WebhookBody) -> dict[str, Any]:
    created = webhooks.register(session, department=caller.department, url=body.url, actor=caller.actor)
    return {**webhooks.webhook_json(created.webhook), "secret": created.secret}


@router.get("/webhooks", summary="The caller's department's webhooks (never their secrets)")
def list_webhooks(session: DbSession, caller: Annotated[Caller, Depends(require("webhooks.manage"))]) -> dict[str, Any]:
    return {"items": [webhooks.webhook_json(hook) for hook in webhooks.for_department(session, department=caller.department)]}


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Remove one of the department's webhooks")
def remove_webhook(webhook_id: int, session: DbSession,
                   caller: Annotated[Caller, Depends(require("webhooks.manage"))]) -> Response:
    webhooks.remove(session, department=caller.department, webhook_id=webhook_id, actor=caller.actor)
    return Response(status_code=204)
