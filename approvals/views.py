"""The data manager's approval pages under /ui: the queue, an application, grants.

Server-rendered and usable without JavaScript, in the web shell's layout (``govshare.web``:
sign-in, session, CSRF). Decisions and revocations call the same service functions as
the API, acting as ``user:<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from approvals import service
from approvals.dependencies import grant_to_pause, manager_application, manager_grant
from approvals.errors import ApplicationNotFound, InvalidDecision, WrongState
from approvals.labels import EVENT_LABELS, GRANT_STATE_LABELS, STATUS_LABELS, in_words, mask_words, row_filter_words
from approvals.models import Application, Grant
from directory.models import Dataset
from govshare import web
from govshare.db import DbSession, utcnow
from govshare.errors import Forbidden, InvalidInput
from govshare.models import Department, Role, User
from govshare.permissions import OVERSEERS

pages = web.Pages(Path(__file__).parent / "templates", status_labels=STATUS_LABELS)

QUEUE_LIMIT = 200

router = APIRouter(prefix="/ui", include_in_schema=False)

NAVIGATION = (
    web.NavLink("Applications", "/ui", tuple(OVERSEERS), current=("/ui/applications",)),
    web.NavLink("Grants", "/ui/grants", tuple(OVERSEERS)),
    web.NavLink("Sign-off", "/ui/provider", (Role.provider,), department_only=True),
)

ManagerUser = web.ManagerUser


def person_allowed(action: str):
    """A signed-in manager whom the permissions table allows ``action``."""
    return web.person_allowed(action, first=web.manager_user)


DecidingUser = Annotated[User, Depends(person_allowed("applications.decide"))]
PausingUser = Annotated[User, Depends(web.person_allowed("grants.pause"))]
RevokingUser = Annotated[User, Depends(person_allowed("grants.revoke"))]


# --- presenting --------------------------------------------------------------------------------

MASK_CHOICES = {
    "keep_first": "Keep the first N characters",
    "keep_last": "Keep the last N characters",
    "keyed_hash": "Keyed hash (linkable, not readable)",
    "year_only": "Year only",
    "null": "Withhold (always empty)",
}


def mask_choices(item_type: str) -> dict[str, str]:
    """The masks that suit an item of this type."""
    allowed = {"keyed_hash", "null"}
    if item_type == "string":
        allowed |= {"keep_first", "keep_last"}
    if item_type in ("date", "datetime"):
        allowed.add("year_only")
    return {rule: label for rule, label in MASK_CHOICES.items() if rule in allowed}


def masks_from_form(rules: dict[str, str], counts: dict[str, str]) -> dict[str, Any]:
    """The masks chosen in the approval form, in the service's shape ({"name": {"keep_first": 2}, ...})."""
    masks: dict[str, Any] = {}
    for name, rule in rules.items():
        if not rule:
            continue
        if rule in ("keep_first", "keep_last"):
            count = counts.get(name, "")
            if not (count.isascii() and count.isdigit()) or int(count) > 64:  # '²'.isdigit(), yet int('²') fails
                raise InvalidDecision(f"the mask of {name} keeps some characters: say how many, a whole number from 0 to 64")
            masks[name] = {rule: int(count)}
        else:
            masks[name] = rule
    return masks


@dataclass(frozen=True)
class Ageing:
    """How long an application has waited and where it stands against its decision time limit."""

    waiting: str | None
    overdue: bool
    due_words: str | None

    @classmethod
    def of(cls, application: Application, now: datetime) -> Ageing:
        open_ = application.status in service.OPEN_STATES
        waiting = web.duration_words(now - application.filed_at) if open_ and application.filed_at else None
        due = application.decision_due
        if not open_ or due is None:
            return cls(waiting, False, None)
        if due < now:
            return cls(waiting, True, f"Overdue by {web.duration_words(now - due)}")
        return cls(waiting, False, f"Due in {web.duration_words(due - now)}")


def _labelled(rows) -> list[tuple[str, str]]:
    """(code, name) rows as a select's options: "CODE – name"."""
    return [(code, f"{code} – {name}") for code, name in rows]


# --- the queue ----------------------------------------------------------------------------------

STATUS_FILTERS = {"open": "Waiting (all open)", **{str(status): label for status, label in STATUS_LABELS.items()}}


