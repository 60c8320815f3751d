"""Limits: oversized uploads, huge JSON bodies, deep nesting and slow clients get a clear answer, and the server stays up.

The app here runs with small limits (64 KiB uploads, 8 KiB JSON, a 1-second body
deadline) so each limit is crossed quickly; the defaults are the same code with
larger numbers.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from approvals.models import Application
from govshare.app import create_app
from tests.approvals.test_api import World, application_body
from tests.evaluation.test_api import EXTRACT_APPLICATION, _deliver
from tests.factories import DirectoryFactory
from tests.servers import GovshareServer

UPLOAD_LIMIT, JSON_LIMIT, BODY_SECONDS = 64 * 1024, 8 * 1024, 1.0


@pytest.fixture
def app(settings):
    return create_app(settings.model_copy(update={
        "max_request_bytes": UPLOAD_LIMIT, "max_json_bytes": JSON_LIMIT, "request_body_timeout_seconds": BODY_SECONDS}))


class Parties:
    def __init__(self, client: TestClient, factory) -> None:
        self.http = client
        self.directory = DirectoryFactory(factory)
        self.directory.dataset("PSB-HOUSEHOLD", "PSB")
        self.provider = self.directory.provider("PSB")
        self.demander = factory.caller("CAB", "demander")


@pytest.fixture
def parties(client, factory) -> Parties:
    return Parties(client, factory)


def _problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:govshare:problem:{slug}" and body["status"] == status and body["detail"]
    return body


def _applications(database) -> int:
    with database.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(Application))


def _csv_of(size: int) -> bytes:
    header = "citizen_id,name,district,birth_date\n"
    row = "11010119900101001X,Citizen,01,1990-01-01\n"
    return (header + row * (size // len(row) + 1)).encode()


def test_an_upload_over_the_upload_limit_is_a_413_and_one_over_the_json_limit_is_still_accepted(parties, client):
    too_big = client.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("big.csv", _csv_of(UPLOAD_LIMIT * 2))},
                          headers=parties.provider)
    body = _problem(too_big, 413, "payload-too-large")
    assert str(UPLOAD_LIMIT) in body["detail"]
    # Larger than the JSON cap, within the upload cap: uploads are not held to the JSON limit.
    medium = client.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("medium.csv", _csv_of(JSON_LIMIT * 3))},
                         headers=parties.provider)
    assert medium.status_code != 413, medium.text
    versions = client.get("/api/v1/datasets/PSB-HOUSEHOLD/versions", headers=parties.provider).json()["versions"]
    assert len(versions) == (1 if medium.status_code == 201 else 0)
    assert client.get("/healthz").status_code == 200


def test_a_json_body_over_its_limit_is_a_413_whether_declared_or_streamed_and_nothing_is_stored(parties, client, database):
    body = application_body(purpose="x" * (JSON_LIMIT * 2))
    declared = client.post("/api/v1/applications", json=body, headers=parties.demander)
    problem = _problem(declared, 413, "payload-too-large")
    assert f"{JSON_LIMIT} bytes for JSON" in problem["detail"] and str(UPLOAD_LIMIT) in problem["detail"]

    encoded = json.dumps(body).encode()

    def chunks():  # no Content-Length: counted as it arrives
        for start in range(0, len(encoded), 1024):
            yield encoded[start:start + 1024]

    streamed = client.post("/api/v1/applications", content=chunks(),
                           headers={**parties.demander, "Content-Type": "application/json"})
    _problem(streamed, 413, "payload-too-large")
    assert _applications(database) == 0
    # A body within the limit still goes through.
    assert client.post("/api/v1/applications", json=application_body(), headers=parties.demander).status_code == 201


def _nested_filter(depth: int) -> dict:
    node: dict = {"district": {"eq": "01"}}
    for _ in range(depth - 1):
        node = {"and": [node]}
    return node


@pytest.mark.parametrize("depth", [12, 200])
def test_deeply_nested_row_filters_are_a_422_naming_the_limit(parties, client, database, depth):
    # Measured before the filing's transaction opens (schemas.ROW_FILTER_MAX_DEPTH), however deep.
    response = client.post("/api/v1/applications", json=application_body(row_filter=_nested_filter(depth)),
                           headers=parties.demander)
    problem = _problem(response, 422, "schema-violation")
    assert [(error["field"], error["rule"]) for error in problem["errors"]] == [("row_filter", "maxFilterDepth")]
    assert "the limit is 8" in problem["detail"]
    assert _applications(database) == 0


def test_json_nested_beyond_the_parsers_stack_is_a_422_not_a_crash(parties, settings):
    # 100,000 levels (200 KB, so under a roomier JSON cap): Python's JSON parser gives up with a RecursionError.
    raw = b'{"dataset": "PSB-HOUSEHOLD", "row_filter": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    roomy_app = create_app(settings.model_copy(update={"max_json_bytes": 1024 * 1024}))
    with TestClient(roomy_app, base_url="http://localhost", raise_server_exceptions=False) as roomy:
        for path, headers in [("/api/v1/datasets", parties.provider), ("/api/v1/applications", parties.demander)]:
            deep = roomy.post(path, content=raw, headers={**headers, "Content-Type": "application/json"})
            problem = _problem(deep, 422, "invalid-input")
            assert "nested too deeply" in problem["detail"]
        assert roomy.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/applications/{n}", "/api/v1/grants/{n}", "/api/v1/applications/{n}/history"])
def test_ids_beyond_what_the_store_holds_are_a_client_error_not_a_500(parties, client, path):
    response = client.get(path.format(n=2**70), headers=parties.demander)
    assert response.status_code in (404, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def _raw_request(base_url: str, head: bytes, body: bytes, *, wait: float) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head + body)
        time.sleep(wait)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_a_client_that_sends_its_body_too_slowly_gets_a_408_and_the_server_stays_up(parties, live_server):
    import httpx

    token = parties.demander["Authorization"]
    head = (b"POST /api/v1/applications HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\nAuthorization: " + token.encode() + b"\r\n\r\n")
    started = time.monotonic()
    answer = _raw_request(live_server, head, b'{"dataset": ', wait=0)  # then nothing: a stalled client
    elapsed = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 408 " in status_line, answer[:300]
    assert b"application/problem+json" in rest.lower()
    assert b"did not arrive within 1 seconds" in rest
    assert BODY_SECONDS <= elapsed < BODY_SECONDS + 5
    # The server answers others, and a body sent at a normal pace is not cut off.
    assert httpx.get(f"{live_server}/healthz").status_code == 200
    listing = httpx.get(f"{live_server}/api/v1/applications", headers=parties.demander)
    assert listing.status_code == 200



HEAD_SECONDS = 1.5


def _trickle(base_url: str, first: bytes, *, every: float, until: float, drip: bytes = b"x") -> tuple[bytes, float]:
    """Send ``first``, then ``drip`` (a header byte) every ``every`` seconds until the server closes (or ``until`` s pass).

    Returns what the server sent and the seconds from the trickle's start to the close.
    """
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=until) as connection:
        started = time.monotonic()
        connection.sendall(first)
        connection.settimeout(every)
        received = b""
        while time.monotonic() - started < until:
            try:
                chunk = connection.recv(65536)
            except TimeoutError:
                try:
                    connection.sendall(drip)  # X-Slow: x... one byte at a time, never the end of the head
                except OSError:  # closed by the server between two reads
                    return received, time.monotonic() - started
                continue
            except ConnectionResetError:
                return received, time.monotonic() - started
            if not chunk:
                return received, time.monotonic() - started
            received += chunk
        return received, time.monotonic() - started


@pytest.fixture(params=[1, 2], ids=["1 process", "2 workers"])
def slow_head_server(settings, tmp_path, request):
    """``govshare serve`` with a short head deadline; in one process, and in two (``--workers 2``, each its own protocol)."""
    env = {"GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url,
           "GOVSHARE_JOBS_ENABLED": "false", "GOVSHARE_ISSUER": None,
           "GOVSHARE_REQUEST_HEADER_TIMEOUT_SECONDS": str(HEAD_SECONDS)}
    with GovshareServer(env, tmp_path / "serve.log", args=("--workers", str(request.param))) as server:
        yield server.base


def test_a_client_that_sends_its_headers_too_slowly_is_cut_off_while_others_are_served(slow_head_server):
    import httpx

    base = slow_head_server
    results: dict[str, tuple[bytes, float]] = {}

    def slowloris(name: str, first: bytes, drip: bytes = b"x") -> None:
        results[name] = _trickle(base, first, every=0.2, until=HEAD_SECONDS + 10, drip=drip)

    trickling = [threading.Thread(target=slowloris, args=(f"slow-{n}", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "))
                 for n in range(4)]
    trickling.append(threading.Thread(target=slowloris, args=("silent", b"", b"")))  # connects, sends nothing
    for thread in trickling:
        thread.start()
    time.sleep(0.3)
    # Meanwhile others are answered at once, on new connections and on a kept-alive one.
    with httpx.Client(base_url=base, timeout=5) as http:
        for _ in range(5):
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            assert time.monotonic() - started < 1.0
    for thread in trickling:
        thread.join()

    for name, (answer, elapsed) in results.items():
        assert HEAD_SECONDS - 0.1 <= elapsed < HEAD_SECONDS + 3, (name, elapsed)
        if name == "silent":
            assert answer == b"", answer  # nothing asked, nothing answered: just closed
            continue
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:300]
        head, _, body = rest.partition(b"\r\n\r\n")
        assert b"content-type: application/problem+json" in head and b"connection: close" in head
        problem = json.loads(body)
        assert problem["status"] == 408 and problem["type"] == "urn:govshare:problem:request-timeout"
        assert f"did not arrive within {HEAD_SECONDS:g} seconds" in problem["detail"]


def test_on_a_kept_alive_connection_each_request_head_has_its_own_deadline(slow_head_server):
    host, port = slow_head_server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        for _ in range(3):  # together longer than one deadline: it is counted per request, not per connection
            time.sleep(HEAD_SECONDS / 2)
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = connection.recv(65536)
            while b"\r\n\r\n" not in answer or answer.endswith(b"\r\n\r\n"):  # the head, then its body
                answer += connection.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    # The next head, trickled on a kept-alive connection, is cut off like a first one.
    answer, elapsed = _trickle(slow_head_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nX-Slow: ",
                               every=0.2, until=HEAD_SECONDS + 10)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 Request Timeout" in answer, answer[:600]
    assert HEAD_SECONDS - 0.1 <= elapsed < HEAD_SECONDS + 3


def test_a_nul_character_in_a_document_is_refused_by_name_on_every_record_store(parties, client, database):
    # PostgreSQL text cannot hold NUL; SQLite can. A document is refused by field on both,
    # so what one deployment accepts, every one does.
    response = client.post("/api/v1/applications", json=application_body(purpose="birth\x00registration"), headers=parties.demander)
    problem = _refused_naming(response, "purpose")
    assert problem["type"] == "urn:govshare:problem:schema-violation"
    assert any(error["rule"] == "text" and "NUL character" in error["message"] for error in problem["errors"]), problem
    assert _applications(database) == 0
    named = client.post("/api/v1/applications", json=application_body(justifications={"citizen\x00id": "why"}),
                        headers=parties.demander)
    assert named.status_code == 422, named.text
    assert {"field": "justifications.citizen\\u0000id", "rule": "text",  # the name shown escaped
            "message": "is not valid text: it holds a NUL character (\\u0000), which PostgreSQL cannot store"} in named.json()["errors"]
    assert _applications(database) == 0


def test_a_nul_character_in_a_request_field_is_refused_by_name_on_every_record_store(client, factory, database):
    # Fields of a request body (not a schema document, so not checked by rule): PostgreSQL's
    # driver refuses the text when the row is written, and SQLite's store refuses it alike.
    world = World(client, factory)
    application = world.filed(**EXTRACT_APPLICATION)
    grant_id = world.decide(application["id"], decision="approve").json()["grant_id"]
    response = world.http.post(f"/api/v1/grants/{grant_id}/revoke", json={"reason": "service\x00closed"}, headers=world.manager)
    problem = _problem(response, 422, "invalid-input")
    assert problem["detail"].startswith("reason: ") and "NUL character" in problem["detail"], problem
    grant = world.http.get(f"/api/v1/grants/{grant_id}", headers=world.manager).json()
    assert grant["revoked_at"] is None and grant["revoke_reason"] is None  # nothing of the revocation was written
    assert world.http.post(f"/api/v1/grants/{grant_id}/revoke", json={"reason": "service closed"},
                           headers=world.manager).status_code == 200


# A lone surrogate: legal as a JSON escape, but no text any record store can hold (both refuse it when
# the row is written). Each such field is refused with a 422 naming it, and nothing changes.
LONE = "before \ud800 after"


def _send(world, method: str, path: str, body, headers) -> object:
    # Python's JSON escapes the surrogate as \ud800: what a careless client sends.
    return world.http.request(method, path, content=json.dumps(body), headers={**headers, "Content-Type": "application/json"})


def _refused_naming(response, field: str) -> dict:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 422 and field in problem["detail"], problem
    return problem


@pytest.mark.parametrize(("changes", "field"), [
    ({"purpose": LONE}, "purpose"),
    ({"basis": LONE}, "basis"),
    ({"scenario": LONE}, "scenario"),
    ({"justifications": {"citizen_id": LONE}}, "justifications.citizen_id"),
    ({"justifications": {"citizen\udfff": "why"}}, "citizen\\udfff"),  # shown escaped
], ids=["purpose", "legal-basis", "scenario", "justification", "justification-name"])
def test_a_lone_surrogate_in_an_application_is_refused_by_name_and_nothing_is_stored(client, factory, database, changes, field):
    world = World(client, factory)
    for draft in (False, True):
        path = "/api/v1/applications?draft=true" if draft else "/api/v1/applications"
        problem = _refused_naming(_send(world, "POST", path, application_body(**changes), world.applicant), field)
        assert problem["type"] == "urn:govshare:problem:schema-violation"
        assert any(error["rule"] == "text" and "lone surrogate" in error["message"] for error in problem["errors"]), problem
    assert _applications(database) == 0
    draft = world.file(draft=True).json()
    _refused_naming(_send(world, "PUT", f"/api/v1/applications/{draft['id']}", application_body(**changes), world.applicant), field)
    assert world.get(draft["id"]).json() == draft


def test_a_lone_surrogate_in_a_decision_revocation_correction_or_rating_is_refused_by_name(client, factory, database):
    world = World(client, factory)
    application = world.filed(**EXTRACT_APPLICATION)
    _refused_naming(_send(world, "POST", f"/api/v1/applications/{application['id']}/decision",
                          {"decision": "return", "comment": LONE}, world.manager), "comment")
    assert world.get(application["id"]).json()["status"] == "submitted"

    grant_id = world.decide(application["id"], decision="approve").json()["grant_id"]
    _refused_naming(_send(world, "POST", f"/api/v1/grants/{grant_id}/revoke", {"reason": LONE}, world.manager), "reason")
    assert world.http.get(f"/api/v1/grants/{grant_id}", headers=world.manager).json()["revoked_at"] is None

    report = {"item": "insured_since", "key": "110101199001011237", "description": "insured since 2001"}
    corrections = "/api/v1/datasets/HRSS-INSURANCE/corrections"
    for name in ("item", "key", "description"):
        _refused_naming(_send(world, "POST", corrections, {**report, name: LONE}, world.applicant), name)
    assert world.http.get("/api/v1/corrections", headers=world.manager).json()["items"] == []
    correction = _send(world, "POST", corrections, report, world.applicant).json()
    _refused_naming(_send(world, "POST", f"/api/v1/corrections/{correction['id']}/answer",
                          {"outcome": "corrected", "answer": LONE}, world.hrss_provider), "answer")
    assert world.http.get(f"/api/v1/corrections/{correction['id']}", headers=world.manager).json()["status"] == "open"

    _deliver(database, application | {"grant_id": grant_id})
    ratings = f"/api/v1/applications/{application['id']}/ratings"
    _refused_naming(_send(world, "POST", ratings, {"review_speed": 4, "comment": LONE}, world.applicant), "comment")
    assert world.http.get(ratings, headers=world.manager).json()["items"] == []


class _Recording:
    """The real transport's place in ``CoalescingTransport``'s unit test: what reached it, as it reached it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1234) if name == "peername" else None


