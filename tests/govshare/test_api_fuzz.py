"""Fuzzing the API from its own OpenAPI document (schemathesis): no 5xx, and every error a problem+json.

Requests are generated for every operation, valid and invalid ones (wrong types,
missing fields, strings where numbers belong, odd characters), and sent with a token
holding every role, so they get past authentication into the code that handles them.
``GOVSHARE_FUZZ_EXAMPLES`` sets the examples per operation (default 30; CI may raise it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from govshare.db import Database
from tests.conftest import ISSUER
from tests.exchange.test_interfaces import Exchange, _citizens, _csv
from tests.factories import DirectoryFactory, Factory
from tests.govshare.conftest import served_store
from govshare import permissions

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("GOVSHARE_FUZZ_EXAMPLES", "30"))
ALL_ROLES = ("provider", "demander", "manager", "service", "citizen_portal", "admin")


class FuzzWorld:
    """A store with a dataset and its data, a token of PSB holding every role, and one token per role."""

    def __init__(self, http: TestClient, database: Database) -> None:
        self.http = http
        factory = Factory(database, http)
        self.headers = factory.headers(factory.client("PSB", *ALL_ROLES))
        self.role_headers = {role: factory.headers(factory.client("PSB", role)) for role in ALL_ROLES}
        directory = DirectoryFactory(factory)
        directory._providers["PSB"] = self.headers
        directory.dataset("PSB-HOUSEHOLD", "PSB")
        assert directory.upload("PSB-HOUSEHOLD", _csv(_citizens(20))).status_code == 201


@pytest.fixture(scope="module")
def fuzz_world(_store, tmp_path_factory) -> Iterator[FuzzWorld]:
    with served_store(_store, tmp_path_factory.mktemp("fuzz")) as (http, database, _settings):
        yield FuzzWorld(http, database)


@pytest.fixture(scope="module")
def api_schema(fuzz_world):
    return schemathesis.openapi.from_dict(fuzz_world.http.app.openapi())


# govshare.permissions lists every route (the authorization matrix fails when one is missing).
# The pages (the staff's /ui, the citizen's /me) answer browsers; their own tests check them.
OPERATIONS = sorted(route for route in permissions.ROUTES if " /ui" not in route and " /me" not in route)


# Every check schemathesis has (its CLI's --checks all): status codes, content types, headers and
# bodies as documented, invalid data refused, valid data accepted, no server error, and the rest.
checks.load_all_checks()
ALL_CHECKS = checks.CHECKS.get_all()


# Bodies in the unified format (schemas/*.json) are checked against rules the OpenAPI document does
# not carry (its body schema is "an object"; the rules: JSON Schema, items named in the dataset,
# the normative inspection): a well-formed object refused with 422 is expected there, and is
# checked below to be such a refusal, not a failure.
UNIFIED_FORMAT_BODIES = {
    "POST /api/v1/datasets", "PUT /api/v1/datasets/{code}", "PATCH /api/v1/datasets/{code}",
    "POST /api/v1/applications", "PUT /api/v1/applications/{application_id}",
    "POST /api/v1/applications/{application_id}/ratings",
    "PUT /api/v1/departments/{code}/public-key",  # a PEM key is checked by parsing it
    # A period's 'from' must come before its 'to', which a schema cannot say.
    "GET /api/v1/metrics/summary", "GET /api/v1/metrics/datasets", "GET /api/v1/metrics/departments",
    "GET /api/v1/metrics/service-items", "GET /api/v1/metrics/providers",
    # A consent names a department and a dataset that must exist, a day not past, the path's citizen.
    "POST /api/v1/citizens/{citizen_id}/consents",
}
UNIFIED_FORMAT_REFUSALS = {"invalid-period", "schema-violation", "invalid-dataset", "inspection-failed", "invalid-decision", "invalid-rating",
                           "invalid-row-filter", "invalid-input", "invalid-consent"}
CALLERS = (*ALL_ROLES, "every role")


@pytest.mark.parametrize("route", OPERATIONS)
def test_every_answer_is_as_the_document_says(api_schema, fuzz_world, route):
    """Valid and invalid requests of every operation, each sent with the token of one role (or of all roles, to get
    past authorization into the code that handles them): every check schemathesis has finds nothing; no 5xx, and
    every error a problem+json."""
    method, path = route.split(" ", 1)
    operation = api_schema[path][method]
    checks_here = [check for check in ALL_CHECKS
                   if not (route in UNIFIED_FORMAT_BODIES and check is checks.positive_data_acceptance)]
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=operation.as_strategy(generation_mode=mode), caller=st.sampled_from(CALLERS))
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case, caller):
            response = _send(case, fuzz_world, fuzz_world.headers if caller == "every role" else fuzz_world.role_headers[caller])
            case.validate_response(response, checks=checks_here)
            if response.status_code >= 400 and case.method != "HEAD":
                body = response.json()
                assert body["status"] == response.status_code and body["type"].startswith("urn:govshare:problem:"), response.text
            if mode is GenerationMode.POSITIVE and route in UNIFIED_FORMAT_BODIES and response.status_code == 422:
                assert body["type"].rsplit(":", 1)[1] in UNIFIED_FORMAT_REFUSALS, response.text

        try:
            conforms()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"{route}: no valid request could be generated"


def test_unknown_enum_values_are_refused(fuzz_world):
    answered = fuzz_world.http.get("/api/v1/applications", params=[("status", "true"), ("status", "168136")],
                                   headers=fuzz_world.role_headers["manager"])
    assert answered.status_code == 422 and answered.headers["content-type"].startswith("application/problem+json")
    assert fuzz_world.http.get("/api/v1/applications", params={"status": "submitted"},
                               headers=fuzz_world.role_headers["manager"]).status_code == 200


@pytest.mark.parametrize("template, path", [("/api/v1/datasets", "/api/v1/datasets"),
                                            ("/api/v1/applications/{application_id}", "/api/v1/applications/1"),
                                            ("/api/v1/exchange/{code}/records", "/api/v1/exchange/X/records")])
def test_options_and_unsupported_methods_name_every_allowed_method(fuzz_world, template, path):
    document = fuzz_world.http.app.openapi()["paths"][template]
    documented = {method.upper() for method in document}
    for method in ("OPTIONS", "TRACE"):
        answered = fuzz_world.http.request(method, path, headers=fuzz_world.headers)
        assert answered.status_code == 405 and answered.headers["content-type"].startswith("application/problem+json")
        assert set(answered.headers["allow"].split(", ")) == documented, answered.headers["allow"]


def test_every_operation_documents_its_problems_with_one_schema(fuzz_world):
    document = fuzz_world.http.app.openapi()
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    undocumented = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            access = permissions.ROUTES[f"{method.upper()} {path}"]
            expected = {"422"} if operation.get("parameters") or operation.get("requestBody") else set()
            if access not in (permissions.PUBLIC, permissions.SIGNED_URL):
                expected |= {"401", "403"}
            for status in expected:
                content = operation["responses"].get(status, {}).get("content", {})
                if content != {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}:
                    undocumented.append(f"{method.upper()} {path} {status}")
    assert undocumented == []


def _send(case, fuzz_world: FuzzWorld, headers: dict[str, str]):
    request = case.as_transport_kwargs(base_url=ISSUER, headers=headers)
    cookies = request.pop("cookies", None)
    if cookies:  # sent as a header: per-request cookies are deprecated in httpx
        request["headers"]["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    if isinstance(request.get("data"), (bytes, str)):
        request["content"] = request.pop("data")
    built = fuzz_world.http.build_request(**request)
    try:
        built.read()  # a multipart body is a stream: read now, so that the checks can read what was sent
    except (AttributeError, TypeError):
        reject()  # a "file" that is a number: no HTTP client can send it
    return fuzz_world.http.send(built)


PROTECTED = sorted(route for route in OPERATIONS if permissions.ROUTES[route] not in (permissions.PUBLIC, permissions.SIGNED_URL))


@pytest.mark.parametrize("route", PROTECTED)
def test_no_request_without_a_token_gets_through(api_schema, fuzz_world, route):
    """Valid requests of every kind, sent without a token: refused (401), or invalid (422) before anything is read."""
    method, path = route.split(" ", 1)

    @given(case=api_schema[path][method].as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(max_examples=max(5, FUZZ_EXAMPLES // 3), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def refused(case):
        response = _check(case, fuzz_world, headers={})
        assert response.status_code in (401, 422), f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"

    refused()


def _check(case, fuzz_world: FuzzWorld, headers: dict[str, str] | None = None):
    request = case.as_transport_kwargs(base_url=ISSUER, headers=fuzz_world.headers if headers is None else headers)
    cookies = request.pop("cookies", None)
    if cookies:  # sent as a header: per-request cookies are deprecated in httpx
        request["headers"]["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    if isinstance(request.get("data"), (bytes, str)):
        request["content"] = request.pop("data")
    response = fuzz_world.http.request(**request)
    where = f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}\n{case.as_curl_command()}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/problem+json"), where
        if case.method == "HEAD":
            return response  # a HEAD answer has the headers of the GET one, and no body
        body = response.json()
        assert body["status"] == response.status_code and body["type"].startswith("urn:govshare:problem:") and body["detail"], where
    elif "json" in response.headers.get("content-type", ""):
        response.json()  # what says it is JSON is JSON
    return response


# --- inputs the OpenAPI document does not describe --------------------------------------------------------
# Read from the raw query or form, so the generator above never sends them: fuzzed here, with a caller
# who gets past authorization to the code that parses them.

FUZZ_SETTINGS = settings(max_examples=FUZZ_EXAMPLES * 3, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])
ODD_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


def _handled(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(("application/problem+json", "text/html")), response.text


@pytest.fixture
def exchange(client, factory, tmp_path) -> Exchange:
    return Exchange(client, factory, tmp_path)


@FUZZ_SETTINGS
@given(limit=ODD_TEXT, cursor=ODD_TEXT, district=ODD_TEXT)
@example(limit="²", cursor="", district="01")  # '²'.isdigit() is true, int('²') raises: was a 500
@example(limit="10", cursor="eyJ2IjogMSwgInIiOiAxZTk5OX0", district="01")  # a cursor with a float row
def test_the_exchange_query_handles_any_limit_cursor_and_filter(exchange, limit, cursor, district):
    params = {"limit": limit, "district": district, **({"cursor": cursor} if cursor else {})}
    response = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params=params, headers=exchange.service)
    _handled(response)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["detail"].startswith(("limit:", "cursor:", "district:")), response.text


@pytest.fixture
def decision_page(client, factory, database):
    from tests.approvals.test_api import World
    from tests.approvals.test_views import HTML, add_person, csrf_of, sign_in

    world = World(client, factory)
    add_person(database, "maria", "manager")
    assert sign_in(client, "maria").status_code == 303
    application = world.filed()
    csrf = csrf_of(client.get(f"/ui/applications/{application['id']}", headers=HTML))
    return client, f"/ui/applications/{application['id']}/decision", csrf


@FUZZ_SETTINGS
@given(decision=st.sampled_from(["approve", "reject", "return", ""]) | ODD_TEXT, reason=ODD_TEXT,
       rule=st.sampled_from(["keep_first", "keep_last", "year_only", "keyed_hash", "null", ""]) | ODD_TEXT, count=ODD_TEXT)
@example(decision="approve", reason="", rule="keep_first", count="²")  # was a 500
def test_the_decision_form_handles_any_decision_reason_and_mask(decision_page, decision, reason, rule, count):
    client, path, csrf = decision_page
    form = {"csrf_token": csrf, "decision": decision, "reason_code": reason, "mask.name": rule, "mask_count.name": count}
    response = client.post(path, data=form, headers={"Accept": "text/html"}, follow_redirects=False)
    _handled(response)
    assert response.status_code in (303, 409, 422), response.text[:500]


@pytest.fixture
def sign_in_form(client, factory, database):
    from tests.approvals.test_views import HTML, PASSWORD, add_person, csrf_of

    factory.department("DATA")
    add_person(database, "maria", "manager")

    def post(target: str):
        client.cookies.clear()  # a new browser each time: sign-in starts a new session
        csrf = csrf_of(client.get("/ui/login", headers=HTML))
        form = {"csrf_token": csrf, "name": "maria", "password": PASSWORD, "next": target}
        return client.post("/ui/login", data=form, headers=HTML, follow_redirects=False)

    return post


@FUZZ_SETTINGS
@given(target=st.one_of(ODD_TEXT, st.sampled_from(["//evil.example", "/ui//evil.example", "/\\evil.example", "https://evil.example",
                                                    "/ui\t//evil.example", "/ui\r\nSet-Cookie: a=b", "/ui@evil.example"])),
       suffix=ODD_TEXT)
def test_signing_in_never_redirects_to_another_site(sign_in_form, target, suffix):
    response = sign_in_form(target + suffix)
    assert response.status_code == 303, response.text[:300]
    location = response.headers["location"]
    assert "\r" not in location and "\n" not in location
    # Where a browser would go (it drops tabs and line breaks from a URL first).
    landed = urlsplit(urljoin("http://localhost/ui/login", "".join(c for c in location if c not in "\t\r\n")))
    assert landed.netloc == "localhost" and landed.path.startswith("/ui"), location
