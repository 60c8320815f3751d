"""Interfaces: only what the grant allows leaves, every call is on the ledger, the citizen sees theirs."""

from __future__ import annotations

import io
from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pytest
from sqlalchemy import text

from approvals.models import Grant
from approvals.service import revoke_grant
from govshare.db import Database
from govshare.keys import KeyStore
from tests.approvals.test_api import application_body
from tests.factories import DirectoryFactory, citizen_id

DISTRICTS = ["01", "02", "03", "04"]


def _citizens(count: int = 60) -> list[dict]:
    rows = []
    for index in range(count):
        born = date(1990, 1, 1) + timedelta(days=index * 40)
        rows.append({
            "citizen_id": citizen_id(f"110101{born:%Y%m%d}{index:03d}"),
            "name": f"Citizen {index}",
            "district": DISTRICTS[index % 4],
            "birth_date": born.isoformat(),
        })
    return rows


def _csv(rows: list[dict]) -> bytes:
    lines = ["citizen_id,name,district,birth_date"] + [f"{r['citizen_id']},{r['name']},{r['district']},{r['birth_date']}" for r in rows]
    return ("\n".join(lines) + "\n").encode()


class Exchange:
    """PSB's household data, and CAB holding an interface grant for three items in districts 01 and 02."""

    def __init__(self, client, factory, tmp_path) -> None:
        self.http = client
        directory = DirectoryFactory(factory)
        directory.dataset("PSB-HOUSEHOLD", "PSB")
        self.rows = _citizens()
        self.source = tmp_path / "household.csv"
        self.source.write_bytes(_csv(self.rows))
        assert directory.upload("PSB-HOUSEHOLD", self.source.read_bytes()).status_code == 201
        self.provider = directory.provider("PSB")
        self.demander = factory.caller("CAB", "demander")
        self.manager = factory.caller("DATA", "manager")
        self.service = factory.caller("CAB", "service")
        self.other_service = factory.caller("EDU", "service")
        self.portal = factory.caller("DATA", "citizen_portal")
        application = client.post("/api/v1/applications", json=application_body(period={
            "start": date.today().isoformat(), "end": (date.today() + timedelta(days=90)).isoformat()}), headers=self.demander).json()
        client.post(f"/api/v1/applications/{application['id']}/decision", json={"decision": "approve"}, headers=self.manager)
        signed = client.post(f"/api/v1/applications/{application['id']}/provider-decision", json={"decision": "approve"},
                             headers=self.provider).json()
        self.application_id, self.grant_id = application["id"], signed["grant_id"]
        assert self.grant_id is not None

    def expected(self, where: str = "district IN ('01', '02')", params: list | None = None) -> list[dict]:
        """The independent answer: DuckDB straight over the source file."""
        connection = duckdb.connect()
        result = connection.execute(
            f"SELECT citizen_id, name, district FROM read_csv(?, all_varchar=true) WHERE {where}",
            [str(self.source), *(params or [])],
        )
        names = [column[0] for column in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]

    def lookup(self, key: str, headers=None):
        return self.http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{key}", headers=self.service if headers is None else headers)


@pytest.fixture
def exchange(client, factory, tmp_path) -> Exchange:
    return Exchange(client, factory, tmp_path)


def test_a_lookup_returns_exactly_the_granted_columns_of_an_in_scope_row(exchange):
    person = exchange.rows[1]  # district 02
    response = exchange.lookup(person["citizen_id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dataset"] == "PSB-HOUSEHOLD" and body["key"] == person["citizen_id"]
    assert body["records"] == exchange.expected("citizen_id = ?", [person["citizen_id"]])
    assert set(body["records"][0]) == {"citizen_id", "name", "district"}  # birth_date was not granted


def test_a_key_outside_the_grant_is_a_404_that_reveals_nothing(exchange):
    outside = exchange.rows[2]["citizen_id"]  # district 03: exists, but outside the grant's rows
    nowhere = citizen_id("99999919990101999")
    answers = [exchange.lookup(key) for key in (outside, nowhere)]
    assert [answer.status_code for answer in answers] == [404, 404]
    first, second = (answer.json() for answer in answers)
    assert first["type"] == second["type"] == "urn:govshare:problem:record-not-found"
    assert first["detail"].replace(outside, "K") == second["detail"].replace(nowhere, "K")
    assert "Citizen" not in answers[0].text and "district" not in answers[0].text


def test_without_a_grant_or_the_service_role_nothing_is_served(exchange):
    key = exchange.rows[0]["citizen_id"]
    no_grant = exchange.lookup(key, headers=exchange.other_service)
    assert no_grant.status_code == 403 and no_grant.json()["type"] == "urn:govshare:problem:no-active-grant"
    assert exchange.lookup(key, headers=exchange.demander).status_code == 403
    assert exchange.lookup(key, headers={}).status_code == 401


def test_paged_queries_with_a_cursor_return_exactly_the_granted_rows(exchange):
    collected, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        body = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params=params, headers=exchange.service).json()
        collected.extend(body["records"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert collected == exchange.expected()
    assert pages == 5  # 30 rows in districts 01 and 02, 7 a page


def test_queries_filter_only_on_granted_items(exchange):
    body = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"district": "02"}, headers=exchange.service).json()
    assert body["records"] == exchange.expected("district = '02'")
    outside = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"district": "03"}, headers=exchange.service).json()
    assert outside["records"] == []
    refused = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"birth_date": "1990-01-01"}, headers=exchange.service)
    assert refused.status_code == 422 and "birth_date" in refused.json()["detail"]
    bad_cursor = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"cursor": "garbage"}, headers=exchange.service)
    assert bad_cursor.status_code == 422


