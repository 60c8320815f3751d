"""GOVSHARE_REDIS_URL set, Redis unreachable: a live call is refused with a 503 problem naming the shared store, the
provider is not called, and the refusal is on the ledger; a lookup gets a 503 problem too, not an unhandled error.

"Unreachable" is a local port bound by the test and never listened on: a connection to it is refused at once."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from exchange.errors import LiveProtectionUnavailable
from exchange.live import service as live
from exchange.ratelimit import RateLimiter
from govshare.app import create_app
from tests.conftest import ISSUER
from tests.exchange.test_interfaces import exchange  # noqa: F401 (the fixture)
from tests.exchange.test_live import INSIDE, World, _lines, _loopback_allowed, _problem, provider  # noqa: F401 (fixtures)
from tests.servers import run_coroutine

URL = f"/api/v1/exchange/PSB-RESIDENTS/live/{INSIDE}"


@pytest.fixture
def closed_redis():
    """A Redis URL on a local port that refuses connections (held bound, so nothing else takes it meanwhile)."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(held.getsockname(), timeout=5).close()
        yield f"redis://127.0.0.1:{held.getsockname()[1]}/0"
    finally:
        held.close()


def _shared(settings, redis_url: str) -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"redis_url": redis_url})), base_url=ISSUER)


def _unavailable(response) -> dict:
    body = _problem(response, 503, "live-protection-unavailable")
    assert "Redis" in body["detail"] and "GOVSHARE_REDIS_URL" in body["detail"], body
    assert "circuit breakers and calls in flight" in body["detail"] and "the provider was not called" in body["detail"]
    return body


def test_a_live_call_with_redis_unreachable_is_a_503_and_the_provider_is_not_called(client, factory, app, provider, settings,
                                                                                     database, closed_redis):
    world = World(client, factory, app, provider)
    with _shared(settings, closed_redis) as replica:
        _unavailable(replica.get(URL, headers=world.service))  # met at the shared rate limit, before the grant is read
        replica.app.state.ledger.flush()
    assert provider.calls == []
    assert [(line.status, line.grant_id, line.dataset_code, line.department_code) for line in _lines(database)] == [(503, None, "PSB-RESIDENTS", "CAB")]


def test_with_redis_unreachable_at_the_calls_in_flight_the_refusal_carries_the_grant(client, factory, app, provider, settings,
                                                                                      database, closed_redis):
    world = World(client, factory, app, provider)
    with _shared(settings, closed_redis) as replica:
        replica.app.state.rate_limiter = RateLimiter(rate=1000, burst=1000)  # the rate limit kept here: Redis is met at the cap
        _unavailable(replica.get(URL, headers=world.service))
        _unavailable(replica.get(URL, headers=world.service))
        replica.app.state.ledger.flush()
    assert provider.calls == []
    lines = _lines(database)
    assert [(line.status, line.grant_id, line.answer_sha256) for line in lines] == [(503, world.application["grant_id"], None)] * 2
    # The same call with Redis out of the picture reaches the provider: the refusal was Redis's alone.
    assert world.call(INSIDE).status_code == 200 and provider.calls == [INSIDE]


def test_the_shared_breaker_refuses_when_redis_is_unreachable_and_notes_after_a_call_are_let_go(settings, closed_redis):
    protection = live.Protection.for_settings(settings.model_copy(update={"redis_url": closed_redis}))

    async def scenario() -> None:
        with pytest.raises(LiveProtectionUnavailable):
            await protection.breaker.admit("DS", probe_seconds=10)
        with pytest.raises(LiveProtectionUnavailable):
            await protection.slots.take(1, lease_seconds=10)
        # After the provider was called, Redis gone: logged, not raised (the caller keeps the provider's answer or error).
        await protection.breaker.succeeded("DS")
        await protection.breaker.failed("DS")
        await protection.breaker.abandoned("DS")
        await protection.slots.give_back(1, "lease")

    run_coroutine(scenario())


def test_a_lookup_with_redis_unreachable_is_a_503_problem(exchange, settings, closed_redis):  # noqa: F811
    with _shared(settings, closed_redis) as replica:
        response = replica.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{exchange.rows[0]['citizen_id']}", headers=exchange.service)
    body = _problem(response, 503, "protection-unavailable")
    assert "Redis" in body["detail"] and "GOVSHARE_REDIS_URL" in body["detail"]