@router.get("")
def queue_page(
    request: Request, session: DbSession, user: ManagerUser, status: str = "open", dataset: str = "",
    department: str = "", overdue: bool = False,
) -> Response:
    now = utcnow()
    status = status if status in STATUS_FILTERS else "open"
    applications = service.queue(
        session, statuses=None if status == "open" else [status], dataset=dataset.strip() or None,
        department=department.strip().upper() or None, overdue_only=overdue, now=now, limit=QUEUE_LIMIT,
    )
    datasets = session.execute(select(Dataset.code, Dataset.title).order_by(Dataset.code)).all()
    departments = session.execute(select(Department.code, Department.name).order_by(Department.code)).all()
    rows = [(application, Ageing.of(application, now)) for application in applications]
    return pages.render(
        request, "queue.html", user=user, rows=rows, dataset_options=_labelled(datasets), department_options=_labelled(departments),
        status_filters=STATUS_FILTERS,
        filters={"status": status, "dataset": dataset.strip(), "department": department.strip().upper(), "overdue": overdue},
        overdue_count=sum(1 for _, ageing in rows if ageing.overdue), truncated=len(rows) >= QUEUE_LIMIT,
    )


# --- one application ----------------------------------------------------------------------------


ApplicationForManager = manager_application(web.manager_user)


def _share_conditions(dataset: Dataset) -> list[str]:
    text = dataset.document.get("share_conditions") or ""
    return [part.strip() for part in text.split(";") if part.strip()]


def _application_page(
    request: Request, session: Session, user: User, application: Application, *, status_code: int = 200,
    error: str | None = None, form: dict[str, Any] | None = None,
) -> Response:
    now = utcnow()
    dataset = service.get_dataset(session, application.dataset_code)
    requested = set(application.items)
    items = [
        {**item, "requested": item["name"] in requested, "justification": (application.justifications or {}).get(item["name"]),
         "mask_choices": mask_choices(item.get("type", ""))}
        for item in dataset.document.get("items", [])
    ]
    findings = (application.inspection or {}).get("findings", [])
    return pages.render(
        request, "application.html", status_code=status_code, user=user, application=application, dataset=dataset,
        items=items, unknown_items=sorted(requested - {item["name"] for item in items}),
        errors=[finding for finding in findings if finding["severity"] == "error"],
        warnings=[finding for finding in findings if finding["severity"] != "error"],
        row_filter=row_filter_words(application.row_filter), ageing=Ageing.of(application, now),
        period_days=(application.period_end - application.period_start).days + 1,
        applicant_history=service.applicant_history(session, application=application),
        events=service.history(session, application_id=application.id), event_labels=EVENT_LABELS,
        share_conditions=_share_conditions(dataset), reasons=service.REASON_LABELS,
        reason_label=service.REASON_LABELS.get(application.reason_code) if application.reason_code else None,
        mask_words=mask_words, may_decide=web.may(user, "applications.decide"), error=error, form=form or {},
    )


@router.get("/applications/{application_id}")
def application_page(request: Request, session: DbSession, user: ManagerUser, application: ApplicationForManager) -> Response:
    return _application_page(request, session, user, application)


def _decided_message(application: Application) -> str:
    if application.status == service.Status.approved:
        return f"Application {application.id} approved: grant {application.grant_id} created."
    if application.status == service.Status.awaiting_provider:
        return (f"Application {application.id} approved by you; it now waits for the sign-off of "
                f"{application.provider_department}, which provides {application.dataset_code}.")
    if application.status == service.Status.rejected:
        return f"Application {application.id} rejected ({service.REASON_LABELS[application.reason_code]})."
    return f"Application {application.id} returned to {application.department_code} for changes."


