"""A grant's scope kept between calls belongs to one record store: two stores in one
process, with grants of the same number on the same dataset code, never serve each other's."""

from __future__ import annotations

import duckdb
from fastapi.testclient import TestClient

from evaluation.bench import world as bench_world
from govshare.app import create_app
from govshare.settings import Settings

ISSUER = "http://127.0.0.1:8000"  # never listened on: the apps are called in-process


def test_two_stores_in_one_process_serve_each_their_own_grant(tmp_path):
    # Embedded stores on purpose, whatever the suite's backend: the property is the process's
    # (scopes are kept per connection pool, and keyed by times of each store's own), and two
    # PostgreSQL databases are not to be had here. Keeping them in one dictionary under the
    # grant's number, revision and version alone fails this test (checked).
    source = bench_world.write_data(tmp_path / "source.parquet", 2_000)
    key = duckdb.connect().execute(
        f"SELECT citizen_id FROM read_parquet(?) WHERE district IN ({bench_world.GRANTED_MARKS}) LIMIT 1",
        [str(source), *bench_world.GRANTED_DISTRICTS]).fetchone()[0]
    granted = {"a": ["citizen_id", "name"], "b": ["citizen_id", "district"]}
    clients, apps, grants = {}, {}, {}
    for store, columns in granted.items():
        home = tmp_path / store
        credentials = bench_world.prepare_store(home)
        apps[store] = create_app(Settings(home=home, jobs_enabled=False, issuer=ISSUER))
        clients[store] = TestClient(apps[store], base_url=ISSUER).__enter__()
        world = bench_world.World(ISSUER, credentials, http=clients[store])
        world.register()
        world.upload(source)
        grants[store] = (world.grant("interface", columns), world.headers("demander"))
    try:
        assert grants["a"][0] == grants["b"][0]  # the same grant number in each store
        for _ in range(2):  # each store's scope kept, then served again from the keeping
            for store, columns in granted.items():
                answer = clients[store].get(f"/api/v1/exchange/{bench_world.CODE}/records/{key}", headers=grants[store][1])
                assert answer.status_code == 200, answer.text
                assert [sorted(record) for record in answer.json()["records"]] == [sorted(columns)]
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)
