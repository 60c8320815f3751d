"""The audit log: append-only, hash-chained, signed.

Each entry's hash covers its own fields and the previous entry's hash, and the
hash is signed with the exchange's active key. Appends lock the single
``audit_head`` row, so concurrent writers queue instead of forking the chain.
``verify`` walks the whole chain and names the first entry that breaks it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from govshare.auth import Caller, require
from govshare.db import DbSession, utcnow
from govshare.keys import KeyStore, Signature
from govshare.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64
# Per action, a check that what an entry signs still matches the records it names (registered by the
# domain that writes such entries, e.g. the access ledger's signed live messages): returns why not, or None.
_ENTRY_CHECKS: dict[str, Callable[[Session, dict[str, Any]], str | None]] = {}


def entry_check(action: str):
    """Register the decorated function as ``verify``'s check of the records an ``action`` entry signs."""
    def register(check: Callable[[Session, dict[str, Any]], str | None]):
        _ENTRY_CHECKS[action] = check
        return check
    return register


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same bytes for the same value, always."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(*, seq: int, at: str, actor: str, action: str, subject: str, details: str, prev_hash: str) -> str:
    material = canonical_json(
        {"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject,
         "details": details, "prev_hash": prev_hash}
    )
    return hashlib.sha256(material.encode()).hexdigest()


def _keystore(session: Session) -> KeyStore:
    return session.info["keystore"]


def record(session: Session, *, actor: str, action: str, subject: str, details: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry to the chain, in the caller's transaction."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    at = utcnow()
    details_json = canonical_json(details or {})
    seq = head.seq + 1
    digest = entry_hash(
        seq=seq, at=at.isoformat(), actor=actor, action=action, subject=subject,
        details=details_json, prev_hash=head.hash,
    )
    signature = _keystore(session).sign(digest.encode())
    entry = AuditEntry(
        seq=seq, at=at, actor=actor, action=action, subject=subject, details=details_json,
        prev_hash=head.hash, hash=digest, key_id=signature.key_id, signature=signature.value,
    )
    session.add(entry)
    head.seq, head.hash = seq, digest
    session.flush()
    return entry


@dataclass(frozen=True)
class BrokenEntry:
    seq: int
    reason: str
    action: str | None = None
    at: str | None = None


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_broken: BrokenEntry | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_broken": asdict(self.first_broken) if self.first_broken else None,
        }


def verify(session: Session) -> Verification:
    """Check every entry's hash, link and signature, and that nothing was cut off the end."""
    keystore = _keystore(session)
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=2000)).scalars()
    for entry in rows:
        count += 1

        def broken(reason: str, seq: int = entry.seq) -> Verification:
            return Verification(False, count, BrokenEntry(seq, reason, entry.action, entry.at.isoformat()))

        if entry.seq != expected_seq:
            return Verification(False, count, BrokenEntry(expected_seq, f"entry {expected_seq} is missing"))
        if entry.prev_hash != prev_hash:
            return broken("does not link to the entry before it")
        recomputed = entry_hash(
            seq=entry.seq, at=entry.at.isoformat(), actor=entry.actor, action=entry.action,
            subject=entry.subject, details=entry.details, prev_hash=entry.prev_hash,
        )
        if recomputed != entry.hash:
            return broken("content does not match its hash (altered)")
        if not keystore.verify(entry.hash.encode(), Signature(entry.key_id, entry.signature)):
            return broken("signature does not verify")
        if (check := _ENTRY_CHECKS.get(entry.action)) is not None and (reason := check(session, json.loads(entry.details))):
            return broken(reason)
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    if head.seq > expected_seq - 1:
        return Verification(False, count, BrokenEntry(expected_seq, f"entries {expected_seq}..{head.seq} are missing from the end"))
    if head.seq != expected_seq - 1 or head.hash != prev_hash:
        return Verification(False, count, BrokenEntry(head.seq, "the chain's head does not match its last entry"))
    return Verification(True, count, None)


router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("/verify", summary="Check the whole audit chain; names the first entry that breaks it")
def verify_chain(session: DbSession, caller: Annotated[Caller, Depends(require("audit.verify"))]) -> dict[str, Any]:
    return verify(session).as_dict()
