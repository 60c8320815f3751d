"""The data manager's approval pages under /ui: sign-in, the queue, an application, grants.

Server-rendered and usable without JavaScript. People sign in with their name and
password (the ``users`` table); the signed session cookie holds their id and a CSRF
token that every form sends back. Decisions and revocations call the same service
functions as the API, acting as ``user:<name>``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from approvals import service
from approvals.dependencies import manager_application, manager_grant
from approvals.errors import InvalidDecision, WrongState
from approvals.models import Application, Grant
from directory.models import Dataset
from govshare import identities
from govshare.db import DbSession, utcnow
from govshare.errors import Forbidden, GovshareError, InvalidInput
from govshare.models import Department, User
from govshare.permissions import OVERSEERS, roles_for

TEMPLATES_DIR = Path(__file__).parent / "templates"
STYLESHEET = TEMPLATES_DIR / "govshare.css"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

SESSION_MAX_AGE = 8 * 3600
USER_KEY, USER_NAME_KEY, SIGNED_IN_KEY, CSRF_KEY, FLASH_KEY = "user_id", "user_name", "signed_in_at", "csrf", "flash"
QUEUE_LIMIT = 200
UI_ROLES = OVERSEERS
# Pages show applications and names of people: keep them out of shared caches and frames.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

router = APIRouter(prefix="/ui", include_in_schema=False)


class SignInRequired(GovshareError):
    status, type, title = 303, "sign-in-required", "Sign in required"


class CsrfRefused(GovshareError):
    status, type, title = 403, "csrf-refused", "Form refused"


def session_middleware_options(*, secret_key: str, issuer: str) -> dict[str, Any]:
    """Options for Starlette's SessionMiddleware: a signed, strict, 8-hour cookie for /ui only."""
    return {
        "secret_key": secret_key, "session_cookie": "govshare_ui", "path": "/ui", "max_age": SESSION_MAX_AGE,
        "same_site": "strict", "https_only": issuer.startswith("https"),
    }


# --- who is signed in --------------------------------------------------------------------


def _sign_in_redirect(request: Request) -> SignInRequired:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/ui"
    return SignInRequired("sign in to use the approval pages", headers={"Location": "/ui/login?" + urlencode({"next": target})})


def signed_in_user(request: Request, session: DbSession) -> User:
    """The person signed in to this browser session, or a redirect to the sign-in page."""
    user_id, signed_in_at = request.session.get(USER_KEY), request.session.get(SIGNED_IN_KEY)
    fresh = isinstance(signed_in_at, int | float) and time.time() - signed_in_at < SESSION_MAX_AGE
    user = session.get(User, user_id) if isinstance(user_id, int) and fresh else None
    if user is None or user.disabled_at is not None:
        for key in (USER_KEY, USER_NAME_KEY, SIGNED_IN_KEY):
            request.session.pop(key, None)
        raise _sign_in_redirect(request)
    return user


def manager_user(user: Annotated[User, Depends(signed_in_user)]) -> User:
    """The signed-in person, if they hold the manager (or admin) role; a 403 page otherwise."""
    if not any(str(role) in user.roles for role in UI_ROLES):
        raise Forbidden(
            f"These pages are for data managers: your account ({user.name}) does not have the manager role. "
            "To use another account, sign out on the sign-in page, /ui/login."
        )
    return user


ManagerUser = Annotated[User, Depends(manager_user)]


def may(user: User, action: str) -> bool:
    """Whether the person holds a role that the permissions table allows ``action`` to."""
    return any(str(role) in user.roles for role in roles_for(action))


def person_allowed(action: str):
    """A dependency letting through only a signed-in manager whom the permissions table allows ``action``."""

    def _check(user: ManagerUser) -> User:
        if not may(user, action):
            needed = " or ".join(sorted(str(role) for role in roles_for(action)))
            raise Forbidden(f"Only people with the {needed} role may do this; nothing was changed.")
        return user

    _check.__name__ = f"person_allowed_{action.replace('.', '_')}"
    return _check


DecidingUser = Annotated[User, Depends(person_allowed("applications.decide"))]
RevokingUser = Annotated[User, Depends(person_allowed("grants.revoke"))]


def _actor(user: User) -> str:
    return f"user:{user.name}"


# --- forms: CSRF -----------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """This session's CSRF token (created on first use)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def _own_origins(request: Request) -> set[str]:
    issuer = urlsplit(request.app.state.settings.issuer)
    return {f"{request.url.scheme}://{request.url.netloc}", f"{issuer.scheme}://{issuer.netloc}"}


async def checked_form(request: Request) -> None:
    """Refuse a form sent from another site, or without this session's CSRF token."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRefused("This form was sent from another site, so it was refused. Nothing was changed.")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in _own_origins(request):
        raise CsrfRefused("This form was sent from another site, so it was refused. Nothing was changed.")
    form = await request.form()
    sent, expected = form.get("csrf_token"), request.session.get(CSRF_KEY)
    if not isinstance(sent, str) or not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused("This form has expired or did not come from this site: reload the page and try again. Nothing was changed.")


CheckedForm = [Depends(checked_form)]


async def posted_form(request: Request) -> FormData:
    """The POSTed form itself, for fields named after a dataset's items."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]


