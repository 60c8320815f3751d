"""Authorization for approvals: each dependency returns the object the caller may act on."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy import ColumnElement, false, or_, true

from approvals import service
from approvals.errors import ApplicationNotFound, GrantNotFound, NotYourApplication
from approvals.models import Application, Grant
from govshare.auth import Caller, require
from govshare.db import DbSession
from govshare.errors import Forbidden
from govshare.models import Role

OVERSEERS = (Role.manager, Role.admin)


def can_read_application(caller: Caller, application: Application) -> bool:
    """Managers see all; the applying department's demanders and the providing department's providers see theirs."""
    if caller.has_role(*OVERSEERS):
        return True
    if caller.department == application.department_code and caller.has_role(Role.demander):
        return True
    return caller.department == application.provider_department and caller.has_role(Role.provider)


def applications_visible_to(caller: Caller) -> ColumnElement[bool]:
    """The same rule as ``can_read_application``, as a SQL condition for lists."""
    if caller.has_role(*OVERSEERS):
        return true()
    visible = []
    if caller.has_role(Role.demander):
        visible.append(Application.department_code == caller.department)
    if caller.has_role(Role.provider):
        visible.append(Application.provider_department == caller.department)
    return or_(false(), *visible)


def application_for_reader(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("applications.read"))]
) -> Application:
    application = service.get_application(session, application_id)
    if not can_read_application(caller, application):
        # Another department's application: as if it did not exist.
        raise ApplicationNotFound(f"application {application_id} does not exist")
    return application


def application_for_applicant(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("applications.file"))]
) -> Application:
    application = service.get_application(session, application_id, for_update=True)
    if application.department_code != caller.department:
        raise NotYourApplication(f"application {application_id} belongs to department {application.department_code}")
    return application


def application_for_manager(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("applications.decide"))]
) -> Application:
    # Locked for the rest of the transaction: a second manager waits, then finds it decided (409).
    return service.get_application(session, application_id, for_update=True)


def application_for_provider(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("applications.provider_decide"))]
) -> Application:
    application = service.get_application(session, application_id, for_update=True)
    if application.provider_department != caller.department:
        raise Forbidden(f"only department {application.provider_department}, which provides {application.dataset_code}, may sign off")
    return application


def can_read_grant(caller: Caller, grant: Grant, provider_department: str) -> bool:
    if caller.has_role(*OVERSEERS):
        return True
    if caller.department == grant.department_code:
        return True
    return caller.department == provider_department and caller.has_role(Role.provider)


def grant_for_reader(grant_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("grants.read"))]) -> Grant:
    grant = service.get_grant(session, grant_id)
    application = service.get_application(session, grant.application_id)
    if not can_read_grant(caller, grant, application.provider_department):
        raise GrantNotFound(f"grant {grant_id} does not exist")
    return grant


def grant_for_manager(grant_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("grants.revoke"))]) -> Grant:
    # Locked: of two revocations at once, one wins and the other finds it revoked (409).
    return service.get_grant(session, grant_id, for_update=True)


ApplicationForReader = Annotated[Application, Depends(application_for_reader)]
ApplicationForApplicant = Annotated[Application, Depends(application_for_applicant)]
ApplicationForManager = Annotated[Application, Depends(application_for_manager)]
ApplicationForProvider = Annotated[Application, Depends(application_for_provider)]
GrantForReader = Annotated[Grant, Depends(grant_for_reader)]
GrantForManager = Annotated[Grant, Depends(grant_for_manager)]
