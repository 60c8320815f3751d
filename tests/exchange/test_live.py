"""Live services (issue 24): a grant's call passed through to a real provider API the test serves with uvicorn."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
from datetime import date, timedelta
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import select, update

from directory.models import Dataset, LiveCredential
from exchange.live import service as live
from exchange.models import AccessLogEntry
from govshare import audit
from tests.factories import DirectoryFactory, dataset_document
from tests.servers import GOVSHARE, in_thread, run_coroutine

API_KEY = "provider-s3cret-key"
PEOPLE = {
    "110101199001011234": {"citizen_id": "110101199001011234", "name": "Wang Fang", "district": "01", "birth_date": "1990-01-01"},
    "110101198502023456": {"citizen_id": "110101198502023456", "name": "Li Wei", "district": "02", "birth_date": "1985-02-02"},
    "110101197003035678": {"citizen_id": "110101197003035678", "name": "Zhao Min", "district": "07", "birth_date": "1970-03-03"},
}
INSIDE, OUTSIDE = "110101199001011234", "110101197003035678"  # districts 01 (granted) and 07 (not)


class Provider:
    """The provider department's own residents API: checks its API key; ``mode`` says how it answers next."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[str] = []
        self.entered, self.release = threading.Event(), threading.Event()
        app = FastAPI()

        @app.get("/residents/{key}")
        def resident(key: str, request: Request):
            self.calls.append(key)
            if request.headers.get("x-api-key") != API_KEY:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if self.mode == "error":
                return JSONResponse({"error": "database down"}, status_code=500)
            if self.mode == "malformed":
                return Response('{"citizen_id": "1101', media_type="application/json")
            if self.mode == "wrong-types":
                return JSONResponse({"citizen_id": key, "name": "X", "district": "01", "birth_date": "not a date"})
            if self.mode == "huge":
                return JSONResponse([{**PEOPLE[INSIDE], "name": "x" * 4000}] * 400)
            if self.mode == "huge-streamed":  # no Content-Length announced: counted as it arrives
                parts = [b"["] + [json.dumps({**PEOPLE[INSIDE], "name": "x" * 4000}).encode() + b","] * 400 + [b"{}]"]
                return StreamingResponse(iter(parts), media_type="application/json")
            if self.mode == "slow":
                self.entered.set()
                self.release.wait(30)
            if key not in PEOPLE:
                return JSONResponse({"error": "no such resident"}, status_code=404)
            # A provider answers more than the grant allows: every item, and another resident beside.
            return JSONResponse([PEOPLE[key], PEOPLE[OUTSIDE]] if key != OUTSIDE else PEOPLE[key])

        @app.post("/token")
        async def token(request: Request):
            form = await request.form()
            if request.headers.get("authorization") != "Basic " + base64.b64encode(b"govshare:oauth-secret").decode() \
                    or form.get("grant_type") != "client_credentials":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            return {"access_token": "provider-token-1", "token_type": "Bearer", "expires_in": 3600}

        @app.get("/oauth/residents/{key}")
        def oauth_resident(key: str, request: Request):
            if request.headers.get("authorization") != "Bearer provider-token-1":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            return PEOPLE[key]

        self.app = app


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch):
    # The provider runs on this machine: loopback is internal, so it must be named (before the app's settings are read).
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", '["127.0.0.1"]')


@pytest.fixture
def provider():
    provider = Provider()
    with in_thread(provider.app) as base:
        provider.base = base
        yield provider
        provider.release.set()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, client, factory, app, provider: Provider, *, items=("citizen_id", "name", "district", "birth_date"),
                 masks=None, row_filter=None, department="CAB") -> None:
        self.http, self.factory, self.app, self.provider = client, factory, app, provider
        self.directory = DirectoryFactory(factory)
        response = client.post("/api/v1/datasets", headers=self.directory.provider("PSB"), json=live_document(provider.base))
        assert response.status_code == 201, response.text
        self.registered = response.json()
        self.manager = factory.caller("DATA", "manager")
        self.service = factory.caller(department, "service")
        self.department = department
        self.application = self.grant(list(items), masks=masks, row_filter=row_filter)

    def grant(self, items, *, masks=None, row_filter=None, delivery="live", starts_in_days: int = 0) -> dict:
        demander = self.factory.caller(self.department, "demander")
        start = date.today() + timedelta(days=starts_in_days)
        body = {"dataset": "PSB-RESIDENTS", "service_item": "residence check", "basis": "Household Registration Act art. 3",
                "items": items, "delivery": delivery, "purpose": "check residence for a benefit claim",
                **({"row_filter": row_filter} if row_filter else {}),
                "period": {"start": start.isoformat(), "end": (start + timedelta(days=30)).isoformat()}}
        filed = self.http.post("/api/v1/applications", json=body, headers=demander)
        assert filed.status_code == 201, filed.text
        decision = {"decision": "approve", **({"masks": masks} if masks else {})}
        decided = self.http.post(f"/api/v1/applications/{filed.json()['id']}/decision", json=decision, headers=self.manager)
        assert decided.status_code == 200, decided.text
        return self.http.get(f"/api/v1/applications/{filed.json()['id']}", headers=self.manager).json()

    def call(self, key: str, headers=None):
        return self.http.get(f"/api/v1/exchange/PSB-RESIDENTS/live/{key}", headers=headers or self.service)


