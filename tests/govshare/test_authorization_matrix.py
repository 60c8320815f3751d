"""The authorization matrix: every route, called as every role, from the right and the wrong department,
with no token, a forged, an expired, a revoked one and one of a disabled client; and every page under /ui with every kind of session.

Who may call a route is read from ``govshare.permissions``: its line in ``ROUTES`` names the
action, and ``PERMISSIONS`` the roles allowed it, so every caller without such a role must get
403 and every caller without a valid token 401 (unless the route is public). A route of the app
without a line there fails ``test_every_route_has_an_entry_in_permissions``. This module's
``OBJECT_ROWS`` and ``UI_ROUTES`` add what the roles alone do not say: which department's
callers get 200 and which 404 (see ``Row`` for how a cell is looked up). A route with a
permissions entry but no row here is still checked for its roles (401, 403, and no refusal by
role for those allowed it).

The world is built once for the module (a few seconds of real requests). A cell that
changes something works on an object made for it (``fresh_*``), so cells never see
each other's effects; a refused call must change nothing, which ``test_refused_calls_write_nothing``
checks on the audit chain.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import func, select
from starlette.testclient import TestClient

from exchange.extracts import service as extracts
from govshare import identities, permissions, storage
from govshare.db import Base, Database
from govshare.keys import KeyStore
from govshare.models import User
from govshare.settings import Settings
from tests.approvals.test_api import application_body
from tests.govshare.conftest import served_store
from tests.exchange.test_interfaces import _citizens, _csv
from tests.factories import DirectoryFactory, Factory, dataset_document, parse_html

pytestmark = pytest.mark.slow

# --- who calls -------------------------------------------------------------------------------

DEPARTMENT_ROLES = ("provider", "demander", "service")
DEPARTMENTS = ("psb", "cab", "edu")  # PSB provides the dataset, CAB holds the grants, EDU is a stranger to both
TOKENLESS = ("anonymous", "forged", "expired", "revoked", "disabled")  # no valid token: each holds every role
CALLERS = (
    *TOKENLESS,
    *(f"{department}_{role}" for department in DEPARTMENTS for role in DEPARTMENT_ROLES),
    "manager", "admin", "portal",  # of the DATA department, which oversees the exchange
)
UI_CALLERS = ("anonymous", "manager", "admin", "demander", "cross_site", "stale", "forged")
# stale: a manager's session signed by us, from more than 8 hours ago; forged: a manager's session signed with another secret

PASSWORD = "correct horse battery staple"
TODAY = date.today()
PERIOD = {"start": TODAY.isoformat(), "end": (TODAY + timedelta(days=90)).isoformat()}
IN_GRANT = _citizens(8)[0]  # district 01: within CAB's grant


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """Expected statuses of one route. For an API route a caller's cell is, first match: 401 for a caller
    without a valid token (unless the route is public), 403 for a caller whose roles PERMISSIONS does not
    allow the route's action (both derived from ``govshare.permissions``); then its own name
    (``cab_demander``), its department (``cab``: every role of it), its role (``demander``: every
    department's), then ``default``."""

    default: int
    cells: dict[str, int]
    public: bool = False
    body: Any = None  # JSON, or a callable (world, caller) -> JSON
    params: dict[str, Any] = field(default_factory=dict)  # path parameters over DEFAULTS; values or callables (world)
    query: Any = None  # dict, or a callable (world) -> dict
    form: Any = None  # form fields (UI), or a callable (world) -> dict
    upload: bool = False
    route: str | None = None  # "METHOD /path" of an API route: its 401 and 403 cells come from govshare.permissions

    def expected(self, caller: str) -> int:
        department, _, role = caller.partition("_")
        if self.route is not None:
            derived = derived_status(self.route, caller)
            if derived is not None:
                return derived
        for key in (caller, department, role):
            if key and key in self.cells:
                return self.cells[key]
        if caller in TOKENLESS and not self.public and self.route is None:
            return 401
        return self.default


def row(default: int, *, public: bool = False, body: Any = None, params: dict | None = None, query: Any = None,
        form: Any = None, upload: bool = False, **cells: int) -> Row:
    return Row(default, cells, public, body, params or {}, query, form, upload)


def page(default: int, **kwargs: Any) -> Row:
    """A row of ``UI_ROUTES``: sessions, not tokens, so no 401 column."""
    return row(default, public=True, **kwargs)


def _dataset_body(world: World, caller: str) -> dict:
    department = caller.partition("_")[0].upper() if "_" in caller else "DATA"
    return dataset_document(world.new_code(department), department)


def _rating_body(world: World, caller: str) -> dict:
    return {"application_quality": 4} if caller.endswith("provider") else {"review_speed": 4, "data_quality": 5, "stability": 4}


def _correction_body(world: World, caller: str) -> dict:
    return {"item": "name", "key": IN_GRANT["citizen_id"], "description": "the name is misspelt"}


APPLICATION_BODY = application_body(period=PERIOD, service_item="matrix-check")
DECISION = {"decision": "approve"}
SOURCE = {"kind": "files", "config": {"path": "household.csv", "format": "csv"}}

# Path parameters when a row does not name its own: the world's standing objects.
DEFAULTS: dict[str, Callable[[World], Any]] = {
    "code": lambda w: "PSB-HOUSEHOLD",
    "application_id": lambda w: w.application_id,
    "grant_id": lambda w: w.grant_id,
    "extract_id": lambda w: w.extract_id,
    "webhook_id": lambda w: w.fresh_webhook(),
    "token_id": lambda w: w.fresh_sharing_token(),  # a sharing token of CAB's extract grant, made for the cell
    "correction_id": lambda w: w.correction_id,
    "key": lambda w: IN_GRANT["citizen_id"],
    "citizen_id": lambda w: IN_GRANT["citizen_id"],
    "consent_id": lambda w: w.fresh_consent(),  # the in-grant citizen's consent to CAB on PSB-CONSENT
    "request_id": lambda w: w.fresh_request(),  # CAB's service's request for the in-grant citizen on PSB-EXPLICIT
    # Delta Sharing: CAB's extract grant as its share (these routes take sharing tokens, never OAuth ones)
    "share": lambda w: f"grant-{w.extract_grant_id}",
    "schema": lambda w: "psb",
    "table": lambda w: "psb-household",
    "file_id": lambda w: "00000000-0000-0000-0000-000000000000",
}

def caller_roles(caller: str) -> frozenset[str]:
    """The roles a matrix caller's token holds."""
    if caller in TOKENLESS:
        return frozenset()
    return frozenset({"manager": {"manager"}, "admin": {"admin"}, "portal": {"citizen_portal"}}.get(caller, {caller.partition("_")[2]}))


def derived_status(route: str, caller: str) -> int | None:
    """What govshare.permissions alone says ``caller`` gets from ``route``: 401, 403, or None (the object decides)."""
    access = permissions.ROUTES[route]
    if access == permissions.SHARING_TOKEN:
        return 401  # no OAuth token of any role is a sharing profile's token
    if access in (permissions.PUBLIC, permissions.SIGNED_URL):
        return None
    if caller in TOKENLESS:
        return 401
    if not caller_roles(caller) & {str(role) for role in permissions.roles_for(access)}:
        return 403
    return None


# What the roles do not say: each caller allowed the route's action, by department. Default: the answer
# for a caller of the role(s) allowed, then the departments' and callers' own cells.
OBJECT_ROWS: dict[str, Row] = {
    # shell
    "GET /healthz": row(200),
    "GET /metrics": row(200),
    "GET /oauth/jwks": row(200),
    "GET /.well-known/oauth-authorization-server": row(200),
    "POST /oauth/token": row(401, form={"grant_type": "client_credentials"}),
    "POST /oauth/revoke": row(401, form={"token": "x"}),
    "POST /oauth/introspect": row(401, form={"token": "x"}),
    "GET /api/v1/audit/verify": row(200),
    # directory
    "GET /api/v1/datasets": row(200),
    "POST /api/v1/datasets": row(201, body=_dataset_body),
    "GET /api/v1/datasets/{code}": row(200),
    "PUT /api/v1/datasets/{code}": row(403, psb_provider=200, body=dataset_document("PSB-HOUSEHOLD", "PSB")),
    "PATCH /api/v1/datasets/{code}": row(403, psb_provider=200, body={"summary": "Registered residents"}),
    "POST /api/v1/datasets/{code}/retire": row(403, psb_provider=200, params={"code": lambda w: w.fresh_dataset()}),
    "GET /api/v1/datasets/{code}/history": row(200),
    "POST /api/v1/datasets/{code}/versions": row(403, psb_provider=201, upload=True),
    "GET /api/v1/datasets/{code}/versions": row(200),
    "GET /api/v1/catalog.jsonld": row(200),
    "PUT /api/v1/datasets/{code}/source": row(403, psb_provider=200, body=SOURCE),
    "GET /api/v1/datasets/{code}/source": row(403, psb_provider=200),
    "POST /api/v1/datasets/{code}/sync": row(403, psb_provider=201),
    "GET /api/v1/datasets/{code}/syncs": row(403, psb_provider=200),
    # approvals: another department's application, grant or webhook answers as one that does not exist (404)
    "POST /api/v1/applications": row(201, body=APPLICATION_BODY),
    "GET /api/v1/applications": row(200),
    "GET /api/v1/applications/{application_id}": row(200, provider=404, demander=404, psb_provider=200, cab_demander=200),
    "PUT /api/v1/applications/{application_id}": row(404, cab_demander=200, body=APPLICATION_BODY,
                                                      params={"application_id": lambda w: w.draft_id}),
    "POST /api/v1/applications/{application_id}/submit": row(404, cab_demander=200,
                                                              params={"application_id": lambda w: w.fresh_draft()}),
    "POST /api/v1/applications/{application_id}/withdraw": row(404, cab_demander=200,
                                                                params={"application_id": lambda w: w.fresh_submitted()}),
    "POST /api/v1/applications/{application_id}/decision": row(200, body=DECISION,
                                                                params={"application_id": lambda w: w.fresh_submitted()}),
    "POST /api/v1/applications/{application_id}/provider-decision": row(
        404, psb_provider=200, body=DECISION, params={"application_id": lambda w: w.fresh_awaiting_provider()}),
    "GET /api/v1/applications/{application_id}/history": row(200, provider=404, demander=404, psb_provider=200, cab_demander=200),
    "GET /api/v1/grants": row(200),
    "GET /api/v1/grants/{grant_id}": row(200, provider=404, demander=404, service=404, cab=200, psb_provider=200),
    "POST /api/v1/grants/{grant_id}/revoke": row(200, body={"reason": "matrix check"}, params={"grant_id": lambda w: w.fresh_grant()}),
    "GET /api/v1/events": row(200),
    "POST /api/v1/webhooks": row(201, body={"url": "https://hooks.example.org/govshare"}),
    "GET /api/v1/webhooks": row(200),
    "DELETE /api/v1/webhooks/{webhook_id}": row(404, cab=204),
    # exchange
    "GET /api/v1/exchange/{code}/records/{key}": row(403, cab_service=200),
    "GET /api/v1/exchange/{code}/records": row(403, cab_service=200),
    # No live dataset in this world, so no live grant: every service is refused too (tests/exchange/test_live.py calls one).
    "GET /api/v1/exchange/{code}/live/{key}": row(403),
    "POST /api/v1/exchange/{code}/records": row(403, psb_service=201, params={"code": lambda w: "PSB-INTAKE"},
                                                body=lambda w, caller: w.deposit_body()),
    "GET /api/v1/citizens/{citizen_id}/access-log": row(200),  # not admin: a technical role
    # citizen control: only the portal, for the citizen in the path; a service reads its own department's requests only
    "POST /api/v1/citizens/{citizen_id}/consents": row(201, body={"department": "CAB", "dataset": "PSB-CONSENT",
                                                                  "purpose": "matrix check", "until": PERIOD["end"]}),
    "GET /api/v1/citizens/{citizen_id}/consents": row(200),
    "POST /api/v1/citizens/{citizen_id}/consents/{consent_id}/withdraw": row(200, params={"consent_id": lambda w: w.fresh_consent()}),
    "GET /api/v1/citizens/{citizen_id}/requests": row(200),
    "POST /api/v1/citizens/{citizen_id}/requests/{request_id}/approve": row(200, params={"request_id": lambda w: w.fresh_request()}),
    "POST /api/v1/citizens/{citizen_id}/requests/{request_id}/refuse": row(200, params={"request_id": lambda w: w.fresh_request()}),
    "POST /api/v1/exchange/{code}/requests": row(403, cab_service=201, params={"code": lambda w: "PSB-EXPLICIT"},
                                                 body={"key": IN_GRANT["citizen_id"]}),
    "GET /api/v1/exchange/requests/{request_id}": row(404, cab_service=200,
                                                      params={"request_id": lambda w: w.fresh_request(approved=True)}),
    "POST /api/v1/grants/{grant_id}/extracts": row(404, cab_demander=202, cab_service=202,
                                                   body={"format": "csv"}, params={"grant_id": lambda w: w.extract_grant_id}),
    "GET /api/v1/extracts/{extract_id}": row(200, demander=404, service=404, cab_demander=200, cab_service=200),
    "GET /api/v1/extracts/{extract_id}/download": row(404, cab_demander=200, cab_service=200, query=lambda w: w.download_query),
    "PUT /api/v1/departments/{code}/public-key": row(403, cab_demander=200, cab_service=200, admin=200,
                                                     params={"code": lambda w: "CAB"},
                                                     body=lambda w, caller: {"public_key": w.public_key_pem}),
    # evaluation
    "GET /api/v1/metrics/summary": row(200),
    "GET /api/v1/metrics/datasets": row(200),
    "GET /api/v1/metrics/departments": row(200),
    "GET /api/v1/metrics/service-items": row(200),
    "GET /api/v1/metrics/providers": row(200),
    "POST /api/v1/applications/{application_id}/ratings": row(404, psb_provider=201, cab_demander=201, body=_rating_body),
    "GET /api/v1/applications/{application_id}/ratings": row(200, provider=404, demander=404, psb_provider=200, cab_demander=200),
    "POST /api/v1/datasets/{code}/corrections": row(403, cab_demander=201, body=_correction_body),
    "POST /api/v1/corrections/{correction_id}/answer": row(404, cab_provider=403, psb_provider=200,
                                                           body={"outcome": "corrected", "answer": "fixed at the source"}),
    "GET /api/v1/corrections": row(200),
    "GET /api/v1/corrections/{correction_id}": row(404, psb=200, cab=200, manager=200, admin=200),  # the filer's and the provider's
    # Delta Sharing: the profile of the department's own extract grant; its tokens also to overseers
    "GET /api/v1/grants/{grant_id}/sharing-profile": row(404, cab_demander=200, cab_service=200,
                                                         params={"grant_id": lambda w: w.extract_grant_id}),
    "GET /api/v1/grants/{grant_id}/sharing-tokens": row(200, demander=404, service=404, cab_demander=200, cab_service=200,
                                                        params={"grant_id": lambda w: w.extract_grant_id}),
    "POST /api/v1/grants/{grant_id}/sharing-tokens/{token_id}/revoke": row(
        200, demander=404, service=404, cab_demander=200, cab_service=200, params={"grant_id": lambda w: w.extract_grant_id}),
    "GET /delta-sharing/shares": row(401),
    "GET /delta-sharing/shares/{share}": row(401),
    "GET /delta-sharing/shares/{share}/all-tables": row(401),
    "GET /delta-sharing/shares/{share}/schemas": row(401),
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables": row(401),
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/version": row(401),
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/metadata": row(401),
    "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/changes": row(401),
    "POST /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/query": row(401, body={}),
    # file URLs carry their own short-lived signature (the protocol's pre-signed URLs): a made-up one is refused
    "GET /delta-sharing/files/{file_id}": row(403),
    "HEAD /delta-sharing/files/{file_id}": row(403),
}

def _is_page(path: str) -> bool:
    """The staff's pages (/ui) and the citizen's (/me): sessions, not tokens."""
    return path.startswith("/ui") or path == "/me" or path.startswith("/me/")


# Every API route of govshare.permissions, with its object row or (a route added without one) only its roles' cells.
ROUTES: dict[str, Row] = {
    route: dataclasses.replace(OBJECT_ROWS.get(route, row(0)), route=route)
    for route in permissions.ROUTES if not _is_page(route.split(" ", 1)[1])
}

# Pages: callers are browser sessions. "anonymous" has a session (and its CSRF token) but has not signed in;
# a forged session is no session, so its forms fail the CSRF check (403).
UI_ROUTES: dict[str, Row] = {
    "GET /ui/style.css": page(200),
    "GET /ui/favicon.svg": page(200),
    "GET /ui/dashboard.css": page(200),
    "GET /ui/login": page(200),
    "POST /ui/login": page(303, cross_site=403, forged=403, form=lambda w: {"name": "maria", "password": PASSWORD}),
    "POST /ui/logout": page(303, cross_site=403, forged=403),
    "GET /ui": page(403, anonymous=303, stale=303, forged=303, manager=200, admin=200, cross_site=200),
    "GET /ui/applications/{application_id}": page(403, anonymous=303, stale=303, forged=303, manager=200, admin=200, cross_site=200),
    "POST /ui/applications/{application_id}/decision": page(403, anonymous=303, stale=303, manager=303, form={"decision": "approve"},
                                                           params={"application_id": lambda w: w.fresh_submitted()}),
    "GET /ui/grants": page(403, anonymous=303, stale=303, forged=303, manager=200, admin=200, cross_site=200),
    "GET /ui/grants/{grant_id}": page(403, anonymous=303, stale=303, forged=303, manager=200, admin=200, cross_site=200,
                                      params={"grant_id": lambda w: w.grant_id}),
    "POST /ui/grants/{grant_id}/revoke": page(403, anonymous=303, stale=303, manager=303, admin=303,
                                             form={"reason": "matrix check", "confirm": "yes"},
                                             params={"grant_id": lambda w: w.fresh_grant()}),
    # the providing department's sign-off: for provider officers of that department (none among these sessions)
    "GET /ui/provider": page(403, anonymous=303, stale=303, forged=303),
    "GET /ui/provider/applications/{application_id}": page(403, anonymous=303, stale=303, forged=303),
    "POST /ui/provider/applications/{application_id}/decision": page(403, anonymous=303, stale=303, form={"decision": "approve"}),
    "GET /ui/dashboard": page(403, anonymous=303, stale=303, forged=303, manager=200, admin=200, cross_site=200),
    "GET /ui/dashboard/datasets/{code}": page(403, anonymous=303, stale=303, forged=303, manager=200, admin=200, cross_site=200),
    "GET /ui/dashboard/applications/{application_id}": page(403, anonymous=303, stale=303, forged=303, manager=200, admin=200,
                                                           cross_site=200),
    "GET /ui/sharing": page(403, anonymous=303, stale=303, forged=303, demander=200),
    # dora (a DATA demander) holds no grant: CAB's answers as one that does not exist
    "POST /ui/sharing/grants/{grant_id}/profile": page(403, anonymous=303, stale=303, demander=404,
                                                      params={"grant_id": lambda w: w.extract_grant_id}),
    "POST /ui/sharing/grants/{grant_id}/tokens/{token_id}/revoke": page(
        403, anonymous=303, stale=303, demander=404,
        params={"grant_id": lambda w: w.extract_grant_id}),
}


# The citizen's page: every UI session above presents its id as the citizen's cookie too (govshare_me), and none is a
# citizen's session; "citizen" is one (a citizen's session as the identity provider's sign-in leaves it). No
# identity provider is configured here, so signing in answers 503. The consent or request acted on is a fresh one of
# the in-grant citizen, whose session "citizen" is; another citizen's answers 404 (tests/exchange/test_citizen_page.py).
CITIZEN_CALLERS = (*UI_CALLERS, "citizen")
CITIZEN_ROUTES: dict[str, Row] = {
    "GET /me/login": page(503, citizen=303),
    "POST /me/login": page(403, citizen=503),
    "GET /me/callback": page(401),
    "POST /me/logout": page(403, citizen=303),
    "GET /me": page(303, citizen=200),
    "POST /me/consents/{consent_id}/withdraw": page(403, citizen=303),
    "POST /me/requests/{request_id}/approve": page(403, citizen=303),
    "POST /me/requests/{request_id}/refuse": page(403, citizen=303),
}


# --- the world -----------------------------------------------------------------------------------


class World:
    """Departments PSB (provides PSB-HOUSEHOLD and PSB-INTAKE), CAB (holds an interface and an extract grant), EDU
    (a stranger), DATA (manager, admin, citizen portal); a client per role; a person per UI role."""

    def __init__(self, http: TestClient, database: Database, settings: Settings) -> None:
        self.http, self.database, self.settings = http, database, settings
        self.factory = Factory(database, http)
        self._codes = itertools.count(1)
        self.tokens: dict[str, str] = {}
        for department in DEPARTMENTS:
            for role in DEPARTMENT_ROLES:
                self.tokens[f"{department}_{role}"] = self.factory.token(self.factory.client(department.upper(), role))
        for name, role in (("manager", "manager"), ("admin", "admin"), ("portal", "citizen_portal")):
            self.tokens[name] = self.factory.token(self.factory.client("DATA", role))
        self.tokens["forged"] = self._forged_token()
        self.tokens["expired"] = self._expired_token()
        self.tokens["revoked"] = self._revoked_token()
        self.tokens["disabled"] = self._disabled_clients_token()

        directory = DirectoryFactory(self.factory)
        directory._providers["PSB"] = self.headers("psb_provider")
        directory.dataset("PSB-HOUSEHOLD", "PSB")
        source = _csv(_citizens(40))
        assert directory.upload("PSB-HOUSEHOLD", source).status_code == 201
        settings.resolved_sources_dir.mkdir(parents=True, exist_ok=True)
        (settings.resolved_sources_dir / "household.csv").write_bytes(source)
        self.call("PUT", "/api/v1/datasets/PSB-HOUSEHOLD/source", "psb_provider", json=SOURCE, expect=200)
        directory.dataset("PSB-INTAKE", "PSB", intake=True, share_type="unconditional", title="Addresses as submitted",
                          domain="household", delivery_modes=["interface"])

        # Citizen control: a dataset asking consent, and one read only on the citizen's approval (CAB granted on it).
        directory.dataset("PSB-CONSENT", "PSB", consent_required=True)
        directory.dataset("PSB-EXPLICIT", "PSB", explicit_request=True)
        assert directory.upload("PSB-EXPLICIT", source).status_code == 201

        self.application_id, self.grant_id = self._granted(APPLICATION_BODY)
        self._granted(application_body(dataset="PSB-EXPLICIT", period=PERIOD, service_item="matrix-explicit"))
        extract_application = application_body(period=PERIOD, delivery="extract", service_item="matrix-extract")
        _, self.extract_grant_id = self._granted(extract_application)
        extract = self.call("POST", f"/api/v1/grants/{self.extract_grant_id}/extracts", "cab_demander", json={"format": "csv"}, expect=202)
        extracts.run_pending(database, store=storage.for_settings(settings), keystore=KeyStore(settings.resolved_keys_dir))
        self.extract_id = extract["id"]
        done = self.call("GET", f"/api/v1/extracts/{self.extract_id}", "cab_demander", expect=200)
        assert done["status"] == "done", done
        self.download_query = dict(parse_qsl(urlsplit(done["download_url"]).query))
        # A delivery, so that both parties may rate the application.
        self.call("GET", f"/api/v1/exchange/PSB-HOUSEHOLD/records/{IN_GRANT['citizen_id']}", "cab_service", expect=200)
        http.app.state.ledger.flush()
        self.correction_id = self.call("POST", "/api/v1/datasets/PSB-HOUSEHOLD/corrections", "cab_demander",
                                       json=_correction_body(self, "cab_demander"), expect=201)["id"]
        self.draft_id = self.fresh_draft()
        self.public_key_pem = _public_key_pem()

        with database.transaction() as session:
            for name, role in (("maria", "manager"), ("ada", "admin"), ("dora", "demander")):
                identities.add_user(session, name=name, roles=[role], password=PASSWORD, department_code="DATA")
        self.sessions = {"anonymous": self._session(None), "manager": self._session("maria"),
                         "admin": self._session("ada"), "demander": self._session("dora")}
        self.sessions["cross_site"] = self.sessions["manager"]
        self.sessions["stale"] = self._crafted_session(signed_in_hours_ago=9, stored=True)
        self.sessions["forged"] = self._crafted_session(signed_in_hours_ago=0, stored=False)
        self.sessions["citizen"] = self._citizen_session()
        # The same craft, stored and fresh, is a working session: the two above fail for their one flaw.
        genuine, _ = self._crafted_session(signed_in_hours_ago=0, stored=True)
        assert http.get("/ui", headers={"Accept": "text/html", "Cookie": f"govshare_ui={genuine}"}).status_code == 200
        http.cookies.clear()

    # tokens and sessions

    def headers(self, caller: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[caller]}"} if caller in self.tokens else {}

    def _forged_token(self) -> str:
        """A token naming a real, recorded jti and every role, signed with a key that is not ours (same kid)."""
        real = self.tokens["admin"]
        claims = dict(jwt.decode(real, KeySet.import_key_set(self.http.get("/oauth/jwks").json())).claims)
        ours = KeyStore(self.settings.resolved_keys_dir).active_key()
        impostor = ECKey.generate_key("P-256", {"kid": ours.kid}, private=True)
        claims["scope"] = "provider demander manager service citizen_portal admin"
        return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": ours.kid}, claims, impostor)

    def _expired_token(self) -> str:
        """A token of ours, recorded and unrevoked, whose lifetime has ended."""
        real = self.tokens["admin"]
        claims = dict(jwt.decode(real, KeySet.import_key_set(self.http.get("/oauth/jwks").json())).claims)
        now = int(time.time())
        claims.update(iat=now - 7200, exp=now - 3600, scope="provider demander manager service citizen_portal admin")
        ours = KeyStore(self.settings.resolved_keys_dir).active_key()
        return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": ours.kid}, claims, ours)

    def _disabled_clients_token(self) -> str:
        """A token of a client holding every role, issued before the client was disabled."""
        credentials = self.factory.client("DATA", "provider", "demander", "manager", "service", "citizen_portal", "admin")
        token = self.factory.token(credentials)
        with self.database.transaction() as session:
            identities.disable_client(session, client_id=credentials.client_id)
        return token

    def _revoked_token(self) -> str:
        """A token of a client holding every role, revoked by that client."""
        credentials = self.factory.client("DATA", "provider", "demander", "manager", "service", "citizen_portal", "admin")
        token = self.factory.token(credentials)
        revoked = self.http.post("/oauth/revoke", data={"token": token}, auth=(credentials.client_id, credentials.client_secret))
        assert revoked.status_code == 200, revoked.text
        return token

    def _session(self, name: str | None) -> tuple[str, str]:
        """A signed-in (or, without a name, an anonymous) browser session: its cookie and CSRF token."""
        self.http.cookies.clear()
        form = self.http.get("/ui/login", headers={"Accept": "text/html"})
        csrf = parse_html(form.text).find("input", name="csrf_token").get("value")
        if name is not None:
            signed = self.http.post("/ui/login", data={"csrf_token": csrf, "name": name, "password": PASSWORD, "next": "/ui"},
                                    headers={"Accept": "text/html"}, follow_redirects=False)
            assert signed.status_code == 303, signed.text
            # Signing in starts a new session with a new CSRF token.
            again = self.http.get("/ui/login", headers={"Accept": "text/html"})
            csrf = parse_html(again.text).find("input", name="csrf_token").get("value")
        cookie = self.http.cookies.get("govshare_ui")
        self.http.cookies.clear()
        return cookie, csrf

    def renew_sessions(self) -> None:
        """Sign the table's people in again (after a cell signed one out, which ends that session for good)."""
        for caller, name in (("manager", "maria"), ("admin", "ada"), ("demander", "dora")):
            self.sessions[caller] = self._session(name)
        self.sessions["cross_site"] = self.sessions["manager"]
        self.sessions["citizen"] = self._citizen_session()

    def _citizen_session(self) -> tuple[str, str]:
        """A citizen's session (IN_GRANT's citizen) as the identity provider's sign-in stores one, and its CSRF token."""
        from govshare.db import utcnow
        from govshare.models import WebSession
        from govshare.web import sessions as web_sessions

        session_id, started = secrets.token_urlsafe(32), utcnow()
        with self.database.transaction() as session:
            session.add(WebSession(id_hash=web_sessions._digest(session_id), citizen_id=IN_GRANT["citizen_id"], created_at=started,
                                   expires_at=started + timedelta(seconds=web_sessions.SESSION_MAX_AGE)))
        secret = KeyStore(self.settings.resolved_keys_dir).session_secret()
        csrf = hmac.new(secret.encode(), f"{web_sessions.CITIZEN.csrf_label}:{session_id}".encode(), hashlib.sha256).hexdigest()
        return session_id, csrf

    def _crafted_session(self, *, signed_in_hours_ago: float, stored: bool) -> tuple[str, str]:
        """Maria's session made by hand: a random id, stored (hashed) as the server stores one, with the CSRF token the
        server derives from that id; or, forged, an id the server never stored, with a token made up as well."""
        from datetime import datetime, timezone

        from govshare.models import WebSession
        from govshare.web import sessions as web_sessions

        session_id = secrets.token_urlsafe(32)
        if stored:
            started = datetime.now(timezone.utc) - timedelta(hours=signed_in_hours_ago)
            with self.database.transaction() as session:
                user = session.execute(select(User).where(User.name == "maria")).scalar_one()
                session.add(WebSession(id_hash=web_sessions._digest(session_id), user_id=user.id, created_at=started,
                                       expires_at=started + timedelta(seconds=web_sessions.SESSION_MAX_AGE)))
        if not stored:
            return session_id, secrets.token_hex(32)
        secret = KeyStore(self.settings.resolved_keys_dir).session_secret()
        csrf = hmac.new(secret.encode(), f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()
        return session_id, csrf

    # requests

    def call(self, method: str, path: str, caller: str, *, expect: int | None = None, **kwargs) -> Any:
        response = self.http.request(method, path, headers=self.headers(caller), **kwargs)
        if expect is not None:
            assert response.status_code == expect, f"{method} {path} as {caller}: {response.text}"
            return response.json() if response.content else None
        return response

    def _granted(self, body: dict) -> tuple[int, int]:
        application = self.call("POST", "/api/v1/applications", "cab_demander", json=body, expect=201)
        self.call("POST", f"/api/v1/applications/{application['id']}/decision", "manager", json=DECISION, expect=200)
        signed = self.call("POST", f"/api/v1/applications/{application['id']}/provider-decision", "psb_provider",
                           json=DECISION, expect=200)
        return application["id"], signed["grant_id"]

    # fresh objects, for the cells that change them

    def new_code(self, department: str) -> str:
        return f"{department}-MATRIX-{next(self._codes)}"

    def fresh_dataset(self) -> str:
        code = self.new_code("PSB")
        self.call("POST", "/api/v1/datasets", "psb_provider", json=dataset_document(code, "PSB"), expect=201)
        return code

    def fresh_draft(self) -> int:
        return self.call("POST", "/api/v1/applications", "cab_demander", json=APPLICATION_BODY, params={"draft": "true"},
                         expect=201)["id"]

    def fresh_submitted(self) -> int:
        return self.call("POST", "/api/v1/applications", "cab_demander", json=APPLICATION_BODY, expect=201)["id"]

    def fresh_awaiting_provider(self) -> int:
        application_id = self.fresh_submitted()
        self.call("POST", f"/api/v1/applications/{application_id}/decision", "manager", json=DECISION, expect=200)
        return application_id

    def fresh_grant(self) -> int:
        return self._granted(APPLICATION_BODY)[1]

    def fresh_sharing_token(self) -> int:
        """A new sharing token of CAB's extract grant (a profile fetched), for a cell that revokes it."""
        self.call("GET", f"/api/v1/grants/{self.extract_grant_id}/sharing-profile", "cab_demander", expect=200)
        listed = self.call("GET", f"/api/v1/grants/{self.extract_grant_id}/sharing-tokens", "cab_demander", expect=200)
        return listed["items"][0]["id"]

    def fresh_webhook(self) -> int:
        return self.call("POST", "/api/v1/webhooks", "cab_demander", json={"url": "https://hooks.example.org/cab"}, expect=201)["id"]

    def fresh_consent(self) -> int:
        body = {"department": "CAB", "dataset": "PSB-CONSENT", "purpose": "matrix check", "until": PERIOD["end"]}
        return self.call("POST", f"/api/v1/citizens/{IN_GRANT['citizen_id']}/consents", "portal", json=body, expect=201)["id"]

    def fresh_request(self, *, approved: bool = False) -> int:
        """A new request of CAB's service for the in-grant citizen on PSB-EXPLICIT (approved by the citizen, when asked)."""
        made = self.call("POST", "/api/v1/exchange/PSB-EXPLICIT/requests", "cab_service", json={"key": IN_GRANT["citizen_id"]},
                         expect=201)
        if approved:
            self.call("POST", f"/api/v1/citizens/{IN_GRANT['citizen_id']}/requests/{made['id']}/approve", "portal", expect=200)
        return made["id"]

    def deposit_body(self) -> dict:
        record = _citizens(200)[next(self._codes) % 200]
        return {"consent_ref": "consent-matrix", "records": [record]}


def _public_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def world(_store, tmp_path_factory) -> Iterator[World]:
    with served_store(_store, tmp_path_factory.mktemp("matrix")) as (http, database, settings):
        yield World(http, database, settings)


# --- calling a cell ---------------------------------------------------------------------------------


def _resolve(value: Any, world: World, caller: str | None = None) -> Any:
    if not callable(value):
        return value
    return value(world, caller) if caller is not None else value(world)


def _path(template: str, spec: Row, world: World) -> str:
    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    unknown = [name for name in names if name not in spec.params and name not in DEFAULTS]
    assert not unknown, f"{template}: give {unknown} a value in DEFAULTS (or in the row's params)"
    values = {name: _resolve(spec.params.get(name, DEFAULTS[name]), world) for name in names}
    return template.format(**values)


def _api_request(world: World, route: str, spec: Row, caller: str) -> tuple[str, str, dict[str, Any]]:
    """Method, path and keyword arguments of one cell's call (making any fresh object it needs)."""
    method, template = route.split(" ", 1)
    kwargs: dict[str, Any] = {"headers": world.headers(caller), "follow_redirects": False}
    if spec.body is not None:
        kwargs["json"] = spec.body(world, caller) if callable(spec.body) else spec.body
    if spec.form is not None:
        kwargs["data"] = _resolve(spec.form, world)
    if spec.upload:
        kwargs["files"] = {"file": ("household.csv", _csv(_citizens(40)))}
    if spec.query is not None:
        kwargs["params"] = _resolve(spec.query, world)
    return method, _path(template, spec, world), kwargs


def _call_api(world: World, route: str, spec: Row, caller: str):
    method, path, kwargs = _api_request(world, route, spec, caller)
    return world.http.request(method, path, **kwargs)


def _call_ui(world: World, route: str, spec: Row, caller: str):
    method, template = route.split(" ", 1)
    cookie, csrf = world.sessions[caller]
    headers = {"Accept": "text/html", "Cookie": f"govshare_ui={cookie}; govshare_me={cookie}"}  # the id wherever it is read
    if caller.endswith("cross_site"):
        headers["Sec-Fetch-Site"] = "cross-site"
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if method == "POST":
        kwargs["data"] = {"csrf_token": csrf, **(_resolve(spec.form, world) or {})}
    try:
        return world.http.request(method, _path(template, spec, world), **kwargs)
    finally:
        world.http.cookies.clear()  # each cell brings its own session
        if route in ("POST /ui/logout", "POST /me/logout"):
            world.renew_sessions()  # signing out ended that session on the server: the next cells need live ones


def _mismatches(world: World, route: str, spec: Row, callers: tuple[str, ...], call) -> list[str]:
    found = []
    for caller in callers:
        response = call(world, route, spec, caller)
        expected = spec.expected(caller)
        if expected == 0:  # a route without an object row, for a caller its roles allow: anything but a refusal by role
            if response.status_code in (401, 403) and "needs one of the roles" in response.text or response.status_code >= 500:
                found.append(f"{caller}: allowed by PERMISSIONS, got {response.status_code} {response.text[:160]}")
            continue
        if response.status_code != expected:
            found.append(f"{caller}: expected {expected}, got {response.status_code} {response.text[:160]}")
        elif response.status_code >= 400 and not _is_page(route.split(" ", 1)[1]):
            if not response.headers.get("content-type", "").startswith("application/problem+json"):
                found.append(f"{caller}: {response.status_code} is not application/problem+json")
    return found


# --- the tests -----------------------------------------------------------------------------------------


def _app_routes(app) -> set[str]:
    """Every route the app serves: the OpenAPI document's, plus the pages under /ui (kept out of it)."""
    routes = {f"{method.upper()} {path}" for path, operations in app.openapi()["paths"].items() for method in operations}
    for candidate in app.router.routes:
        for route in getattr(candidate, "effective_candidates", lambda: [candidate])():
            path = getattr(route, "path", "")
            if _is_page(path):
                routes.update(f"{method} {path}" for method in route.methods if method != "HEAD")
    return routes


def routes_without_entry(app) -> list[str]:
    """The routes ``app`` serves that govshare.permissions.ROUTES does not name."""
    return sorted(_app_routes(app) - set(permissions.ROUTES))


def test_every_route_has_an_entry_in_permissions(world):
    served = _app_routes(world.http.app)
    assert routes_without_entry(world.http.app) == [], "routes without a line in govshare.permissions.ROUTES: add one"
    assert sorted(set(permissions.ROUTES) - served) == [], "lines in govshare.permissions.ROUTES for routes the app does not serve"
    assert sorted(set(OBJECT_ROWS) - set(permissions.ROUTES)) == [] and sorted(set(UI_ROUTES) - set(permissions.ROUTES)) == []
    assert sorted(set(CITIZEN_ROUTES) - set(permissions.ROUTES)) == []
    citizen_pages = {route for route in permissions.ROUTES if route.split(" ", 1)[1].split("/")[1] == "me"}
    assert sorted(citizen_pages - set(CITIZEN_ROUTES)) == [], "citizen's pages without a row in CITIZEN_ROUTES"
    unknown = {route: access for route, access in permissions.ROUTES.items()
               if access not in permissions.PERMISSIONS
               and access not in (permissions.PUBLIC, permissions.SHARING_TOKEN, permissions.SIGNED_URL, permissions.CITIZEN_SESSION)}
    assert unknown == {}, "routes naming an action PERMISSIONS does not have"


def test_a_route_added_without_an_entry_is_reported(world):
    from govshare.app import create_app

    app = create_app(world.settings)
    app.add_api_route("/api/v1/unlisted/{thing_id}", lambda thing_id: {}, methods=["GET"])
    app.add_api_route("/ui/unlisted", lambda: {}, methods=["POST"], include_in_schema=False)
    assert routes_without_entry(app) == ["GET /api/v1/unlisted/{thing_id}", "POST /ui/unlisted"]
    assert routes_without_entry(world.http.app) == []


def _required_actions(dependant) -> set[str]:
    """The actions whose ``require`` checks a route's dependencies make."""
    name = getattr(dependant.call, "__name__", "")
    found = {name.removeprefix("require_")} if name.startswith("require_") else set()
    for inner in dependant.dependencies:
        found |= _required_actions(inner)
    return found


def test_each_route_checks_the_action_its_entry_names(world):
    """An entry cannot say one thing while the route checks another (the lookup checks inline, in one thread hop)."""
    wrong = []
    for candidate in world.http.app.router.routes:
        for route in getattr(candidate, "effective_candidates", lambda: [candidate])():
            for method in sorted(getattr(route, "methods", None) or ()):
                access = permissions.ROUTES.get(f"{method} {route.path}")
                checked = {action.replace("_", ".", 1) for action in _required_actions(route.dependant)} if hasattr(route, "dependant") else set()
                if access in permissions.PERMISSIONS and checked and access not in checked:
                    wrong.append(f"{method} {route.path}: entry {access}, checks {sorted(checked)}")
    assert wrong == []


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_api_route_answers_each_caller_as_the_table_says(world, route):
    assert _mismatches(world, route, ROUTES[route], CALLERS, _call_api) == []


@pytest.mark.parametrize("route", sorted(UI_ROUTES))
def test_page_answers_each_session_as_the_table_says(world, route):
    assert _mismatches(world, route, UI_ROUTES[route], UI_CALLERS, _call_ui) == []


@pytest.mark.parametrize("route", sorted(CITIZEN_ROUTES))
def test_citizen_page_answers_each_session_as_the_table_says(world, route):
    assert _mismatches(world, route, CITIZEN_ROUTES[route], CITIZEN_CALLERS, _call_ui) == []


def test_a_citizen_s_session_opens_no_staff_page(world):
    """A citizen's session is no staff session: every staff page sends it to sign in, every staff form refuses it."""
    wrong = []
    for route, spec in UI_ROUTES.items():
        response = _call_ui(world, route, spec, "citizen")
        method = route.split(" ", 1)[0]
        if spec.expected("anonymous") == 200:  # public: the stylesheet, the sign-in page
            continue
        if (method == "GET" and response.status_code != 303) or (method == "POST" and response.status_code not in (303, 403)):
            wrong.append(f"{route}: {response.status_code}")
        elif response.status_code == 303 and not response.headers["location"].startswith("/ui/login"):
            wrong.append(f"{route}: 303 to {response.headers['location']}")
    assert wrong == []


# The access ledger records refused interface calls too, by design (its lines, their keys, and its own bookkeeping:
# batch marks, rollups); everything else must stay as it was.
LEDGER_TABLES = {"access_log", "access_log_keys", "ledger_batches", "ledger_day_counts", "ledger_day_latencies",
                 "grant_first_lines"}


def _row_counts(world: World) -> dict[str, int]:
    """Rows in every table but the ledger. Every change of state also appends an event and an audit entry."""
    # The ledger writes in the background: written now, so no earlier call's batch lands between two counts.
    world.http.app.state.ledger.flush()
    with world.database.transaction(write=False) as session:
        return {table.name: session.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables if table.name not in LEDGER_TABLES}


def test_refused_calls_write_nothing(world):
    """Every writing call the table refuses (401, 403, 404), made again: no table gains or loses a row."""
    wrote, checked = [], 0
    for route, spec in ROUTES.items():
        if route.startswith("GET"):
            continue
        for caller in CALLERS:
            if spec.expected(caller) not in (401, 403, 404):
                continue
            method, path, kwargs = _api_request(world, route, spec, caller)  # fresh objects are made here, before counting
            before = _row_counts(world)
            response = world.http.request(method, path, **kwargs)
            assert response.status_code == spec.expected(caller), (route, caller, response.text)
            after, checked = _row_counts(world), checked + 1
            if after != before:
                changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
                wrote.append(f"{route} as {caller} changed {changed}")
    assert checked > 300 and wrote == []


# --- another department's object: the same answer as one that does not exist -----------------------------------

MISSING = {"application_id": 999_999, "grant_id": 999_999, "extract_id": "00000000-0000-0000-0000-000000000000",
           "correction_id": 999_999, "webhook_id": 999_999}


def _object_of(route: str) -> str | None:
    return next((name for name in MISSING if "{" + name + "}" in route), None)


def _problem(response, object_id: Any) -> tuple[int, str, str]:
    body = response.json() if response.headers.get("content-type", "").startswith("application/problem+json") else {}
    return response.status_code, body.get("type", ""), str(body.get("detail", "")).replace(str(object_id), "N")


@pytest.mark.parametrize("route", sorted(route for route in ROUTES if _object_of(route)))
def test_another_departments_object_answers_as_one_that_does_not_exist(world, route):
    """Every caller refused an object gets exactly what it would get for an id that names nothing:
    the answers tell nothing about what exists in another department."""
    spec, name = ROUTES[route], _object_of(route)
    template = route.split(" ", 1)[1]
    differ = []
    for caller in CALLERS:
        if spec.expected(caller) != 404 and derived_status(route, caller) is None:
            continue  # allowed to act on it, or (a named 403) allowed to see it but not to do this
        method, path, kwargs = _api_request(world, route, spec, caller)
        foreign = world.http.request(method, path, **kwargs)
        foreign_id = path.split("/")[template.split("/").index("{" + name + "}")]
        missing_path = _path(template, dataclasses.replace(spec, params={**spec.params, name: MISSING[name]}), world)
        if route.endswith("/download"):  # a link signed for the id that names nothing, as the real one is signed for its own
            link = extracts.download_link(MISSING[name], secret=extracts.link_secret(KeyStore(world.settings.resolved_keys_dir)))
            kwargs["params"] = dict(parse_qsl(urlsplit(link).query))
        missing = world.http.request(method, missing_path, **kwargs)
        if _problem(foreign, foreign_id) != _problem(missing, MISSING[name]):
            differ.append(f"{caller}: {_problem(foreign, foreign_id)} but for nothing {_problem(missing, MISSING[name])}")
    assert differ == []
