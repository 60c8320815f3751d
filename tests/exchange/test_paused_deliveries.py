"""A paused grant delivers nothing on any path (403 grant-paused), and resumed it delivers again; every ledger line
carries its application's purpose, which the citizen's access log shows (DESIGN.md, "Grant lifecycle")."""

from __future__ import annotations

import io

import httpx
import pyarrow as pa
import pytest
from sqlalchemy import select, text

from exchange.models import AccessLogEntry
from tests.exchange.test_delta_sharing import Sharing, _lines, app, port, server  # noqa: F401 (fixtures)
from tests.exchange.test_extracts import Extracts
from tests.exchange.test_interfaces import Exchange
from tests.exchange.test_live import INSIDE, World, _loopback_allowed, provider  # noqa: F401 (fixtures)

PAUSED = "urn:govshare:problem:grant-paused"
PURPOSE = "register marriages without asking for household booklets"  # tests.approvals.test_api.application_body's


def pause(client, grant_id: int, manager) -> None:
    response = client.post(f"/api/v1/grants/{grant_id}/pause", json={"reason": "records under correction"}, headers=manager)
    assert response.status_code == 200, response.text


def resume(client, grant_id: int, manager) -> None:
    response = client.post(f"/api/v1/grants/{grant_id}/resume", headers=manager)
    assert response.status_code == 200, response.text


def refused(response) -> dict:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == PAUSED and "paused" in body["detail"], body
    return body


def ledger(app, database, **where) -> list[AccessLogEntry]:
    app.state.ledger.flush()
    with database.transaction(write=False) as session:
        return list(session.execute(select(AccessLogEntry).filter_by(**where).order_by(AccessLogEntry.id)).scalars())


# --- interfaces: lookups, batches, pages, Arrow streams ----------------------------------------------------------------


@pytest.fixture
def exchange(client, factory, tmp_path) -> Exchange:
    return Exchange(client, factory, tmp_path)


def _interface_calls(exchange: Exchange) -> dict[str, httpx.Response]:
    key = exchange.rows[1]["citizen_id"]  # district 02: within the grant
    http, service = exchange.http, exchange.service
    return {
        "lookup": exchange.lookup(key),
        "batch": http.post("/api/v1/exchange/PSB-HOUSEHOLD/records:batch", json={"keys": [key]}, headers=service),
        "page": http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"limit": 5}, headers=service),
        "page by key": http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"citizen_id": key}, headers=service),
        "arrow": http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", headers={**service, "Accept": "application/vnd.apache.arrow.stream"}),
    }


def test_every_interface_call_under_a_paused_grant_is_refused_until_it_is_resumed(exchange, app, database):
    assert {name: answer.status_code for name, answer in _interface_calls(exchange).items()} == dict.fromkeys(
        ("lookup", "batch", "page", "page by key", "arrow"), 200)  # served, and the served scope now kept in the process
    before = len(ledger(app, database))
    pause(exchange.http, exchange.grant_id, exchange.manager)
    for name, answer in _interface_calls(exchange).items():
        refused(answer)
    # The refusals are on the ledger, as every attempt is; no rows left.
    lines = ledger(app, database)[before:]
    assert [(line.status, line.rows) for line in lines] == [(403, 0)] * 5
    resume(exchange.http, exchange.grant_id, exchange.manager)
    answers = _interface_calls(exchange)
    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 200)
    assert pa.ipc.open_stream(io.BytesIO(answers["arrow"].content)).read_all().num_rows == 30


def test_another_departments_service_gets_no_grant_not_the_pause(exchange):
    pause(exchange.http, exchange.grant_id, exchange.manager)
    answer = exchange.lookup(exchange.rows[1]["citizen_id"], headers=exchange.other_service)
    assert answer.status_code == 403 and answer.json()["type"] == "urn:govshare:problem:no-active-grant"
    assert str(exchange.grant_id) not in answer.json()["detail"]  # nothing about CAB's grant reaches EDU


