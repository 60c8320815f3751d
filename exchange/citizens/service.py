"""Citizen control: consents to a department's use of a ``consent_required`` dataset, and explicit requests.

Consents. A dataset registered with ``"consent_required": true`` serves a citizen's row
only to a department holding that citizen's active consent for that dataset (an active
consent: recorded ``active``, not withdrawn, ``valid_until`` today or later). Every
delivery asks the record store afresh (nothing is cached), so a withdrawal takes effect
on the next call. A row without consent is treated as a row outside the grant: a lookup
answers 404, a batch lists the key as ``missing``, and pages, streams, extracts and Delta
Sharing leave it out (joined inside DuckDB against ``consented_table``).

Explicit requests. For a dataset registered with ``"explicit_request": true`` a service
asks first (``open_request``); the records it would receive under its grant are taken
then and kept as the request's ``preview``: the citizen sees exactly what is sent, and
approving sends exactly that, even if the data changes meanwhile. The service reads an
approved request once (``take_delivery``); the preview is erased at delivery or refusal.

A request lives ``GOVSHARE_CITIZEN_REQUEST_DAYS`` days after the day it was asked
(``RequestExpiry``). Past that, one awaiting the citizen or approved but never collected is
``expired``: every read and decision computes that from ``created_at`` and today, so no job
has to have run; the retention job then records it and erases the preview it still holds.

The citizen's own decisions (giving and withdrawing consent, approving and refusing a
request) are entries on the audit chain, with the citizen as actor (``citizen_actor``).

Services take the session first and keyword-only arguments, flush and never commit. The
citizen's page (``/me``) calls ``consents_of``, ``withdraw_consent``, ``requests_of``,
``decide_request``, and ``consent_view`` / ``request_view`` for their JSON shape.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import pyarrow as pa
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from approvals import service as approvals
from approvals.models import Grant
from directory.models import Dataset
from exchange.errors import (
    ConsentNotFound, InvalidConsent, NoActiveGrant, RecordNotFound, RequestAwaitingCitizen, RequestDecided, RequestDelivered,
    RequestExpired, RequestNotFound, RequestRefused,
)
from exchange.models import CitizenRequest, Consent, DeliveredConsent
from govshare import audit
from govshare.db import utcnow
from govshare.models import Department
from govshare.settings import Settings

MAX_CITIZEN_ID = Consent.__table__.c.citizen_id.type.length
MAX_PURPOSE = 2000


def citizen_actor(citizen_id: str) -> str:
    """How a citizen acting on their own consents and requests is named in the audit log."""
    return f"citizen:{citizen_id}"


# --- consents ---


def consent_required(dataset: Dataset) -> bool:
    """Whether ``dataset`` serves a citizen's row only under that citizen's consent."""
    return bool(dataset.document.get("consent_required"))


def consent_status(consent: Consent, *, today: date) -> str:
    """``active``, ``withdrawn``, or ``expired`` (active as recorded, past its last day)."""
    if consent.status == "active" and consent.valid_until < today:
        return "expired"
    return consent.status


def consent_view(consent: Consent, *, today: date) -> dict[str, Any]:
    """A consent as the API and the citizen's page show it."""
    return {
        "id": consent.id, "citizen_id": consent.citizen_id, "department": consent.department_code,
        "dataset": consent.dataset_code, "purpose": consent.purpose, "until": consent.valid_until.isoformat(),
        "status": consent_status(consent, today=today), "given_at": consent.given_at.isoformat(),
        "withdrawn_at": consent.withdrawn_at.isoformat() if consent.withdrawn_at else None,
    }


def give_consent(session: Session, *, citizen_id: str, department: str, dataset_code: str, purpose: str, until: date,
                 actor: str, today: date) -> Consent:
    """Record a citizen's consent that ``department`` may receive their rows of ``dataset_code`` until ``until`` (inclusive).

    ``InvalidConsent`` (422, the detail naming the field) for a department or dataset that does not
    exist, a dataset that asks no consent, a day already past, or an empty purpose.
    """
    if session.get(Department, department) is None:
        raise InvalidConsent(f"department: department {department} does not exist")
    dataset = session.execute(select(Dataset).where(Dataset.code == dataset_code)).scalar_one_or_none()
    if dataset is None or dataset.status != "active":
        raise InvalidConsent(f"dataset: dataset {dataset_code} does not exist")
    if not consent_required(dataset):
        raise InvalidConsent(f"dataset: dataset {dataset_code} is not registered with consent_required; it asks no consent")
    if until < today:
        raise InvalidConsent(f"until: {until.isoformat()} is in the past (today is {today.isoformat()})")
    if not purpose.strip():
        raise InvalidConsent("purpose: say what the consent is for")
    consent = Consent(citizen_id=citizen_id, department_code=department, dataset_id=dataset.id, dataset_code=dataset.code,
                      purpose=purpose, valid_until=until, status="active", given_at=utcnow(), given_by=actor)
    session.add(consent)
    session.flush()
    audit.record(session, actor=citizen_actor(citizen_id), action="consent.given", subject=f"consent:{consent.id}",
                 details={"department": department, "dataset": dataset.code, "until": until.isoformat(), "through": actor})
    return consent


