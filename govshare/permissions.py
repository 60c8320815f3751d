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
    "grants.pause": frozenset({M, A, P}),  # pause and resume (P: the providing department's, never the applying one)
    "events.read": frozenset({P, D, M, S, A}),
    "webhooks.manage": frozenset({P, D, S, A}),
    "exchange.read": frozenset({S}),
    "exchange.deposit": frozenset({S}),
    "citizens.access_log": frozenset({C, M}),
    "citizens.consents": frozenset({C}),  # record, list and withdraw a citizen's consents (the portal acts for the citizen)
    "citizens.requests": frozenset({C}),  # list a citizen's explicit requests with their preview, approve or refuse them
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
    "pages.oversee": frozenset(OVERSEERS),  # the approval pages: the queue, an application, the grants
}


# Who may call each route: the action it performs (a key of PERMISSIONS), or how it is
# reached without an OAuth token. Every route the app serves has exactly one line here; the
# authorization matrix test (tests/govshare/test_authorization_matrix.py) fails for a route
# without one, and derives from PERMISSIONS which roles each route refuses (403), so a new
# route needs only its line here.
PUBLIC = "public"  # anyone, no token: health, OAuth2 endpoints, sign-in, stylesheets
SHARING_TOKEN = "sharing-token"  # Delta Sharing: a profile's bearer token, never an OAuth one
SIGNED_URL = "signed-url"  # a link this server signed, valid for minutes
CITIZEN_SESSION = "citizen-session"  # a citizen's own page: their session (the identity provider's verified ID token), no roles