def live_document(base: str, **live) -> dict:
    return dataset_document(
        "PSB-RESIDENTS", "PSB", title="Residents (live)", delivery_modes=["live"], share_type="unconditional",
        live={"url": f"{base}/residents/{{key}}", "timeout_seconds": 10,
              "auth": {"type": "header", "name": "X-Api-Key", "value": API_KEY}, **live})


def _problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:govshare:problem:{kind}", body
    return body


def _lines(database) -> list[AccessLogEntry]:
    with database.transaction(write=False) as session:
        return list(session.execute(select(AccessLogEntry).where(AccessLogEntry.kind == "live")
                                    .order_by(AccessLogEntry.id)).scalars())


def test_a_live_call_answers_only_the_granted_items_rows_and_masks(client, factory, app, provider, database):
    world = World(client, factory, app, provider, items=["citizen_id", "name", "district"],
                  masks={"name": {"keep_first": 1}}, row_filter={"district": {"in": ["01", "02"]}})
    response = world.call(INSIDE)
    assert response.status_code == 200, response.text
    # Only the key's row (not the other resident the provider sent), granted items only, the name masked.
    assert response.json() == {"dataset": "PSB-RESIDENTS", "key": INSIDE,
                               "records": [{"citizen_id": INSIDE, "name": "W********", "district": "01"}]}
    assert provider.calls == [INSIDE]  # and the provider checked its API key, sent from the encrypted store

    # A resident outside the row filter: 404, saying no more than a key that does not exist.
    outside = _problem(world.call(OUTSIDE), 404, "record-not-found")
    missing = _problem(world.call("110101200001010000"), 404, "record-not-found")
    assert "Zhao" not in str(outside) and outside["title"] == missing["title"]

    app.state.ledger.flush()
    lines = _lines(database)
    assert [(line.status, line.rows, line.grant_id) for line in lines] == [
        (200, 1, world.application["grant_id"]), (404, 0, world.application["grant_id"]), (404, 0, world.application["grant_id"])]
    assert lines[0].request_sha256 == hashlib.sha256(f"GET {provider.base}/residents/{INSIDE}".encode()).hexdigest()
    assert len(lines[0].answer_sha256) == 64 and lines[0].requested_at <= lines[0].answered_at
    # The citizen's access log shows the call.
    portal = factory.caller("PORTAL", "citizen_portal")
    log = client.get(f"/api/v1/citizens/{INSIDE}/access-log", headers=portal).json()
    assert [(entry["kind"], entry["dataset"], entry["department"]) for entry in log["entries"]] == [("live", "PSB-RESIDENTS", "CAB")]


def test_credentials_are_stored_encrypted_and_never_returned(client, factory, app, provider, database):
    world = World(client, factory, app, provider)
    assert API_KEY not in str(world.registered)
    shown = client.get("/api/v1/datasets/PSB-RESIDENTS", headers=world.service)
    assert API_KEY not in shown.text and API_KEY not in world.http.get(
        "/api/v1/datasets/PSB-RESIDENTS/history", headers=world.service).text
    with database.transaction(write=False) as session:
        stored = session.execute(select(LiveCredential)).scalar_one()
        document = session.execute(select(Dataset.document)).scalar_one()
    assert API_KEY not in stored.secret_encrypted and API_KEY not in str(document)
    # A change without the secret keeps it; the provider still accepts the calls.
    changed = live_document(provider.base)
    del changed["live"]["auth"]["value"]
    changed["title"] = "Residents, live"
    assert client.put("/api/v1/datasets/PSB-RESIDENTS", json=changed, headers=world.directory.provider("PSB")).status_code == 200
    assert world.call(INSIDE).status_code == 200
    # A wrong secret is what the provider refuses: the call fails as the provider's error.
    changed["live"]["auth"]["value"] = "wrong"
    assert client.put("/api/v1/datasets/PSB-RESIDENTS", json=changed, headers=world.directory.provider("PSB")).status_code == 200
    _problem(world.call(INSIDE), 502, "live-provider-error")


