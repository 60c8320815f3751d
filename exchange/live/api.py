"""The live services route: ``GET /api/v1/exchange/{code}/live/{key}`` under a grant with delivery live.

Every call, answered or not, goes on the access ledger; a call that reached the provider
carries the digests and times of its request and answer, which the ledger signs in
batches into the audit chain.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from approvals import rowfilter
from approvals import service as approvals
from directory import live_credentials
from exchange import service
from exchange.live import service as live
from exchange.citizens import service as citizens
from exchange.interfaces.api import check_key_lookups, consent_of_key, json_response, ledger_line, state_on_loop, take_call
from exchange.errors import (ExplicitRequestRequired, InvalidQuery, LiveBusy, LiveProtectionUnavailable, NoActiveGrant, ProtectionUnavailable,
                             RecordNotFound)
from exchange.ledger import LedgerLine
from govshare.auth import Caller, caller_at_stamp, check_role
from govshare.db import utcnow
from govshare.errors import GovshareError

router = APIRouter(prefix="/api/v1", tags=["exchange"])


@router.get("/exchange/{code}/live/{key}", summary="A live call: the provider's own API, answered within the caller's live grant",
            response_model=dict[str, Any])
async def live_call(code: str, key: str, request: Request) -> Response:
    # The state is read on the event loop or in a worker thread (``state_on_loop``); the provider is
    # called on the event loop, so a slow provider holds no thread, only its connection.
    state = request.app.state
    started = time.perf_counter()
    async with state.database.request_slots():
        if state_on_loop(state):  # a few microseconds when unchanged; cheaper than a hop to a thread (REPORT.md, live)
            scope, caller, provider, consent_id = _resolve(code, key, request, started)
        else:
            scope, caller, provider, consent_id = await live.in_thread(_resolve, code, key, request, started)
    key_type = next(item["type"] for item in scope.items if item["name"] == scope.lookup_key)
    try:
        value = rowfilter.convert_value(key if key_type == "string" else json.loads(key), key_type, "key")
    except (ValueError, rowfilter.InvalidRowFilter):
        raise InvalidQuery(f"key: {key!r} is not a valid {key_type} ({scope.lookup_key})") from None
    # The provider is not called for an answer the ledger could not account for: above the ledger's high-water mark
    # the call waits for its writer (on the event loop), and is refused 503 only if the writer cannot catch up.
    async with state.ledger.room(1):
        return await _through(state, scope, caller, provider, consent_id, code=code, key=key, value=value, started=started)


async def _through(state, scope: service.Scope, caller: Caller, provider: live.Provider, consent_id: int | None, *,
                   code: str, key: str, value: Any, started: float) -> Response:
    """The call passed through to the provider under the grant's protections, its line on the ledger however it ends."""
    url = live.provider_url(provider.url, key)
    message = live.Message(request_sha256=live.request_digest(url), requested_at=utcnow())
    protection: live.Protection = state.live
    records: list[dict[str, Any]] = []
    status = 500
    try:
        lease = await protection.slots.take(scope.grant.id, lease_seconds=provider.timeout_seconds + live.LEASE_MARGIN_SECONDS)
    except (LiveBusy, LiveProtectionUnavailable) as refusal:  # the grant's cap reached, or it cannot be asked (Redis unreachable)
        state.ledger.record(_line(scope, caller, key=key, consent_id=consent_id, message=message, rows=0, status=refusal.status,
                                  started=started), admitted=True)
        raise
    try:
        records = await live.fetch_records(provider, scope=scope, url=url, key_value=value, protection=protection, message=message)
        status = 200 if records else 404
    except GovshareError as error:
        status = error.status
        raise
    finally:
        try:
            await protection.slots.give_back(scope.grant.id, lease)
        finally:
            # Queued, not awaited: the ledger's writer thread commits it with the others.
            state.ledger.record(_line(scope, caller, key=key, consent_id=consent_id, message=message, rows=len(records),
                                      status=status, started=started), admitted=True)
    if not records:
        raise RecordNotFound(f"no record with key {key} within your grant on {code}")
    return json_response({"dataset": code, "key": key, "records": records})