def test_an_arrow_stream_holds_exactly_the_granted_rows_and_columns(exchange):
    response = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", headers={**exchange.service,
                                 "Accept": "application/vnd.apache.arrow.stream"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(io.BytesIO(response.content)).read_all()
    assert table.column_names == ["citizen_id", "name", "district"]
    assert table.to_pylist() == exchange.expected()


def test_revocation_and_expiry_stop_access_on_the_next_call(exchange, database):
    key = exchange.rows[0]["citizen_id"]
    assert exchange.lookup(key).status_code == 200
    with database.engine.begin() as connection:  # the period ended yesterday
        connection.execute(text("UPDATE grants SET valid_until = :day WHERE id = :id"),
                           {"day": date.today() - timedelta(days=1), "id": exchange.grant_id})
    assert exchange.lookup(key).status_code == 403
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE grants SET valid_until = :day WHERE id = :id"),
                           {"day": date.today() + timedelta(days=30), "id": exchange.grant_id})
    assert exchange.lookup(key).status_code == 200
    revoked = exchange.http.post(f"/api/v1/grants/{exchange.grant_id}/revoke", json={"reason": "service closed"}, headers=exchange.manager)
    assert revoked.status_code == 200
    assert exchange.lookup(key).status_code == 403
    assert exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", headers=exchange.service).status_code == 403


def test_the_scope_kept_between_calls_follows_new_versions_and_changed_descriptions(exchange):
    # A grant's scope is built once per process and kept (exchange.service.interface_scope):
    # a new snapshot and a changed description must each be served from the next call on.
    person = exchange.rows[0]
    first = exchange.lookup(person["citizen_id"]).json()
    assert (first["version"], first["records"][0]["name"]) == (1, person["name"])
    renamed = [dict(row, name=f"Renamed {index}") for index, row in enumerate(exchange.rows)]
    directory = exchange.http.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("data.csv", _csv(renamed))},
                                   headers=exchange.provider)
    assert directory.status_code == 201, directory.text
    second = exchange.lookup(person["citizen_id"]).json()
    assert (second["version"], second["records"][0]["name"]) == (2, "Renamed 0")
    # The description now names another lookup key: the next call looks up by it.
    patched = exchange.http.patch("/api/v1/datasets/PSB-HOUSEHOLD", json={"lookup_key": "name"}, headers=exchange.provider)
    assert patched.status_code == 200, patched.text
    assert exchange.lookup(person["citizen_id"]).status_code == 404
    by_name = exchange.lookup("Renamed 0")
    assert by_name.status_code == 200
    assert by_name.json()["records"] == [{"citizen_id": person["citizen_id"], "name": "Renamed 0", "district": person["district"]}]


def test_a_revocation_by_another_server_process_stops_the_next_call(exchange, settings):
    # Another process on the same record store: this one's kept scope must not outlive the grant.
    key = exchange.rows[0]["citizen_id"]
    assert exchange.lookup(key).status_code == 200
    other = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
    try:
        with other.transaction() as session:
            revoke_grant(session, grant=session.get(Grant, exchange.grant_id), actor="user:other-process", reason="fraud")
    finally:
        other.dispose()
    refused = exchange.lookup(key)
    assert refused.status_code == 403
    assert exchange.lookup(key).status_code == 403


def test_every_call_is_on_the_ledger_and_the_citizen_reads_their_lines(exchange, app, database):
    person, other = exchange.rows[0]["citizen_id"], exchange.rows[1]["citizen_id"]
    exchange.lookup(person)
    exchange.lookup(person)
    exchange.lookup(exchange.rows[2]["citizen_id"])  # outside: refused, and still recorded
    exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"district": "02"}, headers=exchange.service)
    app.state.ledger.flush()
    with database.engine.connect() as connection:
        kinds = connection.execute(text("SELECT kind, rows, status FROM access_log ORDER BY id")).all()
    assert [tuple(row) for row in kinds] == [("lookup", 1, 200), ("lookup", 1, 200), ("lookup", 0, 404), ("query", 15, 200)]
    log = exchange.http.get(f"/api/v1/citizens/{person}/access-log", headers=exchange.portal).json()
    assert log["citizen_id"] == person
    assert len(log["entries"]) == 2
    entry = log["entries"][0]
    assert entry["department"] == "CAB" and entry["dataset"] == "PSB-HOUSEHOLD"
    assert entry["grant_id"] == exchange.grant_id and entry["application_id"] == exchange.application_id
    assert entry["service_item"] == "marriage-registration"
    assert entry["basis"] == "Marriage Registration Regulation art. 5"
    queried = exchange.http.get(f"/api/v1/citizens/{other}/access-log", headers=exchange.portal).json()["entries"]
    assert [line["kind"] for line in queried] == ["query"]  # district 02: touched by the query only
    assert exchange.http.get(f"/api/v1/citizens/{person}/access-log", headers=exchange.demander).status_code == 403
    assert exchange.http.get(f"/api/v1/citizens/{person}/access-log", headers=exchange.service).status_code == 403
    assert exchange.http.get(f"/api/v1/citizens/{person}/access-log", headers=exchange.manager).status_code == 200


def test_a_client_over_its_rate_limit_gets_429_with_retry_after(exchange, app):
    from exchange.ratelimit import RateLimiter

    # One call per 100 s after a burst of 2: a slow machine cannot refill a call between them.
    app.state.rate_limiter = RateLimiter(rate=0.01, burst=2)
    key = exchange.rows[0]["citizen_id"]
    assert [exchange.lookup(key).status_code for _ in range(2)] == [200, 200]
    limited = exchange.lookup(key)
    assert limited.status_code == 429
    assert 90 <= int(limited.headers["retry-after"]) <= 100  # when the next call's token is due
    assert limited.json()["type"] == "urn:govshare:problem:rate-limited"
