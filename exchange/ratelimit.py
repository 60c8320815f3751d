"""Per-client rate limits: a token bucket per client, in this process or shared by replicas through Redis."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

from exchange.errors import ProtectionUnavailable


class Limiter(Protocol):
    def take(self, client_id: str) -> float: ...


class RateLimiter:
    """Allows ``rate`` calls a second per client on average, with bursts up to ``burst`` (this process only)."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client_id: str) -> float:
        """0 if the call may proceed, else the seconds to wait before retrying."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[client_id] = (tokens - 1, now)
                return 0.0
            self._buckets[client_id] = (tokens, now)
            return (1 - tokens) / self.rate


# The same bucket, kept in Redis and updated by one script: one round trip per call, atomic
# across replicas, timed by the Redis server's clock (replicas' clocks may disagree).
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter:
    """``RateLimiter``'s bucket shared by every replica through Redis (``GOVSHARE_REDIS_URL``)."""

    def __init__(self, url: str, *, rate: float, burst: int, prefix: str = "govshare:ratelimit:") -> None:
        import redis  # the optional extra "redis": only a shared deployment needs it

        self.rate, self.burst, self.prefix = rate, burst, prefix
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._take = self.client.register_script(_TAKE)

    def take(self, client_id: str) -> float:
        import redis.exceptions

        try:
            return float(self._take(keys=[self.prefix + client_id], args=[self.rate, self.burst]))
        except (redis.exceptions.RedisError, OSError) as error:
            # Refused, not served unlimited: a 503 problem, not an unhandled 500.
            raise ProtectionUnavailable(f"the rate limits shared by replicas are kept in Redis (GOVSHARE_REDIS_URL), which "
                                        f"cannot be reached ({type(error).__name__}); the call was not served") from error


def limiter_for(settings) -> Limiter:
    """The shared limiter when Redis is configured, else this process's own."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url, rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst,
                                prefix=settings.redis_key_prefix)
    return RateLimiter(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