def test_oauth2_client_credentials_are_fetched_and_sent(client, factory, app, provider):
    document = live_document(provider.base)
    document["live"] = {"url": f"{provider.base}/oauth/residents/{{key}}",
                        "auth": {"type": "oauth2_client_credentials", "token_url": f"{provider.base}/token",
                                 "client_id": "govshare", "client_secret": "oauth-secret"}}
    directory = DirectoryFactory(factory)
    assert client.post("/api/v1/datasets", json=document, headers=directory.provider("PSB")).status_code == 201
    world = World.__new__(World)
    world.http, world.factory, world.app, world.provider, world.department = client, factory, app, provider, "CAB"
    world.manager, world.service = factory.caller("DATA", "manager"), factory.caller("CAB", "service")
    world.grant(["citizen_id", "district"])
    response = world.call(INSIDE)
    assert response.status_code == 200, response.text
    assert response.json()["records"] == [{"citizen_id": INSIDE, "district": "01"}]


@pytest.mark.parametrize(("mode", "status", "kind"), [
    ("error", 502, "live-provider-error"), ("malformed", 502, "live-provider-error"),
    ("wrong-types", 502, "live-provider-error"), ("huge", 502, "live-answer-too-large"),
    ("huge-streamed", 502, "live-answer-too-large"),
])
def test_provider_failures_are_502(client, factory, app, provider, database, mode, status, kind):
    world = World(client, factory, app, provider)
    provider.mode = mode
    body = _problem(world.call(INSIDE), status, kind)
    assert "PSB-RESIDENTS" in body["detail"]
    if mode == "wrong-types":  # where in the answer: its record and item
        assert "record 1, item birth_date: 'not a date' is not a valid date" in body["detail"], body["detail"]
    app.state.ledger.flush()
    assert [line.status for line in _lines(database)] == [status]


def test_a_slow_provider_is_a_504(client, factory, app, provider):
    document = live_document(provider.base, timeout_seconds=0.3)
    directory = DirectoryFactory(factory)
    world = World(client, factory, app, provider)
    assert client.put("/api/v1/datasets/PSB-RESIDENTS", json=document, headers=directory.provider("PSB")).status_code == 200
    provider.mode = "slow"
    _problem(world.call(INSIDE), 504, "live-provider-timeout")
    assert provider.entered.is_set()  # it reached the provider, which is still holding its answer
    provider.release.set()


def test_the_breaker_opens_fails_fast_and_recovers_after_a_probe(client, factory, app, provider):
    world = World(client, factory, app, provider)
    clock = Clock()
    breaker = app.state.live.breaker
    breaker.failures, breaker.cooldown, breaker.clock = 2, 30.0, clock
    provider.mode = "error"
    _problem(world.call(INSIDE), 502, "live-provider-error")
    _problem(world.call(INSIDE), 502, "live-provider-error")
    assert len(provider.calls) == 2
    fast = world.call(INSIDE)
    _problem(fast, 503, "live-provider-unavailable")
    assert fast.headers["retry-after"] == "30"
    assert len(provider.calls) == 2  # failed fast: the provider was not called
    clock.now += 31
    # The probe fails: open again for another cool-down.
    _problem(world.call(INSIDE), 502, "live-provider-error")
    _problem(world.call(INSIDE), 503, "live-provider-unavailable")
    assert len(provider.calls) == 3
    clock.now += 31
    provider.mode = "malformed"  # an answer that is not the dataset's items is a failure too
    _problem(world.call(INSIDE), 502, "live-provider-error")
    _problem(world.call(INSIDE), 503, "live-provider-unavailable")
    assert len(provider.calls) == 4
    clock.now += 31
    provider.mode = "ok"
    assert world.call(INSIDE).status_code == 200  # the probe succeeds: closed
    assert world.call(INSIDE).status_code == 200
    assert len(provider.calls) == 6


