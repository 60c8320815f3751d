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
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from approvals import rowfilter
from approvals import service as approvals
from directory import live_credentials
from exchange import service
from exchange.live import service as live
from exchange.citizens import service as citizens
from exchange.interfaces.api import check_key_lookups, consent_of_key, ledger_line, take_call
from exchange.errors import ExplicitRequestRequired, InvalidQuery, NoActiveGrant, RecordNotFound
from exchange.ledger import LedgerLine
from govshare.auth import caller_of, check_role
from govshare.db import utcnow
from govshare.errors import GovshareError

router = APIRouter(prefix="/api/v1", tags=["exchange"])


@router.get("/exchange/{code}/live/{key}", summary="A live call: the provider's own API, answered within the caller's live grant",
            response_model=dict[str, Any])
async def live_call(code: str, key: str, request: Request) -> JSONResponse:
    # A worker thread: the provider is called with a blocking client, and may take its whole timeout.
    return await run_in_threadpool(_live_call, code, key, request)


def _live_call(code: str, key: str, request: Request) -> JSONResponse:
    state = request.app.state
    started = time.perf_counter()
    # The record store is read in a transaction closed before the provider is called: no
    # connection or lock is held for as long as a provider takes.
    with state.database.transaction(write=False) as session:
        caller = take_call(request, check_role(caller_of(request, session), "exchange.read"))
        try:
            scope = service.interface_scope(session, department=caller.department, dataset_code=code, delivery="live",
                                            today=approvals.today(state.settings))
        except NoActiveGrant as refusal:
            state.ledger.record(LedgerLine(
                kind="live", client_id=caller.client_id, department=caller.department, dataset=code, grant_id=None,
                application_id=None, service_item=None, basis=None, rows=0, keys=[key], status=refusal.status,
                latency_ms=(time.perf_counter() - started) * 1000))
            raise
        scope.check_items()
        check_key_lookups(request, scope, caller, kind="live", keys=[key], started=started)
        if citizens.explicit_request(scope.dataset):
            refusal = ExplicitRequestRequired(f"dataset {code} is delivered only on the citizen's approval of a request")
            state.ledger.record(ledger_line(scope, caller, kind="live", rows=0, keys=[key], status=refusal.status, started=started))
            raise refusal
        # consent_required: the provider is not even asked about a citizen who has not consented (404, as outside the grant).
        consent_id = consent_of_key(request, session, scope, caller, key=key, kind="live", started=started)
        provider = live.Provider.of(scope, live_credentials.secret_of(session, dataset_id=scope.dataset.id))
    key_type = next(item["type"] for item in scope.items if item["name"] == scope.lookup_key)
    try:
        value = rowfilter.convert_value(key if key_type == "string" else json.loads(key), key_type, "key")
    except (ValueError, rowfilter.InvalidRowFilter):
        raise InvalidQuery(f"key: {key!r} is not a valid {key_type} ({scope.lookup_key})") from None
    state.ledger.admit()  # the provider is not called for an answer the ledger could not account for
    message = live.Message(request_sha256=live.request_digest(provider.url, key), requested_at=utcnow())
    protection: live.Protection = state.live
    records: list[dict[str, Any]] = []
    status = 500
    protection.slots.take(scope.grant.id)
    try:
        records = live.fetch_records(provider, scope=scope, key=key, key_value=value, protection=protection, message=message)
        status = 200 if records else 404
    except GovshareError as error:
        status = error.status
        raise
    finally:
        protection.slots.give_back(scope.grant.id)
        line = ledger_line(scope, caller, kind="live", rows=len(records), keys=[key], status=status, started=started,
                           consents={key: consent_id} if consent_id else None)
        line.request_sha256, line.requested_at = message.request_sha256, message.requested_at
        line.answer_sha256, line.answered_at = message.answer_sha256, message.answered_at
        state.ledger.record(line, admitted=True)
    if not records:
        raise RecordNotFound(f"no record with key {key} within your grant on {code}")
    return JSONResponse({"dataset": code, "key": key, "records": jsonable_encoder(records)})
