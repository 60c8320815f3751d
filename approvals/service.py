"""Applications and grants: filing, inspection, decisions, provider sign-off, revocation, expiry.

Every transition writes an ``ApplicationEvent`` (the history and the parties' event
feed) and an audit entry, with who and when, so review durations are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, or_, select
from sqlalchemy.orm import Session

import schemas
from approvals import masks, rowfilter
from approvals.calendar import WorkingCalendar
from approvals.errors import (
    ApplicationNotFound,
    GrantNotFound,
    InspectionFailed,
    InvalidDecision,
    WrongState,
)
from approvals.inspection import inspect, lookup_key_finding, summary
from approvals.models import Application, ApplicationEvent, Grant
from directory.models import Dataset
from directory.errors import DatasetNotFound
from govshare import audit
from govshare.db import get_or_raise, utcnow
from govshare.settings import Settings


class Status(StrEnum):
    draft = "draft"
    submitted = "submitted"
    awaiting_provider = "awaiting_provider"
    approved = "approved"
    rejected = "rejected"
    returned = "returned"
    withdrawn = "withdrawn"


class ReasonCode(StrEnum):
    """The fixed list of reasons a rejection must name."""

    no_legal_basis = "no_legal_basis"
    items_beyond_need = "items_beyond_need"
    duplicate = "duplicate"
    data_not_shareable = "data_not_shareable"
    other = "other"


REASON_LABELS = {
    ReasonCode.no_legal_basis: "No legal basis",
    ReasonCode.items_beyond_need: "Items beyond need",
    ReasonCode.duplicate: "Duplicate application",
    ReasonCode.data_not_shareable: "Data not shareable",
    ReasonCode.other: "Other",
}

DECISIONS = ("approve", "reject", "return")
OPEN_STATES = (Status.submitted, Status.awaiting_provider)
EDITABLE_STATES = (Status.draft, Status.returned)
WITHDRAWABLE_STATES = (Status.draft, Status.submitted, Status.returned, Status.awaiting_provider)


def calendar(settings: Settings) -> WorkingCalendar:
    return WorkingCalendar(holidays=settings.holidays, extra_working_days=settings.extra_working_days, timezone=settings.timezone)


def today(settings: Settings, now: datetime | None = None) -> date:
    """The date as grants and time limits count it: in the configured time zone."""
    return calendar(settings).today(now or utcnow())


def get_dataset(session: Session, code: str) -> Dataset:
    dataset = session.execute(select(Dataset).where(Dataset.code == code)).scalar_one_or_none()
    if dataset is None:
        raise DatasetNotFound(f"dataset {code} does not exist")
    return dataset


def get_application(session: Session, application_id: int, *, for_update: bool = False) -> Application:
    return get_or_raise(session, Application, application_id, for_update=for_update,
                        missing=ApplicationNotFound(f"application {application_id} does not exist"))


def get_grant(session: Session, grant_id: int, *, for_update: bool = False) -> Grant:
    # for_update: held to the end of the transaction, so a revocation cannot race another change of the grant.
    return get_or_raise(session, Grant, grant_id, for_update=for_update, missing=GrantNotFound(f"grant {grant_id} does not exist"))


def document_of(application: Application) -> dict[str, Any]:
    """The application in the unified format (as filed)."""
    document: dict[str, Any] = {
        "dataset": application.dataset_code,
        "service_item": application.service_item,
        "basis": application.basis,
        "items": list(application.items),
        "delivery": application.delivery,
        "period": {"start": application.period_start.isoformat(), "end": application.period_end.isoformat()},
        "purpose": application.purpose,
    }
    if application.scenario:
        document["scenario"] = application.scenario
    if application.row_filter:
        document["row_filter"] = application.row_filter
    if application.justifications:
        document["justifications"] = application.justifications
    if application.disclosure_delay_until is not None:
        document["disclosure"] = {"delay_until": application.disclosure_delay_until.isoformat(),
                                  "basis": application.disclosure_basis or ""}
    return document


def _holds_active_grant(session: Session, *, department: str, dataset_id: int, today: date, exclude_application: int | None) -> bool:
    query = select(func.count()).select_from(Grant).where(
        Grant.department_code == department, Grant.dataset_id == dataset_id, ~grant_ended(today),
    )
    if exclude_application is not None:
        query = query.where(Grant.application_id != exclude_application)
    return session.execute(query).scalar_one() > 0


def _inspect(session: Session, application: Application, dataset: Dataset, settings: Settings, now: datetime) -> dict[str, Any]:
    current = today(settings, now)
    findings = inspect(
        dataset=dataset.document,
        dataset_active=dataset.status == "active",
        application=document_of(application),
        today=current,
        max_usage_months=settings.max_usage_months,
        holds_active_grant=_holds_active_grant(
            session, department=application.department_code, dataset_id=dataset.id,
            today=current, exclude_application=application.id,
        ),
        max_disclosure_delay_days=settings.disclosure_max_delay_days,
    )
    result = summary(findings)
    result["inspected_at"] = now.isoformat()
    return result


def _event(
    session: Session, application: Application, *, kind: str, actor: str, from_status: str | None,
    reason_code: str | None = None, comment: str | None = None, grant_id: int | None = None, at: datetime | None = None,
) -> ApplicationEvent:
    event = ApplicationEvent(
        at=at or utcnow(), kind=kind, application_id=application.id, grant_id=grant_id,
        applicant_department=application.department_code, provider_department=application.provider_department,
        actor=actor, from_status=from_status, to_status=application.status, reason_code=reason_code, comment=comment,
    )
    session.add(event)
    session.flush()
    details = {"from": from_status, "to": application.status, "dataset": application.dataset_code,
               "department": application.department_code}
    if reason_code:
        details["reason_code"] = reason_code
    if grant_id:
        details["grant_id"] = grant_id
    audit.record(session, actor=actor, action=kind, subject=f"application:{application.id}", details=details)
    return event


def _apply_document(application: Application, document: dict[str, Any]) -> None:
    row_filter = document.get("row_filter") or None  # {} means every row, as leaving it out does
    rowfilter.check_storable(row_filter)
    application.service_item = document["service_item"]
    application.scenario = document.get("scenario")
    application.basis = document["basis"]
    application.purpose = document["purpose"]
    application.items = list(document["items"])
    application.justifications = dict(document.get("justifications") or {})
    application.row_filter = row_filter
    application.delivery = document["delivery"]
    application.period_start = date.fromisoformat(document["period"]["start"])
    application.period_end = date.fromisoformat(document["period"]["end"])
    disclosure = document.get("disclosure")
    application.disclosure_delay_until = date.fromisoformat(disclosure["delay_until"]) if disclosure else None
    application.disclosure_basis = (disclosure.get("basis") or "").strip() or None if disclosure else None


def file_application(
    session: Session, *, department: str, actor: str, document: dict[str, Any], draft: bool, settings: Settings,
    now: datetime | None = None,
) -> Application:
    """File an application (or save it as a draft); it is inspected at once."""
    now = now or utcnow()
    schemas.validate("application", document)
    dataset = get_dataset(session, document["dataset"])
    application = Application(
        dataset_id=dataset.id, dataset_code=dataset.code, provider_department=dataset.department_code,
        department_code=department, applicant=actor, status=Status.draft, inspection={}, conditions=[],
        created_at=now, updated_at=now,
    )
    _apply_document(application, document)
    session.add(application)
    session.flush()
    if draft:
        application.inspection = _inspect(session, application, dataset, settings, now)
    _event(session, application, kind="application.drafted", actor=actor, from_status=None, at=now)
    if not draft:
        submit(session, application=application, actor=actor, settings=settings, now=now)  # inspects it
    return application


def update_application(
    session: Session, *, application: Application, actor: str, document: dict[str, Any], settings: Settings,
    now: datetime | None = None,
) -> Application:
    """Change a draft or a returned application; it is inspected again."""
    now = now or utcnow()
    if application.status not in EDITABLE_STATES:
        raise WrongState(f"application {application.id} is {application.status}; only drafts and returned applications can be edited")
    schemas.validate("application", document)
    if document["dataset"] != application.dataset_code:
        raise InvalidDecision("the dataset of an application cannot change; file a new application instead")
    _apply_document(application, document)
    application.updated_at = now
    application.inspection = _inspect(session, application, get_dataset(session, application.dataset_code), settings, now)
    session.flush()
    _event(session, application, kind="application.edited", actor=actor, from_status=application.status, at=now)
    return application


def submit(session: Session, *, application: Application, actor: str, settings: Settings, now: datetime | None = None) -> Application:
    """Send a draft or returned application for review; refused with 422 if the inspection fails."""
    now = now or utcnow()
    if application.status not in EDITABLE_STATES:
        raise WrongState(f"application {application.id} is {application.status}; it cannot be submitted")
    application.inspection = _inspect(session, application, get_dataset(session, application.dataset_code), settings, now)
    errors = [finding for finding in application.inspection["findings"] if finding["severity"] == "error"]
    if errors:
        raise InspectionFailed(
            "; ".join(finding["message"] for finding in errors),
            extra={"inspection": application.inspection},
        )
    previous = application.status
    working_days = calendar(settings)
    application.status = Status.submitted
    application.filed_at = now
    application.inspection_due = working_days.due(now, settings.inspection_working_days)
    application.decision_due = working_days.due(now, settings.decision_working_days)
    application.updated_at = now
    session.flush()
    _event(session, application, kind="application.submitted", actor=actor, from_status=previous, at=now)
    return application


def withdraw(session: Session, *, application: Application, actor: str, now: datetime | None = None) -> Application:
    """The applicant takes the application back before it is decided."""
    if application.status not in WITHDRAWABLE_STATES:
        raise WrongState(f"application {application.id} is {application.status}; it can no longer be withdrawn")
    previous = application.status
    application.status = Status.withdrawn
    application.updated_at = now or utcnow()
    session.flush()
    _event(session, application, kind="application.withdrawn", actor=actor, from_status=previous, at=application.updated_at)
    return application


@dataclass(frozen=True)
class Decision:
    decision: str
    reason_code: str | None = None
    comment: str | None = None
    conditions: tuple[str, ...] = ()
    masks: dict[str, Any] | None = None


def _check_decision(decision: Decision, dataset: Dataset) -> None:
    if decision.decision not in DECISIONS:
        raise InvalidDecision(f"decision must be one of: {', '.join(DECISIONS)}")
    if decision.decision == "reject":
        if decision.reason_code not in ReasonCode.__members__:
            raise InvalidDecision(f"a rejection needs a reason_code, one of: {', '.join(ReasonCode.__members__)}")
        if decision.reason_code == ReasonCode.other and not (decision.comment or "").strip():
            raise InvalidDecision("a rejection for reason 'other' needs a comment saying why")
    elif decision.reason_code is not None:
        raise InvalidDecision("only a rejection carries a reason_code")
    if decision.decision == "return" and not (decision.comment or "").strip():
        raise InvalidDecision("returning an application needs a comment saying what to change")
    if decision.masks and decision.decision != "approve":
        raise InvalidDecision("only an approval carries masks")
    if decision.conditions:
        if decision.decision != "approve":
            raise InvalidDecision("only an approval carries conditions")
        named = (dataset.document.get("share_conditions") or "").casefold()
        foreign = [condition for condition in decision.conditions if condition.strip().casefold() not in named]
        if foreign:
            raise InvalidDecision(
                f"conditions must be among the dataset's share conditions; not named there: {'; '.join(foreign)}"
            )


def _flag_masked_key(application: Application, dataset: Dataset) -> None:
    """Add the inspection's lookup-key warning when the approval's masks hide the key (the filing could not know)."""
    finding = lookup_key_finding(dataset=dataset.document, application={**document_of(application), "masks": application.masks})
    findings = list((application.inspection or {}).get("findings", []))
    if finding is not None and finding.as_dict() not in findings:
        application.inspection = {**(application.inspection or {}), "findings": [*findings, finding.as_dict()]}


def needs_provider_sign_off(application: Application, dataset: Dataset) -> bool:
    """A conditional dataset's provider signs off, unless it is the applicant: nobody signs off their own application."""
    return dataset.share_type == "conditional" and application.department_code != dataset.department_code