def _line(scope: service.Scope, caller: Caller, *, key: str, consent_id: int | None, message: live.Message, rows: int,
          status: int, started: float) -> LedgerLine:
    """The ledger line of a call that got as far as the provider's protections, with its message's digests and times."""
    line = ledger_line(scope, caller, kind="live", rows=rows, keys=[key], status=status, started=started,
                       consents={key: consent_id} if consent_id else None)
    line.request_sha256, line.requested_at = message.request_sha256, message.requested_at
    line.answer_sha256, line.answered_at = message.answer_sha256, message.answered_at
    return line


def _resolve(code: str, key: str, request: Request, started: float) -> tuple[service.Scope, Caller, live.Provider, int | None]:
    """Everything a live call reads from the record store, before the provider is called: the caller (token), its
    live grant's scope, the citizen's consent where the dataset needs one, and the dataset's credentials.

    The lean call path of the lookups (``exchange.interfaces.api._lookup``): the change stamp is read first, and
    while it is unchanged the caller, the scope and the provider (its decrypted credentials) resolved at that stamp
    are used without reading the record store (``govshare.changestamp``: a revocation, a pause, a change of the
    dataset or of its credentials commits a new stamp, so the next call resolves afresh). The explicit-request
    refusal and the consent run on every call as before; the consent is read afresh every time. A session is
    opened only when something must be read, and closed before the provider is called.
    """
    state = request.app.state
    database = state.database
    with database.session_on_demand() as session:
        stamp = database.change_stamp()
        caller = check_role(caller_at_stamp(request, session, stamp), "exchange.read")
        try:
            take_call(request, caller)
        except ProtectionUnavailable as unavailable:  # the shared rate limits cannot be asked (Redis unreachable)
            refusal = live.protection_unavailable(unavailable.__cause__)
            state.ledger.record(LedgerLine(
                kind="live", client_id=caller.client_id, department=caller.department, dataset=code, grant_id=None,
                application_id=None, service_item=None, basis=None, rows=0, keys=[key], status=refusal.status,
                latency_ms=(time.perf_counter() - started) * 1000))
            raise refusal from unavailable
        today = approvals.today(state.settings)
        scope_key = ("live-scope", caller.department, code, today)
        scope = database.recall(scope_key, stamp)
        if scope is None:
            try:
                scope = service.interface_scope(session(), department=caller.department, dataset_code=code, delivery="live",
                                                today=today)
            except NoActiveGrant as refusal:
                state.ledger.record(LedgerLine(
                    kind="live", client_id=caller.client_id, department=caller.department, dataset=code, grant_id=None,
                    application_id=None, service_item=None, basis=None, rows=0, keys=[key], status=refusal.status,
                    latency_ms=(time.perf_counter() - started) * 1000))
                raise
            database.remember(scope_key, stamp, scope)
        scope.check_items()
        check_key_lookups(request, scope, caller, kind="live", keys=[key], started=started)
        if citizens.explicit_request(scope.dataset):
            refusal = ExplicitRequestRequired(f"dataset {code} is delivered only on the citizen's approval of a request")
            state.ledger.record(ledger_line(scope, caller, kind="live", rows=0, keys=[key], status=refusal.status, started=started))
            raise refusal
        # consent_required: the provider is not even asked about a citizen who has not consented (404, as outside the grant).
        consent_id = consent_of_key(request, session, scope, caller, key=key, kind="live", started=started)
        # The provider with its credentials in the clear, as resolved at this stamp (live_credentials is a watched table).
        provider_key = ("live-provider", scope.dataset.id)
        provider = database.recall(provider_key, stamp)
        if provider is None:
            encrypted = live_credentials.encrypted_secret_of(session(), dataset_id=scope.dataset.id)
            provider = live.Provider.of(scope, state.live.secret(encrypted, state.keystore))
            database.remember(provider_key, stamp, provider)
    return scope, caller, provider, consent_id
