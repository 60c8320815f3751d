"""Delayed disclosures as the manager counts them: accesses kept out of citizens' access logs for now.

An application may ask that citizens see its grant's accesses only from a day on
(``disclosure.delay_until``, with a basis); until that day ``GET
/api/v1/citizens/{id}/access-log`` leaves those ledger lines out. Counted here over the
period's ledger lines, on ``today`` (the configured zone's date, as the access log counts it).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from approvals.models import Application
from exchange.models import AccessLogEntry


def summary(session: Session, *, period: Any, today: date) -> dict[str, int]:
    """``delayed_disclosures``: the period's ledger lines citizens do not see yet; ``delayed_disclosures_released``: the
    period's lines whose delay has passed (now shown, marked); ``delayed_disclosure_grants``: grants whose delay still runs."""
    # Through the grants (few ask for a delay) and the ledger's grant index, never a scan of the period's lines.
    def lines(*delay: Any) -> int:
        grants = select(Application.grant_id).where(Application.grant_id.is_not(None), *delay)
        return session.execute(select(func.count()).select_from(AccessLogEntry).where(
            AccessLogEntry.grant_id.in_(grants), AccessLogEntry.at >= period.start, AccessLogEntry.at < period.end)).scalar_one()

    withheld = lines(Application.disclosure_delay_until > today)
    released = lines(Application.disclosure_delay_until <= today)
    grants = session.execute(select(func.count()).select_from(Application).where(
        Application.grant_id.is_not(None), Application.disclosure_delay_until > today)).scalar_one()
    return {"delayed_disclosures": withheld, "delayed_disclosures_released": released, "delayed_disclosure_grants": grants}
