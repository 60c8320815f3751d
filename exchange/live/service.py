"""Live services: a grant's call passed through to the provider's own API, answered within the grant.

The provider's JSON answer is loaded into an Arrow table typed by the dataset's items and
read through the grant's one compiled scope (``keyed_store.lookup``: its columns, row
filter and masks), exactly as a lookup in a snapshot is, so there is no second
implementation of filters or masks. Protection both ways: outbound address checks
(``govshare.outbound``), a time limit and a size limit on the answer, a circuit breaker per
dataset and a cap on the calls in flight per grant. The breaker and the cap live in this
process, or in Redis when ``GOVSHARE_REDIS_URL`` is set, so replicas share them.

The provider is called on the event loop with one pooled keep-alive session
(``govshare.outbound.AsyncSession``, aiohttp) per dataset and credentials (its TLS context
built once: the dataset's CA, a client certificate for mutual TLS), made again when either
changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import duckdb
import pyarrow as pa
from anyio import to_thread

from approvals import masks, rowfilter
from exchange.intake import service as intake
from exchange.stores import keyed_store, lookup_store
from exchange.errors import (LiveAnswerTooLarge, LiveBusy, LiveProtectionUnavailable, LiveProviderFailed, LiveProviderTimeout,
                             LiveProviderUnavailable)
from exchange.service import Scope
from govshare import outbound
from govshare.db import LoopSemaphores, quote_identifier, utcnow

DEFAULT_TIMEOUT_SECONDS = 5.0
LEASE_MARGIN_SECONDS = 5.0  # a slot's or a probe's lease outlasts its call's timeout by this much
RETIRE_SECONDS = 120.0  # a client replaced (credentials changed) is closed this long after, when its calls are over

log = logging.getLogger(__name__)


def _unavailable(dataset: str, failures: int, wait: float) -> LiveProviderUnavailable:
    return LiveProviderUnavailable(
        f"the provider of {dataset} failed {failures} times in a row; calls fail fast until a probe succeeds",
        headers={"Retry-After": str(max(1, int(wait + 0.999)))})


def protection_unavailable(error: BaseException | None) -> LiveProtectionUnavailable:
    """503 ``live-protection-unavailable``: the store the replicas share their guards in cannot be reached."""
    cause = f" ({type(error).__name__})" if error is not None else ""
    return LiveProtectionUnavailable(
        "live services' rate limits, circuit breakers and calls in flight are shared by replicas in Redis (GOVSHARE_REDIS_URL), "
        f"which cannot be reached{cause}; the provider was not called")


def _busy(grant_id: int, per_grant: int) -> LiveBusy:
    return LiveBusy(f"grant {grant_id} already has {per_grant} live calls in flight; try again shortly", headers={"Retry-After": "1"})


class CircuitBreaker:
    """Per dataset: after ``failures`` consecutive failures calls fail fast for ``cooldown`` seconds, then one call probes.

    A probe that succeeds closes the circuit; one that fails opens it for another cool-down.
    ``clock`` is injectable so tests drive the cool-down without waiting. This process only.
    """

    def __init__(self, *, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self._lock = threading.Lock()
        self._failed: dict[str, int] = {}
        self._opened_at: dict[str, float] = {}
        self._probing: set[str] = set()

    async def admit(self, dataset: str, *, probe_seconds: float) -> None:
        """Return when a call to ``dataset``'s provider may go; ``LiveProviderUnavailable`` (503, Retry-After) when not."""
        with self._lock:
            opened = self._opened_at.get(dataset)
            if opened is None:
                return
            wait = opened + self.cooldown - self.clock()
            if wait <= 0 and dataset not in self._probing:
                self._probing.add(dataset)  # this call is the probe; the others keep failing fast until it ends
                return
        raise _unavailable(dataset, self._failed.get(dataset, 0), wait)

    async def succeeded(self, dataset: str) -> None:
        with self._lock:
            self._failed.pop(dataset, None)
            self._opened_at.pop(dataset, None)
            self._probing.discard(dataset)

    async def failed(self, dataset: str) -> None:
        with self._lock:
            self._failed[dataset] = count = self._failed.get(dataset, 0) + 1
            if dataset in self._probing or count >= self.failures:
                self._opened_at[dataset] = self.clock()
            self._probing.discard(dataset)

    async def abandoned(self, dataset: str) -> None:
        """A call given up before its provider's answer was judged: a probe it was is no longer in flight."""
        with self._lock:
            self._probing.discard(dataset)

    async def is_open(self, dataset: str) -> bool:
        with self._lock:
            return dataset in self._opened_at