def test_every_interface_ledger_line_carries_the_purpose_and_the_citizen_sees_it(exchange, app, database):
    _interface_calls(exchange)
    lines = ledger(app, database, grant_id=exchange.grant_id)
    assert sorted({line.kind for line in lines}) == ["lookup", "query", "stream"]
    assert {line.purpose for line in lines} == {PURPOSE}
    person = exchange.rows[1]["citizen_id"]
    entries = exchange.http.get(f"/api/v1/citizens/{person}/access-log", headers=exchange.portal).json()["entries"]
    assert entries and {entry["purpose"] for entry in entries} == {PURPOSE}
    assert {entry["delayed_until"] for entry in entries} == {None}


def test_lines_written_before_the_purpose_was_recorded_show_null(exchange, app, database):
    person = exchange.rows[1]["citizen_id"]
    assert exchange.lookup(person).status_code == 200
    app.state.ledger.flush()
    with database.engine.begin() as connection:  # as a line from before the migration: no purpose column value
        connection.execute(text("UPDATE access_log SET purpose = NULL"))
    entries = exchange.http.get(f"/api/v1/citizens/{person}/access-log", headers=exchange.portal).json()["entries"]
    assert [entry["purpose"] for entry in entries] == [None]


# --- extracts: creation and downloads ----------------------------------------------------------------------------------


def test_a_paused_extract_grant_neither_makes_nor_hands_out_extracts(client, factory, tmp_path, database, settings, app):
    world = Extracts(client, factory, tmp_path, database, settings)
    extract = world.done(format="csv")
    pause(client, world.grant_id, world.manager)
    refused(world.request(format="csv"))
    refused(client.get(extract["download_url"], headers=world.demander))
    assert client.get(extract["download_url"], headers=world.stranger).status_code == 404  # another department: no such extract
    assert [line.status for line in ledger(app, database, extract_id=extract["id"])] == []  # nothing delivered
    resume(client, world.grant_id, world.manager)
    download = client.get(extract["download_url"], headers=world.demander)
    assert download.status_code == 200
    assert [(line.kind, line.purpose) for line in ledger(app, database, extract_id=extract["id"])] == [("extract", PURPOSE)]
    assert world.request(format="csv").status_code == 202


# --- Delta Sharing: listing, queries, file URLs, new profiles ---------------------------------------------------------


def test_a_paused_grants_share_lists_queries_and_serves_files_to_nobody(client, factory, tmp_path, database, app, server):
    world = Sharing(client, factory, tmp_path, database, app)
    profile = world.profile()
    bearer = {"Authorization": f"Bearer {profile['bearerToken']}"}
    url = next(line["file"]["url"] for line in _lines(world.query(profile, {})) if "file" in line)
    assert httpx.get(url).status_code == 200
    pause(client, world.grant_id, world.manager)
    answers = {
        "shares": httpx.get(f"{profile['endpoint']}/shares", headers=bearer),
        "tables": httpx.get(f"{profile['endpoint']}/shares/grant-{world.grant_id}/all-tables", headers=bearer),
        "query": world.query(profile, {}),
        "file": httpx.get(url),
    }
    for name, answer in answers.items():
        body = refused(answer)
        assert body["errorCode"] == "PERMISSION_DENIED", name  # the Delta Sharing error shape, with our problem type
    refused(client.get(f"/api/v1/grants/{world.grant_id}/sharing-profile", headers=world.demander))
    resume(client, world.grant_id, world.manager)
    assert httpx.get(url).status_code == 200
    assert world.query(profile, {}).status_code == 200
    files = [line for line in world.ledger() if line.kind == "extract"]
    assert files and {line.purpose for line in files} == {PURPOSE}


# --- live services -----------------------------------------------------------------------------------------------------


def test_a_paused_live_grant_does_not_call_the_provider(client, factory, app, provider, database):
    world = World(client, factory, app, provider, items=["citizen_id", "name", "district"])
    assert world.call(INSIDE).status_code == 200
    pause(client, world.application["grant_id"], world.manager)
    refused(world.call(INSIDE))
    assert provider.calls == [INSIDE]  # the provider was not asked while paused
    resume(client, world.application["grant_id"], world.manager)
    assert world.call(INSIDE).status_code == 200
    lines = ledger(app, database, kind="live")
    assert [(line.status, line.purpose) for line in lines] == [
        (200, "check residence for a benefit claim"), (403, None), (200, "check residence for a benefit claim")]