@router.post("/applications/{application_id}/decision", dependencies=web.CheckedForm)
def decide(
    request: Request, session: DbSession, user: DecidingUser, application: ApplicationForManager,
    form: web.PostedForm,
    decision: Annotated[str, Form(max_length=20)] = "", reason_code: Annotated[str, Form(max_length=40)] = "",
    comment: Annotated[str, Form(max_length=4000)] = "", conditions: Annotated[list[str], Form()] = [],  # noqa: B006
) -> Response:
    chosen_masks = {name: str(form.get(f"mask.{name}") or "") for name in application.items}
    mask_counts = {name: str(form.get(f"mask_count.{name}") or "").strip() for name in application.items}
    try:
        chosen = service.Decision(
            decision, reason_code or None, comment.strip() or None,
            tuple(condition for condition in conditions if condition.strip()), masks_from_form(chosen_masks, mask_counts),
        )
        service.decide(session, application=application, actor=web.actor(user), decision=chosen,
                       settings=request.app.state.settings)
    except (WrongState, StaleDataError) as problem:
        session.rollback()
        application = service.get_application(session, application.id)
        detail = problem.detail if isinstance(problem, WrongState) else "someone else changed it at the same time"
        message = (f"Your decision was not saved: this application is now "
                   f"“{STATUS_LABELS.get(application.status, application.status)}” ({detail}). "
                   "Probably another manager decided it first; see its history below.")
        return _application_page(request, session, user, application, status_code=409, error=message)
    except InvalidInput as problem:  # an invalid decision or mask
        session.rollback()
        application = service.get_application(session, application.id)
        typed = {"decision": decision, "reason_code": reason_code, "comment": comment, "conditions": conditions,
                 "masks": chosen_masks, "mask_counts": mask_counts}
        message = f"Your decision was not saved: {in_words(problem.detail)}."
        return _application_page(request, session, user, application, status_code=422, error=message, form=typed)
    return web.redirect(request, f"/ui/applications/{application.id}", flash=_decided_message(application))


# --- grants ---------------------------------------------------------------------------------------

GRANT_FILTERS = {"all": "All", **{str(state): label for state, label in GRANT_STATE_LABELS.items()}}


GrantForManager = manager_grant(web.manager_user)


def _grants_page(
    request: Request, session: Session, user: User, *, state: str = "all", dataset: str = "",
) -> Response:
    today = service.today(request.app.state.settings)
    state = state if state in GRANT_FILTERS else "all"
    query = select(Grant).order_by(Grant.id.desc())
    if dataset.strip():
        query = query.where(Grant.dataset_code == dataset.strip())
    grants = [(grant, service.grant_state(grant, today)) for grant in session.execute(query).scalars()]
    if state != "all":
        grants = [(grant, grant_state) for grant, grant_state in grants if grant_state == state]
    datasets = session.execute(select(Dataset.code, Dataset.title).order_by(Dataset.code)).all()
    return pages.render(
        request, "grants.html", user=user, grants=grants, dataset_options=_labelled(datasets),
        state_labels=GRANT_STATE_LABELS, grant_filters=GRANT_FILTERS, filters={"state": state, "dataset": dataset.strip()},
        row_filter_words=row_filter_words, mask_words=mask_words, may_revoke=web.may(user, "grants.revoke"),
    )


@router.get("/grants")
def grants_page(request: Request, session: DbSession, user: ManagerUser, state: str = "all", dataset: str = "") -> Response:
    return _grants_page(request, session, user, state=state, dataset=dataset)


def _grant_page(
    request: Request, session: Session, user: User, grant: Grant, *, status_code: int = 200, error: str | None = None,
    reason: str = "", pause_reason: str = "",
) -> Response:
    state = service.grant_state(grant, service.today(request.app.state.settings))
    return pages.render(
        request, "grant.html", status_code=status_code, user=user, grant=grant, state=state, state_labels=GRANT_STATE_LABELS,
        row_filter=row_filter_words(grant.row_filter), mask_words=mask_words, may_revoke=web.may(user, "grants.revoke"),
        may_pause=web.may(user, "grants.pause"), error=error, reason=reason, pause_reason=pause_reason,
    )


@router.get("/grants/{grant_id}")
def grant_page(request: Request, session: DbSession, user: ManagerUser, grant: GrantForManager) -> Response:
    """One grant: what it allows, its state, and (for those who may) the step that revokes it."""
    return _grant_page(request, session, user, grant)


