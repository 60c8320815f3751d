"""Authorization for approvals: each dependency returns the object the caller may act on.

Two rules hold everywhere, for clients (tokens) and people (the approval pages) alike:

- another department's object that the caller may not read answers exactly as one that
  does not exist (404), whatever the route; a 403 is only ever about the caller's role,
  or about an object the caller may read but not change;
- an application never submitted (a draft, or a draft withdrawn) is its applying
  department's alone: nobody else reads it, decides it or sees its events;
- nobody decides an application of their own department: neither a manager (403) nor, on
  a conditional dataset, the providing department's sign-off (403). A department that
  applies for its own dataset needs no sign-off from itself: the manager's approval
  grants it (``service.needs_provider_sign_off``).
"""

# No "from __future__ import annotations": FastAPI must see the dependency closures in
# ``manager_application`` and ``manager_grant`` as objects, not as strings it cannot resolve.
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from sqlalchemy import ColumnElement, and_, false, or_, true

from approvals import service
from approvals.errors import ApplicationNotFound, GrantNotFound, NotYourApplication, NotYourGrant, OwnDepartmentDecision
from approvals.models import Application, Grant
from govshare.auth import Caller, require
from govshare.db import DbSession
from govshare.models import Role
from govshare.permissions import OVERSEERS


class Principal(Protocol):
    """Who acts: a client (``govshare.auth.Caller``) or a person signed in to the pages (``govshare.models.User``)."""

    @property
    def department(self) -> str | None: ...

    def has_role(self, *roles: Role | str) -> bool: ...


def is_draft(application: Application) -> bool:
    """Never submitted: a draft, or a draft withdrawn. Its applying department's alone."""
    return application.filed_at is None


def can_read_application(caller: Principal, application: Application) -> bool:
    """Overseers see every filed application; the applying department's demanders and the providing department's providers see theirs."""
    author = caller.department == application.department_code and caller.has_role(Role.demander)
    if is_draft(application):
        return author
    if author or caller.has_role(*OVERSEERS):
        return True
    return caller.department == application.provider_department and caller.has_role(Role.provider)


def applications_visible_to(caller: Principal) -> ColumnElement[bool]:
    """The same rule as ``can_read_application``, as a SQL condition for lists."""
    filed = Application.filed_at.is_not(None)
    visible: list[ColumnElement[bool]] = []
    if caller.has_role(Role.demander):
        visible.append(Application.department_code == caller.department)
    if caller.has_role(*OVERSEERS):
        visible.append(filed)
    elif caller.has_role(Role.provider):
        visible.append(and_(filed, Application.provider_department == caller.department))
    return or_(false(), *visible)


def readable_application(session, application_id: int, caller: Principal, *, for_update: bool = False) -> Application:
    """Application ``application_id`` if ``caller`` may read it; to others it does not exist."""
    application = service.get_application(session, application_id, for_update=for_update)
    if not can_read_application(caller, application):
        raise ApplicationNotFound(f"application {application_id} does not exist")
    return application


def application_to_decide(session, application_id: int, decider: Principal) -> Application:
    """The application, locked, if ``decider`` (a manager) may decide it: never their own department's."""
    # Locked for the rest of the transaction: a second manager waits, then finds it decided (409).
    application = readable_application(session, application_id, decider, for_update=True)
    if decider.department is not None and decider.department == application.department_code:
        raise OwnDepartmentDecision(
            f"application {application_id} was filed by your own department, {application.department_code}; "
            "a manager of another department decides it")
    return application


def manager_application(principal: Callable[..., Any]) -> Any:
    """``ApplicationForManager`` for managers that the dependency ``principal`` admits: the API's clients or the pages' people.

    Reading it (GET) needs only that the manager may read it; acting on it (any other
    method) locks it and refuses their own department's.
    """

    def application_for_manager(application_id: int, request: Request, session: DbSession,
                                manager: Annotated[Any, Depends(principal)]) -> Application:
        if request.method in ("GET", "HEAD"):
            return readable_application(session, application_id, manager)
        return application_to_decide(session, application_id, manager)

    return Annotated[Application, Depends(application_for_manager)]


def application_for_reader(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("applications.read"))]
) -> Application:
    return readable_application(session, application_id, caller)


