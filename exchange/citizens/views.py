"""The citizen's own page, /me: who used their data, their consents, the requests waiting for them.

Drawn in the web shell's layout behind a citizen's session (``govshare.web.SignedInCitizen``):
the citizen ID comes only from the identity provider's verified ID token, kept in that
session, never from the URL or a form. Everything shown or changed is looked up under that
ID through the same service functions as the portal's API, so another citizen's consent or
request answers 404, as one that does not exist, and nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import service as approvals
from directory.models import Dataset
from exchange import service as exchange
from exchange.citizens import service
from govshare import web
from govshare.db import DbSession
from govshare.models import Department

pages = web.Pages(Path(__file__).parent / "templates")

router = APIRouter(prefix="/me", include_in_schema=False)

# How the citizen's own actions are named in the records they change (the row names the citizen already).
ACTOR = "citizen:self"

KIND_WORDS = {"lookup": "looked up your record", "query": "found your record in a search",
              "stream": "read your record in a bulk read", "extract": "received your record in a data extract",
              "deposit": "recorded data you submitted", "live": "asked the providing department for your record",
              "request": "asked for or received your record through a request you answer"}
CONSENT_WORDS = {"active": "Active", "withdrawn": "Withdrawn", "expired": "Expired"}
REQUEST_WORDS = {"awaiting_citizen": "Waiting for your answer", "approved": "Approved: to be sent",
                 "refused": "Refused: nothing sent", "delivered": "Approved and sent",
                 "expired": "Expired: nothing sent, its copy erased"}


@dataclass(frozen=True)
class LogLine:
    """One use of the citizen's data, as their page shows it."""

    at: datetime
    department: str
    dataset: str
    kind: str
    service_item: str | None
    purpose: str | None
    basis: str | None
    consent_id: int | None
    delayed_until: date | None
    delay_basis: str | None


class Names:
    """Departments' and datasets' names for the codes a page shows, read once per page."""

    def __init__(self, session: Session, *, departments: set[str], datasets: set[str]) -> None:
        self.departments = dict(session.execute(select(Department.code, Department.name)
                                                .where(Department.code.in_(sorted(departments)))).all()) if departments else {}
        self.datasets = dict(session.execute(select(Dataset.code, Dataset.title)
                                             .where(Dataset.code.in_(sorted(datasets)))).all()) if datasets else {}

    def department(self, code: str) -> str:
        return self.departments.get(code) or code

    def dataset(self, code: str) -> str:
        return self.datasets.get(code) or code


def access_log(session: Session, request: Request, *, citizen_id: str) -> list[LogLine]:
    """The citizen's access log exactly as the portal's API gives it: delayed lines only from their day, marked."""
    found = exchange.citizen_access_log(session, citizen_id=citizen_id, store=request.app.state.store,
                                        today=approvals.today(request.app.state.settings))
    consents = exchange.consents_named(session, citizen_id=citizen_id, entries=[line.entry for line in found])
    return [LogLine(at=line.entry.at, department=line.entry.department_code, dataset=line.entry.dataset_code,
                    kind=line.entry.kind, service_item=line.entry.service_item, purpose=line.entry.purpose,
                    basis=line.entry.basis, consent_id=consents.get(line.entry.id), delayed_until=line.delayed_until,
                    delay_basis=line.delay_basis)
            for line in found]


def _record_items(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(name), "—" if value is None else str(value)) for name, value in record.items()]


@router.get("")
def my_page(request: Request, session: DbSession, citizen: web.SignedInCitizen) -> Response:
    today = approvals.today(request.app.state.settings)
    log = access_log(session, request, citizen_id=citizen.citizen_id)
    consents = service.consents_of(session, citizen_id=citizen.citizen_id)
    requests = service.requests_of(session, citizen_id=citizen.citizen_id)
    expiry = service.RequestExpiry.of(request.app.state.settings)
    # Each with its state today: one past its last day shows as expired, whether or not the job has recorded it.
    states = [(item, expiry.status(item)) for item in requests]
    names = Names(session, departments={line.department for line in log} | {item.department_code for item in [*consents, *requests]},
                  datasets={line.dataset for line in log} | {item.dataset_code for item in [*consents, *requests]})
    return pages.render(
        request, "me.html", citizen=citizen, names=names, log=log, kind_words=KIND_WORDS,
        consents=[(consent, service.consent_status(consent, today=today)) for consent in consents], consent_words=CONSENT_WORDS,
        pending=[(item, expiry.last_day(item)) for item, state in states if state == "awaiting_citizen"],
        decided=[(item, state) for item, state in states if state != "awaiting_citizen"], request_words=REQUEST_WORDS,
        record_items=_record_items,
    )


@router.post("/consents/{consent_id}/withdraw", dependencies=web.CheckedForm)
def withdraw_consent(consent_id: int, request: Request, session: DbSession, citizen: web.SignedInCitizen) -> Response:
    consent = service.withdraw_consent(session, citizen_id=citizen.citizen_id, consent_id=consent_id, actor=ACTOR)
    return web.redirect(request, "/me#consents", flash=(
        f"Consent {consent.id} withdrawn: {consent.department_code} no longer receives your {consent.dataset_code} data."))


@router.post("/requests/{request_id}/approve", dependencies=web.CheckedForm)
def approve_request(request_id: int, request: Request, session: DbSession, citizen: web.SignedInCitizen) -> Response:
    decided = service.decide_request(session, citizen_id=citizen.citizen_id, request_id=request_id, approve=True, actor=ACTOR,
                                     expiry=service.RequestExpiry.of(request.app.state.settings))
    return web.redirect(request, "/me#requests", flash=(
        f"Request {decided.id} approved: {decided.department_code} will receive exactly what you saw, once."))


@router.post("/requests/{request_id}/refuse", dependencies=web.CheckedForm)
def refuse_request(request_id: int, request: Request, session: DbSession, citizen: web.SignedInCitizen) -> Response:
    decided = service.decide_request(session, citizen_id=citizen.citizen_id, request_id=request_id, approve=False, actor=ACTOR,
                                     expiry=service.RequestExpiry.of(request.app.state.settings))
    return web.redirect(request, "/me#requests", flash=f"Request {decided.id} refused: nothing is sent to {decided.department_code}.")