class CallSlots:
    """At most ``per_grant`` live calls in flight per grant; one more answers 429 at once rather than queue. This process only."""

    def __init__(self, per_grant: int) -> None:
        self.per_grant = per_grant
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}

    async def take(self, grant_id: int, *, lease_seconds: float) -> str:
        with self._lock:
            if self._in_flight.get(grant_id, 0) >= self.per_grant:
                raise _busy(grant_id, self.per_grant)
            self._in_flight[grant_id] = self._in_flight.get(grant_id, 0) + 1
        return ""

    async def give_back(self, grant_id: int, lease: str) -> None:
        with self._lock:
            left = self._in_flight[grant_id] - 1
            if left:
                self._in_flight[grant_id] = left
            else:
                del self._in_flight[grant_id]


# The same breaker and slots kept in Redis, each step one script (atomic across replicas, timed by
# the Redis server's clock). A probe holds an expiring lease, and so does each call's slot: a
# replica that dies mid-call leaves nothing held past the lease.
_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""
_ADMIT = _NOW_MS + """
local opened = redis.call('HGET', KEYS[1], 'opened')
if not opened then return {1, 0, 0} end
local failed = tonumber(redis.call('HGET', KEYS[1], 'failed') or '0')
local wait = tonumber(opened) + tonumber(ARGV[1]) - now
if wait <= 0 then
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {1, 0, failed} end
  wait = redis.call('PTTL', KEYS[2])
  if wait < 0 then wait = 1000 end
end
return {0, wait, failed}
"""
_FAILED = _NOW_MS + """
local failed = redis.call('HINCRBY', KEYS[1], 'failed', 1)
local probing = redis.call('DEL', KEYS[2])
if probing == 1 or failed >= tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'opened', now) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return failed
"""
_TAKE = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class _Redis:
    """One ``redis.asyncio`` client per event loop (its connections belong to the loop that made them)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._held: tuple[asyncio.AbstractEventLoop, Any, dict[str, Any]] | None = None

    def script(self, text: str):
        loop = asyncio.get_running_loop()
        if self._held is None or self._held[0] is not loop:
            import redis.asyncio  # the optional extra "redis": only a shared deployment needs it

            self._held = (loop, redis.asyncio.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2), {})
        _, client, scripts = self._held
        if text not in scripts:
            scripts[text] = client.register_script(text)
        return scripts[text]

    def client(self):
        self.script(_NOW_MS)
        return self._held[1]

    async def guarded(self, step: Callable[[], Any]) -> Any:
        """``await step()``; Redis unreachable (refused, timed out, any Redis error) is ``LiveProtectionUnavailable``
        (503): a call the shared breaker or cap cannot admit is refused, and its provider is not called unguarded."""
        import redis.exceptions

        try:
            return await step()
        except (redis.exceptions.RedisError, OSError) as error:
            raise protection_unavailable(error) from error

    async def after_call(self, step: Callable[[], Any], what: str) -> None:
        """A step after the provider was called (a result noted, a slot given back): with Redis unreachable, logged and
        let go, so the caller keeps the provider's answer or error; what it held expires with its lease."""
        try:
            await self.guarded(step)
        except LiveProtectionUnavailable as problem:
            log.warning("live services: could not %s in Redis: %s", what, problem)