# --- presenting --------------------------------------------------------------------------------

STATUS_LABELS = {
    service.Status.draft: "Draft",
    service.Status.submitted: "Waiting for a decision",
    service.Status.awaiting_provider: "Waiting for the providing department",
    service.Status.approved: "Approved",
    service.Status.rejected: "Rejected",
    service.Status.returned: "Returned for changes",
    service.Status.withdrawn: "Withdrawn",
}

EVENT_LABELS = {
    "application.drafted": "Draft saved",
    "application.edited": "Changed by the applicant",
    "application.submitted": "Submitted for review",
    "application.withdrawn": "Withdrawn by the applicant",
    "application.awaiting_provider": "Approved by the data manager; waiting for the providing department",
    "application.approved": "Approved; grant created",
    "application.rejected": "Rejected",
    "application.returned": "Returned for changes",
    "application.provider_approved": "Signed off by the providing department; grant created",
    "application.provider_rejected": "Refused by the providing department",
    "application.provider_returned": "Returned by the providing department",
    "application.overdue": "Decision overdue",
    "grant.revoked": "Grant revoked",
}

GRANT_STATE_LABELS = {
    service.GrantState.pending: "Not yet started",
    service.GrantState.active: "Active",
    service.GrantState.expired: "Expired",
    service.GrantState.revoked: "Revoked",
}

OPERATOR_WORDS = {"eq": "is", "ne": "is not", "lt": "is less than", "le": "is at most", "gt": "is more than", "ge": "is at least"}


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


def mask_words(mask: Any) -> str:
    """A mask in plain words: 'first 2 characters kept', 'year only'."""
    if isinstance(mask, dict) and len(mask) == 1:
        (rule, count), = mask.items()
        return f"{'first' if rule == 'keep_first' else 'last'} {count} characters kept, the rest hidden"
    return {"keyed_hash": "replaced by a keyed hash", "year_only": "year only", "null": "withheld"}.get(str(mask), str(mask))


def row_filter_words(row_filter: dict[str, Any] | None) -> str:
    """A row filter in plain words: 'district is one of 01, 02 and birth_date is at least 1990-01-01'."""
    if not row_filter:
        return "No row filter: every record of the dataset"
    parts = []
    for key, value in row_filter.items():
        if key in ("and", "or"):
            inner = f" {key} ".join(row_filter_words(child) for child in value)
            parts.append(f"({inner})" if len(value) > 1 else inner)
            continue
        (operator, operand), = value.items()
        if operator == "in":
            parts.append(f"{key} is one of {', '.join(str(item) for item in operand)}")
        elif operator == "between":
            parts.append(f"{key} is between {operand[0]} and {operand[1]}")
        elif operator == "is_null":
            parts.append(f"{key} is empty" if operand else f"{key} is not empty")
        else:
            parts.append(f"{key} {OPERATOR_WORDS.get(operator, operator)} {operand}")
    return " and ".join(parts)


def duration_words(span: timedelta) -> str:
    """'3 days 4 hours', '2 hours 5 minutes', 'less than a minute'."""
    minutes = int(abs(span).total_seconds() // 60)
    days, hours, minutes = minutes // 1440, minutes % 1440 // 60, minutes % 60

    def unit(count: int, name: str) -> str:
        return f"{count} {name}{'' if count == 1 else 's'}"

    if days:
        return unit(days, "day") + (f" {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour") + (f" {unit(minutes, 'minute')}" if minutes else "")
    return unit(minutes, "minute") if minutes else "less than a minute"


@dataclass(frozen=True)
class Ageing:
    """How long an application has waited and where it stands against its decision time limit."""

    waiting: str | None
    overdue: bool
    due_words: str | None

    @classmethod
    def of(cls, application: Application, now: datetime) -> Ageing:
        open_ = application.status in service.OPEN_STATES
        waiting = duration_words(now - application.filed_at) if open_ and application.filed_at else None
        due = application.decision_due
        if not open_ or due is None:
            return cls(waiting, False, None)
        if due < now:
            return cls(waiting, True, f"Overdue by {duration_words(now - due)}")
        return cls(waiting, False, f"Due in {duration_words(due - now)}")


class Formats:
    """Dates and times as people read them, in the exchange's time zone."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)

    def when(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        local = moment.astimezone(self.zone)
        return f"{local.day} {local:%b %Y %H:%M} {local.tzname()}"

    def iso(self, moment: datetime | None) -> str:
        return moment.isoformat() if moment else ""

    @staticmethod
    def day(value) -> str:
        return f"{value.day} {value:%b %Y}" if value else "—"


def _flash(request: Request, message: str) -> None:
    request.session[FLASH_KEY] = message


def render(request: Request, template: str, *, status_code: int = 200, user: User | None = None, **context: Any) -> Response:
    """A page, with the layout's needs: the user, the CSRF token and any flash message."""
    context.update(
        user=user, csrf_token=csrf_token(request), flash=request.session.pop(FLASH_KEY, None),
        fmt=Formats(request.app.state.settings.timezone), status_labels=STATUS_LABELS,
    )
    return templates.TemplateResponse(request, template, context, status_code=status_code, headers=PAGE_HEADERS)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path of these pages: a sign-in link must not send people to another site."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return "/ui"
    return target


# --- the stylesheet and signing in -------------------------------------------------------------


@router.get("/style.css")
def stylesheet() -> Response:
    return Response(STYLESHEET.read_text(), media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@router.get("/login")
def login_page(request: Request, next: str = "/ui") -> Response:
    # Someone already signed in (say, without the manager role) may sign out here.
    return render(request, "login.html", next=_safe_next(next), name="", signed_in_as=request.session.get(USER_NAME_KEY))


@router.post("/login", dependencies=CheckedForm)
def login(
    request: Request, session: DbSession, name: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1000)] = "", next: Annotated[str, Form()] = "/ui",
) -> Response:
    user = identities.authenticate_user(session, name=name, password=password)
    if user is None:
        return render(request, "login.html", status_code=401, next=_safe_next(next), name=name,
                      error="The name or the password is wrong.")
    # A new session on sign-in: nothing from before (a planted token) carries over.
    request.session.clear()
    request.session.update({USER_KEY: user.id, USER_NAME_KEY: user.name, SIGNED_IN_KEY: int(time.time()),
                            CSRF_KEY: secrets.token_urlsafe(32)})
    _flash(request, f"Signed in as {user.name}.")
    return _redirect(_landing(user, _safe_next(next)))