def test_calls_in_flight_per_grant_are_capped(client, factory, app, provider, database):
    world = World(client, factory, app, provider)
    app.state.live.slots.per_grant = 1
    provider.mode = "slow"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(world.call, INSIDE)
        assert provider.entered.wait(30)
        _problem(world.call(INSIDE), 429, "live-busy")
        provider.release.set()
        assert first.result(timeout=60).status_code == 200
    assert world.call(INSIDE).status_code == 200  # the slot was given back
    app.state.ledger.flush()
    # Every call is on the ledger, the one refused too; only the calls let through reached the provider.
    assert sorted(line.status for line in _lines(database)) == [200, 200, 429]
    assert len(provider.calls) == 2


def test_loopback_is_refused_without_the_allowlist(client, factory, app, provider):
    world = World(client, factory, app, provider)
    app.state.live.allowlist = []
    body = _problem(world.call(INSIDE), 502, "live-provider-error")
    assert "127.0.0.1" in body["detail"] and "GOVSHARE_OUTBOUND_ALLOWLIST" in body["detail"]
    assert provider.calls == []


def test_who_may_not_call(client, factory, app, provider, database):
    world = World(client, factory, app, provider)
    # another department's service, with no grant
    _problem(world.call(INSIDE, headers=factory.caller("HRSS", "service")), 403, "no-active-grant")
    # a role other than service
    assert world.call(INSIDE, headers=factory.caller("CAB", "demander")).status_code == 403
    assert world.http.get(f"/api/v1/exchange/PSB-RESIDENTS/live/{INSIDE}").status_code == 401
    # a grant whose period has not begun
    world.department = "EDU"
    pending = world.grant(["citizen_id", "district"], starts_in_days=5)
    assert pending["grant_id"]
    _problem(world.call(INSIDE, headers=factory.caller("EDU", "service")), 403, "no-active-grant")
    # a revoked grant
    revoked = client.post(f"/api/v1/grants/{world.application['grant_id']}/revoke", json={"reason": "misuse"}, headers=world.manager)
    assert revoked.status_code == 200, revoked.text
    _problem(world.call(INSIDE), 403, "no-active-grant")
    # a dataset that does not exist
    _problem(client.get(f"/api/v1/exchange/NOPE/live/{INSIDE}", headers=world.service), 403, "no-active-grant")
    assert provider.calls == []


def test_a_grant_without_the_key_in_the_clear_cannot_call(client, factory, app, provider):
    world = World(client, factory, app, provider, items=["name", "district"])
    _problem(world.call(INSIDE), 403, "key-lookup-not-granted")
    assert provider.calls == []


def test_live_is_offered_only_by_live_datasets(client, factory, app, provider):
    world = World(client, factory, app, provider)
    demander = factory.caller("CAB", "demander")
    body = {"dataset": "PSB-RESIDENTS", "service_item": "x", "basis": "y", "items": ["citizen_id"], "delivery": "interface",
            "purpose": "z", "period": {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=30)).isoformat()}}
    filed = client.post("/api/v1/applications", json=body, headers=demander)
    assert filed.status_code == 422 and filed.json()["type"] == "urn:govshare:problem:inspection-failed"
    assert "delivery-offered" in {finding["rule"] for finding in filed.json()["inspection"]["findings"]}
    # A live dataset must say where its provider is.
    document = live_document(provider.base)
    del document["live"]
    document["code"] = "PSB-OTHER"
    refused = client.post("/api/v1/datasets", json=document, headers=world.directory.provider("PSB"))
    assert refused.status_code == 422 and "live" in refused.json()["detail"]


