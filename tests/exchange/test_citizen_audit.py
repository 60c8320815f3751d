"""Citizens' own decisions are on the audit chain like everyone else's: giving and withdrawing consent, approving and
refusing a request, with the citizen as actor, through the portal's API and the citizen's page; a refused action writes
nothing, and the chain still verifies (API and CLI)."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from exchange.citizens.service import citizen_actor
from govshare.models import AuditEntry
from tests.exchange.test_citizen_page import CitizenWorld, _post, alice  # noqa: F401 (alice: a fixture, signed in to /me)
from tests.exchange.test_delayed_disclosure import on_day
from tests.exchange.test_explicit_requests import RequestWorld
from tests.govshare.test_audit import _verify_api, _verify_cli


def _citizens_entries(database) -> list[tuple[str, str, str, dict]]:
    """Every entry a citizen is the actor of, in chain order."""
    with database.transaction(write=False) as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.actor.like("citizen:%")).order_by(AuditEntry.seq)).scalars()
        return [(entry.actor, entry.action, entry.subject, json.loads(entry.details)) for entry in entries]


@pytest.fixture
def world(client, factory, tmp_path, app) -> CitizenWorld:
    return CitizenWorld(client, factory, tmp_path, app)


def test_consents_given_through_the_portal_are_audited_with_the_citizen_as_actor(world, database, factory, client, settings):
    entries = _citizens_entries(database)
    assert [(actor, action, subject) for actor, action, subject, _ in entries[:2]] == [
        (citizen_actor(world.alice), "consent.given", f"consent:{world.alice_consent}"),
        (citizen_actor(world.bob), "consent.given", f"consent:{world.bob_consent}")]
    details = entries[0][3]
    assert details["department"] == "CAB" and details["dataset"] == world.consents.code
    assert details["until"] == (date.today() + timedelta(days=30)).isoformat()
    assert details["through"].startswith("client:")  # the portal client it came through
    assert world.consents.withdraw(world.alice, world.alice_consent).status_code == 200
    assert world.consents.withdraw(world.alice, world.alice_consent).status_code == 200  # again: changes nothing
    withdrawn = [entry for entry in _citizens_entries(database) if entry[1] == "consent.withdrawn"]
    assert [(actor, subject) for actor, _, subject, _ in withdrawn] == [(citizen_actor(world.alice), f"consent:{world.alice_consent}")]
    assert _verify_api(client, factory)["ok"] is True
    completed = _verify_cli(settings)
    assert completed.returncode == 0 and json.loads(completed.stdout)["ok"] is True, completed.stderr


def test_request_decisions_through_the_portal_are_audited(world, database, client, factory):
    requests = world.requests
    first, second = world.alice_requests
    assert requests.decide(world.alice, first, "approve").status_code == 200
    assert requests.decide(world.alice, second, "refuse").status_code == 200
    decisions = [entry for entry in _citizens_entries(database) if entry[1].startswith("citizen_request.")]
    assert [(actor, action, subject) for actor, action, subject, _ in decisions] == [
        (citizen_actor(world.alice), "citizen_request.approved", f"citizen_request:{first}"),
        (citizen_actor(world.alice), "citizen_request.refused", f"citizen_request:{second}")]
    assert decisions[0][3]["department"] == "CAB" and decisions[0][3]["dataset"] == requests.code
    assert _verify_api(client, factory) | {"entries": None} == {"ok": True, "entries": None, "first_broken": None}


def test_refused_actions_write_nothing(world, database, monkeypatch):
    requests = world.requests
    first, second = world.alice_requests
    requests.decide(world.alice, first, "approve")
    before = _citizens_entries(database)
    assert requests.decide(world.alice, first, "refuse").status_code == 409  # decided already
    assert requests.decide(world.bob, second, "approve").status_code == 404  # another citizen's
    assert world.consents.withdraw(world.bob, world.alice_consent).status_code == 404
    assert world.consents.consent(world.alice, until="2000-01-01").status_code == 422
    on_day(monkeypatch, date.today() + timedelta(days=31))
    assert requests.decide(world.alice, second, "approve").status_code == 410  # expired
    assert _citizens_entries(database) == before


def test_the_citizens_page_decisions_are_audited_with_the_citizen_as_actor(client, world, alice, database, factory):
    first, second = world.alice_requests
    before = len(_citizens_entries(database))
    assert _post(client, f"/me/consents/{world.alice_consent}/withdraw").status_code == 303
    assert _post(client, f"/me/requests/{first}/approve").status_code == 303
    assert _post(client, f"/me/requests/{second}/refuse").status_code == 303
    assert _post(client, f"/me/requests/{world.bob_request}/approve").status_code == 404  # Bob's: nothing written
    added = _citizens_entries(database)[before:]
    assert [(actor, action, subject, details["through"]) for actor, action, subject, details in added] == [
        (citizen_actor(world.alice), "consent.withdrawn", f"consent:{world.alice_consent}", "citizen:self"),
        (citizen_actor(world.alice), "citizen_request.approved", f"citizen_request:{first}", "citizen:self"),
        (citizen_actor(world.alice), "citizen_request.refused", f"citizen_request:{second}", "citizen:self")]
    assert _verify_api(client, factory)["ok"] is True


def test_a_request_world_without_consents_audits_nothing_until_the_citizen_acts(client, factory, tmp_path, database):
    requests = RequestWorld(client, factory, tmp_path, consent_required=False, explicit_request=True)
    requests.ask(requests.alice)
    assert _citizens_entries(database) == []  # the service's asking is the ledger's business, not a citizen's decision
