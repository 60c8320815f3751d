"""A live dataset's secret for its provider's API: taken out of the document, kept encrypted, read only to call the provider.

The document (returned by GET, kept in the revision history, searched) never holds it:
``value`` of a header, ``client_secret`` of OAuth2 client credentials, ``certificate`` and
``private_key`` of a client certificate (kept together, as one JSON secret). A change that
leaves it out keeps the stored one, so a provider can edit its description without
sending its secret again.

``check_live`` refuses, before anything is stored, what could not be used: a certificate,
key or CA that is not PEM, a key that is not the certificate's, and a provider URL whose host
is internal (loopback, private, link-local) unless ``GOVSHARE_OUTBOUND_ALLOWLIST`` names it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from directory.errors import InvalidDataset
from directory.models import Dataset, LiveCredential
from govshare import outbound
from govshare.db import utcnow

# The write-only fields of each form of credentials; a form of two keeps them as one JSON object.
SECRET_FIELDS = {"header": ("value",), "oauth2_client_credentials": ("client_secret",),
                 "client_certificate": ("certificate", "private_key")}


def check_live(document: dict[str, Any]) -> None:
    """422 (``InvalidDataset`` naming the field) for a live description that could not be used as given."""
    live = document.get("live")
    if not live:
        return
    policy = outbound.policy()
    auth = live.get("auth") or {}
    for field, url in (("live.url", live["url"].replace("{key}", "key")), ("live.auth.token_url", auth.get("token_url"))):
        if url and (reason := policy.registration_refusal(url)) is not None:
            raise InvalidDataset(f"{field}: {reason} (rule 'outbound')")
    given = {name: auth[name] for name in ("certificate", "private_key") if name in auth}
    if auth.get("type") == "client_certificate" and len(given) == 1:
        missing = ({"certificate", "private_key"} - set(given)).pop()
        raise InvalidDataset(f"live.auth.{missing}: a client certificate and its private key are given together (rule 'required')")
    try:
        outbound.tls_context(ca_certificate=live.get("ca_certificate"), **given)
    except ValueError as problem:
        field, _, reason = str(problem).partition(": ")
        prefix = "live." if field == "ca_certificate" else "live.auth."
        raise InvalidDataset(f"{prefix}{field}: {reason} (rule 'pem')") from None


def split_secret(document: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The document without its live auth secret, and the secret (None when absent)."""
    auth = (document.get("live") or {}).get("auth")
    if not auth or not any(field in auth for field in SECRET_FIELDS[auth["type"]]):
        return document, None
    document = copy.deepcopy(document)
    fields = SECRET_FIELDS[auth["type"]]
    values = {field: document["live"]["auth"].pop(field) for field in fields if field in auth}
    return document, values[fields[0]] if len(fields) == 1 else json.dumps(values, sort_keys=True)


def keep_secret(session: Session, *, dataset: Dataset, document: dict[str, Any], secret: str | None) -> None:
    """Store ``secret`` encrypted for the dataset's auth (or keep the stored one); 422 when its auth has none."""
    auth = (document.get("live") or {}).get("auth")
    stored = session.get(LiveCredential, dataset.id)
    if not auth:
        if stored is not None:
            session.delete(stored)
            session.flush()
        return
    field = " and ".join(SECRET_FIELDS[auth["type"]])
    if secret is None:
        if stored is None or stored.auth_type != auth["type"]:
            raise InvalidDataset(f"live.auth.{field}: required when the provider's {auth['type']} credentials are first given (rule 'required')")
        return
    encrypted = session.info["keystore"].encrypt(secret)
    if stored is None:
        session.add(LiveCredential(dataset_id=dataset.id, auth_type=auth["type"], secret_encrypted=encrypted, updated_at=utcnow()))
    else:
        stored.auth_type, stored.secret_encrypted, stored.updated_at = auth["type"], encrypted, utcnow()
    session.flush()


def secret_of(session: Session, *, dataset_id: int) -> str | None:
    """The provider's secret in the clear, to call it (never to show)."""
    stored = session.get(LiveCredential, dataset_id)
    return session.info["keystore"].decrypt(stored.secret_encrypted) if stored is not None else None


def encrypted_secret_of(session: Session, *, dataset_id: int) -> str | None:
    """The provider's secret as stored (encrypted): a live call decrypts it once per value (``Protection.secret``)."""
    # Core, not the ORM: every live call reads it, a column alone.
    return session.connection().execute(
        select(LiveCredential.secret_encrypted).where(LiveCredential.dataset_id == dataset_id)).scalar_one_or_none()