def test_the_signed_message_record_is_verified_and_tampering_is_named(client, factory, app, provider, database):
    world = World(client, factory, app, provider)
    assert world.call(INSIDE).status_code == 200
    assert world.call(OUTSIDE).status_code == 200
    app.state.ledger.flush()
    auditor = factory.caller("DATA", "manager")
    assert client.get("/api/v1/audit/verify", headers=auditor).json()["ok"] is True
    lines = _lines(database)
    with database.transaction(write=False) as session:
        signed = session.execute(select(audit.AuditEntry).where(audit.AuditEntry.action == "ledger.messages")).scalars().all()
    # Both lines are signed, in one batch or two (as the writer gathered them).
    signing = {message["entry"]: entry.seq for entry in signed for message in json.loads(entry.details)["messages"]}
    assert set(signing) == {line.id for line in lines}
    line = lines[1]
    with database.transaction() as session:
        session.execute(update(AccessLogEntry).where(AccessLogEntry.id == line.id).values(answer_sha256="0" * 64))
    result = client.get("/api/v1/audit/verify", headers=auditor).json()
    assert result["ok"] is False
    assert result["first_broken"]["seq"] == signing[line.id]
    assert result["first_broken"]["reason"] == f"access ledger line {line.id} differs from the digests and times it signs (altered)"
    # The command line checks the same, in a process of its own.
    command = subprocess.run([GOVSHARE, "audit", "verify"], capture_output=True, text=True, timeout=120)
    assert command.returncode == 1, command.stdout + command.stderr
    assert f"audit chain BROKEN at entry {signing[line.id]}: access ledger line {line.id} differs" in command.stderr


def test_the_key_goes_to_the_provider_as_one_path_segment(client, factory, app, provider):
    world = World(client, factory, app, provider)
    # Each is a key the provider does not know (404), received whole: not a query or fragment of the URL.
    for sent in (quote("a b?c=1#x", safe=""), quote("k;v&w=1", safe="")):
        response = world.call(sent)
        assert response.status_code == 404 and response.json()["type"].endswith("record-not-found"), (sent, response.text)
    assert provider.calls == ["a b?c=1#x", "k;v&w=1"]
    # A key of dots is no dot-segment: it would call another path of the provider's API.
    assert live.provider_url("https://provider.example/residents/{key}/card", "..") == \
        "https://provider.example/residents/%2E%2E/card"


