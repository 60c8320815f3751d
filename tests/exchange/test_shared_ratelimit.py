"""Rate limits shared by replicas through the real Redis (127.0.0.1:6379): one budget, however many app instances."""

from __future__ import annotations

import uuid

import pytest
import redis
from starlette.testclient import TestClient

from exchange.ratelimit import RateLimiter, RedisRateLimiter, limiter_for
from govshare.app import create_app
from tests.conftest import ISSUER
from tests.exchange.test_interfaces import Exchange

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, removed afterwards; fails (never skips) when Redis does not answer."""
    prefix = f"govshare-test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_two_replicas_limiters_draw_on_one_bucket(prefix):
    # One token per 1,000 s after a burst of 4: no refill can land during the test, however slow the machine.
    replica_a = RedisRateLimiter(REDIS_URL, rate=0.001, burst=4, prefix=prefix)
    replica_b = RedisRateLimiter(REDIS_URL, rate=0.001, burst=4, prefix=prefix)
    assert [replica_a.take("client-1"), replica_b.take("client-1"), replica_a.take("client-1"), replica_b.take("client-1")] == [0.0] * 4
    assert 900 < replica_a.take("client-1") <= 1000 and replica_b.take("client-1") > 900  # the shared burst is spent
    assert replica_b.take("client-2") == 0.0  # another client has its own bucket
    # Per-process limiters, by contrast, would each have granted the whole burst.
    local_a, local_b = RateLimiter(rate=0.001, burst=4), RateLimiter(rate=0.001, burst=4)
    assert [local_a.take("c") for _ in range(4)] + [local_b.take("c") for _ in range(4)] == [0.0] * 8


def test_without_redis_the_limit_is_per_process(settings):
    assert isinstance(limiter_for(settings), RateLimiter)


def test_two_app_instances_share_one_client_budget(client, factory, tmp_path, settings, prefix):
    exchange = Exchange(client, factory, tmp_path)
    shared = settings.model_copy(update={"redis_url": REDIS_URL, "redis_key_prefix": prefix,
                                         "rate_limit_per_second": 0.001, "rate_limit_burst": 3})
    key = exchange.rows[0]["citizen_id"]
    url = f"/api/v1/exchange/PSB-HOUSEHOLD/records/{key}"
    with TestClient(create_app(shared), base_url=ISSUER) as replica_a, TestClient(create_app(shared), base_url=ISSUER) as replica_b:
        answers = [replica.get(url, headers=exchange.service).status_code for replica in (replica_a, replica_b, replica_a)]
        assert answers == [200, 200, 200]
        limited = replica_b.get(url, headers=exchange.service)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 900
        assert replica_a.get(url, headers=exchange.service).status_code == 429
