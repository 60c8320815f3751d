"""The one error shape: RFC 9457 problem+json with a stable type, for every 4xx and 5xx."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from govshare.errors import Conflict, NotFound

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def _assert_problem(response, status: int, type_slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert PROBLEM_KEYS <= set(body)
    assert body["status"] == status
    assert body["type"] == f"urn:govshare:problem:{type_slug}"
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.fixture
def app_with_probe_routes(app):
    """The real app plus routes that fail in each way, to see what callers get."""
    probe = APIRouter()

    @probe.get("/probe/conflict")
    def conflict() -> None:
        raise Conflict("the application was decided already")

    @probe.get("/probe/missing")
    def missing() -> None:
        raise NotFound("dataset PSB-X does not exist")

    @probe.get("/probe/crash")
    def crash() -> None:
        raise RuntimeError("secret internals must not leak")

    @probe.get("/probe/typed")
    def typed(page: int) -> dict:
        return {"page": page}

    app.include_router(probe)
    return app


@pytest.fixture
def probe_client(app_with_probe_routes):
    from starlette.testclient import TestClient

    with TestClient(app_with_probe_routes, base_url="http://localhost", raise_server_exceptions=False) as test_client:
        yield test_client


def test_unknown_route_is_a_404_problem(client):
    body = _assert_problem(client.get("/api/v1/nothing-here"), 404, "not-found")
    assert body["instance"] == "/api/v1/nothing-here"


def test_wrong_method_is_a_405_problem(client):
    _assert_problem(client.delete("/healthz"), 405, "method-not-allowed")


def test_domain_errors_keep_their_status_type_and_detail(probe_client):
    body = _assert_problem(probe_client.get("/probe/conflict"), 409, "conflict")
    assert body["detail"] == "the application was decided already"
    _assert_problem(probe_client.get("/probe/missing"), 404, "not-found")


def test_invalid_input_names_where_and_what(probe_client):
    body = _assert_problem(probe_client.get("/probe/typed", params={"page": "two"}), 422, "invalid-input")
    assert body["detail"].startswith("query.page:")
    assert body["errors"][0]["location"] == ["query", "page"]


def test_an_unexpected_failure_is_a_500_problem_that_reveals_nothing(probe_client):
    body = _assert_problem(probe_client.get("/probe/crash"), 500, "internal-error")
    assert "secret internals" not in probe_client.get("/probe/crash").text
    assert body["title"] == "Internal error"


def test_missing_token_is_a_401_problem_with_a_challenge(client):
    response = client.get("/api/v1/audit/verify")
    _assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="govshare"'


def test_role_outside_is_a_403_problem(client, factory):
    _assert_problem(client.get("/api/v1/audit/verify", headers=factory.caller("PSB", "provider")), 403, "forbidden")


def test_browser_pages_under_ui_get_an_html_error_page(client):
    response = client.get("/ui/nowhere", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not Found</h1>" in response.text


@pytest.fixture
def small_limit_client(settings):
    from starlette.testclient import TestClient

    from govshare.app import create_app

    limited = create_app(settings.model_copy(update={"max_request_bytes": 1024}))
    with TestClient(limited, base_url="http://localhost", raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_body_over_the_limit_is_a_413_problem_and_the_server_stays_up(small_limit_client):
    response = small_limit_client.post("/oauth/token", content=b"grant_type=client_credentials&x=" + b"a" * 4096,
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    body = _assert_problem(response, 413, "payload-too-large")
    assert "1024 bytes" in body["detail"]

    def chunks():
        yield b"grant_type=client_credentials&x="
        for _ in range(8):
            yield b"a" * 512

    streamed = small_limit_client.post("/oauth/token", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    _assert_problem(streamed, 413, "payload-too-large")
    assert small_limit_client.get("/healthz").status_code == 200


@pytest.mark.parametrize(("query", "name"), [("dataset=A%00B", "dataset"), ("q=%00", "q"), ("status=approved&dataset=%00", "dataset")])
def test_a_nul_in_any_query_parameter_is_a_422_naming_it(client, factory, query, name):
    # The same answer on every route, whether or not the parameter would reach the record store
    # (which cannot keep a NUL): the OpenAPI document promises as much with a pattern.
    headers = factory.caller("CAB", "demander")
    for path in ("/api/v1/grants", "/api/v1/datasets", "/api/v1/applications"):
        response = client.get(f"{path}?{query}", headers=headers)
        _assert_problem(response, 422, "invalid-input")
        assert response.json()["detail"].startswith(f"{name}: ") and "NUL" in response.json()["detail"]


def test_the_document_gives_text_query_parameters_the_no_nul_pattern(client):
    parameters = client.get("/openapi.json").json()["paths"]["/api/v1/grants"]["get"]["parameters"]
    dataset = next(parameter for parameter in parameters if parameter["name"] == "dataset")
    patterns = [option.get("pattern") for option in [dataset["schema"], *dataset["schema"].get("anyOf", [])]]
    assert "^[^\\u0000]*$" in patterns
