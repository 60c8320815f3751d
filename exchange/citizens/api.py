"""Citizen control over the exchange: consents (the portal records and withdraws them) and explicit requests (a service
asks, the citizen previews and decides, the service reads the approved records once).

The portal (role ``citizen_portal``) acts for the citizen named in the path: another
citizen's consent or request answers 404, as one that does not exist. A service sees
only its own department's requests; another department's answer 404.
"""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from approvals import rowfilter
from approvals import service as approvals
from approvals.models import Application, Grant
from exchange.citizens import service
from exchange.errors import InvalidConsent, InvalidRequest, RecordNotFound
from exchange.interfaces import api as interfaces
from exchange.ledger import LedgerLine
from govshare.auth import Caller, caller_of, check_role, require
from govshare.db import DbSession

router = APIRouter(prefix="/api/v1", tags=["citizens"])

CitizenId = Annotated[str, Path(min_length=1, max_length=service.MAX_CITIZEN_ID, description="the citizen's ID")]
Text64 = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]


class ConsentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    department: Annotated[StrictStr, StringConstraints(min_length=1, max_length=32)] = Field(
        description="code of the department that may receive the citizen's rows")
    dataset: Text64 = Field(description="code of a dataset registered with consent_required")
    purpose: Annotated[StrictStr, StringConstraints(min_length=1, max_length=service.MAX_PURPOSE)] = Field(
        description="what the citizen consents to, in their words or the portal's")
    until: date = Field(description="the last day the consent holds (YYYY-MM-DD, inclusive), today or later")
    citizen_id: Text64 | None = Field(default=None, description="optional; when given, it must be the citizen in the path")


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Text64 = Field(description="the citizen's ID (the dataset's lookup key)")


def _today(request: Request) -> date:
    return approvals.today(request.app.state.settings)


def _expiry(request: Request) -> service.RequestExpiry:
    return service.RequestExpiry.of(request.app.state.settings)


Portal = Annotated[Caller, Depends(require("citizens.consents"))]
PortalForRequests = Annotated[Caller, Depends(require("citizens.requests"))]


# --- consents ---


@router.post("/citizens/{citizen_id}/consents", status_code=201, summary="Record a citizen's consent (portal)")
def give_consent(citizen_id: CitizenId, body: ConsentBody, request: Request, session: DbSession, caller: Portal) -> dict[str, Any]:
    if body.citizen_id is not None and body.citizen_id != citizen_id:
        raise InvalidConsent("citizen_id: the body names another citizen than the path")
    consent = service.give_consent(session, citizen_id=citizen_id, department=body.department, dataset_code=body.dataset,
                                   purpose=body.purpose, until=body.until, actor=caller.actor, today=_today(request))
    return service.consent_view(consent, today=_today(request))


@router.get("/citizens/{citizen_id}/consents", summary="A citizen's consents, newest first (portal)")
def list_consents(citizen_id: CitizenId, request: Request, session: DbSession, caller: Portal) -> dict[str, Any]:
    today = _today(request)
    return {"citizen_id": citizen_id,
            "items": [service.consent_view(consent, today=today) for consent in service.consents_of(session, citizen_id=citizen_id)]}


@router.post("/citizens/{citizen_id}/consents/{consent_id}/withdraw", summary="Withdraw a consent; effective on the next call (portal)")
def withdraw_consent(citizen_id: CitizenId, consent_id: int, request: Request, session: DbSession, caller: Portal) -> dict[str, Any]:
    consent = service.withdraw_consent(session, citizen_id=citizen_id, consent_id=consent_id, actor=caller.actor)
    return service.consent_view(consent, today=_today(request))


# --- explicit requests: the citizen's side ---


@router.get("/citizens/{citizen_id}/requests", summary="Requests for a citizen's data, each with its preview (portal)")
def list_requests(citizen_id: CitizenId, request: Request, session: DbSession, caller: PortalForRequests) -> dict[str, Any]:
    expiry = _expiry(request)
    return {"citizen_id": citizen_id,
            "items": [service.request_view(item, expiry=expiry) for item in service.requests_of(session, citizen_id=citizen_id)]}


@router.post("/citizens/{citizen_id}/requests/{request_id}/approve", summary="Approve sending exactly the preview (portal)")
def approve_request(citizen_id: CitizenId, request_id: int, request: Request, session: DbSession,
                    caller: PortalForRequests) -> dict[str, Any]:
    return _decide(citizen_id, request_id, request, session, caller, approve=True)