def test_a_responses_writes_in_one_step_of_the_event_loop_leave_together():
    import asyncio

    from govshare.limits import CoalescingTransport
    from tests.servers import run_coroutine

    async def scenario() -> dict[str, object]:
        real = _Recording()
        transport = CoalescingTransport(real, asyncio.get_running_loop())
        seen: dict[str, object] = {}
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")  # uvicorn: the head,
        transport.write(b"{}")  # then the body, in the same step
        transport.write(b"")
        seen["before the step ends"] = list(real.sent)
        await asyncio.sleep(0)
        seen["after"] = list(real.sent)
        big = b"x" * CoalescingTransport.FLUSH_BYTES
        transport.write(b"head")
        transport.write(big)  # past the limit: sent at once, so the real transport's flow control sees it
        seen["big"] = real.sent[1:]
        transport.write(b"last")
        transport.close()  # what is pending goes before the close
        seen["closed"] = (real.sent[2:], real.closed)
        transport.write(b"too late")
        await asyncio.sleep(0)
        seen["after close"] = real.sent[3:]
        seen["passed through"] = transport.get_extra_info("peername")
        return seen

    seen = run_coroutine(scenario())  # in a thread of its own: a browser test's event loop may run in this one
    assert seen["before the step ends"] == []
    assert seen["after"] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert seen["big"] == [b"head" + b"x" * CoalescingTransport.FLUSH_BYTES]
    assert seen["closed"] == ([b"last"], True)
    assert seen["after close"] == []
    assert seen["passed through"] == ("127.0.0.1", 1234)


def test_govshare_serve_sends_small_and_large_answers_whole(settings, tmp_path):
    # The served protocol gathers a response's writes (CoalescingTransport): answers of every size arrive intact,
    # one after another on a kept-alive connection.
    import httpx

    env = {"GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url,
           "GOVSHARE_JOBS_ENABLED": "false", "GOVSHARE_ISSUER": None}
    expected = create_app(settings).openapi()
    with GovshareServer(env, tmp_path / "serve.log") as server, httpx.Client(base_url=server.base, timeout=30) as http:
        for _ in range(3):
            small = http.get("/healthz")
            assert small.status_code == 200 and small.json()["status"] == "ok"
            large = http.get("/openapi.json")
            assert large.status_code == 200 and len(large.content) > 64 * 1024  # past the size sent at once
            assert large.json()["paths"].keys() == expected["paths"].keys()
            missing = http.get("/api/v1/datasets/NO-SUCH-DATASET")
            assert missing.status_code in (401, 404) and missing.headers["content-type"].startswith("application/problem+json")