def test_an_internal_provider_url_is_refused_at_registration(client, factory, provider, database, monkeypatch):
    from govshare.settings import get_settings

    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", "[]")
    get_settings.cache_clear()
    directory = DirectoryFactory(factory)
    for url, named in [(f"{provider.base}/residents/{{key}}", "127.0.0.1"), ("http://localhost:8080/r/{key}", "localhost"),
                       ("http://10.1.2.3/r/{key}", "10.1.2.3"), ("http://169.254.169.254/latest/{key}", "metadata"),
                       ("http://[::1]:8080/r/{key}", "::1")]:
        document = live_document(provider.base)
        document["live"]["url"] = url
        refused = client.post("/api/v1/datasets", json=document, headers=directory.provider("PSB"))
        assert refused.status_code == 422, (url, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        detail = refused.json()["detail"]
        assert detail.startswith("live.url:") and named in detail and "GOVSHARE_OUTBOUND_ALLOWLIST" in detail, detail
    # The token endpoint of OAuth2 credentials is checked the same way.
    document = live_document("https://provider.example")
    document["live"]["auth"] = {"type": "oauth2_client_credentials", "token_url": "http://127.0.0.1:9/token",
                                "client_id": "govshare", "client_secret": "s"}
    refused = client.post("/api/v1/datasets", json=document, headers=directory.provider("PSB"))
    assert refused.status_code == 422 and refused.json()["detail"].startswith("live.auth.token_url:"), refused.text
    with database.transaction(write=False) as session:
        assert session.execute(select(Dataset)).first() is None and session.execute(select(LiveCredential)).first() is None
    # A change to an internal URL is refused too, and leaves the description as it was.
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", '["127.0.0.1"]')
    get_settings.cache_clear()
    assert client.post("/api/v1/datasets", json=live_document(provider.base), headers=directory.provider("PSB")).status_code == 201
    changed = live_document(provider.base)
    changed["live"]["url"] = "http://192.168.1.10/residents/{key}"
    refused = client.put("/api/v1/datasets/PSB-RESIDENTS", json=changed, headers=directory.provider("PSB"))
    assert refused.status_code == 422 and refused.json()["detail"].startswith("live.url:"), refused.text
    with database.transaction(write=False) as session:
        assert session.execute(select(Dataset.document)).scalar_one()["live"]["url"] == f"{provider.base}/residents/{{key}}"


def test_the_address_is_checked_again_at_each_call(client, factory, app, provider, monkeypatch):
    # A name resolves differently over time (DNS rebinding): registration let through a name that did
    # not resolve then; the call resolves it again and refuses an internal answer.
    world = World(client, factory, app, provider)
    changed = live_document(provider.base)
    port = provider.base.rsplit(":", 1)[1]
    changed["live"]["url"] = f"http://provider.govshare-test.invalid:{port}/residents/{{key}}"
    assert client.put("/api/v1/datasets/PSB-RESIDENTS", json=changed, headers=world.directory.provider("PSB")).status_code == 200
    body = _problem(world.call(INSIDE), 502, "live-provider-error")
    assert "could not be resolved" in body["detail"]
    import socket
    real = socket.getaddrinfo

    def rebound(host, *args, **kwargs):  # the name now answers with the loopback address
        return real("127.0.0.1", *args, **kwargs) if host == "provider.govshare-test.invalid" else real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    app.state.live.allowlist = []
    body = _problem(world.call(INSIDE), 502, "live-provider-error")
    assert "127.0.0.1" in body["detail"] and "a loopback address" in body["detail"]
    assert provider.calls == []
    app.state.live.allowlist = ["127.0.0.1"]  # the address named: the same name is called
    assert world.call(INSIDE).status_code == 200
    assert provider.calls == [INSIDE]


def test_the_scope_reads_the_same_through_sqlite_and_duckdb(client, factory, app, provider, database):
    from datetime import date as day

    from exchange import service as exchange_service

    world = World(client, factory, app, provider, items=["citizen_id", "name", "district", "birth_date"],
                  masks={"name": {"keep_last": 2}, "birth_date": "year_only", "district": "keyed_hash"},
                  row_filter={"and": [{"district": {"in": ["01", "02"]}}, {"birth_date": {"ge": "1980-01-01"}}]})
    through_http = world.call(INSIDE)
    assert through_http.status_code == 200, through_http.text
    with database.transaction(write=False) as session:
        scope = exchange_service.interface_scope(session, department="CAB", dataset_code="PSB-RESIDENTS", delivery="live",
                                                 today=day.today())
    body = json.dumps([PEOPLE[INSIDE], PEOPLE[OUTSIDE], {**PEOPLE[INSIDE], "district": "07"}]).encode()
    records = json.loads(body)
    by_sqlite = live._in_scope_sqlite(live._sqlite_rows(records, scope=scope), scope=scope, key_value=INSIDE)
    by_duckdb = live._in_scope_duckdb(live.intake.records_table(records, items=scope.items), scope=scope, key_value=INSIDE)
    assert by_sqlite == by_duckdb and len(by_sqlite) == 1
    assert by_sqlite[0]["name"] == "*******ng" and by_sqlite[0]["birth_date"] == 1990 and len(by_sqlite[0]["district"]) == 64
    assert through_http.json()["records"] == [by_sqlite[0]]
    assert not live._hashes_duckdb_text(scope)


def test_a_probe_given_up_by_the_server_lets_the_next_call_probe():
    
    clock = Clock()
    breaker = live.CircuitBreaker(failures=1, cooldown=30.0, clock=clock)

    async def scenario() -> None:
        await breaker.failed("DS")
        clock.now += 31
        await breaker.admit("DS", probe_seconds=10)  # this call probes...
        with pytest.raises(live.LiveProviderUnavailable):
            await breaker.admit("DS", probe_seconds=10)  # ...so the others fail fast
        await breaker.abandoned("DS")  # ...until it is given up (its client gone): not a failure of the provider
        await breaker.admit("DS", probe_seconds=10)

    run_coroutine(scenario())


def test_a_live_call_the_ledger_cannot_account_for_is_refused_before_the_provider_is_called(client, factory, app, provider,
                                                                                              database):
    from tests.exchange.test_ledger_outage import held

    world = World(client, factory, app, provider)
    assert world.call(INSIDE).status_code == 200
    app.state.ledger.flush()
    ledger = app.state.ledger
    ledger.high_water, ledger.wait_seconds = 1, 0.01  # one line waiting fills it; the store is held far longer than this
    with held(app.state.settings.resolved_database_url):
        assert world.call(INSIDE).status_code == 200  # below the mark: served, its line waits for the store
        refused = _problem(world.call(INSIDE), 503, "ledger-unavailable")
        assert "records" not in refused
        assert provider.calls == [INSIDE, INSIDE]  # the refused call never reached the provider
    ledger.flush()
    assert [line.status for line in _lines(database)] == [200, 200]  # the served calls are on the ledger
