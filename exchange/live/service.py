"""Live services: a grant's call passed through to the provider's own API, answered within the grant.

The provider's JSON answer is loaded into an Arrow table typed by the dataset's items and
read through the grant's one compiled scope (``keyed_store.lookup``: its columns, row
filter and masks), exactly as a lookup in a snapshot is, so there is no second
implementation of filters or masks. Protection both ways: outbound address checks
(``govshare.outbound``), a time limit and a size limit on the answer, a circuit breaker per
dataset and a cap on the calls in flight per grant.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import pyarrow as pa

from exchange.intake import service as intake
from exchange.stores import keyed_store
from exchange.errors import LiveAnswerTooLarge, LiveBusy, LiveProviderFailed, LiveProviderTimeout, LiveProviderUnavailable
from exchange.service import Scope
from govshare import outbound
from govshare.db import utcnow

DEFAULT_TIMEOUT_SECONDS = 5.0


class CircuitBreaker:
    """Per dataset: after ``failures`` consecutive failures calls fail fast for ``cooldown`` seconds, then one call probes.

    A probe that succeeds closes the circuit; one that fails opens it for another cool-down.
    ``clock`` is injectable so tests drive the cool-down without waiting.
    """

    def __init__(self, *, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self._lock = threading.Lock()
        self._failed: dict[str, int] = {}
        self._opened_at: dict[str, float] = {}
        self._probing: set[str] = set()

    def admit(self, dataset: str) -> None:
        """Return when a call to ``dataset``'s provider may go; ``LiveProviderUnavailable`` (503, Retry-After) when not."""
        with self._lock:
            opened = self._opened_at.get(dataset)
            if opened is None:
                return
            wait = opened + self.cooldown - self.clock()
            if wait <= 0 and dataset not in self._probing:
                self._probing.add(dataset)  # this call is the probe; the others keep failing fast until it ends
                return
        raise LiveProviderUnavailable(
            f"the provider of {dataset} failed {self._failed.get(dataset, 0)} times in a row; calls fail fast until a probe succeeds",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))})

    def succeeded(self, dataset: str) -> None:
        with self._lock:
            self._failed.pop(dataset, None)
            self._opened_at.pop(dataset, None)
            self._probing.discard(dataset)

    def failed(self, dataset: str) -> None:
        with self._lock:
            self._failed[dataset] = count = self._failed.get(dataset, 0) + 1
            if dataset in self._probing or count >= self.failures:
                self._opened_at[dataset] = self.clock()
            self._probing.discard(dataset)

    def is_open(self, dataset: str) -> bool:
        with self._lock:
            return dataset in self._opened_at


class CallSlots:
    """At most ``per_grant`` live calls in flight per grant; one more answers 429 at once rather than queue."""

    def __init__(self, per_grant: int) -> None:
        self.per_grant = per_grant
        self._lock = threading.Lock()
        self._in_flight: dict[int, int] = {}

    def take(self, grant_id: int) -> None:
        with self._lock:
            if self._in_flight.get(grant_id, 0) >= self.per_grant:
                raise LiveBusy(f"grant {grant_id} already has {self.per_grant} live calls in flight; try again shortly",
                               headers={"Retry-After": "1"})
            self._in_flight[grant_id] = self._in_flight.get(grant_id, 0) + 1

    def give_back(self, grant_id: int) -> None:
        with self._lock:
            left = self._in_flight[grant_id] - 1
            if left:
                self._in_flight[grant_id] = left
            else:
                del self._in_flight[grant_id]


