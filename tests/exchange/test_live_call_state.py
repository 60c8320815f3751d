"""Live calls on the lean call path: a call whose state is unchanged reads only the change stamp (no token, grant or
credentials read); a change made anywhere (revocation, pause, new credentials, a changed description) is seen on the
next call; the explicit-request refusal and the citizen's consent are checked on every call, the consent read afresh."""

from __future__ import annotations

from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import text

from approvals.models import Grant
from approvals.service import pause_grant, resume_grant, revoke_grant
from directory import live_credentials
from govshare import changestamp
from govshare.app import create_app
from govshare.db import utcnow
from tests.conftest import ISSUER
from tests.exchange.test_call_state import _counting as _counting_lookups
from tests.exchange.test_call_state import _other_store
from tests.exchange.test_consent_live import ConsentLive
from tests.exchange.test_live import API_KEY, INSIDE, World, _lines, _loopback_allowed, _problem, live_document, provider  # noqa: F401

MISSING = "110101200001010000"  # a resident the provider does not know


def _counting(monkeypatch) -> list[str]:
    """Records each read of a token's state, a live grant's state and a live dataset's credentials from the record store."""
    reads = _counting_lookups(monkeypatch)
    read_secret = live_credentials.encrypted_secret_of

    def encrypted_secret_of(*args, **kwargs):
        reads.append("credentials")
        return read_secret(*args, **kwargs)

    monkeypatch.setattr(live_credentials, "encrypted_secret_of", encrypted_secret_of)
    return reads


def test_a_live_call_with_nothing_changed_reads_neither_token_grant_nor_credentials(client, factory, app, provider, database,
                                                                                     monkeypatch):
    world = World(client, factory, app, provider)
    reads = _counting(monkeypatch)
    assert world.call(INSIDE).status_code == 200
    assert reads == ["token", "grant", "credentials"]  # the first call resolves them
    app.state.ledger.flush()  # the ledger's writes are not state a call checks: the stamp stays
    reads.clear()
    for _ in range(3):
        assert world.call(INSIDE).status_code == 200
    _problem(world.call(MISSING), 404, "record-not-found")
    assert reads == []
    assert provider.calls == [INSIDE] * 4 + [MISSING]  # each call still goes to the provider, with the kept credentials
    app.state.ledger.flush()
    lines = _lines(database)
    assert [line.status for line in lines] == [200, 200, 200, 200, 404]
    assert all(len(line.request_sha256) == 64 and len(line.answer_sha256) == 64 for line in lines)


def test_a_token_revoked_through_another_engine_is_refused_on_the_next_live_call(client, factory, app, provider, settings):
    world = World(client, factory, app, provider)
    assert world.call(INSIDE).status_code == 200
    other = _other_store(settings)
    try:
        with other.engine.begin() as connection:
            connection.execute(text("UPDATE issued_tokens SET revoked_at = :now"), {"now": utcnow().replace(tzinfo=None)})
    finally:
        other.dispose()
    refused = world.call(INSIDE)
    assert refused.status_code == 401 and refused.json()["detail"] == "the access token has been revoked"
    assert provider.calls == [INSIDE]


def test_a_live_grant_revoked_through_another_engine_stops_the_next_call(client, factory, app, provider, settings, database):
    world = World(client, factory, app, provider)
    assert world.call(INSIDE).status_code == 200
    other = _other_store(settings)
    try:
        with other.transaction() as session:  # the ORM's flush, as the revoke route writes it
            revoke_grant(session, grant=session.get(Grant, world.application["grant_id"]), actor="user:other-process",
                         reason="fraud")
    finally:
        other.dispose()
    _problem(world.call(INSIDE), 403, "no-active-grant")
    assert provider.calls == [INSIDE]  # the provider was not asked
    app.state.ledger.flush()
    assert [(line.status, line.grant_id) for line in _lines(database)] == [(200, world.application["grant_id"]), (403, None)]


def test_a_live_grant_paused_and_resumed_through_another_engine_is_seen_on_the_next_call(client, factory, app, provider, settings):
    world = World(client, factory, app, provider)
    grant_id = world.application["grant_id"]
    assert world.call(INSIDE).status_code == 200
    other = _other_store(settings)
    try:
        with other.transaction() as session:
            pause_grant(session, grant=session.get(Grant, grant_id), actor="user:other-process", reason="records under correction",
                        today=date.today())
        body = _problem(world.call(INSIDE), 403, "grant-paused")
        assert "paused" in body["detail"]
        assert provider.calls == [INSIDE]
        with other.transaction() as session:
            resume_grant(session, grant=session.get(Grant, grant_id), actor="user:other-process", today=date.today())
    finally:
        other.dispose()
    assert world.call(INSIDE).status_code == 200
    assert provider.calls == [INSIDE, INSIDE]