ROUTES: dict[str, str] = {
    "GET /healthz": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /oauth/jwks": PUBLIC,
    "GET /.well-known/oauth-authorization-server": PUBLIC,
    "POST /oauth/token": PUBLIC,
    "POST /oauth/revoke": PUBLIC,
    "POST /oauth/introspect": PUBLIC,
    "GET /api/v1/audit/verify": "audit.verify",
    # directory and connectors
    "GET /api/v1/datasets": "datasets.read",
    "POST /api/v1/datasets": "datasets.write",
    "GET /api/v1/datasets/{code}": "datasets.read",
    "PUT /api/v1/datasets/{code}": "datasets.write",
    "PATCH /api/v1/datasets/{code}": "datasets.write",
    "POST /api/v1/datasets/{code}/retire": "datasets.write",
    "GET /api/v1/datasets/{code}/history": "datasets.read",
    "POST /api/v1/datasets/{code}/versions": "datasets.upload",
    "GET /api/v1/datasets/{code}/versions": "datasets.read",
    "GET /api/v1/catalog.jsonld": "datasets.read",
    "PUT /api/v1/datasets/{code}/source": "sources.manage",
    "GET /api/v1/datasets/{code}/source": "sources.manage",
    "POST /api/v1/datasets/{code}/sync": "sources.manage",
    "GET /api/v1/datasets/{code}/syncs": "sources.manage",
    # approvals
    "POST /api/v1/applications": "applications.file",
    "GET /api/v1/applications": "applications.read",
    "GET /api/v1/applications/{application_id}": "applications.read",
    "PUT /api/v1/applications/{application_id}": "applications.file",
    "POST /api/v1/applications/{application_id}/submit": "applications.file",
    "POST /api/v1/applications/{application_id}/withdraw": "applications.file",
    "POST /api/v1/applications/{application_id}/decision": "applications.decide",
    "POST /api/v1/applications/{application_id}/provider-decision": "applications.provider_decide",
    "GET /api/v1/applications/{application_id}/history": "applications.read",
    "GET /api/v1/grants": "grants.read",
    "GET /api/v1/grants/{grant_id}": "grants.read",
    "POST /api/v1/grants/{grant_id}/revoke": "grants.revoke",
    "POST /api/v1/grants/{grant_id}/pause": "grants.pause",
    "POST /api/v1/grants/{grant_id}/resume": "grants.pause",
    "GET /api/v1/events": "events.read",
    "POST /api/v1/webhooks": "webhooks.manage",
    "GET /api/v1/webhooks": "webhooks.manage",
    "DELETE /api/v1/webhooks/{webhook_id}": "webhooks.manage",
    # exchange
    "GET /api/v1/exchange/{code}/records/{key}": "exchange.read",
    "POST /api/v1/exchange/{code}/records:batch": "exchange.read",
    "GET /api/v1/exchange/{code}/live/{key}": "exchange.read",
    "GET /api/v1/exchange/{code}/records": "exchange.read",
    "POST /api/v1/exchange/{code}/records": "exchange.deposit",
    "GET /api/v1/citizens/{citizen_id}/access-log": "citizens.access_log",
    "POST /api/v1/citizens/{citizen_id}/consents": "citizens.consents",
    "GET /api/v1/citizens/{citizen_id}/consents": "citizens.consents",
    "POST /api/v1/citizens/{citizen_id}/consents/{consent_id}/withdraw": "citizens.consents",
    "GET /api/v1/citizens/{citizen_id}/requests": "citizens.requests",
    "POST /api/v1/citizens/{citizen_id}/requests/{request_id}/approve": "citizens.requests",
    "POST /api/v1/citizens/{citizen_id}/requests/{request_id}/refuse": "citizens.requests",
    "POST /api/v1/exchange/{code}/requests": "exchange.read",
    "GET /api/v1/exchange/requests/{request_id}": "exchange.read",
    "POST /api/v1/grants/{grant_id}/extracts": "extracts.request",
    "GET /api/v1/extracts/{extract_id}": "extracts.read",
    "GET /api/v1/extracts/{extract_id}/download": "extracts.request",
    "PUT /api/v1/departments/{code}/public-key": "departments.keys",
    "GET /api/v1/grants/{grant_id}/sharing-profile": "sharing.profile",
    "GET /api/v1/grants/{grant_id}/sharing-tokens": "sharing.tokens",
    "POST /api/v1/grants/{grant_id}/sharing-tokens/{token_id}/revoke": "sharing.tokens",
    "GET /delta-sharing/shares": SHARING_TOKEN,
    "GET /delta-sharing/shares/{share}": SHARING_TOKEN,
    "GET /delta-sharing/shares/{share}/all-tables": SHARING_TOKEN,
    "GET /delta-sharing/shares/{share}/schemas": SHARING_TOKEN,
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables": SHARING_TOKEN,
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/version": SHARING_TOKEN,
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/metadata": SHARING_TOKEN,
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/changes": SHARING_TOKEN,
    "POST /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/query": SHARING_TOKEN,
    "GET /delta-sharing/files/{file_id}": SIGNED_URL,
    "HEAD /delta-sharing/files/{file_id}": SIGNED_URL,
    # evaluation
    "GET /api/v1/metrics/summary": "metrics.read",
    "GET /api/v1/metrics/datasets": "metrics.read",
    "GET /api/v1/metrics/departments": "metrics.read",
    "GET /api/v1/metrics/service-items": "metrics.read",
    "GET /api/v1/metrics/providers": "metrics.read",
    "POST /api/v1/applications/{application_id}/ratings": "ratings.write",
    "GET /api/v1/applications/{application_id}/ratings": "applications.read",
    "POST /api/v1/datasets/{code}/corrections": "corrections.file",
    "POST /api/v1/corrections/{correction_id}/answer": "corrections.answer",
    "GET /api/v1/corrections": "corrections.read",
    "GET /api/v1/corrections/{correction_id}": "corrections.read",
    # the web pages (a signed-in person's roles, as a client's)
    "GET /ui/style.css": PUBLIC,
    "GET /ui/dashboard.css": PUBLIC,
    "GET /ui/favicon.svg": PUBLIC,
    "GET /ui/login": PUBLIC,
    "POST /ui/login": PUBLIC,
    "POST /ui/logout": PUBLIC,
    "GET /ui": "pages.oversee",
    "GET /ui/applications/{application_id}": "pages.oversee",
    "POST /ui/applications/{application_id}/decision": "applications.decide",
    "GET /ui/grants": "pages.oversee",
    "GET /ui/grants/{grant_id}": "pages.oversee",
    "POST /ui/grants/{grant_id}/revoke": "grants.revoke",
    "POST /ui/grants/{grant_id}/pause": "grants.pause",
    "POST /ui/grants/{grant_id}/resume": "grants.pause",
    "GET /ui/dashboard": "metrics.read",
    "GET /ui/dashboard/datasets/{code}": "metrics.read",
    "GET /ui/dashboard/applications/{application_id}": "metrics.read",
    "GET /ui/provider": "applications.provider_decide",
    "GET /ui/provider/applications/{application_id}": "applications.provider_decide",
    "POST /ui/provider/applications/{application_id}/decision": "applications.provider_decide",
    "GET /ui/sharing": "sharing.profile",
    "POST /ui/sharing/grants/{grant_id}/profile": "sharing.profile",
    "POST /ui/sharing/grants/{grant_id}/tokens/{token_id}/revoke": "sharing.profile",
    # the citizen's page: signing in through the identity provider, then only their own data
    "GET /me/login": PUBLIC,
    "POST /me/login": PUBLIC,
    "GET /me/callback": PUBLIC,
    "POST /me/logout": PUBLIC,
    "GET /me": CITIZEN_SESSION,
    "POST /me/consents/{consent_id}/withdraw": CITIZEN_SESSION,
    "POST /me/requests/{request_id}/approve": CITIZEN_SESSION,
    "POST /me/requests/{request_id}/refuse": CITIZEN_SESSION,
}


def roles_for(action: str) -> frozenset[Role]:
    """The roles allowed to perform ``action``; unknown actions are allowed to nobody."""
    return PERMISSIONS.get(action, frozenset())