def consents_of(session: Session, *, citizen_id: str) -> list[Consent]:
    """Every consent ``citizen_id`` gave (any state), newest first."""
    return list(session.execute(select(Consent).where(Consent.citizen_id == citizen_id)
                                .order_by(Consent.id.desc())).scalars())


def withdraw_consent(session: Session, *, citizen_id: str, consent_id: int, actor: str) -> Consent:
    """Withdraw one of ``citizen_id``'s consents; effective on the next delivery. Withdrawing it again changes nothing.

    Another citizen's consent does not exist for this one (``ConsentNotFound``).
    """
    consent = session.get(Consent, consent_id)
    if consent is None or consent.citizen_id != citizen_id:
        raise ConsentNotFound(f"consent {consent_id} does not exist")
    if consent.status != "withdrawn":
        consent.status, consent.withdrawn_at, consent.withdrawn_by = "withdrawn", utcnow(), actor
        session.flush()
        audit.record(session, actor=citizen_actor(citizen_id), action="consent.withdrawn", subject=f"consent:{consent.id}",
                     details={"department": consent.department_code, "dataset": consent.dataset_code, "through": actor})
    return consent


def _active(*, department: str, dataset_id: int, today: date):
    return (select(Consent.citizen_id, Consent.id)
            .where(Consent.dataset_id == dataset_id, Consent.department_code == department, Consent.status == "active",
                   Consent.valid_until >= today)
            .order_by(Consent.id))


def consents_for(session: Session, *, keys: list[str], department: str, dataset_id: int, today: date) -> dict[str, int]:
    """Of ``keys`` (citizen IDs), those with an active consent for ``department`` on the dataset: key -> consent id (the newest)."""
    found: dict[str, int] = {}
    wanted = sorted({key for key in keys if len(key) <= MAX_CITIZEN_ID})
    for start in range(0, len(wanted), 500):  # bound the IN list (a batch has up to 1,000 keys)
        query = _active(department=department, dataset_id=dataset_id, today=today).where(
            Consent.citizen_id.in_(wanted[start:start + 500]))
        found.update(dict(session.execute(query).all()))  # ordered by id: the newest wins
    return found


def consent_for(session: Session, *, citizen_id: str, department: str, dataset_id: int, today: date) -> int | None:
    """The id of ``citizen_id``'s active consent for ``department`` on the dataset (the newest), or None."""
    return consents_for(session, keys=[citizen_id], department=department, dataset_id=dataset_id, today=today).get(citizen_id)


def consented_keys(session: Session, *, department: str, dataset_id: int, today: date) -> dict[str, int]:
    """Every citizen with an active consent for ``department`` on the dataset: citizen ID -> consent id (the newest)."""
    return dict(session.execute(_active(department=department, dataset_id=dataset_id, today=today)).all())