def test_credentials_changed_through_another_engine_are_sent_from_the_next_call(client, factory, app, provider, settings, database):
    world = World(client, factory, app, provider)
    assert world.call(INSIDE).status_code == 200
    assert changestamp.writes_watched("UPDATE live_credentials SET secret_encrypted = 'x'")
    keystore = app.state.keystore
    other = _other_store(settings)
    try:
        before = database.change_stamp()
        # Plain SQL on the credentials alone (no write to the dataset): the stamp changes with them.
        with other.engine.begin() as connection:
            connection.execute(text("UPDATE live_credentials SET secret_encrypted = :secret"), {"secret": keystore.encrypt("wrong")})
        assert database.change_stamp() != before
        body = _problem(world.call(INSIDE), 502, "live-provider-error")  # the provider refuses the new, wrong key
        assert "answered 401" in body["detail"]
        with other.engine.begin() as connection:
            connection.execute(text("UPDATE live_credentials SET secret_encrypted = :secret"), {"secret": keystore.encrypt(API_KEY)})
    finally:
        other.dispose()
    assert world.call(INSIDE).status_code == 200
    assert provider.calls == [INSIDE] * 3


def test_a_description_changed_by_another_replica_is_used_from_the_next_call(client, factory, app, provider, settings):
    world = World(client, factory, app, provider)
    assert world.call(INSIDE).status_code == 200
    changed = live_document(provider.base)
    del changed["live"]["auth"]["value"]  # the stored secret is kept
    changed["live"]["url"] = f"{provider.base}/oauth/residents/{{key}}"  # a path that wants a bearer token: 401
    with TestClient(create_app(settings), base_url=ISSUER) as replica:  # its own engine, ledger and kept state
        assert replica.put("/api/v1/datasets/PSB-RESIDENTS", json=changed,
                           headers=world.directory.provider("PSB")).status_code == 200
        body = _problem(world.call(INSIDE), 502, "live-provider-error")
        assert "answered 401" in body["detail"]
        changed["live"]["url"] = f"{provider.base}/residents/{{key}}"
        assert replica.put("/api/v1/datasets/PSB-RESIDENTS", json=changed,
                           headers=world.directory.provider("PSB")).status_code == 200
    assert world.call(INSIDE).status_code == 200
    assert provider.calls == [INSIDE, INSIDE]  # the call to the other path was not to the residents' route


def test_the_explicit_request_refusal_is_made_and_recorded_on_every_call(client, factory, app, provider, database, monkeypatch):
    world = ConsentLive(client, factory, app, provider, explicit_request=True)
    reads = _counting(monkeypatch)
    for _ in range(3):
        _problem(world.call(INSIDE), 403, "explicit-request-required")
    assert reads == ["token", "grant"]  # the kept scope refuses as the read one did
    assert provider.calls == []
    app.state.ledger.flush()
    assert [(line.status, line.grant_id) for line in _lines(database)] == [(403, world.application["grant_id"])] * 3


def test_a_consent_withdrawn_without_a_new_stamp_is_seen_on_the_next_call(client, factory, app, provider, settings, database,
                                                                           monkeypatch):
    world = ConsentLive(client, factory, app, provider, consent_required=True)
    consent_id = world.consent(INSIDE)
    reads = _counting(monkeypatch)
    assert world.call(INSIDE).status_code == 200
    assert world.call(INSIDE).status_code == 200
    assert reads == ["token", "grant", "credentials"]
    stamp = database.change_stamp()
    other = _other_store(settings)
    try:
        with other.engine.begin() as connection:  # consents are not a watched table: read afresh on every call instead
            connection.execute(text("UPDATE consents SET status = 'withdrawn' WHERE id = :id"), {"id": consent_id})
    finally:
        other.dispose()
    assert database.change_stamp() == stamp
    _problem(world.call(INSIDE), 404, "record-not-found")
    assert reads == ["token", "grant", "credentials"]  # nothing else was read again but the consent
    assert provider.calls == [INSIDE, INSIDE]  # the provider was not asked about a citizen without consent
    app.state.ledger.flush()
    assert [line.status for line in _lines(database)] == [200, 200, 404]
    log = world.http.get(f"/api/v1/citizens/{INSIDE}/access-log", headers=world.portal).json()["entries"]
    assert [(entry["rows"], entry["consent_id"]) for entry in log] == [(0, None), (1, consent_id), (1, consent_id)]  # newest first