def decide(
    session: Session, *, application: Application, actor: str, decision: Decision, settings: Settings,
    now: datetime | None = None,
) -> Application:
    """The data manager's decision: approve (optionally with conditions and masks), reject with a reason, or return."""
    now = now or utcnow()
    dataset = get_dataset(session, application.dataset_code)
    _check_decision(decision, dataset)
    if decision.masks:
        masks.validate(decision.masks, granted=list(application.items), items=dataset.document["items"])
    if application.status != Status.submitted:
        raise WrongState(f"application {application.id} is {application.status}; only submitted applications can be decided")
    previous = application.status
    application.decided_by, application.decision_comment = actor, decision.comment
    application.updated_at = now
    if decision.decision == "approve":
        application.conditions = list(decision.conditions)
        application.masks = dict(decision.masks or {})
        _flag_masked_key(application, dataset)
        if needs_provider_sign_off(application, dataset):
            application.status = Status.awaiting_provider
            session.flush()
            _event(session, application, kind="application.awaiting_provider", actor=actor, from_status=previous,
                   comment=decision.comment, at=now)
            return application
        return _approve(session, application=application, actor=actor, previous=previous, comment=decision.comment, now=now)
    return _close(session, application=application, actor=actor, previous=previous, decision=decision, now=now)


def provider_decide(
    session: Session, *, application: Application, actor: str, decision: Decision, settings: Settings,
    now: datetime | None = None,
) -> Application:
    """The providing department's sign-off on a conditional dataset, after the manager approved."""
    now = now or utcnow()
    dataset = get_dataset(session, application.dataset_code)
    _check_decision(Decision(decision.decision, decision.reason_code, decision.comment), dataset)
    if decision.conditions or decision.masks:
        raise InvalidDecision("conditions and masks are set by the data manager's approval")
    if application.status != Status.awaiting_provider:
        raise WrongState(f"application {application.id} is {application.status}; it is not awaiting the provider's sign-off")
    previous = application.status
    application.updated_at = now
    if decision.decision == "approve":
        return _approve(session, application=application, actor=actor, previous=previous, comment=decision.comment, now=now,
                        kind="application.provider_approved")
    return _close(session, application=application, actor=actor, previous=previous, decision=decision, now=now, by_provider=True)


