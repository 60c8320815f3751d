"""Webhooks: each department may register endpoints; new events are POSTed to them, signed.

The body is JSON ``{"events": [...]}``; the header ``X-Govshare-Signature`` is
``sha256=<hex HMAC-SHA256 of the body with the webhook's secret>``, and
``X-Govshare-Delivery`` names the last event id, so a receiver can drop repeats.
The secret is shown once at registration and kept encrypted (it must be used
again to sign). Delivery resumes from the last event each endpoint acknowledged
with a 2xx, so nothing is lost across restarts; a failing endpoint is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import service
from approvals.models import Webhook
from govshare import audit, outbound
from govshare.db import Database
from govshare.errors import InvalidInput, NotFound
from govshare.security import generate_secret

log = logging.getLogger("govshare.webhooks")
BATCH = 100
TIMEOUT_SECONDS = 10.0


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class NewWebhook:
    webhook: Webhook
    secret: str


def register(session: Session, *, department: str, url: str, actor: str) -> NewWebhook:
    """Register ``url`` for ``department``'s events; the returned secret is shown once."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url: a webhook needs an absolute http or https URL")
    try:  # an address is refused at once; a name is resolved and checked at each delivery
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and (reason := outbound.policy().refusal(parts.hostname, literal)) is not None:
        raise InvalidInput(f"url: {reason}")
    secret = generate_secret()
    keystore = session.info["keystore"]
    # Start after the newest event: a new endpoint receives what happens from now on.
    newest = session.execute(select(service.ApplicationEvent.id).order_by(service.ApplicationEvent.id.desc()).limit(1)).scalar()
    webhook = Webhook(department_code=department, url=url, secret_encrypted=keystore.encrypt(secret),
                      delivered_event_id=newest or 0)
    session.add(webhook)
    session.flush()
    audit.record(session, actor=actor, action="webhook.registered", subject=f"webhook:{webhook.id}",
                 details={"department": department, "url": url})
    return NewWebhook(webhook, secret)


def for_department(session: Session, *, department: str) -> list[Webhook]:
    return list(session.execute(select(Webhook).where(Webhook.department_code == department).order_by(Webhook.id)).scalars())


def remove(session: Session, *, department: str, webhook_id: int, actor: str) -> None:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or webhook.department_code != department:
        raise NotFound(f"webhook {webhook_id} does not exist")
    session.delete(webhook)
    session.flush()
    audit.record(session, actor=actor, action="webhook.removed", subject=f"webhook:{webhook_id}")


def webhook_json(webhook: Webhook) -> dict[str, Any]:
    return {"id": webhook.id, "department": webhook.department_code, "url": webhook.url,
            "created_at": webhook.created_at.isoformat(), "delivered_event_id": webhook.delivered_event_id}


def deliver_once(database: Database, *, client: httpx.Client | None = None) -> int:
    """Post every endpoint's pending events (one batch each); returns how many events were delivered."""
    owns_client = client is None
    client = client or outbound.client(timeout=TIMEOUT_SECONDS)  # internal addresses refused (and logged) per delivery
    delivered = 0
    try:
        with database.transaction(write=False) as session:
            ids = list(session.execute(select(Webhook.id).order_by(Webhook.id)).scalars())
        for webhook_id in ids:
            with database.transaction() as session:
                query = select(Webhook).where(Webhook.id == webhook_id)
                if database.dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True)  # another replica is on it
                webhook = session.execute(query).scalar_one_or_none()
                if webhook is None:
                    continue
                events = service.events_for(session, department=webhook.department_code, sees_all=False,
                                            since=webhook.delivered_event_id, limit=BATCH)
                if not events:
                    continue
                body = json.dumps({"events": [service.event_document(event) for event in events]}).encode()
                secret = session.info["keystore"].decrypt(webhook.secret_encrypted)
                headers = {"Content-Type": "application/json", "X-Govshare-Signature": sign(secret, body),
                           "X-Govshare-Delivery": str(events[-1].id)}
                try:
                    response = client.post(webhook.url, content=body, headers=headers)
                except httpx.HTTPError as error:
                    log.warning("webhook %s: %s", webhook.id, error)
                    continue
                if 200 <= response.status_code < 300:
                    webhook.delivered_event_id = events[-1].id
                    delivered += len(events)
                else:
                    log.warning("webhook %s answered %s; will retry", webhook.id, response.status_code)
    finally:
        if owns_client:
            client.close()
    return delivered