@router.post("/grants/{grant_id}/revoke", dependencies=web.CheckedForm)
def revoke(
    request: Request, session: DbSession, user: RevokingUser, grant: GrantForManager,
    reason: Annotated[str, Form(max_length=4000)] = "", confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return _grant_page(request, session, user, grant, status_code=422, reason=reason,
                           error=f"Grant {grant.id} was not revoked: tick the box to confirm that "
                                 f"{grant.department_code} loses this access now.")
    try:
        service.revoke_grant(session, grant=grant, actor=web.actor(user), reason=reason)
    except (InvalidDecision, WrongState) as problem:
        session.rollback()
        grant = service.get_grant(session, grant.id)
        return _grant_page(request, session, user, grant, status_code=problem.status, reason=reason,
                           error=f"Grant {grant.id} was not revoked: {in_words(problem.detail)}.")
    return web.redirect(request, f"/ui/grants/{grant.id}",
                        flash=f"Grant {grant.id} revoked: {grant.department_code} can no longer receive {grant.dataset_code} under it.")


def grant_for_pausing_person(grant_id: int, session: DbSession, user: PausingUser) -> Grant:
    """The grant, locked, if the signed-in person may pause or resume it (a manager, or the providing department's officer)."""
    return grant_to_pause(session, grant_id, user)


GrantForPausingPerson = Annotated[Grant, Depends(grant_for_pausing_person)]


def _pause_outcome_page(request: Request, session: Session, user: User, grant: Grant, *, status_code: int, error: str,
                        pause_reason: str = "") -> Response:
    """The page the person paused from, again, saying why nothing changed: the grant's page, or the provider's application page."""
    if user.has_role(*OVERSEERS):
        return _grant_page(request, session, user, grant, status_code=status_code, error=error, pause_reason=pause_reason)
    return _provider_page(request, session, user, service.get_application(session, grant.application_id),
                          status_code=status_code, error=error, pause_reason=pause_reason)


def _page_after_pausing(user: User, grant: Grant) -> str:
    return f"/ui/grants/{grant.id}" if user.has_role(*OVERSEERS) else f"/ui/provider/applications/{grant.application_id}"


@router.post("/grants/{grant_id}/pause", dependencies=web.CheckedForm)
def pause(
    request: Request, session: DbSession, user: PausingUser, grant: GrantForPausingPerson,
    reason: Annotated[str, Form(max_length=service.MAX_PAUSE_REASON)] = "", confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return _pause_outcome_page(request, session, user, grant, status_code=422, pause_reason=reason,
                                   error=f"Grant {grant.id} was not paused: tick the box to confirm that "
                                         f"{grant.department_code} receives nothing under it until it is resumed.")
    try:
        service.pause_grant(session, grant=grant, actor=web.actor(user), reason=reason, today=service.today(request.app.state.settings))
    except (InvalidDecision, WrongState) as problem:
        session.rollback()
        grant = service.get_grant(session, grant.id)
        return _pause_outcome_page(request, session, user, grant, status_code=problem.status, pause_reason=reason,
                                   error=f"Grant {grant.id} was not paused: {in_words(problem.detail)}.")
    return web.redirect(request, _page_after_pausing(user, grant),
                        flash=f"Grant {grant.id} paused: {grant.department_code} receives nothing under it until it is resumed.")


@router.post("/grants/{grant_id}/resume", dependencies=web.CheckedForm)
def resume(
    request: Request, session: DbSession, user: PausingUser, grant: GrantForPausingPerson,
    reason: Annotated[str, Form(max_length=service.MAX_PAUSE_REASON)] = "", confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return _pause_outcome_page(request, session, user, grant, status_code=422,
                                   error=f"Grant {grant.id} was not resumed: tick the box to confirm that "
                                         f"{grant.department_code} receives {grant.dataset_code} again.")
    try:
        service.resume_grant(session, grant=grant, actor=web.actor(user), reason=reason,
                             today=service.today(request.app.state.settings))
    except (InvalidDecision, WrongState) as problem:
        session.rollback()
        grant = service.get_grant(session, grant.id)
        return _pause_outcome_page(request, session, user, grant, status_code=problem.status,
                                   error=f"Grant {grant.id} was not resumed: {in_words(problem.detail)}.")
    return web.redirect(request, _page_after_pausing(user, grant),
                        flash=f"Grant {grant.id} resumed: {grant.department_code} receives {grant.dataset_code} under it again.")


# --- the providing department's sign-off -----------------------------------------------------------


def provider_officer(user: web.SignedInUser) -> User:
    """A signed-in officer of a department whom the permissions table lets sign off conditional applications."""
    if not web.may(user, "applications.provider_decide") or not user.department_code:
        raise Forbidden(f"This page is for a providing department's officers (the provider role, in a department): "
                        f"your account ({user.name}) is not one of them.")
    return user


ProviderOfficer = Annotated[User, Depends(provider_officer)]


def application_for_officer(request: Request, application_id: int, session: DbSession, user: ProviderOfficer) -> Application:
    """An application for one of the officer's department's datasets (another's is not found); locked when deciding."""
    application = session.get(Application, application_id)
    if application is None or application.provider_department != user.department_code or application.status == service.Status.draft:
        raise ApplicationNotFound(f"Your department ({user.department_code}) provides the data of no application {application_id}.")
    if request.method == "POST":
        application = service.get_application(session, application_id, for_update=True)
        if application.department_code == user.department_code:
            raise Forbidden("Nobody signs off an application of their own department; nothing was changed.")
    return application


ApplicationForOfficer = Annotated[Application, Depends(application_for_officer)]


@router.get("/provider")
def provider_queue_page(request: Request, session: DbSession, user: ProviderOfficer) -> Response:
    """The applications for the officer's department's data that wait for its sign-off, longest waiting first."""
    now = utcnow()
    waiting = session.execute(
        select(Application).where(Application.provider_department == user.department_code,
                                  Application.status == service.Status.awaiting_provider)
        .order_by(Application.filed_at, Application.id)).scalars().all()
    return pages.render(request, "provider_queue.html", user=user, rows=[(item, Ageing.of(item, now)) for item in waiting])


def _provider_page(request: Request, session: Session, user: User, application: Application, *, status_code: int = 200,
                   error: str | None = None, form: dict[str, Any] | None = None, pause_reason: str = "") -> Response:
    dataset = service.get_dataset(session, application.dataset_code)
    grant = session.get(Grant, application.grant_id) if application.grant_id else None
    grant_state = service.grant_state(grant, service.today(request.app.state.settings)) if grant else None
    return pages.render(
        request, "provider_application.html", status_code=status_code, user=user, application=application, dataset=dataset,
        row_filter=row_filter_words(application.row_filter), mask_words=mask_words, reasons=service.REASON_LABELS,
        events=service.history(session, application_id=application.id), event_labels=EVENT_LABELS,
        own=application.department_code == user.department_code, error=error, form=form or {},
        grant=grant, grant_state=grant_state, grant_state_labels=GRANT_STATE_LABELS, pause_reason=pause_reason,
    )


@router.get("/provider/applications/{application_id}")
def provider_application_page(request: Request, session: DbSession, user: ProviderOfficer,
                              application: ApplicationForOfficer) -> Response:
    return _provider_page(request, session, user, application)


_PROVIDER_DONE = {
    "approve": "signed off: grant {grant} created for {department}",
    "reject": "refused: {department} will not receive {dataset}",
    "return": "returned to {department} for changes",
}


@router.post("/provider/applications/{application_id}/decision", dependencies=web.CheckedForm)
def provider_decision(
    request: Request, session: DbSession, user: ProviderOfficer, application: ApplicationForOfficer,
    decision: Annotated[str, Form(max_length=20)] = "", reason_code: Annotated[str, Form(max_length=40)] = "",
    comment: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    try:
        service.provider_decide(session, application=application, actor=web.actor(user), settings=request.app.state.settings,
                                decision=service.Decision(decision, reason_code or None, comment.strip() or None))
    except (WrongState, StaleDataError) as problem:
        session.rollback()
        application = service.get_application(session, application.id)
        detail = problem.detail if isinstance(problem, WrongState) else "someone else changed it at the same time"
        return _provider_page(request, session, user, application, status_code=409, error=(
            f"Your sign-off was not saved: this application is now “{STATUS_LABELS.get(application.status, application.status)}” "
            f"({detail})."))
    except InvalidInput as problem:
        session.rollback()
        application = service.get_application(session, application.id)
        return _provider_page(request, session, user, application, status_code=422,
                              error=f"Your sign-off was not saved: {in_words(problem.detail)}.",
                              form={"decision": decision, "reason_code": reason_code, "comment": comment})
    done = _PROVIDER_DONE[decision].format(grant=application.grant_id, department=application.department_code,
                                           dataset=application.dataset_code)
    return web.redirect(request, f"/ui/provider/applications/{application.id}", flash=f"Application {application.id} {done}.")