class RedisCircuitBreaker:
    """``CircuitBreaker`` shared by every replica through Redis: opened by failures on one, open on all."""

    def __init__(self, redis: _Redis, *, prefix: str, failures: int, cooldown: float) -> None:
        self.redis, self.prefix, self.failures, self.cooldown = redis, prefix, failures, cooldown

    def _keys(self, dataset: str) -> list[str]:
        return [f"{self.prefix}live:breaker:{dataset}", f"{self.prefix}live:probe:{dataset}"]

    async def admit(self, dataset: str, *, probe_seconds: float) -> None:
        allowed, wait_ms, failures = await self.redis.guarded(lambda: self.redis.script(_ADMIT)(
            keys=self._keys(dataset), args=[int(self.cooldown * 1000), int(probe_seconds * 1000)]))
        if not allowed:
            raise _unavailable(dataset, int(failures), int(wait_ms) / 1000)

    async def succeeded(self, dataset: str) -> None:
        await self.redis.after_call(lambda: self.redis.client().delete(*self._keys(dataset)), f"close the breaker of {dataset}")

    async def failed(self, dataset: str) -> None:
        # The count is kept a while past the cool-down: consecutive failures are counted, not forgotten by a pause.
        await self.redis.after_call(lambda: self.redis.script(_FAILED)(
            keys=self._keys(dataset), args=[self.failures, int(max(self.cooldown * 10, 3600) * 1000)]),
            f"count a failure of {dataset}'s provider")

    async def abandoned(self, dataset: str) -> None:
        await self.redis.after_call(lambda: self.redis.client().delete(self._keys(dataset)[1]), f"let go of {dataset}'s probe")

    async def is_open(self, dataset: str) -> bool:
        return bool(await self.redis.guarded(lambda: self.redis.client().hexists(self._keys(dataset)[0], "opened")))


class RedisCallSlots:
    """``CallSlots`` shared by every replica: a grant's calls in flight on all of them, each holding an expiring lease."""

    def __init__(self, redis: _Redis, *, prefix: str, per_grant: int) -> None:
        self.redis, self.prefix, self.per_grant = redis, prefix, per_grant

    async def take(self, grant_id: int, *, lease_seconds: float) -> str:
        lease = uuid.uuid4().hex
        taken = await self.redis.guarded(lambda: self.redis.script(_TAKE)(
            keys=[f"{self.prefix}live:slots:{grant_id}"], args=[self.per_grant, int(lease_seconds * 1000), lease]))
        if not taken:
            raise _busy(grant_id, self.per_grant)
        return lease

    async def give_back(self, grant_id: int, lease: str) -> None:
        await self.redis.after_call(lambda: self.redis.client().zrem(f"{self.prefix}live:slots:{grant_id}", lease),
                                    f"give back a call slot of grant {grant_id}")


