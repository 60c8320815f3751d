"""Two-way ratings: a demander rates a delivered application's review speed, data quality and
stability; the provider rates the application's quality."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import service as approvals
from approvals.models import Application
from evaluation.errors import InvalidRating, NotDelivered, RatingClosed
from evaluation.models import Rating
from evaluation.period import Period
from exchange.models import AccessLogEntry
from govshare.db import utcnow
import schemas

DEMANDER_SCORES = ("review_speed", "data_quality", "stability")
PROVIDER_SCORES = ("application_quality",)
SCORES = DEMANDER_SCORES + PROVIDER_SCORES
RATING_EDITABLE_DAYS = 30


def party_of(application: Application, *, department: str, is_demander: bool, is_provider: bool) -> str | None:
    """Which side of ``application`` a caller rates as: the applying demander or the providing department."""
    if is_demander and department == application.department_code:
        return "demander"
    if is_provider and department == application.provider_department:
        return "provider"
    return None


def delivered(session: Session, *, application: Application) -> bool:
    """Approved, and its grant has at least one line on the access ledger."""
    if application.status != approvals.Status.approved or application.grant_id is None:
        return False
    line = session.execute(select(AccessLogEntry.id).where(AccessLogEntry.grant_id == application.grant_id).limit(1)).first()
    return line is not None


def rate(
    session: Session, *, application: Application, party: str, department: str, actor: str, document: dict[str, Any],
    now: datetime | None = None,
) -> tuple[Rating, bool]:
    """Record or change one party's rating of a delivered application; returns it and whether it is new."""
    now = now or utcnow()
    schemas.validate("rating", document)
    allowed = DEMANDER_SCORES if party == "demander" else PROVIDER_SCORES
    foreign = [name for name in SCORES if name in document and name not in allowed]
    if foreign:
        raise InvalidRating(f"the {party} rates {', '.join(allowed)}; not {', '.join(foreign)}")
    if not any(name in document for name in allowed):
        raise InvalidRating(f"give at least one score (1 to 5) of: {', '.join(allowed)}")
    if not delivered(session, application=application):
        raise NotDelivered(
            f"application {application.id} can be rated once it is approved and something has been delivered under its grant"
        )
    rating = session.execute(
        select(Rating).where(Rating.application_id == application.id, Rating.party == party).with_for_update()
    ).scalar_one_or_none()
    created = rating is None
    if rating is None:
        rating = Rating(
            application_id=application.id, party=party, department_code=department,
            applicant_department=application.department_code, dataset_code=application.dataset_code,
            service_item=application.service_item, created_at=now,
        )
        session.add(rating)
    elif now - rating.created_at > timedelta(days=RATING_EDITABLE_DAYS):
        raise RatingClosed(f"a rating can be changed for {RATING_EDITABLE_DAYS} days; this one was given on {rating.created_at.date()}")
    for name in allowed:
        if name in document:
            setattr(rating, name, document[name])
    if "comment" in document:
        rating.comment = document["comment"]
    rating.rated_by, rating.updated_at = actor, now
    session.flush()
    return rating, created


def ratings_of(session: Session, *, application_id: int) -> list[Rating]:
    return list(session.execute(select(Rating).where(Rating.application_id == application_id).order_by(Rating.party)).scalars())


def ratings_given(session: Session, *, dataset: str, period: Period, limit: int = 50) -> list[Rating]:
    """Ratings of a dataset's applications given in the period (as the metrics count them), newest first."""
    query = select(Rating).where(Rating.dataset_code == dataset, Rating.created_at >= period.start, Rating.created_at < period.end)
    return list(session.execute(query.order_by(Rating.created_at.desc(), Rating.id.desc()).limit(limit)).scalars())


def rating_document(rating: Rating) -> dict[str, Any]:
    """A rating as the parties read it."""
    scores = DEMANDER_SCORES if rating.party == "demander" else PROVIDER_SCORES
    return {
        "id": rating.id, "application_id": rating.application_id, "party": rating.party, "department": rating.department_code,
        **{name: getattr(rating, name) for name in scores}, "comment": rating.comment, "rated_by": rating.rated_by,
        "created_at": rating.created_at.isoformat(), "updated_at": rating.updated_at.isoformat(),
        "editable_until": (rating.created_at + timedelta(days=RATING_EDITABLE_DAYS)).isoformat(),
    }
