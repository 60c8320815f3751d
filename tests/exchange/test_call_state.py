"""The lean call path: a call whose state is unchanged reads only the change stamp; a change made anywhere is seen
on the next call (govshare.changestamp). Lookup stores live in the replica's cache folder."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text, update

from approvals.models import Grant
from approvals.service import revoke_grant
from exchange import service
from govshare import auth, changestamp
from govshare.app import create_app
from govshare.db import Database, utcnow
from govshare.keys import KeyStore
from govshare.models import Client, IssuedToken
from tests.conftest import ISSUER
from tests.exchange.test_interfaces import Exchange, _csv, exchange  # noqa: F401 (the fixture)

BATCH = "/api/v1/exchange/PSB-HOUSEHOLD/records:batch"


def _other_store(settings) -> Database:
    """The same record store through an engine of its own: another server process, as far as this one can tell."""
    return Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))


def _counting(monkeypatch) -> list[str]:
    """Records each read of a token's or a grant's state from the record store."""
    reads: list[str] = []
    read_caller, read_scope = auth._caller_from_store, service.interface_scope

    def caller_from_store(*args, **kwargs):
        reads.append("token")
        return read_caller(*args, **kwargs)

    def interface_scope(*args, **kwargs):
        reads.append("grant")
        return read_scope(*args, **kwargs)

    monkeypatch.setattr(auth, "_caller_from_store", caller_from_store)
    monkeypatch.setattr(service, "interface_scope", interface_scope)
    return reads


def test_a_call_with_nothing_changed_reads_neither_its_token_nor_its_grant(exchange, monkeypatch, app):
    key = exchange.rows[0]["citizen_id"]
    reads = _counting(monkeypatch)
    assert exchange.lookup(key).status_code == 200
    assert reads == ["token", "grant"]  # the first call resolves them
    app.state.ledger.flush()  # the ledger's writes are not state a call checks: the stamp stays
    reads.clear()
    for _ in range(3):
        assert exchange.lookup(key).status_code == 200
    assert exchange.http.post(BATCH, json={"keys": [key]}, headers=exchange.service).status_code == 200
    assert reads == []
    # Nor is a refusal by the grant's scope read afresh: the same 404 as before, from the kept state.
    assert exchange.lookup(exchange.rows[2]["citizen_id"]).status_code == 404
    assert reads == []


def test_a_write_to_a_watched_table_changes_the_stamp_and_others_do_not(database):
    first = database.change_stamp()
    assert first is not None
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))  # not state a call checks
    assert database.change_stamp() == first
    with database.transaction() as session:  # through the ORM, as every service writes
        session.execute(update(Client).values(roles=["service"]).where(Client.client_id == "nobody"))
    second = database.change_stamp()
    assert second != first
    with database.engine.begin() as connection:  # plain SQL on a bare connection
        connection.execute(text("UPDATE grants SET valid_until = valid_until WHERE id = 0"))
    third = database.change_stamp()
    assert third not in (first, second)
    with database.engine.connect() as connection:  # rolled back: nothing changed, nor does the stamp
        connection.execute(text("UPDATE grants SET valid_until = valid_until WHERE id = 0"))
        connection.rollback()
    assert database.change_stamp() == third
    assert changestamp.writes_watched('INSERT INTO "dataset_versions" (id) VALUES (1)')
    assert not changestamp.writes_watched("INSERT INTO access_log (id) VALUES (1)")
    assert not changestamp.writes_watched("SELECT * FROM grants")


def test_a_token_revoked_through_another_engine_is_refused_on_the_next_call(exchange, settings):
    key = exchange.rows[0]["citizen_id"]
    assert exchange.lookup(key).status_code == 200
    assert exchange.http.post(BATCH, json={"keys": [key]}, headers=exchange.service).status_code == 200
    other = _other_store(settings)
    try:
        with other.transaction() as session:
            session.execute(update(IssuedToken).values(revoked_at=utcnow()))
    finally:
        other.dispose()
    refused = exchange.lookup(key)
    assert refused.status_code == 401 and refused.json()["detail"] == "the access token has been revoked"
    assert exchange.http.post(BATCH, json={"keys": [key]}, headers=exchange.service).status_code == 401


def test_a_client_disabled_or_its_roles_changed_through_another_engine_is_seen_on_the_next_call(exchange, settings, database):
    key = exchange.rows[0]["citizen_id"]
    assert exchange.lookup(key).status_code == 200
    before = database.change_stamp()
    other = _other_store(settings)
    try:
        with other.engine.begin() as connection:
            connection.execute(text("UPDATE clients SET roles = :roles"), {"roles": '["demander"]'})
        assert database.change_stamp() != before  # a role change is state a call depends on: kept state is dropped
        assert exchange.lookup(key).status_code == 200  # a token's roles are its scopes, fixed when issued
        with other.engine.begin() as connection:
            connection.execute(text("UPDATE clients SET disabled_at = :now"), {"now": utcnow().replace(tzinfo=None)})
    finally:
        other.dispose()
    refused = exchange.lookup(key)
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]


def test_a_grant_revoked_or_ended_through_another_engine_stops_lookups_and_batches_on_the_next_call(exchange, settings):
    key = exchange.rows[0]["citizen_id"]
    assert exchange.http.post(BATCH, json={"keys": [key]}, headers=exchange.service).status_code == 200
    other = _other_store(settings)
    try:
        with other.engine.begin() as connection:  # the period ended yesterday
            connection.execute(text("UPDATE grants SET valid_until = :day WHERE id = :id"),
                               {"day": date.today() - timedelta(days=1), "id": exchange.grant_id})
        assert exchange.http.post(BATCH, json={"keys": [key]}, headers=exchange.service).status_code == 403
        with other.engine.begin() as connection:
            connection.execute(text("UPDATE grants SET valid_until = :day WHERE id = :id"),
                               {"day": date.today() + timedelta(days=30), "id": exchange.grant_id})
        assert exchange.lookup(key).status_code == 200
        with other.transaction() as session:  # the ORM's flush, as the revoke route writes it
            revoke_grant(session, grant=session.get(Grant, exchange.grant_id), actor="user:other-process", reason="fraud")
    finally:
        other.dispose()
    assert exchange.lookup(key).status_code == 403
    assert exchange.http.post(BATCH, json={"keys": [key]}, headers=exchange.service).status_code == 403


def test_a_new_version_stored_by_another_replica_is_served_on_the_next_call(exchange, settings):
    person = exchange.rows[0]
    assert exchange.lookup(person["citizen_id"]).json()["version"] == 1
    renamed = [dict(row, name=f"Renamed {index}") for index, row in enumerate(exchange.rows)]
    with TestClient(create_app(settings), base_url=ISSUER) as replica:  # its own engine, ledger and kept state
        stored = replica.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("data.csv", _csv(renamed))},
                              headers=exchange.provider)
        assert stored.status_code == 201, stored.text
    answer = exchange.lookup(person["citizen_id"]).json()
    assert (answer["version"], answer["records"][0]["name"]) == (2, "Renamed 0")
    batch = exchange.http.post(BATCH, json={"keys": [person["citizen_id"]]}, headers=exchange.service).json()
    assert (batch["version"], batch["records"][person["citizen_id"]][0]["name"]) == (2, "Renamed 0")


def test_the_stores_a_lookup_reads_live_in_the_replicas_cache_folder_not_the_data_folder(exchange, settings):
    key = exchange.rows[0]["citizen_id"]
    assert exchange.lookup(key).status_code == 200
    page = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", headers=exchange.service)  # read from the keyed store
    assert page.status_code == 200
    data, cache = settings.resolved_data_dir, settings.resolved_cache_dir
    assert not data.is_relative_to(cache) and not cache.is_relative_to(data)
    assert [path.name for path in data.rglob("*.lookup.sqlite")] == []
    assert [path.name for path in data.rglob("*.keyed.duckdb")] == []
    assert [path.relative_to(cache).as_posix() for path in cache.rglob("*.lookup.sqlite")] == [
        "derived/datasets/PSB-HOUSEHOLD/v000001.lookup.sqlite"]
    assert [path.relative_to(cache).as_posix() for path in cache.rglob("*.keyed.duckdb")] == [
        "derived/datasets/PSB-HOUSEHOLD/v000001.keyed.duckdb"]


def test_a_lookup_whose_state_is_kept_runs_on_the_event_loop_and_one_that_must_read_goes_to_a_thread(
        exchange, monkeypatch, app, database):
    from exchange.interfaces import api
    hops: list[str] = []
    hop = api.run_in_threadpool

    async def counted(function, *args, **kwargs):
        hops.append(function.__name__)
        return await hop(function, *args, **kwargs)

    monkeypatch.setattr(api, "run_in_threadpool", counted)
    reads = _counting(monkeypatch)
    key, other = exchange.rows[0]["citizen_id"], exchange.rows[1]["citizen_id"]
    # The first lookup builds the lookup store and reads the token and grant: in a worker thread (once: the rate
    # taken on the loop is not taken again there).
    assert exchange.lookup(key).status_code == 200
    assert hops.count("_lookup") == 1 and reads == ["token", "grant"]
    hops.clear()
    reads.clear()
    for _ in range(3):
        assert exchange.lookup(other).status_code == 200
    if database.dialect == "sqlite":
        assert "_lookup" not in hops and reads == []  # on the loop: no hop, no read but the stamp
    else:  # a network store's driver blocks: every lookup in a worker thread (reading only the stamp there)
        assert hops.count("_lookup") == 3 and reads == []
        hops.clear()
    # A change to what a call checks (the grant revoked): the next call reads it afresh, in a thread, and is refused.
    with database.transaction() as session:
        revoke_grant(session, grant=session.get(Grant, exchange.grant_id), actor="user:test", reason="fraud")
    refused = exchange.lookup(other)
    assert refused.status_code == 403, refused.text
    assert hops.count("_lookup") == 1 and "grant" in reads
    app.state.ledger.flush()
    with database.engine.connect() as connection:
        statuses = connection.execute(text("SELECT status FROM access_log ORDER BY id")).scalars().all()
    assert statuses[-5:] == [200, 200, 200, 200, 403]  # every call on the ledger, once


def test_a_lookup_takes_one_call_from_its_rate_whether_or_not_it_goes_on_to_a_thread(exchange, settings):
    app = create_app(settings.model_copy(update={"rate_limit_per_second": 0.001, "rate_limit_burst": 2}))
    with TestClient(app, base_url=ISSUER, raise_server_exceptions=False) as client:
        key = exchange.rows[0]["citizen_id"]
        url = f"/api/v1/exchange/PSB-HOUSEHOLD/records/{key}"
        # The first call goes on to a thread (the lookup store is built, the state read), the second stays on the loop.
        assert [client.get(url, headers=exchange.service).status_code for _ in range(3)] == [200, 200, 429]