def _close(session: Session, *, application: Application, actor: str, previous: str, decision: Decision, now: datetime,
           by_provider: bool = False) -> Application:
    prefix = "application.provider_" if by_provider else "application."
    if decision.decision == "reject":
        application.status = Status.rejected
        application.reason_code = decision.reason_code
        application.decided_at = now
        kind = prefix + "rejected"
    else:
        application.status = Status.returned
        kind = prefix + "returned"
    application.decision_comment = decision.comment
    session.flush()
    _event(session, application, kind=kind, actor=actor, from_status=previous, reason_code=decision.reason_code,
           comment=decision.comment, at=now)
    return application


def _approve(session: Session, *, application: Application, actor: str, previous: str, comment: str | None, now: datetime,
             kind: str = "application.approved") -> Application:
    grant = Grant(
        application_id=application.id, department_code=application.department_code, dataset_id=application.dataset_id,
        dataset_code=application.dataset_code, columns=list(application.items), row_filter=application.row_filter,
        delivery=application.delivery, conditions=list(application.conditions or []), masks=dict(application.masks or {}),
        valid_from=application.period_start, valid_until=application.period_end, created_at=now,
    )
    session.add(grant)
    session.flush()
    application.status = Status.approved
    application.grant_id = grant.id
    application.decided_at = now
    session.flush()
    _event(session, application, kind=kind, actor=actor, from_status=previous, comment=comment, grant_id=grant.id, at=now)
    return application