def _landing(user: User, next: str) -> str:
    """Where sign-in leads: the page asked for; for a department's people asking for none, their own.

    The start page (/ui, the queue) is the managers'; a demander or a service person
    signing in without a page in mind was shown a 403 there.
    """
    if next == "/ui" and not any(str(role) in user.roles for role in UI_ROLES) and may(user, "sharing.profile") and user.department_code:
        return "/ui/sharing"
    return next


@router.post("/logout", dependencies=CheckedForm)
def logout(request: Request) -> Response:
    request.session.clear()
    _flash(request, "You have signed out.")
    return _redirect("/ui/login")


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
    return render(
        request, "queue.html", user=user, rows=rows, datasets=datasets, departments=departments,
        status_filters=STATUS_FILTERS,
        filters={"status": status, "dataset": dataset.strip(), "department": department.strip().upper(), "overdue": overdue},
        overdue_count=sum(1 for _, ageing in rows if ageing.overdue), truncated=len(rows) >= QUEUE_LIMIT,
    )


# --- one application ----------------------------------------------------------------------------


ApplicationForManager = manager_application(manager_user)


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
    return render(
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
        mask_words=mask_words, may_decide=may(user, "applications.decide"), error=error, form=form or {},
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


@router.post("/applications/{application_id}/decision", dependencies=CheckedForm)
def decide(
    request: Request, session: DbSession, user: DecidingUser, application: ApplicationForManager,
    form: PostedForm,
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
        service.decide(session, application=application, actor=_actor(user), decision=chosen,
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
        message = f"Your decision was not saved: {problem.detail}."
        return _application_page(request, session, user, application, status_code=422, error=message, form=typed)
    _flash(request, _decided_message(application))
    return _redirect(f"/ui/applications/{application.id}")


# --- grants ---------------------------------------------------------------------------------------

GRANT_FILTERS = {"all": "All", **{str(state): label for state, label in GRANT_STATE_LABELS.items()}}


GrantForManager = manager_grant(manager_user)


def _grants_page(
    request: Request, session: Session, user: User, *, state: str = "all", dataset: str = "", status_code: int = 200,
    error: str | None = None, error_grant: int | None = None, reason: str = "",
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
    return render(
        request, "grants.html", status_code=status_code, user=user, grants=grants, datasets=datasets,
        state_labels=GRANT_STATE_LABELS, grant_filters=GRANT_FILTERS, filters={"state": state, "dataset": dataset.strip()},
        row_filter_words=row_filter_words, mask_words=mask_words, may_revoke=may(user, "grants.revoke"), error=error, error_grant=error_grant, reason=reason,
    )


@router.get("/grants")
def grants_page(request: Request, session: DbSession, user: ManagerUser, state: str = "all", dataset: str = "") -> Response:
    return _grants_page(request, session, user, state=state, dataset=dataset)


@router.post("/grants/{grant_id}/revoke", dependencies=CheckedForm)
def revoke(
    request: Request, session: DbSession, user: RevokingUser, grant: GrantForManager,
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    try:
        service.revoke_grant(session, grant=grant, actor=_actor(user), reason=reason)
    except (InvalidDecision, WrongState) as problem:
        session.rollback()
        return _grants_page(request, session, user, status_code=problem.status, error_grant=grant.id, reason=reason,
                            error=f"Grant {grant.id} was not revoked: {problem.detail}.")
    _flash(request, f"Grant {grant.id} revoked: {grant.department_code} can no longer receive {grant.dataset_code} under it.")
    return _redirect("/ui/grants")