@dataclass
class Protection:
    """One server's live-call guards and connections (``app.state.live``)."""

    breaker: CircuitBreaker | RedisCircuitBreaker
    slots: CallSlots | RedisCallSlots
    max_answer_bytes: int
    allowlist: list[str]  # GOVSHARE_OUTBOUND_ALLOWLIST
    tokens: dict[tuple[int, str], tuple[str, float]] = field(default_factory=dict)  # OAuth2 access token, expiry (monotonic)
    # dataset id -> (what the client was made for, the client): one pooled keep-alive client per dataset and credentials
    _clients: dict[int, tuple[tuple, outbound.AsyncSession]] = field(default_factory=dict, repr=False)
    _secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def secret(self, encrypted: str | None, keystore) -> str | None:
        """The stored secret in the clear, decrypted once per value stored (a change stores a new value)."""
        if encrypted is None:
            return None
        clear = self._secrets.get(encrypted)
        if clear is None:
            if len(self._secrets) >= 1024:
                self._secrets.clear()
            clear = self._secrets[encrypted] = keystore.decrypt(encrypted)
        return clear

    def client_for(self, provider: Provider) -> outbound.AsyncSession:
        """The dataset's client, made again (the old one closed later) when its credentials, CA or the allowlist change.

        Called on the event loop only, so no lock: the check and the swap happen without an await between them.
        """
        loop = asyncio.get_running_loop()
        made_for = (provider.connection_key, tuple(self.allowlist), loop)
        held = self._clients.get(provider.dataset_id)
        if held is not None and held[0] == made_for:
            return held[1]
        # No redirects followed and no cookies kept: one call's session with the provider is not carried into another's.
        client = outbound.async_session(allowlist=self.allowlist, ssl_context=provider.tls_context())
        self._clients[provider.dataset_id] = (made_for, client)
        if held is not None and held[0][2] is loop and not loop.is_closed():
            old = held[1]
            loop.call_later(RETIRE_SECONDS, lambda: loop.create_task(old.close()))
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        loop = asyncio.get_running_loop()
        for (_, _, made_on), client in clients:
            if made_on is loop:
                await client.close()

    @classmethod
    def for_settings(cls, settings, *, clock: Callable[[], float] = time.monotonic) -> Protection:
        if settings.redis_url:
            redis = _Redis(settings.redis_url)
            breaker = RedisCircuitBreaker(redis, prefix=settings.redis_key_prefix, failures=settings.live_breaker_failures,
                                          cooldown=settings.live_breaker_cooldown_seconds)
            slots = RedisCallSlots(redis, prefix=settings.redis_key_prefix, per_grant=settings.live_calls_per_grant)
        else:
            breaker = CircuitBreaker(failures=settings.live_breaker_failures, cooldown=settings.live_breaker_cooldown_seconds,
                                     clock=clock)
            slots = CallSlots(settings.live_calls_per_grant)
        return cls(breaker, slots, settings.live_max_answer_bytes, list(settings.outbound_allowlist))


@dataclass
class Message:
    """One exchange with the provider: what the ledger keeps of it."""

    request_sha256: str
    requested_at: datetime
    answer_sha256: str | None = None
    answered_at: datetime | None = None