class GrantState(StrEnum):
    pending = "pending"  # approved, the usage period has not begun
    active = "active"
    paused = "paused"  # the manager or the providing department paused it: it serves nothing until resumed
    expired = "expired"
    revoked = "revoked"


def grant_state(grant: Grant | Row, today: date) -> GrantState:
    """Whether a grant serves anything today: only an active one does.

    The one answer every delivery path reads (``exchange.service``, Delta Sharing), so a
    pause holds on all of them at once. ``grant``: a grant, or a row with its
    ``revoked_at``, ``paused_at``, ``valid_from`` and ``valid_until``.
    """
    if grant.revoked_at is not None:
        return GrantState.revoked
    if today > grant.valid_until:
        return GrantState.expired
    if grant.paused_at is not None:
        return GrantState.paused
    if today < grant.valid_from:
        return GrantState.pending
    return GrantState.active


def grant_ended(today: date) -> ColumnElement[bool]:
    """In SQL, whether a grant has ended for good: ``grant_state`` says revoked or expired."""
    return or_(Grant.revoked_at.is_not(None), Grant.valid_until < today)


def revoke_grant(session: Session, *, grant: Grant, actor: str, reason: str, now: datetime | None = None) -> Grant:
    """End a grant before its time; it serves nothing from the next request on."""
    if not reason.strip():
        raise InvalidDecision("revoking a grant needs a reason")
    if grant.revoked_at is not None:
        raise WrongState(f"grant {grant.id} was revoked already")
    now = now or utcnow()
    grant.revoked_at, grant.revoked_by, grant.revoke_reason = now, actor, reason.strip()
    session.flush()
    application = get_application(session, grant.application_id)
    _event(session, application, kind="grant.revoked", actor=actor, from_status=application.status, comment=reason.strip(),
           grant_id=grant.id, at=now)
    return grant


