"""Webhooks reach internal addresses only when GOVSHARE_OUTBOUND_ALLOWLIST names them (issue 21 item 13)."""

from __future__ import annotations

import json

import pytest

from approvals import webhooks
from govshare.settings import get_settings
from tests.approvals.test_api import World
from tests.approvals.test_service import _Receiver


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


@pytest.fixture
def endpoint():
    receiver = _Receiver()  # on 127.0.0.1
    yield receiver
    receiver.close()


def _allow(monkeypatch, *entries: str) -> None:
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", json.dumps(list(entries)))
    get_settings.cache_clear()


def test_a_webhook_to_loopback_is_refused_without_the_allowlist_and_delivered_with_it(world, client, database, endpoint, monkeypatch):
    _allow(monkeypatch)
    refused = client.post("/api/v1/webhooks", json={"url": endpoint.url}, headers=world.applicant)  # http://127.0.0.1:port/hook
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "loopback" in refused.json()["detail"] and "GOVSHARE_OUTBOUND_ALLOWLIST" in refused.json()["detail"]
    assert client.get("/api/v1/webhooks", headers=world.applicant).json()["items"] == []

    # A name is checked when it is called, after resolution: localhost is 127.0.0.1.
    by_name = endpoint.url.replace("127.0.0.1", "localhost")
    assert client.post("/api/v1/webhooks", json={"url": by_name}, headers=world.applicant).status_code == 201
    world.filed()
    assert webhooks.deliver_once(database) == 0
    assert endpoint.received == []
    assert webhooks.deliver_once(database) == 0  # refused again, and still pending: nothing was marked delivered

    _allow(monkeypatch, "127.0.0.1")
    assert webhooks.deliver_once(database) >= 1
    headers, body = endpoint.received[0]
    assert headers["host"] == by_name.split("/")[2]  # sent to the checked address, still addressed by its name
    assert json.loads(body)["events"]


def test_a_webhook_to_the_metadata_endpoint_is_refused(world, client, monkeypatch):
    _allow(monkeypatch, "169.254.0.0/16")
    refused = client.post("/api/v1/webhooks", json={"url": "http://169.254.169.254/latest/meta-data/"}, headers=world.applicant)
    assert refused.status_code == 422, refused.text
    assert "metadata" in refused.json()["detail"]
