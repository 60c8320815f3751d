"""Batch lookups: up to 1,000 keys in one call, exactly what single lookups give, one ledger line per key delivered."""

from __future__ import annotations

from sqlalchemy import text

from tests.exchange.test_interfaces import Exchange, exchange  # noqa: F401 (the fixture)

URL = "/api/v1/exchange/PSB-HOUSEHOLD/records:batch"


def test_a_batch_answers_each_key_as_a_lookup_would_and_names_the_missing(exchange, app, database):
    inside = [exchange.rows[index]["citizen_id"] for index in (0, 1, 4, 5)]  # districts 01 and 02
    outside = exchange.rows[2]["citizen_id"]  # district 03: exists, outside the grant
    response = exchange.http.post(URL, json={"keys": [*inside, outside, "nobody", inside[0]]}, headers=exchange.service)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dataset"] == "PSB-HOUSEHOLD"
    assert list(body["records"]) == inside
    for key in inside:
        assert body["records"][key] == exchange.lookup(key).json()["records"]
        assert body["records"][key] == exchange.expected("citizen_id = ?", [key])
    assert body["missing"] == [outside, "nobody"]
    app.state.ledger.flush()
    with database.engine.connect() as connection:
        lines = connection.execute(text("SELECT l.status, l.rows, k.key FROM access_log l JOIN access_log_keys k ON k.entry_id = l.id "
                                        "ORDER BY l.id, k.key")).all()
    batch_lines = [tuple(line) for line in lines][: len(inside) + 2]
    assert batch_lines == [(200, 1, key) for key in inside] + sorted([(404, 0, outside), (404, 0, "nobody")])


def test_misuse_of_the_batch_route_is_refused(exchange, factory):
    key = exchange.rows[0]["citizen_id"]
    assert exchange.http.post(URL, json={"keys": [key]}, headers=exchange.other_service).status_code == 403  # no grant
    assert exchange.http.post(URL, json={"keys": [key]}, headers=exchange.demander).status_code == 403  # no service role
    assert exchange.http.post(URL, json={"keys": [key]}).status_code == 401
    too_many = exchange.http.post(URL, json={"keys": [f"K{index}" for index in range(1001)]}, headers=exchange.service)
    assert too_many.status_code == 422 and too_many.headers["content-type"].startswith("application/problem+json")
    for keys in ([1234], [None], [["nested"]], [], "not a list", [""]):
        refused = exchange.http.post(URL, json={"keys": keys}, headers=exchange.service)
        assert refused.status_code == 422, (keys, refused.text)
    assert exchange.http.post(URL, json={"keys": [key], "extra": 1}, headers=exchange.service).status_code == 422
    huge = exchange.http.post(URL, content=b'{"keys": ["' + b"x" * 3_000_000 + b'"]}',
                              headers={**exchange.service, "Content-Type": "application/json"})
    assert huge.status_code == 413
    elsewhere = exchange.http.post("/api/v1/exchange/NO-SUCH/records:batch", json={"keys": [key]}, headers=exchange.service)
    assert elsewhere.status_code == 403


def test_a_batch_under_a_grant_without_the_key_is_refused(client, factory, tmp_path):
    from tests.exchange.test_key_lookups import World
    world = World(client, factory)
    application = world.grant(["name", "district"])
    response = client.post(URL, json={"keys": [world.rows[0]["citizen_id"]]}, headers=world.service)
    assert response.status_code == 403, response.text
    assert response.json()["detail"] == (f"grant {application['grant_id']} does not include the lookup key citizen_id unmasked; "
                                         "lookups by key are not allowed")


def test_a_page_filtered_by_the_key_reads_the_lookup_store_and_pages_alike(exchange):
    key = exchange.rows[1]["citizen_id"]  # district 02: inside
    first = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"citizen_id": key, "limit": 1},
                              headers=exchange.service)
    assert first.status_code == 200, first.text
    assert first.json()["records"] == exchange.lookup(key).json()["records"] == exchange.expected("citizen_id = ?", [key])
    after = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records",
                              params={"citizen_id": key, "limit": 1, "cursor": first.json()["next_cursor"]}, headers=exchange.service)
    assert after.status_code == 200 and after.json()["records"] == [] and after.json()["next_cursor"] is None
    both = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"citizen_id": key, "district": "01"},
                             headers=exchange.service)
    assert both.json()["records"] == []  # every condition holds, not only the key's
    outside = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"citizen_id": exchange.rows[2]["citizen_id"]},
                                headers=exchange.service)
    assert outside.status_code == 200 and outside.json()["records"] == []
