"""Who may do what: the one table every authorization check and its test read.

Each action names the roles that may perform it. Finer checks (own department,
within a grant) are made by the dependency that loads the object acted on.
"""

from __future__ import annotations

from govshare.models import Role

P, D, M, S, C, A = Role.provider, Role.demander, Role.manager, Role.service, Role.citizen_portal, Role.admin

# Those who oversee the exchange as a whole ("manager or admin"): they see every department's
# filed applications, grants and extracts, and the approval pages are theirs.
OVERSEERS: tuple[Role, ...] = (M, A)

PERMISSIONS: dict[str, frozenset[Role]] = {
    "audit.verify": frozenset({M, A}),
    "datasets.read": frozenset({P, D, M, S, C, A}),
    "datasets.write": frozenset({P}),
    "datasets.upload": frozenset({P}),
    "applications.file": frozenset({D}),
    "applications.read": frozenset({P, D, M, A}),
    "applications.decide": frozenset({M}),
    "applications.provider_decide": frozenset({P}),
    "grants.read": frozenset({P, D, M, S, A}),
    "grants.revoke": frozenset({M, A}),
    "events.read": frozenset({P, D, M, S, A}),
    "webhooks.manage": frozenset({P, D, S, A}),
    "exchange.read": frozenset({S}),
    "exchange.deposit": frozenset({S}),
    "citizens.access_log": frozenset({C, M}),
    "extracts.request": frozenset({D, S}),
    "extracts.read": frozenset({D, S, M, A}),
    "sharing.profile": frozenset({D, S}),
    "sharing.tokens": frozenset({D, S, M, A}),  # list and revoke a grant's sharing tokens (D, S: of their own department's grants)
    "departments.keys": frozenset({D, S, A}),
    "metrics.read": frozenset({M, A}),
    "ratings.write": frozenset({D, P}),
    "corrections.file": frozenset({D}),
    "corrections.answer": frozenset({P}),
    "corrections.read": frozenset({P, D, M, A}),
    "sources.manage": frozenset({P}),
}


def roles_for(action: str) -> frozenset[Role]:
    """The roles allowed to perform ``action``; unknown actions are allowed to nobody."""
    return PERMISSIONS.get(action, frozenset())
