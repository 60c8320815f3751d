"""Consent on live services: the provider is not even called for a citizen who has not consented; explicit-request
datasets are not read live."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.exchange.test_live import INSIDE, World, _loopback_allowed, _problem, live_document, provider  # noqa: F401 (fixtures)
from tests.factories import DirectoryFactory


class ConsentLive(World):
    """World's live dataset, registered with ``flags`` (consent_required, explicit_request)."""

    def __init__(self, client, factory, app, provider, **flags) -> None:  # noqa: F811
        self.http, self.factory, self.app, self.provider = client, factory, app, provider
        self.directory = DirectoryFactory(factory)
        response = client.post("/api/v1/datasets", headers=self.directory.provider("PSB"),
                               json=live_document(provider.base) | flags)
        assert response.status_code == 201, response.text
        self.manager = factory.caller("DATA", "manager")
        self.service = factory.caller("CAB", "service")
        self.portal = factory.caller("DATA", "citizen_portal")
        self.department = "CAB"
        self.application = self.grant(["citizen_id", "name", "district"])

    def consent(self, citizen: str) -> int:
        answer = self.http.post(f"/api/v1/citizens/{citizen}/consents", headers=self.portal, json={
            "department": "CAB", "dataset": "PSB-RESIDENTS", "purpose": "benefit claim",
            "until": (date.today() + timedelta(days=10)).isoformat()})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]


def test_a_live_call_without_consent_is_a_404_and_the_provider_is_not_asked(client, factory, app, provider):  # noqa: F811
    world = ConsentLive(client, factory, app, provider, consent_required=True)
    _problem(world.call(INSIDE), 404, "record-not-found")
    assert provider.calls == []
    consent_id = world.consent(INSIDE)
    assert world.call(INSIDE).status_code == 200 and provider.calls == [INSIDE]
    assert world.http.post(f"/api/v1/citizens/{INSIDE}/consents/{consent_id}/withdraw", headers=world.portal).status_code == 200
    _problem(world.call(INSIDE), 404, "record-not-found")
    assert provider.calls == [INSIDE]
    app.state.ledger.flush()
    log = world.http.get(f"/api/v1/citizens/{INSIDE}/access-log", headers=world.portal).json()["entries"]
    assert [(entry["kind"], entry["rows"], entry["consent_id"]) for entry in log] == [
        ("live", 0, None), ("live", 1, consent_id), ("live", 0, None)]


def test_an_explicit_request_dataset_is_not_read_live(client, factory, app, provider):  # noqa: F811
    world = ConsentLive(client, factory, app, provider, explicit_request=True)
    _problem(world.call(INSIDE), 403, "explicit-request-required")
    assert provider.calls == []
