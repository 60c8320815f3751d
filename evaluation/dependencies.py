"""Authorization for evaluation: each dependency returns the object the caller may act on.

As everywhere: another department's object answers exactly as one that does not exist (404).
"""

# No "from __future__ import annotations": FastAPI resolves these annotations at runtime.
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from approvals.dependencies import readable_application
from approvals.models import Application
from evaluation import service
from evaluation.errors import CorrectionNotFound, NotAParty
from evaluation.models import Correction
from govshare.auth import Caller, require
from govshare.db import DbSession
from govshare.errors import Forbidden
from govshare.models import Role
from govshare.permissions import OVERSEERS


@dataclass(frozen=True)
class RatingParty:
    """An application and the side of it the caller rates from."""

    application: Application
    party: str
    caller: Caller


def application_for_rater(
    application_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("ratings.write"))]
) -> RatingParty:
    application = readable_application(session, application_id, caller)
    party = service.party_of(application, department=caller.department, is_demander=caller.has_role(Role.demander),
                             is_provider=caller.has_role(Role.provider))
    if party is None:
        raise NotAParty(f"only {application.department_code} (applying) and {application.provider_department} (providing) rate application {application.id}")
    return RatingParty(application, party, caller)


def correction_for_provider(
    correction_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("corrections.answer"))]
) -> Correction:
    """A correction request against the caller's department's dataset, locked while it is answered."""
    correction = service.get_correction(session, correction_id, for_update=True)
    if correction.provider_department != caller.department:
        if correction.department_code != caller.department:
            raise CorrectionNotFound(f"correction request {correction_id} does not exist")
        raise Forbidden(f"only {correction.provider_department}, which provides {correction.dataset_code}, answers it")
    return correction


def correction_for_reader(
    correction_id: int, session: DbSession, caller: Annotated[Caller, Depends(require("corrections.read"))]
) -> Correction:
    """The filing department, the providing department and overseers read a correction request; to others it does not exist."""
    correction = service.get_correction(session, correction_id)
    parties = (correction.department_code, correction.provider_department)
    if not caller.has_role(*OVERSEERS) and caller.department not in parties:
        raise CorrectionNotFound(f"correction request {correction_id} does not exist")
    return correction


def correction_party(caller: Annotated[Caller, Depends(require("corrections.read"))]) -> str | None:
    """Whose correction requests a list shows: the caller's department's (filed or against its datasets); ``None``: all, for overseers."""
    return None if caller.has_role(*OVERSEERS) else caller.department


RaterOfApplication = Annotated[RatingParty, Depends(application_for_rater)]
CorrectionForProvider = Annotated[Correction, Depends(correction_for_provider)]
CorrectionForReader = Annotated[Correction, Depends(correction_for_reader)]
CorrectionParty = Annotated[str | None, Depends(correction_party)]
