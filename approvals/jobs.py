"""The approvals' background jobs: webhook delivery and escalation of overdue applications."""

from __future__ import annotations

from approvals import service, webhooks
from govshare.db import Database
from govshare.jobs import Job
from govshare.settings import Settings


def escalate(database: Database) -> int:
    with database.transaction() as session:
        return len(service.escalate_overdue(session))


def jobs(settings: Settings) -> list[Job]:
    return [
        Job("webhooks", settings.webhook_interval_seconds, webhooks.deliver_once),
        Job("escalation", settings.escalation_interval_seconds, escalate),
    ]
