"""Authorization for the exchange: each dependency returns the object the caller may act on.

As in approvals: another department's grant or extract answers exactly as one that does
not exist (404); a 403 is about the caller's role, or a grant of its own that delivers
nothing now (``NoActiveGrant``).
"""

# No "from __future__ import annotations": FastAPI must see the closures' dependency types as objects.
from typing import Annotated

from fastapi import Depends, Request

from approvals import service as approvals
from approvals.dependencies import Principal, department_grant
from approvals.errors import GrantNotFound
from approvals.models import Grant
from directory import service as directory
from directory.models import Dataset
from exchange import service
from exchange.extracts import service as extracts
from exchange.errors import ExtractNotFound, LinkInvalid
from exchange.models import Extract
from govshare.auth import Caller, require
from govshare.db import DbSession
from govshare.errors import Forbidden
from govshare.models import Role
from govshare.permissions import OVERSEERS
from govshare.settings import Settings


def active_extract_grant(session, grant_id: int, holder: Principal, *, settings: Settings) -> service.Scope:
    """The scope of extract grant ``grant_id`` of the holder's department, if active; another department's does not exist."""
    grant = session.get(Grant, grant_id)
    if grant is None or holder.department is None or grant.department_code != holder.department:
        raise GrantNotFound(f"grant {grant_id} does not exist")
    return service.active_grant(session, department=holder.department, dataset_code=grant.dataset_code, delivery="extract",
                                today=approvals.today(settings), grant_id=grant_id)


def extract_grant_for(action: str):
    """A dependency giving the scope of the caller's department's active extract grant named in the path."""
    check_role = require(action)

    def extract_grant_for_caller(grant_id: int, request: Request, session: DbSession,
                                 caller: Annotated[Caller, Depends(check_role)]) -> service.Scope:
        return active_extract_grant(session, grant_id, caller, settings=request.app.state.settings)

    extract_grant_for_caller.__name__ = f"extract_grant_for_{action.replace('.', '_')}"
    return extract_grant_for_caller


def grant_for_token_keeper(grant_id: int, session: DbSession,
                           caller: Annotated[Caller, Depends(require("sharing.tokens"))]) -> Grant:
    """Grant ``grant_id``, in any state, if the caller's department holds it or the caller oversees the exchange."""
    return department_grant(session, grant_id, caller)


def extract_for_reader(extract_id: str, session: DbSession,
                       caller: Annotated[Caller, Depends(require("extracts.read"))]) -> Extract:
    """The extract, if the caller's department asked for it or the caller oversees the exchange."""
    extract = session.get(Extract, extract_id)
    if extract is None or not (extract.department_code == caller.department or caller.has_role(*OVERSEERS)):
        raise ExtractNotFound(f"extract {extract_id} does not exist")
    return extract


def extract_for_download(extract_id: str, request: Request, session: DbSession,
                         caller: Annotated[Caller, Depends(require("extracts.request"))],
                         expires: int = 0, signature: str = "") -> Extract:
    """A finished extract of the caller's department, through a download link this server signed and that has not expired."""
    if not extracts.link_is_valid(extract_id, expires=expires, signature=signature,
                                  secret=extracts.link_secret(request.app.state.keystore)):
        raise LinkInvalid("this download link is forged or has expired; ask GET /api/v1/extracts/{id} for a new one")
    extract = session.get(Extract, extract_id)
    if extract is None or extract.department_code != caller.department or extract.status != "done":
        raise ExtractNotFound(f"extract {extract_id} does not exist")
    return extract


def intake_dataset_for_depositor(code: str, session: DbSession,
                                 caller: Annotated[Caller, Depends(require("exchange.deposit"))]) -> Dataset:
    """The dataset named in the path, if it is the caller's department's: only its own services deposit into it."""
    dataset = directory.get_dataset(session, code)
    if dataset.department_code != caller.department:
        raise Forbidden(f"only department {dataset.department_code}'s services deposit into {code}")
    return dataset


def department_for_key_holder(code: str, caller: Annotated[Caller, Depends(require("departments.keys"))]) -> str:
    """The department named in the path, if it is the caller's own (or the caller is an admin)."""
    department = code.upper()
    if department != caller.department and not caller.has_role(Role.admin):
        raise Forbidden(f"only department {department} may register its key")
    return department


ExtractGrantForRequester = Annotated[service.Scope, Depends(extract_grant_for("extracts.request"))]
ExtractGrantForProfile = Annotated[service.Scope, Depends(extract_grant_for("sharing.profile"))]
GrantForTokenKeeper = Annotated[Grant, Depends(grant_for_token_keeper)]
ExtractForReader = Annotated[Extract, Depends(extract_for_reader)]
ExtractForDownload = Annotated[Extract, Depends(extract_for_download)]
IntakeDatasetForDepositor = Annotated[Dataset, Depends(intake_dataset_for_depositor)]
DepartmentForKeyHolder = Annotated[str, Depends(department_for_key_holder)]