@dataclass(frozen=True)
class Provider:
    """Where and how to call a live dataset's provider (read in the call's transaction, used after it)."""

    dataset_id: int
    dataset: str
    url: str
    timeout_seconds: float
    auth: dict[str, Any] | None
    secret: str | None
    ca_certificate: str | None = None

    @classmethod
    def of(cls, scope: Scope, secret: str | None) -> Provider:
        live = scope.dataset.document["live"]
        return cls(scope.dataset.id, scope.dataset.code, live["url"], float(live.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
                   live.get("auth"), secret, live.get("ca_certificate"))

    @property
    def connection_key(self) -> str:
        """What the dataset's client depends on: its credentials and CA (a digest: the secret is not kept in the key)."""
        return hashlib.sha256(json.dumps([self.auth, self.secret, self.ca_certificate], sort_keys=True).encode()).hexdigest()

    def tls_context(self):
        """The TLS context of the dataset's client: its CA, and its client certificate when that is its credentials."""
        certificate = {}
        if self.auth and self.auth["type"] == "client_certificate" and self.secret:
            certificate = json.loads(self.secret)
        return outbound.tls_context(ca_certificate=self.ca_certificate, **certificate)


# Work handed to threads runs at most this many at once; the other calls wait on the event loop,
# where waiting costs nothing. More threads than cores each want the GIL, and the event loop
# then waits for it too (the same choice as the lookups', exchange/interfaces/api.py).
THREADS_AT_ONCE = max(2, os.cpu_count() or 2)
_thread_slots = LoopSemaphores(THREADS_AT_ONCE)


async def in_thread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function`` in a worker thread, at most ``THREADS_AT_ONCE`` at a time."""
    async with _thread_slots.current():
        return await to_thread.run_sync(lambda: function(*args, **kwargs))


async def read_in_scope(body: bytes, *, scope: Scope, key_value: Any) -> list[dict[str, Any]]:
    """``records_in_scope`` on the event loop (SQLite over one answer: well under a thread hop's cost), or in a
    worker thread where the grant is read through DuckDB (which works without the GIL there)."""
    if _hashes_duckdb_text(scope):
        return await in_thread(records_in_scope, body, scope=scope, key_value=key_value)
    return records_in_scope(body, scope=scope, key_value=key_value)


def provider_url(template: str, key: str) -> str:
    """The provider's URL for ``key``: the key percent-encoded as one path segment (no ``/``, ``?`` or ``#`` of its own).

    A key of dots alone is encoded too: ``..`` would otherwise be resolved as a dot-segment
    and call another path of the provider's API.
    """
    segment = quote(key, safe="")
    if set(key) <= {"."}:
        segment = segment.replace(".", "%2E")
    return template.replace("{key}", segment)


async def _auth_headers(client: outbound.AsyncSession, provider: Provider, protection: Protection) -> dict[str, str]:
    auth = provider.auth
    if not auth or auth["type"] == "client_certificate":  # a client certificate is presented in the TLS handshake
        return {}
    if auth["type"] == "header":
        return {auth["name"]: provider.secret or ""}
    held = (provider.dataset_id, provider.connection_key)
    cached = protection.tokens.get(held)
    if cached is not None and cached[1] > time.monotonic():
        return {"Authorization": f"Bearer {cached[0]}"}
    form = {"grant_type": "client_credentials"}
    if auth.get("scope"):
        form["scope"] = auth["scope"]
    async with client.request("POST", auth["token_url"], data=form, auth=aiohttp.BasicAuth(auth["client_id"], provider.secret or ""),
                              headers={"Accept": "application/json", "Accept-Encoding": "identity"}) as response:
        raw = await _read_bounded(response, limit=protection.max_answer_bytes, dataset=provider.dataset)
    try:
        body = json.loads(raw)
        token, lifetime = body["access_token"], float(body.get("expires_in", 60))
    except (ValueError, KeyError, TypeError):
        raise LiveProviderFailed(f"the provider's token endpoint for {provider.dataset} answered {response.status} "
                                 "without an access token") from None
    protection.tokens[held] = (token, time.monotonic() + max(0.0, lifetime - 30))
    return {"Authorization": f"Bearer {token}"}


async def _read_bounded(response: aiohttp.ClientResponse, *, limit: int, dataset: str) -> bytes:
    """The answer's body as sent, refused (502) past ``limit`` bytes before more is read."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise LiveAnswerTooLarge(f"the provider of {dataset} announced {declared} bytes; answers are limited to {limit}")
    if declared is not None:  # announced within the limit: read whole (aiohttp stops at the length announced)
        return await response.read()
    parts, size = [], 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise LiveAnswerTooLarge(f"the provider of {dataset} sent more than {limit} bytes; answers are limited to {limit}")
        parts.append(chunk)
    return b"".join(parts)


async def fetch_records(provider: Provider, *, scope: Scope, url: str, key_value: Any, protection: Protection,
                        message: Message) -> list[dict[str, Any]]:
    """Call the provider at ``url`` (``provider_url``: the key's) and read its answer through the grant's scope (``records_in_scope``).

    The errors a client gets: 502 (provider error, malformed answer, refused address, too
    large, TLS refused), 504 (timeout), 503 (circuit open). Each of those but the last counts as a failure
    of the dataset's circuit breaker. ``message`` gets the answer's digest and time as they happen.
    """
    await protection.breaker.admit(provider.dataset, probe_seconds=provider.timeout_seconds + LEASE_MARGIN_SECONDS)
    try:
        status, body = await _call(provider, url=url, protection=protection, message=message)
        records = [] if status == 404 else await read_in_scope(body, scope=scope, key_value=key_value)
    except asyncio.CancelledError:
        # Given up by the server (its client gone, a shutdown): says nothing of the provider, but a probe is let go.
        await asyncio.shield(protection.breaker.abandoned(provider.dataset))
        raise
    except BaseException:
        await protection.breaker.failed(provider.dataset)
        raise
    await protection.breaker.succeeded(provider.dataset)
    return records


async def _call(provider: Provider, *, url: str, protection: Protection, message: Message) -> tuple[int, bytes]:
    """The provider's status and body for ``key`` (2xx or 404), or the error a client gets."""
    try:
        client = protection.client_for(provider)
        # One limit for the whole exchange (token, connection, answer), however the provider dribbles it.
        async with asyncio.timeout(provider.timeout_seconds):
            # Identity encoding: the answer is read (and its size limited) as sent, never inflated here.
            headers = {"Accept": "application/json", "Accept-Encoding": "identity",
                       **await _auth_headers(client, provider, protection)}
            message.requested_at = utcnow()
            async with client.request("GET", url, headers=headers) as response:
                body = await _read_bounded(response, limit=protection.max_answer_bytes, dataset=provider.dataset)
        message.answer_sha256, message.answered_at = hashlib.sha256(body).hexdigest(), utcnow()
    except outbound.OutboundRefused as refusal:
        raise LiveProviderFailed(f"the provider of {provider.dataset} may not be called: {refusal}") from None
    except TimeoutError:  # asyncio.timeout's, and aiohttp's socket timeouts (subclasses of TimeoutError)
        raise LiveProviderTimeout(f"the provider of {provider.dataset} did not answer within {provider.timeout_seconds:g} s") from None
    except aiohttp.ClientError as error:
        raise LiveProviderFailed(f"the provider of {provider.dataset} could not be reached ({type(error).__name__}: {error})") from None
    except ValueError as problem:  # credentials stored before they were checked, no longer usable
        raise LiveProviderFailed(f"the provider of {provider.dataset} cannot be called with its credentials: {problem}") from None
    if response.status == 404 or 200 <= response.status < 300:
        return response.status, body
    raise LiveProviderFailed(f"the provider of {provider.dataset} answered {response.status}")


def request_digest(url: str) -> str:
    """SHA-256 of the request sent to the provider: its method and URL (credentials are not part of the record)."""
    return hashlib.sha256(f"GET {url}".encode()).hexdigest()


def records_in_scope(body: bytes, *, scope: Scope, key_value: Any) -> list[dict[str, Any]]:
    """The provider's answer (one record, a list, or ``{"records": [...]}``) through the grant's scope: only the
    key's rows within the row filter, granted items only, masked as granted. 502 when it is not the dataset's items."""
    dataset = scope.dataset.code
    try:
        answer = json.loads(body)
    except ValueError:
        raise LiveProviderFailed(f"the provider of {dataset} answered with malformed JSON") from None
    if isinstance(answer, dict) and isinstance(answer.get("records"), list):
        answer = answer["records"]
    records = [answer] if isinstance(answer, dict) else answer
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise LiveProviderFailed(f"the provider of {dataset} answered with JSON that is not a record or a list of records")
    if _hashes_duckdb_text(scope):
        try:
            table = intake.records_table(records, items=scope.items)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError) as problem:
            raise LiveProviderFailed(f"the provider of {dataset} answered with values not of the dataset's item types: "
                                     f"{problem}") from None
        return _in_scope_duckdb(table, scope=scope, key_value=key_value)
    return _in_scope_sqlite(_sqlite_rows(records, scope=scope), scope=scope, key_value=key_value)


def _sqlite_rows(records: list[dict[str, Any]], *, scope: Scope) -> list[tuple]:
    """The answer's records as rows of ``_sqlite``'s table: the row's position, then each item's value read as the item's
    type by the row filter's own rules (``rowfilter.convert_value``) and kept as a lookup store keeps it (``bind_value``:
    dates as ISO text, datetimes as UTC text, booleans 0/1). 502 naming the record and item of a value that is not."""
    items = [(item["name"], item["type"]) for item in scope.items]
    rows = []
    for position, record in enumerate(records):
        row: list[Any] = [position]
        for name, kind in items:
            value = record.get(name)
            if value is not None:
                try:
                    value = rowfilter.bind_value(rowfilter.convert_value(value, kind, f"record {position + 1}, item {name}"), "sqlite")
                except rowfilter.InvalidRowFilter as problem:
                    raise LiveProviderFailed(f"the provider of {scope.dataset.code} answered with values not of the dataset's "
                                             f"item types: {problem}") from None
            row.append(value)
        rows.append(tuple(row))
    return rows


def _hashes_duckdb_text(scope: Scope) -> bool:
    """Whether a keyed hash of the grant hashes a number or a datetime, whose text is DuckDB's to define
    (``masks.TEXT_KEPT``): those grants are read through DuckDB, the others through SQLite (cheaper by far)."""
    types = {item["name"]: item["type"] for item in scope.items}
    return any(masks._rule(mask)[0] == "keyed_hash" and types.get(column) in masks.TEXT_KEPT
               for column, mask in (scope.grant.masks or {}).items())


def _in_scope_duckdb(table: pa.Table, *, scope: Scope, key_value: Any) -> list[dict[str, Any]]:
    cursor = _cursor()
    try:
        # Registered on this thread's cursor alone: calls side by side in other threads each see their own answer.
        cursor.register("records", table)
        return keyed_store.lookup_in(cursor, key=scope.lookup_key, value=key_value, projection=scope.projection,
                                     scope=scope.row_filter)
    finally:
        cursor.unregister("records")


def _in_scope_sqlite(rows: list[tuple], *, scope: Scope, key_value: Any) -> list[dict[str, Any]]:
    """The answer's rows (``_sqlite_rows``) through the scope compiled for SQLite, as a lookup store is read, in an
    in-memory table of this thread's."""
    items = scope.items
    connection = _sqlite(items)
    row_filter, projection = scope.compiled("sqlite")
    connection.execute("DELETE FROM records")
    try:
        connection.executemany(f"INSERT INTO records VALUES ({', '.join('?' for _ in range(len(items) + 1))})", rows)
        found = connection.execute(
            f"SELECT {projection.sql} FROM records WHERE {quote_identifier(scope.lookup_key)} = ? AND ({row_filter.sql}) "
            f"ORDER BY {keyed_store.ROW_COLUMN} LIMIT 1000",
            [*projection.params, rowfilter.bind_value(key_value, "sqlite"), *row_filter.params]).fetchall()
        names = list(scope.columns)
        decode = lookup_store.decoders(names, scope.masked, items)
        return [dict(zip(names, (value if convert is None else convert(value) for value, convert in zip(row, decode, strict=True)),
                         strict=True)) for row in found]
    finally:
        connection.execute("DELETE FROM records")


def _sqlite(items: list[dict[str, Any]]) -> sqlite3.Connection:
    """This thread's in-memory SQLite with a ``records`` table for ``items`` (one per dataset's item list)."""
    connections: dict[tuple, sqlite3.Connection] | None = getattr(_thread, "sqlite", None)
    if connections is None:
        connections = _thread.sqlite = {}
    signature = tuple((item["name"], item["type"]) for item in items)
    connection = connections.get(signature)
    if connection is None:
        if len(connections) >= 64:
            for old in connections.values():
                old.close()
            connections.clear()
        connection = sqlite3.connect(":memory:", isolation_level=None)
        connection.create_function(masks.SQLITE_SHA256, 1, masks.sqlite_sha256, deterministic=True)
        definitions = [f"{keyed_store.ROW_COLUMN} INTEGER NOT NULL"] + [
            f"{quote_identifier(item['name'])} {lookup_store.SQLITE_TYPES[item['type']]}" for item in items]
        connection.execute(f"CREATE TABLE records ({', '.join(definitions)})")
        connections[signature] = connection
    return connection


_engine_lock = threading.Lock()
_engine_connection: duckdb.DuckDBPyConnection | None = None
_thread = threading.local()


def _cursor() -> duckdb.DuckDBPyConnection:
    """This thread's cursor on the process's DuckDB (a cursor made per call cost as much as the query)."""
    cursor = getattr(_thread, "cursor", None)
    if cursor is None:
        cursor = _thread.cursor = _engine().cursor()
    return cursor


def _engine() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB, made once: a new database per call cost more than the call's other work."""
    global _engine_connection
    with _engine_lock:
        if _engine_connection is None:
            _engine_connection = duckdb.connect(config=keyed_store.READ_CONFIG)
        return _engine_connection
