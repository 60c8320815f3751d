"""Live services' breaker and concurrency cap shared by replicas through the real Redis (127.0.0.1:6379).

Two app instances over one record store and one Redis: a breaker opened by failures seen on
one is open on the other, and the cap counts the calls in flight on both. A replica that
dies holding a slot leaves nothing held past the slot's lease.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from starlette.testclient import TestClient

from exchange.live import service as live
from govshare.app import create_app
from tests.conftest import ISSUER
from tests.exchange.test_live import INSIDE, Provider, World, _problem
from tests.exchange.test_shared_ratelimit import REDIS_URL, prefix  # noqa: F401 (prefix is a fixture)
from tests.servers import in_thread, run_coroutine



@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch):
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", '["127.0.0.1"]')


@pytest.fixture
def provider():
    provider = Provider()
    with in_thread(provider.app) as base:
        provider.base = base
        yield provider
        provider.release.set()


def _replicas(settings, prefix, **update):
    shared = settings.model_copy(update={"redis_url": REDIS_URL, "redis_key_prefix": prefix, **update})
    return TestClient(create_app(shared), base_url=ISSUER), TestClient(create_app(shared), base_url=ISSUER)


def test_each_replica_uses_redis_when_it_is_configured(settings, prefix):
    assert isinstance(live.Protection.for_settings(settings).breaker, live.CircuitBreaker)
    shared = live.Protection.for_settings(settings.model_copy(update={"redis_url": REDIS_URL, "redis_key_prefix": prefix}))
    assert isinstance(shared.breaker, live.RedisCircuitBreaker) and isinstance(shared.slots, live.RedisCallSlots)


def test_a_breaker_opened_on_one_replica_is_open_on_the_other(client, factory, app, provider, settings, prefix):
    world = World(client, factory, app, provider)
    url = f"/api/v1/exchange/PSB-RESIDENTS/live/{INSIDE}"
    replica_a, replica_b = _replicas(settings, prefix, live_breaker_failures=2, live_breaker_cooldown_seconds=600)
    with replica_a, replica_b:
        provider.mode = "error"
        _problem(replica_a.get(url, headers=world.service), 502, "live-provider-error")
        _problem(replica_a.get(url, headers=world.service), 502, "live-provider-error")
        assert len(provider.calls) == 2
        # Replica B has seen no failure of its own: the shared breaker fails it fast all the same.
        fast = replica_b.get(url, headers=world.service)
        _problem(fast, 503, "live-provider-unavailable")
        assert 500 < int(fast.headers["retry-after"]) <= 600
        _problem(replica_a.get(url, headers=world.service), 503, "live-provider-unavailable")
        assert len(provider.calls) == 2
    # A replica without Redis keeps its own breaker, which has seen nothing: the contrast.
    provider.mode = "ok"
    assert world.call(INSIDE).status_code == 200


def test_the_probe_is_one_call_across_replicas(prefix):
    async def scenario() -> None:
        breakers = [live.RedisCircuitBreaker(live._Redis(REDIS_URL), prefix=prefix, failures=1, cooldown=0.2) for _ in range(2)]
        a, b = breakers
        await a.failed("DS")
        assert await b.is_open("DS")
        with pytest.raises(live.LiveProviderUnavailable):
            await b.admit("DS", probe_seconds=60)
        await asyncio.sleep(0.5)  # past the cool-down (0.2 s): any longer wait only makes it further past
        await b.admit("DS", probe_seconds=60)  # B probes
        with pytest.raises(live.LiveProviderUnavailable):
            await a.admit("DS", probe_seconds=60)  # while B's probe is in flight, A fails fast
        await b.failed("DS")  # the probe failed: open for another cool-down, on both
        with pytest.raises(live.LiveProviderUnavailable):
            await a.admit("DS", probe_seconds=60)
        await asyncio.sleep(0.5)
        await a.admit("DS", probe_seconds=60)
        await a.succeeded("DS")  # the probe succeeded: closed on both
        assert not await b.is_open("DS")
        await b.admit("DS", probe_seconds=60)
        # A probe given up by its replica (its client gone) is let go at once, not after its lease.
        await a.failed("DS")
        await asyncio.sleep(0.5)
        await a.admit("DS", probe_seconds=60)
        with pytest.raises(live.LiveProviderUnavailable):
            await b.admit("DS", probe_seconds=60)
        await a.abandoned("DS")
        await b.admit("DS", probe_seconds=60)

    run_coroutine(scenario())


def test_the_cap_counts_calls_in_flight_on_both_replicas(client, factory, app, provider, settings, prefix):
    world = World(client, factory, app, provider)
    url = f"/api/v1/exchange/PSB-RESIDENTS/live/{INSIDE}"
    replica_a, replica_b = _replicas(settings, prefix, live_calls_per_grant=1)
    with replica_a, replica_b, ThreadPoolExecutor(1) as pool:
        provider.mode = "slow"
        first = pool.submit(replica_a.get, url, headers=world.service)
        assert provider.entered.wait(30)
        _problem(replica_b.get(url, headers=world.service), 429, "live-busy")  # the one slot is held on replica A
        provider.release.set()
        assert first.result(timeout=60).status_code == 200
        assert replica_b.get(url, headers=world.service).status_code == 200  # given back
        assert replica_a.get(url, headers=world.service).status_code == 200


def test_a_slot_held_by_a_replica_that_died_is_freed_by_its_lease(client, factory, app, provider, settings, prefix):
    world = World(client, factory, app, provider)
    grant = world.application["grant_id"]
    # A replica takes the grant's one slot for a 2 s lease and dies without giving it back.
    died = subprocess.run([sys.executable, "-c", f"""
import asyncio, os
from exchange.live import service as live
slots = live.RedisCallSlots(live._Redis({REDIS_URL!r}), prefix={prefix!r}, per_grant=1)
asyncio.run(slots.take({grant}, lease_seconds=2))
os._exit(9)
"""], capture_output=True, text=True, timeout=120)
    assert died.returncode == 9, died.stderr
    held = redis.Redis.from_url(REDIS_URL)
    assert held.zcard(f"{prefix}live:slots:{grant}") == 1  # its lease is in Redis, with no one left to remove it
    url = f"/api/v1/exchange/PSB-RESIDENTS/live/{INSIDE}"
    replica_a, replica_b = _replicas(settings, prefix, live_calls_per_grant=1)
    with replica_a, replica_b:
        deadline = time.monotonic() + 60
        while (answer := replica_a.get(url, headers=world.service)).status_code == 429:
            assert time.monotonic() < deadline, "the dead replica's slot was never freed"
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        assert replica_b.get(url, headers=world.service).status_code == 200
    assert held.zcard(f"{prefix}live:slots:{grant}") == 0
    held.close()
