"""A live dataset's secret for its provider's API: taken out of the document, kept encrypted, read only to call the provider.

The document (returned by GET, kept in the revision history, searched) never holds it:
``value`` of a header, ``client_secret`` of OAuth2 client credentials. A change that
leaves it out keeps the stored one, so a provider can edit its description without
sending its secret again.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy.orm import Session

from directory.errors import InvalidDataset
from directory.models import Dataset, LiveCredential
from govshare.db import utcnow

SECRET_FIELDS = {"header": "value", "oauth2_client_credentials": "client_secret"}


def split_secret(document: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The document without its live auth secret, and the secret (None when absent)."""
    auth = (document.get("live") or {}).get("auth")
    if not auth or SECRET_FIELDS[auth["type"]] not in auth:
        return document, None
    document = copy.deepcopy(document)
    secret = document["live"]["auth"].pop(SECRET_FIELDS[auth["type"]])
    return document, secret


def keep_secret(session: Session, *, dataset: Dataset, document: dict[str, Any], secret: str | None) -> None:
    """Store ``secret`` encrypted for the dataset's auth (or keep the stored one); 422 when its auth has none."""
    auth = (document.get("live") or {}).get("auth")
    stored = session.get(LiveCredential, dataset.id)
    if not auth:
        if stored is not None:
            session.delete(stored)
            session.flush()
        return
    field = SECRET_FIELDS[auth["type"]]
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
