"""The citizen's own page, /me: who used their data, their consents, the requests waiting for them.

Drawn in the web shell's layout behind a citizen's session (``govshare.web.SignedInCitizen``):
the citizen ID comes only from the identity provider's verified ID token, kept in that
session, never from the URL or a form. Everything shown or changed is looked up under that
ID, so another citizen's consent or request answers 404, as one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from directory.models import Dataset
from exchange import service as exchange
from govshare import web
from govshare.db import DbSession
from govshare.models import Department

pages = web.Pages(Path(__file__).parent / "templates")

router = APIRouter(prefix="/me", include_in_schema=False)


@dataclass(frozen=True)
class LogLine:
    """One use of the citizen's data, as their page shows it."""

    at: datetime
    department: str
    department_name: str
    dataset: str
    dataset_title: str
    service_item: str | None
    basis: str | None
    purpose: str | None
    kind: str
    delayed_until: date | None
    delay_basis: str | None


def _names(session, model, codes: set[str], name_field: str) -> dict[str, str]:
    if not codes:
        return {}
    return dict(session.execute(select(model.code, getattr(model, name_field)).where(model.code.in_(sorted(codes)))).all())


def access_log(session, request: Request, *, citizen_id: str) -> list[LogLine]:
    """The citizen's access log as the portal's API gives it (``exchange.service.citizen_access_log``), with names."""
    found = exchange.citizen_access_log(session, citizen_id=citizen_id, store=request.app.state.store)
    entries = [getattr(item, "entry", item) for item in found]
    departments = _names(session, Department, {entry.department_code for entry in entries}, "name")
    datasets = _names(session, Dataset, {entry.dataset_code for entry in entries}, "title")
    lines = []
    for item, entry in zip(found, entries):
        lines.append(LogLine(
            at=entry.at, department=entry.department_code, department_name=departments.get(entry.department_code, ""),
            dataset=entry.dataset_code, dataset_title=datasets.get(entry.dataset_code, ""),
            service_item=entry.service_item, basis=entry.basis, purpose=getattr(entry, "purpose", None), kind=entry.kind,
            delayed_until=getattr(item, "delayed_until", None), delay_basis=getattr(item, "delay_basis", None),
        ))
    return lines


KIND_WORDS = {"lookup": "looked up your record", "query": "read your record in a search", "stream": "read your record in a bulk read",
              "extract": "received your record in a data extract", "deposit": "recorded data you submitted",
              "live": "asked the providing department for your record"}


@router.get("")
def my_page(request: Request, session: DbSession, citizen: web.SignedInCitizen) -> Response:
    context: dict[str, Any] = {"log": access_log(session, request, citizen_id=citizen.citizen_id), "kind_words": KIND_WORDS}
    return pages.render(request, "me.html", citizen=citizen, **context)