@router.post("/citizens/{citizen_id}/requests/{request_id}/refuse", summary="Refuse a request; nothing is sent (portal)")
def refuse_request(citizen_id: CitizenId, request_id: int, request: Request, session: DbSession,
                    caller: PortalForRequests) -> dict[str, Any]:
    return _decide(citizen_id, request_id, request, session, caller, approve=False)


def _decide(citizen_id: str, request_id: int, request: Request, session, caller, *, approve: bool) -> dict[str, Any]:
    """The citizen's decision on a request, made through the portal, as the request now stands."""
    expiry = _expiry(request)
    decided = service.decide_request(session, citizen_id=citizen_id, request_id=request_id, approve=approve, actor=caller.actor,
                                     expiry=expiry)
    return service.request_view(decided, expiry=expiry)


# --- explicit requests: the service's side ---


@router.post("/exchange/{code}/requests", status_code=201, summary="Ask a citizen for their records of an explicit-request dataset")
def open_request(code: str, body: RequestBody, request: Request, session: DbSession,
                 caller: interfaces.ServiceCaller) -> dict[str, Any]:
    started = time.perf_counter()
    key = body.key
    scope = interfaces.resolve_scope(request, session, caller, code, kind="request", keys=[key], started=started,
                                     explicit=True)
    if not service.explicit_request(scope.dataset):
        raise InvalidRequest(f"dataset {code} is not registered with explicit_request; read it by lookup")
    interfaces.check_key_lookups(request, scope, caller, kind="request", keys=[key], started=started)
    consent_id = interfaces.consent_of_key(request, session, scope, caller, key=key, kind="request", started=started)
    key_type = next(item["type"] for item in scope.items if item["name"] == scope.lookup_key)
    try:
        value = rowfilter.convert_value(key if key_type == "string" else json.loads(key), key_type, "key")
    except (ValueError, rowfilter.InvalidRowFilter):
        value = None
    version, found = interfaces.by_key(request, session, scope, [] if value is None else [value])
    records = next(iter(found.values()), [])
    if not records:
        request.app.state.ledger.record(interfaces.ledger_line(scope, caller, kind="request", rows=0, keys=[key], status=404,
                                                               started=started))
        raise RecordNotFound(f"no record with key {key} within your grant on {code}")
    opened = service.open_request(session, grant=scope.grant, dataset=scope.dataset, citizen_id=key, client_id=caller.client_id,
                                  records=jsonable_encoder(records), version=version, consent_id=consent_id)
    return {"id": opened.id, "status": opened.status, "dataset": code, "key": key}


@router.get("/exchange/requests/{request_id}", summary="The records of a request the citizen approved, delivered once")
async def read_request(request_id: int, request: Request) -> JSONResponse:
    # It writes (the request becomes delivered) on a GET: its own write transaction, within a request slot.
    database = request.app.state.database
    async with database.request_slots():
        return await run_in_threadpool(_read_request, request_id, request)


def _read_request(request_id: int, request: Request) -> JSONResponse:
    started = time.perf_counter()
    with request.app.state.database.transaction() as session:
        caller = interfaces.take_call(request, check_role(caller_of(request, session), "exchange.read"))
        citizen_request = service.request_for_department(session, request_id=request_id, department=caller.department)
        line = LedgerLine(kind="request", client_id=caller.client_id, department=caller.department,
                          dataset=citizen_request.dataset_code, grant_id=citizen_request.grant_id, application_id=None,
                          service_item=None, basis=None, rows=0, keys=[citizen_request.citizen_id], status=200)
        grant = session.get(Grant, citizen_request.grant_id)
        application = session.get(Application, grant.application_id)
        line.application_id, line.service_item, line.basis = application.id, application.service_item, application.basis
        try:
            records, consent_id = service.take_delivery(session, citizen_request=citizen_request, expiry=_expiry(request))
        except Exception as refusal:
            status = getattr(refusal, "status", None)
            if status in (403, 404):  # a refused delivery is an access attempt to account for
                line.status, line.latency_ms = status, (time.perf_counter() - started) * 1000
                request.app.state.ledger.record(line)
            raise
        line.rows, line.latency_ms = len(records), (time.perf_counter() - started) * 1000
        if consent_id is not None:
            line.consents = {citizen_request.citizen_id: consent_id}
        # Recorded before the commit: a ledger that cannot write refuses the delivery (and the request stays approved).
        request.app.state.ledger.record(line)
        return JSONResponse({"dataset": citizen_request.dataset_code, "key": citizen_request.citizen_id,
                             "version": citizen_request.version_number, "records": records})
