"""Sign-in throttling: after too many wrong passwords, an account, or an address, waits.

Counted in the record store (``login_throttles``), so replicas behind a load balancer
share the count. Per account: ``ACCOUNT_LIMIT`` failures within ``WINDOW`` block that
name for ``BLOCK``, whoever tries; per address: ``ADDRESS_LIMIT`` failures, for any names,
block that address. While blocked, a sign-in is refused with 429 and ``Retry-After``
before the password is checked, so a guess made then learns nothing. A block starting
is written to the audit log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from govshare import audit
from govshare.models import LoginThrottle

ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW = timedelta(minutes=15)
BLOCK = timedelta(minutes=15)


@dataclass(frozen=True)
class Blocked:
    """A sign-in refused unchecked: which key is blocked, and for how many more seconds."""

    key: str
    retry_after: int


def keys_of(*, name: str, address: str | None) -> list[tuple[str, int]]:
    """The throttle keys a sign-in counts against, each with its limit."""
    keys = [(f"account:{name.strip()}", ACCOUNT_LIMIT)]
    if address:
        keys.append((f"address:{address}", ADDRESS_LIMIT))
    return keys


def blocked(session: Session, *, name: str, address: str | None, now: datetime) -> Blocked | None:
    """The block this sign-in falls under, if any (the one lasting longest)."""
    keys = [key for key, _ in keys_of(name=name, address=address)]
    rows = session.execute(select(LoginThrottle).where(LoginThrottle.key.in_(keys), LoginThrottle.blocked_until > now)).scalars()
    longest = max(rows, key=lambda row: row.blocked_until, default=None)
    if longest is None:
        return None
    return Blocked(longest.key, max(1, math.ceil((longest.blocked_until - now).total_seconds())))


def _insert(session: Session):
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def failed(session: Session, *, name: str, address: str | None, now: datetime) -> None:
    """Count a wrong password against the account and the address; block a key that reaches its limit."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.first_failure_at < now - WINDOW - BLOCK))  # long forgotten
    for key, limit in keys_of(name=name, address=address):
        # Two replicas may count the first failure at once: the row is made once, then locked and counted.
        session.execute(_insert(session)(LoginThrottle).values(key=key, failures=0, first_failure_at=now)
                        .on_conflict_do_nothing(index_elements=["key"]))
        row = session.execute(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one()
        if row.first_failure_at < now - WINDOW or (row.blocked_until is not None and row.blocked_until <= now):
            row.failures, row.first_failure_at, row.blocked_until = 0, now, None  # a new window
        row.failures += 1
        if row.failures >= limit and row.blocked_until is None:
            row.blocked_until = now + BLOCK
            audit.record(session, actor="system", action="login.throttled", subject=key,
                         details={"failures": row.failures, "blocked_until": row.blocked_until.isoformat()})
    session.flush()


def succeeded(session: Session, *, name: str) -> None:
    """A right password outside any block: the account's count starts again (the address's stays)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == f"account:{name.strip()}"))
    session.flush()