def consent_digest(consents: dict[str, int]) -> str:
    """A digest of a set of consents (citizen ID -> consent id): a file built under them is stale once it differs."""
    text = "\n".join(f"{citizen_id}\t{consent_id}" for citizen_id, consent_id in sorted(consents.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def record_delivered(session: Session, *, file_id: str, consents: dict[str, int], delivered: list[str]) -> None:
    """Note which consented citizens' rows the file ``file_id`` holds (``delivered``: their IDs), under which consent."""
    rows = [{"file_id": file_id, "citizen_id": citizen_id, "consent_id": consents[citizen_id]}
            for citizen_id in dict.fromkeys(delivered) if citizen_id in consents]
    if rows:
        session.execute(insert(DeliveredConsent.__table__), rows)
    session.flush()


def consent_lapsed(session: Session, *, file_id: str, today: date) -> bool:
    """Whether a consent that a delivered file (an extract, a Delta Sharing file) holds a citizen's row under no longer
    holds (withdrawn, or past its day): that file is then served no more."""
    consent_ids = sorted(set(session.execute(select(DeliveredConsent.consent_id).where(DeliveredConsent.file_id == file_id)).scalars()))
    for start in range(0, len(consent_ids), 500):
        part = consent_ids[start:start + 500]
        holding = session.execute(select(func.count()).select_from(Consent).where(
            Consent.id.in_(part), Consent.status == "active", Consent.valid_until >= today)).scalar_one()
        if holding < len(part):
            return True
    return False


def consented_table(consents: dict[str, int]) -> pa.Table:
    """The consented keys as an Arrow table (``citizen_id`` text, ``consent_id``), to register in DuckDB and join on:
    the keys are data beside the query, never text inside it."""
    return pa.table({"citizen_id": pa.array(list(consents), pa.string()),
                     "consent_id": pa.array(list(consents.values()), pa.int64())})


# --- explicit requests ---


def explicit_request(dataset: Dataset) -> bool:
    """Whether ``dataset`` is delivered only through an explicit request the citizen approved."""
    return bool(dataset.document.get("explicit_request"))


# States in which a request still holds its preview, and so lapses when its time is up.
LAPSING = ("awaiting_citizen", "approved")


@dataclass(frozen=True)
class RequestExpiry:
    """How long explicit requests live, as of ``today``: one asked on day D (in the configured time zone) may be approved
    and collected through day D + ``days``, and is expired from the day after."""

    today: date
    days: int
    zone: tzinfo

    @classmethod
    def of(cls, settings: Settings) -> RequestExpiry:
        """The expiry as of today, as grants count it (``approvals.today``: tests move it the same way)."""
        return cls(today=approvals.today(settings), days=settings.citizen_request_days, zone=approvals.calendar(settings).zone)

    @property
    def cutoff(self) -> datetime:
        """Requests asked before this moment have expired (the start of day ``today - days``)."""
        return datetime.combine(self.today - timedelta(days=self.days), time.min, tzinfo=self.zone).astimezone(UTC)

    def last_day(self, citizen_request: CitizenRequest) -> date:
        """The last day ``citizen_request`` may be approved or collected."""
        return citizen_request.created_at.astimezone(self.zone).date() + timedelta(days=self.days)

    def status(self, citizen_request: CitizenRequest) -> str:
        """The request's state today: as recorded, or ``expired`` once a lapsing one is past its last day."""
        if citizen_request.status in LAPSING and citizen_request.created_at < self.cutoff:
            return "expired"
        return citizen_request.status


def request_view(citizen_request: CitizenRequest, *, expiry: RequestExpiry) -> dict[str, Any]:
    """A request as the citizen's API and page show it: who asks, for what, and ``preview``, exactly what would be sent
    (None once delivered, refused or expired: the copy is erased, or no longer shown while the job has yet to erase it)."""
    status = expiry.status(citizen_request)
    return {
        "id": citizen_request.id, "citizen_id": citizen_request.citizen_id, "department": citizen_request.department_code,
        "dataset": citizen_request.dataset_code, "grant_id": citizen_request.grant_id, "status": status,
        "consent_id": citizen_request.consent_id, "preview": None if status == "expired" else citizen_request.preview,
        "created_at": citizen_request.created_at.isoformat(), "valid_until": expiry.last_day(citizen_request).isoformat(),
        "decided_at": citizen_request.decided_at.isoformat() if citizen_request.decided_at else None,
        "delivered_at": citizen_request.delivered_at.isoformat() if citizen_request.delivered_at else None,
    }


def open_request(session: Session, *, grant: Grant, dataset: Dataset, citizen_id: str, client_id: str,
                 records: list[dict[str, Any]], version: int | None, consent_id: int | None) -> CitizenRequest:
    """Record a service's request for ``citizen_id``'s rows, with ``records`` (JSON-ready, as read under ``grant``) as its
    preview; it awaits the citizen."""
    citizen_request = CitizenRequest(
        citizen_id=citizen_id, department_code=grant.department_code, client_id=client_id, dataset_id=dataset.id,
        dataset_code=dataset.code, grant_id=grant.id, version_number=version, preview=records, consent_id=consent_id,
        status="awaiting_citizen", created_at=utcnow())
    session.add(citizen_request)
    session.flush()
    return citizen_request


def requests_of(session: Session, *, citizen_id: str, status: str | None = None) -> list[CitizenRequest]:
    """``citizen_id``'s requests (those in ``status`` only, when given), newest first."""
    query = select(CitizenRequest).where(CitizenRequest.citizen_id == citizen_id)
    if status is not None:
        query = query.where(CitizenRequest.status == status)
    return list(session.execute(query.order_by(CitizenRequest.id.desc())).scalars())


def _expired(citizen_request: CitizenRequest, expiry: RequestExpiry) -> RequestExpired:
    return RequestExpired(f"request {citizen_request.id} expired after {expiry.last_day(citizen_request).isoformat()}; "
                          "its records are not kept: ask again")


def decide_request(session: Session, *, citizen_id: str, request_id: int, approve: bool, actor: str,
                   expiry: RequestExpiry) -> CitizenRequest:
    """The citizen approves (``approve``) or refuses one of their requests awaiting them, and the audit chain records it.

    Another citizen's request does not exist (``RequestNotFound``); one decided already is
    ``RequestDecided`` (409); one past its last day is ``RequestExpired`` (410). Refusing
    erases the preview. Two decisions at once: one wins.
    """
    citizen_request = session.get(CitizenRequest, request_id)
    if citizen_request is None or citizen_request.citizen_id != citizen_id:
        raise RequestNotFound(f"request {request_id} does not exist")
    if expiry.status(citizen_request) == "expired":
        raise _expired(citizen_request, expiry)
    decision = "approved" if approve else "refused"
    values: dict[str, Any] = {"status": decision, "decided_at": utcnow(), "decided_by": actor}
    if not approve:
        values["preview"] = None
    # Conditional on the state read: a decision racing another (or a delivery, or the expiry job) changes nothing.
    changed = session.execute(update(CitizenRequest).where(CitizenRequest.id == request_id,
                                                           CitizenRequest.status == "awaiting_citizen",
                                                           CitizenRequest.created_at >= expiry.cutoff)
                              .values(**values).execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        session.refresh(citizen_request)
        if expiry.status(citizen_request) == "expired":
            raise _expired(citizen_request, expiry)
        raise RequestDecided(f"request {request_id} is {citizen_request.status} already")
    session.flush()
    session.refresh(citizen_request)
    audit.record(session, actor=citizen_actor(citizen_id), action=f"citizen_request.{decision}",
                 subject=f"citizen_request:{request_id}",
                 details={"department": citizen_request.department_code, "dataset": citizen_request.dataset_code,
                          "through": actor})
    return citizen_request


def request_for_department(session: Session, *, request_id: int, department: str) -> CitizenRequest:
    """Request ``request_id`` if ``department`` made it; another department's does not exist (``RequestNotFound``)."""
    citizen_request = session.get(CitizenRequest, request_id)
    if citizen_request is None or citizen_request.department_code != department:
        raise RequestNotFound(f"request {request_id} does not exist")
    return citizen_request


def take_delivery(session: Session, *, citizen_request: CitizenRequest,
                  expiry: RequestExpiry) -> tuple[list[dict[str, Any]], int | None]:
    """The approved request's records, exactly its preview, handed over once (the request becomes ``delivered`` and its
    copy is erased), and the consent it is delivered under (``consent_required`` datasets).

    409 while the citizen has not decided (``RequestAwaitingCitizen``), 403 once refused
    (``RequestRefused``), 410 once delivered (``RequestDelivered``: also for the loser of two
    reads at once) or past its last day (``RequestExpired``), 403 when the grant it was asked under no longer serves (``NoActiveGrant``),
    404 when the dataset needs consent and the citizen's was withdrawn meanwhile (``RecordNotFound``).
    """
    status = expiry.status(citizen_request)
    if status == "expired":
        raise _expired(citizen_request, expiry)
    if status == "awaiting_citizen":
        raise RequestAwaitingCitizen(f"request {citizen_request.id} awaits the citizen's decision")
    if status == "refused":
        raise RequestRefused(f"the citizen refused request {citizen_request.id}")
    if status == "delivered":
        raise RequestDelivered(f"request {citizen_request.id} was delivered already; its records are not kept")
    grant = session.get(Grant, citizen_request.grant_id)
    if approvals.grant_state(grant, expiry.today) != approvals.GrantState.active:
        raise NoActiveGrant(f"grant {grant.id}, under which request {citizen_request.id} was made, no longer serves")
    consent_id = None
    dataset = session.get(Dataset, citizen_request.dataset_id)
    if consent_required(dataset):
        consent_id = consent_for(session, citizen_id=citizen_request.citizen_id, department=citizen_request.department_code,
                                 dataset_id=dataset.id, today=expiry.today)
        if consent_id is None:
            raise RecordNotFound(f"no record with key {citizen_request.citizen_id} within your grant on {dataset.code}")
    records = list(citizen_request.preview or [])
    changed = session.execute(update(CitizenRequest).where(CitizenRequest.id == citizen_request.id,
                                                           CitizenRequest.status == "approved",
                                                           CitizenRequest.created_at >= expiry.cutoff)
                              .values(status="delivered", delivered_at=utcnow(), preview=None)
                              .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        session.refresh(citizen_request)
        if expiry.status(citizen_request) == "expired":
            raise _expired(citizen_request, expiry)
        raise RequestDelivered(f"request {citizen_request.id} was delivered already; its records are not kept")
    session.flush()
    return records, consent_id