def application_for_applicant(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("applications.file"))]
) -> Application:
    application = readable_application(session, application_id, caller, for_update=True)
    if application.department_code != caller.department:
        raise NotYourApplication(f"application {application_id} belongs to department {application.department_code}")
    return application


def application_for_provider(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("applications.provider_decide"))]
) -> Application:
    application = readable_application(session, application_id, caller, for_update=True)
    if application.provider_department != caller.department:
        raise NotYourApplication(
            f"only department {application.provider_department}, which provides {application.dataset_code}, may sign off")
    if application.department_code == caller.department:
        raise OwnDepartmentDecision(
            f"application {application_id} was filed by your own department, {application.department_code}; "
            "it needs no sign-off from its own department")
    return application


def can_read_grant(caller: Principal, grant: Grant, provider_department: str) -> bool:
    if caller.has_role(*OVERSEERS):
        return True
    if caller.department == grant.department_code:
        return True
    return caller.department == provider_department and caller.has_role(Role.provider)


def grants_visible_to(caller: Annotated[Caller, Depends(require("grants.read"))]) -> ColumnElement[bool]:
    """Which grants a list shows the caller: its own department's; all of them to overseers."""
    return true() if caller.has_role(*OVERSEERS) else Grant.department_code == caller.department


def grant_for_reader(grant_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("grants.read"))]) -> Grant:
    grant = service.get_grant(session, grant_id)
    application = service.get_application(session, grant.application_id)
    if not can_read_grant(caller, grant, application.provider_department):
        raise GrantNotFound(f"grant {grant_id} does not exist")
    return grant


def department_grant(session, grant_id: int, caller: Principal) -> Grant:
    """Grant ``grant_id``, in any state, if the caller's department holds it or the caller oversees the exchange; to others it does not exist."""
    grant = session.get(Grant, grant_id)
    if grant is None or not (caller.has_role(*OVERSEERS) or grant.department_code == caller.department):
        raise GrantNotFound(f"grant {grant_id} does not exist")
    return grant


def grant_to_pause(session, grant_id: int, caller: Principal) -> Grant:
    """Grant ``grant_id``, locked, if ``caller`` may pause or resume it: an overseer, or the providing department's provider.

    Those who may not read the grant find it does not exist (404); the applying department reads it but may not pause
    it (403), nor may a provider that is the applying department itself.
    """
    # Locked: of two pauses at once, one wins and the other finds it paused (409).
    grant = service.get_grant(session, grant_id, for_update=True)
    application = service.get_application(session, grant.application_id)
    if not can_read_grant(caller, grant, application.provider_department):
        raise GrantNotFound(f"grant {grant_id} does not exist")
    if caller.has_role(*OVERSEERS):
        return grant
    if caller.department == application.provider_department and caller.department != grant.department_code \
            and caller.has_role(Role.provider):
        return grant
    raise NotYourGrant(f"only a data manager or department {application.provider_department}, which provides "
                       f"{grant.dataset_code}, may pause or resume grant {grant_id}")


def grant_for_pauser(grant_id: int, session: DbSession,
                     caller: Annotated[Caller, Depends(require("grants.pause"))]) -> Grant:
    return grant_to_pause(session, grant_id, caller)


def manager_grant(principal: Callable[..., Any]) -> Any:
    """``GrantForManager`` for managers that the dependency ``principal`` admits: the grant, locked for the rest of
    the request when they act on it."""

    def grant_for_manager(grant_id: int, request: Request, session: DbSession,
                          manager: Annotated[Any, Depends(principal)]) -> Grant:
        # Locked: of two revocations at once, one wins and the other finds it revoked (409).
        return service.get_grant(session, grant_id, for_update=request.method not in ("GET", "HEAD"))

    return Annotated[Grant, Depends(grant_for_manager)]


ApplicationForReader = Annotated[Application, Depends(application_for_reader)]
ApplicationForApplicant = Annotated[Application, Depends(application_for_applicant)]
ApplicationForManager = manager_application(require("applications.decide"))
ApplicationForProvider = Annotated[Application, Depends(application_for_provider)]
GrantForReader = Annotated[Grant, Depends(grant_for_reader)]
GrantForManager = manager_grant(require("grants.revoke"))
GrantForPauser = Annotated[Grant, Depends(grant_for_pauser)]
VisibleGrants = Annotated[ColumnElement[bool], Depends(grants_visible_to)]