MAX_PAUSE_REASON = 2000


def _pause_reason(reason: str, action: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidDecision(f"{action} a grant needs a reason")
    if len(reason) > MAX_PAUSE_REASON:
        raise InvalidDecision(f"reason: at most {MAX_PAUSE_REASON} characters")
    return reason


def _check_pausable(grant: Grant, today: date, action: str) -> GrantState:
    state = grant_state(grant, today)
    if state in (GrantState.revoked, GrantState.expired):
        raise WrongState(f"grant {grant.id} is {state}; an ended grant cannot be {action}")
    return state


def pause_grant(session: Session, *, grant: Grant, actor: str, reason: str, today: date, now: datetime | None = None) -> Grant:
    """Stop every delivery under a grant, with a reason, until it is resumed; both departments are told (events, webhooks)."""
    reason = _pause_reason(reason, "pausing")
    if _check_pausable(grant, today, "paused") == GrantState.paused:
        raise WrongState(f"grant {grant.id} is paused already")
    now = now or utcnow()
    grant.paused_at, grant.paused_by, grant.pause_reason = now, actor, reason
    session.flush()
    application = get_application(session, grant.application_id)
    _event(session, application, kind="grant.paused", actor=actor, from_status=application.status, comment=reason,
           grant_id=grant.id, at=now)
    return grant


def resume_grant(session: Session, *, grant: Grant, actor: str, reason: str | None = None, today: date,
                 now: datetime | None = None) -> Grant:
    """Let a paused grant deliver again from the next request on; both departments are told."""
    comment = _pause_reason(reason, "resuming") if reason is not None and reason.strip() else None
    if _check_pausable(grant, today, "resumed") != GrantState.paused:
        raise WrongState(f"grant {grant.id} is not paused")
    now = now or utcnow()
    grant.paused_at, grant.paused_by, grant.pause_reason = None, None, None
    session.flush()
    application = get_application(session, grant.application_id)
    _event(session, application, kind="grant.resumed", actor=actor, from_status=application.status, comment=comment,
           grant_id=grant.id, at=now)
    return grant


def escalate_overdue(session: Session, *, now: datetime | None = None) -> list[Application]:
    """Raise an 'application.overdue' event, once, for each open application past its decision time limit."""
    now = now or utcnow()
    already = select(ApplicationEvent.application_id).where(ApplicationEvent.kind == "application.overdue")
    overdue = session.execute(
        select(Application).where(
            Application.status.in_([state.value for state in OPEN_STATES]),
            Application.decision_due < now,
            Application.id.not_in(already),
        ).order_by(Application.decision_due)
    ).scalars().all()
    for application in overdue:
        waited = now - application.filed_at
        _event(session, application, kind="application.overdue", actor="system", from_status=application.status,
               comment=f"decision was due {application.decision_due.isoformat()}; waiting {waited.days} days", at=now)
    return list(overdue)


def queue(
    session: Session, *, statuses: list[str] | None = None, dataset: str | None = None, department: str | None = None,
    overdue_only: bool = False, now: datetime | None = None, limit: int = 200,
) -> list[Application]:
    """Applications waiting on a decision, longest waiting first."""
    now = now or utcnow()
    query = select(Application).where(Application.status.in_(statuses or [state.value for state in OPEN_STATES]),
                                      Application.filed_at.is_not(None))  # a draft is its author's alone
    if dataset:
        query = query.where(Application.dataset_code == dataset)
    if department:
        query = query.where(Application.department_code == department)
    if overdue_only:
        query = query.where(Application.decision_due < now)
    return list(session.execute(query.order_by(Application.filed_at.asc().nullslast(), Application.id).limit(limit)).scalars())


def history(session: Session, *, application_id: int) -> list[ApplicationEvent]:
    return list(session.execute(
        select(ApplicationEvent).where(ApplicationEvent.application_id == application_id).order_by(ApplicationEvent.id)
    ).scalars())


def applicant_history(session: Session, *, application: Application) -> list[Application]:
    """The same department's other applications for the same dataset (newest first)."""
    return list(session.execute(
        select(Application).where(
            Application.department_code == application.department_code,
            Application.dataset_id == application.dataset_id,
            Application.id != application.id,
        ).order_by(Application.id.desc()).limit(50)
    ).scalars())


def events_for(session: Session, *, department: str, sees_all: bool, since: int, limit: int) -> list[ApplicationEvent]:
    """Events after cursor ``since`` that concern ``department`` (all of them for managers).

    A draft's events (and those of a draft withdrawn unsubmitted) reach only the applying department.
    """
    query = select(ApplicationEvent).where(ApplicationEvent.id > since)
    own = ApplicationEvent.applicant_department == department
    filed = and_(ApplicationEvent.to_status != Status.draft,
                 ApplicationEvent.application_id.in_(select(Application.id).where(Application.filed_at.is_not(None))))
    if sees_all:
        query = query.where(or_(own, filed))
    else:
        query = query.where(or_(own, and_(filed, ApplicationEvent.provider_department == department)))
    return list(session.execute(query.order_by(ApplicationEvent.id).limit(limit)).scalars())


def event_document(event: ApplicationEvent) -> dict[str, Any]:
    """An event as the parties read it (the feed and webhooks alike)."""
    return {
        "id": event.id, "at": event.at.isoformat(), "kind": event.kind, "application_id": event.application_id,
        "grant_id": event.grant_id, "department": event.applicant_department,
        "provider_department": event.provider_department, "actor": event.actor, "from_status": event.from_status,
        "to_status": event.to_status, "reason_code": event.reason_code, "comment": event.comment,
    }