@dataclass
class Protection:
    """One server's live-call guards: the breakers and the slots (``app.state.live``)."""

    breaker: CircuitBreaker
    slots: CallSlots
    max_answer_bytes: int
    allowlist: list[str]  # GOVSHARE_OUTBOUND_ALLOWLIST
    tokens: dict[int, tuple[str, float]] = field(default_factory=dict)  # dataset id -> OAuth2 access token, expiry (monotonic)
    _client: httpx.Client | None = field(default=None, repr=False)
    _client_allowlist: list[str] | None = field(default=None, repr=False)
    _client_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self) -> httpx.Client:
        """One guarded client per server (its connections to the providers kept alive and shared between calls),
        made again when the allowlist changes."""
        with self._client_lock:
            if self._client is None or self._client_allowlist != self.allowlist:
                if self._client is not None:
                    self._client.close()
                self._client = outbound.client(allowlist=self.allowlist, follow_redirects=False,
                                               limits=httpx.Limits(max_connections=256, max_keepalive_connections=64))
                self._client_allowlist = self.allowlist
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @classmethod
    def for_settings(cls, settings, *, clock: Callable[[], float] = time.monotonic) -> Protection:
        return cls(CircuitBreaker(failures=settings.live_breaker_failures, cooldown=settings.live_breaker_cooldown_seconds,
                                  clock=clock),
                   CallSlots(settings.live_calls_per_grant), settings.live_max_answer_bytes, list(settings.outbound_allowlist))


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

    @classmethod
    def of(cls, scope: Scope, secret: str | None) -> Provider:
        live = scope.dataset.document["live"]
        return cls(scope.dataset.id, scope.dataset.code, live["url"], float(live.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
                   live.get("auth"), secret)


def provider_url(template: str, key: str) -> str:
    """The provider's URL for ``key``: the key percent-encoded as one path segment (no ``/``, ``?`` or ``#`` of its own).

    A key of dots alone is encoded too: ``..`` would otherwise be resolved as a dot-segment
    and call another path of the provider's API.
    """
    segment = quote(key, safe="")
    if set(key) <= {"."}:
        segment = segment.replace(".", "%2E")
    return template.replace("{key}", segment)


def _auth_headers(client: httpx.Client, provider: Provider, protection: Protection, deadline: float) -> dict[str, str]:
    auth = provider.auth
    if not auth:
        return {}
    if auth["type"] == "header":
        return {auth["name"]: provider.secret or ""}
    cached = protection.tokens.get(provider.dataset_id)
    if cached is not None and cached[1] > time.monotonic():
        return {"Authorization": f"Bearer {cached[0]}"}
    form = {"grant_type": "client_credentials"}
    if auth.get("scope"):
        form["scope"] = auth["scope"]
    response = client.post(auth["token_url"], data=form, auth=(auth["client_id"], provider.secret or ""),
                           timeout=max(0.001, deadline - time.monotonic()))
    try:
        body = response.json()
        token, lifetime = body["access_token"], float(body.get("expires_in", 60))
    except (ValueError, KeyError, TypeError):
        raise LiveProviderFailed(f"the provider's token endpoint for {provider.dataset} answered {response.status_code} "
                                 "without an access token") from None
    protection.tokens[provider.dataset_id] = (token, time.monotonic() + max(0.0, lifetime - 30))
    return {"Authorization": f"Bearer {token}"}


def _read_bounded(response: httpx.Response, *, limit: int, deadline: float, dataset: str) -> bytes:
    """The answer's body, refused (502) past ``limit`` bytes before more is read, and (504) past the deadline."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise LiveAnswerTooLarge(f"the provider of {dataset} announced {declared} bytes; answers are limited to {limit}")
    parts, size = [], 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > limit:
            raise LiveAnswerTooLarge(f"the provider of {dataset} sent more than {limit} bytes; answers are limited to {limit}")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the provider's answer took longer than its timeout")
        parts.append(chunk)
    return b"".join(parts)


def fetch_records(provider: Provider, *, scope: Scope, key: str, key_value: Any, protection: Protection,
                  message: Message) -> list[dict[str, Any]]:
    """Call the provider for ``key`` and read its answer through the grant's scope (``records_in_scope``).

    The errors a client gets: 502 (provider error, malformed answer, refused address, too
    large), 504 (timeout), 503 (circuit open). Each of those but the last counts as a failure
    of the dataset's circuit breaker. ``message`` gets the answer's digest and time as they happen.
    """
    protection.breaker.admit(provider.dataset)
    failed = True
    try:
        status, body = _call(provider, key=key, protection=protection, message=message)
        records = [] if status == 404 else records_in_scope(body, scope=scope, key_value=key_value)
        failed = False
        return records
    finally:
        (protection.breaker.failed if failed else protection.breaker.succeeded)(provider.dataset)


def _call(provider: Provider, *, key: str, protection: Protection, message: Message) -> tuple[int, bytes]:
    """The provider's status and body for ``key`` (2xx or 404), or the error a client gets."""
    deadline = time.monotonic() + provider.timeout_seconds
    try:
        client = protection.client()
        headers = {"Accept": "application/json", **_auth_headers(client, provider, protection, deadline)}
        message.requested_at = utcnow()
        with client.stream("GET", provider_url(provider.url, key), headers=headers, timeout=provider.timeout_seconds) as response:
            body = _read_bounded(response, limit=protection.max_answer_bytes, deadline=deadline, dataset=provider.dataset)
        message.answer_sha256, message.answered_at = hashlib.sha256(body).hexdigest(), utcnow()
    except outbound.OutboundRefused as refusal:
        raise LiveProviderFailed(f"the provider of {provider.dataset} may not be called: {refusal}") from None
    except httpx.TimeoutException:
        raise LiveProviderTimeout(f"the provider of {provider.dataset} did not answer within {provider.timeout_seconds:g} s") from None
    except httpx.HTTPError as error:
        raise LiveProviderFailed(f"the provider of {provider.dataset} could not be reached ({type(error).__name__})") from None
    if response.status_code == 404 or 200 <= response.status_code < 300:
        return response.status_code, body
    raise LiveProviderFailed(f"the provider of {provider.dataset} answered {response.status_code}")


def request_digest(url_template: str, key: str) -> str:
    """SHA-256 of the request sent to the provider: its method and URL (credentials are not part of the record)."""
    return hashlib.sha256(f"GET {provider_url(url_template, key)}".encode()).hexdigest()


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
    try:
        table = intake.records_table(records, items=scope.items)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError, OverflowError) as problem:
        raise LiveProviderFailed(f"the provider of {dataset} answered with values not of the dataset's item types: {problem}") from None
    cursor = _engine().cursor()
    try:
        # Registered on this cursor alone: calls side by side each see their own answer as ``records``.
        cursor.register("records", table)
        return keyed_store.lookup_in(cursor, key=scope.lookup_key, value=key_value, projection=scope.projection,
                                     scope=scope.row_filter)
    finally:
        cursor.close()


_engine_lock = threading.Lock()
_engine_connection: duckdb.DuckDBPyConnection | None = None


def _engine() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB, made once: a new database per call cost more than the call's other work."""
    global _engine_connection
    with _engine_lock:
        if _engine_connection is None:
            _engine_connection = duckdb.connect(config=keyed_store.READ_CONFIG)
        return _engine_connection
