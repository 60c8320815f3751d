"""Corrections: a demander reports a wrong value under its grant; the provider answers it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from approvals import service as approvals
from approvals.models import Grant
from directory.errors import DatasetNotFound
from directory.models import Dataset
from evaluation.errors import CorrectionAnswered, CorrectionNotFound, InvalidCorrection, NoGrantOnDataset
from evaluation.models import Correction
from govshare import audit
from govshare.db import get_or_raise, utcnow
from govshare.settings import Settings

CORRECTION_OUTCOMES = ("corrected", "rejected")


def file_correction(
    session: Session, *, dataset_code: str, department: str, actor: str, item: str, key: str, description: str,
    settings: Settings, now: datetime | None = None,
) -> Correction:
    """A demander reports wrong data it received from a dataset; the provider must answer in working days."""
    now = now or utcnow()
    dataset = session.execute(select(Dataset).where(Dataset.code == dataset_code)).scalar_one_or_none()
    if dataset is None:
        raise DatasetNotFound(f"dataset {dataset_code} does not exist")
    grants = list(session.execute(
        select(Grant).where(Grant.department_code == department, Grant.dataset_id == dataset.id).order_by(Grant.id.desc())
    ).scalars())
    if not grants:
        raise NoGrantOnDataset(f"department {department} has received nothing from {dataset_code}: it holds no grant on it")
    if not key.strip() or not description.strip():
        raise InvalidCorrection("say which record (key) and what is wrong (description)")
    holding = [grant for grant in grants if item in grant.columns]
    if not holding:
        received = sorted({column for grant in grants for column in grant.columns})
        raise InvalidCorrection(f"item {item!r} is not among the items {department} received: {', '.join(received)}")
    correction = Correction(
        dataset_id=dataset.id, dataset_code=dataset.code, provider_department=dataset.department_code,
        department_code=department, grant_id=holding[0].id, item=item, key=key.strip(), description=description.strip(),
        status="open", filed_by=actor, filed_at=now,
        due_at=approvals.calendar(settings).due(now, settings.correction_working_days),
    )
    session.add(correction)
    session.flush()
    audit.record(session, actor=actor, action="correction.filed", subject=f"correction:{correction.id}",
                 details={"dataset": dataset.code, "department": department, "item": item})
    return correction


def get_correction(session: Session, correction_id: int, *, for_update: bool = False) -> Correction:
    return get_or_raise(session, Correction, correction_id, for_update=for_update,
                        missing=CorrectionNotFound(f"correction request {correction_id} does not exist"))


def answer_correction(
    session: Session, *, correction: Correction, actor: str, outcome: str, answer: str, now: datetime | None = None,
) -> Correction:
    """The providing department answers: the data was corrected, or the report is rejected, saying why."""
    if outcome not in CORRECTION_OUTCOMES:
        raise InvalidCorrection(f"outcome must be one of: {', '.join(CORRECTION_OUTCOMES)}")
    if not answer.strip():
        raise InvalidCorrection("an answer says what was done or why nothing is wrong")
    if correction.status != "open":
        raise CorrectionAnswered(f"correction request {correction.id} was answered already ({correction.status})")
    correction.status, correction.answer = outcome, answer.strip()
    correction.answered_at, correction.answered_by = now or utcnow(), actor
    session.flush()
    audit.record(session, actor=actor, action=f"correction.{outcome}", subject=f"correction:{correction.id}",
                 details={"dataset": correction.dataset_code, "department": correction.department_code})
    return correction


def corrections(
    session: Session, *, department: str | None, provider_department: str | None, status: str | None = None,
    dataset: str | None = None, now: datetime | None = None, limit: int = 200,
) -> list[Correction]:
    """Correction requests a party sees (both ``None``: all of them), newest first; status open/overdue/answered."""
    now = now or utcnow()
    query = select(Correction)
    parties = []
    if department is not None:
        parties.append(Correction.department_code == department)
    if provider_department is not None:
        parties.append(Correction.provider_department == provider_department)
    if parties:
        query = query.where(or_(*parties))
    if status == "open":
        query = query.where(Correction.status == "open")
    elif status == "overdue":
        query = query.where(Correction.status == "open", Correction.due_at < now)
    elif status == "answered":
        query = query.where(Correction.status != "open")
    if dataset:
        query = query.where(Correction.dataset_code == dataset)
    return list(session.execute(query.order_by(Correction.id.desc()).limit(limit)).scalars())


def corrections_under_grant(session: Session, *, grant_id: int | None) -> list[Correction]:
    """Correction requests a demander filed about what it received under one grant, newest first."""
    if grant_id is None:
        return []
    return list(session.execute(select(Correction).where(Correction.grant_id == grant_id).order_by(Correction.id.desc())).scalars())


def correction_document(correction: Correction, now: datetime) -> dict[str, Any]:
    """A correction request as the parties read it."""
    late_at = correction.answered_at or now
    return {
        "id": correction.id, "dataset": correction.dataset_code, "provider_department": correction.provider_department,
        "department": correction.department_code, "grant_id": correction.grant_id, "item": correction.item,
        "key": correction.key, "description": correction.description, "status": correction.status,
        "filed_by": correction.filed_by, "filed_at": correction.filed_at.isoformat(), "due_at": correction.due_at.isoformat(),
        "overdue": late_at > correction.due_at, "answered_at": correction.answered_at.isoformat() if correction.answered_at else None,
        "answered_by": correction.answered_by, "answer": correction.answer,
    }
