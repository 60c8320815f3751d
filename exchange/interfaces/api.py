"""Interfaces for service systems: lookup by key, paged queries, Arrow streams; the citizen's access log.

Every call is checked against the caller department's active interface grant: only
the granted columns leave, only rows within the grant's filter, only during its
period. A key outside the grant is a 404 that says no more than a key that does
not exist. Every call, answered or not, goes on the access ledger.
"""

from __future__ import annotations

import base64
import dataclasses
import binascii
import json
import os
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from approvals import rowfilter
from approvals import service as approvals
from directory.models import DatasetVersion
from exchange import service
from exchange.citizens import service as citizens
from exchange.intake import service as intake
from exchange.stores import keyed_store, lookup_store
from exchange.errors import ExplicitRequestRequired, InvalidQuery, KeyLookupNotGranted, NoActiveGrant, RateLimited, RecordNotFound
from exchange.ledger import KeyLines, LedgerLine
from exchange.ratelimit import RateLimiter, retry_after_header
from govshare.auth import Caller, caller_at_stamp, check_role, require
from govshare.db import DbSession, LoopSemaphores
from govshare.errors import Forbidden
from govshare.models import Role
from sqlalchemy import select

router = APIRouter(prefix="/api/v1", tags=["exchange"])
ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_PAGE = 1000


async def _rate_limited(request: Request, caller: Annotated[Caller, Depends(require("exchange.read"))]) -> Caller:
    # async: the bucket is a lock and some arithmetic, not worth a hop to the thread pool.
    return take_call(request, caller)


def take_call(request: Request, caller: Caller) -> Caller:
    """``caller`` if its client may make another call now, else ``RateLimited`` with when to retry."""
    wait = request.app.state.rate_limiter.take(caller.client_id)
    if wait > 0:
        raise RateLimited("too many calls from this client; slow down", headers={"Retry-After": retry_after_header(wait)})
    return caller


ServiceCaller = Annotated[Caller, Depends(_rate_limited)]


def ledger_line(scope: service.Scope, caller: Caller, *, kind: str, rows: int, keys: list[str], status: int, started: float,
                consents: dict[str, int] | None = None) -> LedgerLine:
    return LedgerLine(
        kind=kind, client_id=caller.client_id, department=caller.department, dataset=scope.dataset.code,
        grant_id=scope.grant.id, application_id=scope.application.id, service_item=scope.application.service_item,
        basis=scope.application.basis, purpose=scope.application.purpose, rows=rows, keys=keys, status=status,
        latency_ms=(time.perf_counter() - started) * 1000,
        consents={key: consents[key] for key in keys if key in consents} if consents else {},
    )


def _scope(request: Request, session, caller: Caller, code: str, *, kind: str, keys: list[str], started: float,
           stamp: str | None = None, explicit: bool = False) -> service.Scope:
    """The caller's interface scope on ``code``; a refusal goes on the ledger too (attempts are accesses to account for).

    ``session``: the call's session, or a function giving it (``Database.session_on_demand``). With the change stamp
    the call read (``stamp``), a scope resolved at that stamp (for the same department, dataset and day: a grant's
    period is counted in days) is used without reading the record store.

    A dataset registered with ``explicit_request`` is read only through a request the citizen approved
    (``explicit``: the request routes): any other read of it is refused (403).
    """
    database = request.app.state.database
    today = approvals.today(request.app.state.settings)
    key = ("interface-scope", caller.department, code, today)
    scope = database.recall(key, stamp)
    if scope is None:
        try:
            scope = service.interface_scope(_session(session), department=caller.department, dataset_code=code, today=today)
        except NoActiveGrant as refusal:
            request.app.state.ledger.record(LedgerLine(
                kind=kind, client_id=caller.client_id, department=caller.department, dataset=code, grant_id=None,
                application_id=None, service_item=None, basis=None, rows=0, keys=keys, status=refusal.status,
                latency_ms=(time.perf_counter() - started) * 1000,
            ))
            raise
        database.remember(key, stamp, scope)
    if not explicit and citizens.explicit_request(scope.dataset):
        refusal = ExplicitRequestRequired(f"dataset {code} is delivered only on the citizen's approval of a request: "
                                          f"POST /api/v1/exchange/{code}/requests")
        request.app.state.ledger.record(ledger_line(scope, caller, kind=kind, rows=0, keys=keys, status=refusal.status,
                                                    started=started))
        raise refusal
    return scope


resolve_scope = _scope


def consent_of_key(request: Request, session, scope: service.Scope, caller: Caller, *, key: str, kind: str,
                   started: float) -> int | None:
    """On a ``consent_required`` dataset, the citizen's active consent for the caller's department (its id); without one,
    a 404 as for a key outside the grant (on the ledger too). None on other datasets. Asked afresh on every call."""
    if not citizens.consent_required(scope.dataset):
        return None
    consent_id = citizens.consent_for(_session(session), citizen_id=key, department=caller.department, dataset_id=scope.dataset.id,
                                      today=approvals.today(request.app.state.settings))
    if consent_id is None:
        request.app.state.ledger.record(ledger_line(scope, caller, kind=kind, rows=0, keys=[key], status=404, started=started))
        raise RecordNotFound(f"no record with key {key} within your grant on {scope.dataset.code}")
    return consent_id


def _consented(request: Request, session, scope: service.Scope, caller: Caller) -> dict[str, int] | None:
    """On a ``consent_required`` dataset, every citizen with an active consent for the caller's department (citizen ID ->
    consent id), read afresh for this call; None on other datasets."""
    if not citizens.consent_required(scope.dataset):
        return None
    return citizens.consented_keys(_session(session), department=caller.department, dataset_id=scope.dataset.id,
                                   today=approvals.today(request.app.state.settings))


def check_key_lookups(request: Request, scope: service.Scope, caller: Caller, *, kind: str, keys: list[str], started: float) -> None:
    """``scope.check_key_lookups``, with a refusal on the ledger (an attempt to read by key is an access to account for)."""
    try:
        scope.check_key_lookups()
    except KeyLookupNotGranted as refusal:
        request.app.state.ledger.record(ledger_line(scope, caller, kind=kind, rows=0, keys=keys, status=refusal.status, started=started))
        raise


def _store(request: Request, session, scope: service.Scope, version: int | None = None,
           key_value: str | None = None) -> tuple[int, Any, service.Scope]:
    """Where the scope's rows are read from (the keyed store of a snapshot, or for intake the deposits), and the
    scope on that version; 409 when that version lacks an item the grant uses."""
    if intake.is_intake(scope.dataset):
        scope.check()
        return 0, keyed_store.in_memory(intake.table(_session(session), dataset=scope.dataset, key_value=key_value)), scope
    number, path, scope = _snapshot(request, session, scope, version)
    return number, keyed_store.ensure_store(path, scope.lookup_key, store=request.app.state.store), scope


def _snapshot(request: Request, session, scope: service.Scope, version: int | None = None) -> tuple[int, Path, service.Scope]:
    """The snapshot a call reads (the newest, or a cursor's version) and the scope on it; 409 as ``_store``."""
    store = request.app.state.store
    if version is None or version == scope.version:
        # The newest version's path comes with the grant: no read of the record store when it is known.
        number, path = service.snapshot(None if scope.latest_path else _session(session), dataset=scope.dataset, store=store,
                                        known_path=scope.latest_path)
    else:
        session = _session(session)
        row = session.execute(select(DatasetVersion).where(DatasetVersion.dataset_id == scope.dataset.id,
                                                           DatasetVersion.number == version)).scalar_one_or_none()
        if row is None:
            raise InvalidQuery("the cursor names a version that does not exist")
        number, path = row.number, store.local_path(row.path)
        scope = dataclasses.replace(service.scope_of(session, scope.grant, version=row), latest_path=scope.latest_path)
    scope.check()
    return number, path, scope


def _session(session):
    """The call's session, from a session or a function giving one (``Database.session_on_demand``)."""
    return session() if callable(session) else session


def _by_key(request: Request, session, scope: service.Scope, values: list[Any], *, version: int | None = None,
            may_build: bool = True) -> tuple[int, dict[Any, list[dict[str, Any]]]]:
    """The rows of each key in ``values`` within the scope: from the lookup store (SQLite), or for intake the deposits.
    ``may_build`` False: ``_NeedsThread`` rather than build a lookup store not built yet."""
    if intake.is_intake(scope.dataset):
        version, store, scope = _store(request, session, scope)
        found = {}
        for value in values:
            records = keyed_store.lookup(store, key=scope.lookup_key, value=value, projection=scope.projection, scope=scope.row_filter)
            if records:
                found[value] = records
        return version, found
    number, path, scope = _snapshot(request, session, scope, version)
    if not may_build and not lookup_store.store_path(path, request.app.state.store).exists():
        raise _NeedsThread()
    store = lookup_store.ensure_store(path, key=scope.lookup_key, items=scope.version_items, store=request.app.state.store)
    row_filter, projection = scope.compiled("sqlite")
    return number, lookup_store.lookup_many(
        store, key=scope.lookup_key, values=[rowfilter.bind_value(value, "sqlite") for value in values], projection=projection,
        scope=row_filter, names=scope.columns, decode=lookup_store.decoders(scope.columns, scope.masked, scope.version_items))


by_key = _by_key


# Lookups run at most this many at once; the others wait on the event loop, where waiting
# costs nothing. A lookup's CPU grows with the lookups beside it (threads handing the GIL
# around SQLite's and DuckDB's calls; figures in evaluation/bench/REPORT.md, "Figures behind
# the code's choices"). One per core keeps the cores busy without that cost.
LOOKUPS_AT_ONCE = max(2, os.cpu_count() or 2)
_lookup_slots = LoopSemaphores(LOOKUPS_AT_ONCE)


class _NeedsThread(Exception):
    """A lookup run on the event loop came to what may block (a read of the record store, a lookup store to build):
    it is run again in a worker thread. ``rate_taken``: the call was already taken from its client's rate."""

    def __init__(self) -> None:
        self.rate_taken = False


def _loop_session():
    raise _NeedsThread()


def state_on_loop(state) -> bool:
    """Whether an interface call's state may be read on the event loop: its stamp read is on a local SQLite file (about
    as costly as a function call, far less than the hop to a worker thread and back), and its rate is this process's
    own buckets, not Redis. A network store's driver, or Redis's, blocks for a round trip: a thread."""
    return state.database.dialect == "sqlite" and isinstance(state.rate_limiter, RateLimiter)


def _lookups_on_loop(state) -> bool:
    """Whether a lookup may first try the event loop: its state may (``state_on_loop``), and its data is in a local
    store (nothing fetched)."""
    return state_on_loop(state) and state.store.is_local


@router.get("/exchange/{code}/records/{key}", summary="Records with this key, within the caller's grant",
            response_model=dict[str, Any])
async def lookup(code: str, key: str, request: Request) -> Response:
    # The busiest route. When the call's state is known at the store's change stamp and the
    # lookup store is built, the whole call (token, role, rate, grant, lookup) runs on the
    # event loop; else, or on a network record store, it is one trip to a worker thread,
    # where the dependencies of other routes take three. The checks are the same functions,
    # in the same order, as ServiceCaller's. (response_model only documents the answer: a
    # Response returned is sent as it is, not validated.)
    state = request.app.state
    # Room on the ledger first (waiting, should the writer be behind, before anything is read or served).
    async with state.ledger.room(1):
        rate_taken = False
        if _lookups_on_loop(state):
            try:
                return _lookup(code, key, request, on_loop=True)
            except _NeedsThread as needed:
                rate_taken = needed.rate_taken
        async with _lookup_slots.current(), state.database.request_slots():
            return await run_in_threadpool(_lookup, code, key, request, rate_taken=rate_taken)


def _call_state(request: Request, session, *, take: bool = True) -> tuple[Caller, str | None]:
    """The service caller of ``request`` (authenticated, its role checked, a call taken from its rate unless ``take``
    is False) and the change stamp read for the call: the call's one read of the record store while nothing it
    checks has changed."""
    stamp = request.app.state.database.change_stamp()
    caller = check_role(caller_at_stamp(request, session, stamp), "exchange.read")
    return take_call(request, caller) if take else caller, stamp


def _lookup(code: str, key: str, request: Request, *, on_loop: bool = False, rate_taken: bool = False) -> Response:
    """The lookup; ``on_loop``: raising ``_NeedsThread`` before anything that may block (and before any ledger line)."""
    if on_loop:
        caller, stamp = _call_state(request, _loop_session)
        try:
            return _lookup_as(caller, stamp, code, key, request, _loop_session, on_loop=True)
        except _NeedsThread as needed:
            needed.rate_taken = True
            raise
    with request.app.state.database.session_on_demand() as session:
        caller, stamp = _call_state(request, session, take=not rate_taken)
        return _lookup_as(caller, stamp, code, key, request, session)


def _lookup_as(caller: Caller, stamp: str | None, code: str, key: str, request: Request, session, *,
               on_loop: bool = False) -> Response:
    started = time.perf_counter()
    scope = _scope(request, session, caller, code, kind="lookup", keys=[key], started=started, stamp=stamp)
    if not scope.lookup_key:
        raise InvalidQuery(f"dataset {code} has no lookup key; use the query interface")
    check_key_lookups(request, scope, caller, kind="lookup", keys=[key], started=started)
    consent_id = consent_of_key(request, session, scope, caller, key=key, kind="lookup", started=started)
    key_type = next(item["type"] for item in scope.items if item["name"] == scope.lookup_key)
    try:
        value = rowfilter.convert_value(key if key_type == "string" else json.loads(key), key_type, "key")
    except (ValueError, rowfilter.InvalidRowFilter):
        value = None
    if intake.is_intake(scope.dataset):
        version, store, scope = _store(request, session, scope, key_value=key)
        records = [] if value is None else keyed_store.lookup(store, key=scope.lookup_key, value=value,
                                                              projection=scope.projection, scope=scope.row_filter)
    else:
        version, found = _by_key(request, session, scope, [] if value is None else [value], may_build=not on_loop)
        records = next(iter(found.values()), [])
    status = 200 if records else 404
    request.app.state.ledger.record(ledger_line(scope, caller, kind="lookup", rows=len(records), keys=[key], status=status,
                                                started=started, consents={key: consent_id} if consent_id else None))
    if not records:
        raise RecordNotFound(f"no record with key {key} within your grant on {code}")
    return json_response({"dataset": code, "key": key, "version": version, "records": records})


MAX_BATCH_KEYS = 1000


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[Annotated[StrictStr, StringConstraints(min_length=1, max_length=256)]] = Field(min_length=1, max_length=MAX_BATCH_KEYS,
                                  description=f"keys to look up (text, at most {MAX_BATCH_KEYS}; repeats are looked up once)")


async def _batch_caller(request: Request) -> tuple[Caller, str | None]:
    """The batch's service caller and change stamp (``_call_state``), resolved before its body is read, as
    ServiceCaller is; in a worker thread, with a request slot held should the store have to be read."""
    database = request.app.state.database
    async with database.request_slots():
        return await run_in_threadpool(_batch_call_state, request)


def _batch_call_state(request: Request) -> tuple[Caller, str | None]:
    with request.app.state.database.session_on_demand() as session:
        return _call_state(request, session)


@router.post("/exchange/{code}/records:batch", summary="Records for up to 1,000 keys at once, within the caller's grant")
async def lookup_batch(code: str, body: BatchBody, request: Request,
                       state: Annotated[tuple[Caller, str | None], Depends(_batch_caller)]) -> Response:
    database = request.app.state.database
    # A line a key at most, and one for the keys missing: room for them on the ledger before anything is served.
    async with request.app.state.ledger.room(len(body.keys) + 1), _lookup_slots.current(), database.request_slots():
        return await run_in_threadpool(_lookup_batch, code, body.keys, request, *state)


def _lookup_batch(code: str, keys: list[str], request: Request, caller: Caller, stamp: str | None) -> Response:
    started = time.perf_counter()
    keys = list(dict.fromkeys(keys))
    with request.app.state.database.session_on_demand() as session:
        scope = _scope(request, session, caller, code, kind="lookup", keys=keys[:1000], started=started, stamp=stamp)
        if not scope.lookup_key:
            raise InvalidQuery(f"dataset {code} has no lookup key; use the query interface")
        check_key_lookups(request, scope, caller, kind="lookup", keys=keys, started=started)
        consents = None
        if citizens.consent_required(scope.dataset):  # a key without consent is missing, as one outside the grant
            consents = citizens.consents_for(_session(session), keys=keys, department=caller.department,
                                             dataset_id=scope.dataset.id, today=approvals.today(request.app.state.settings))
        key_type = next(item["type"] for item in scope.items if item["name"] == scope.lookup_key)
        values: dict[str, Any] = {}
        for key in keys:
            if consents is not None and key not in consents:
                continue
            try:
                values[key] = rowfilter.convert_value(key if key_type == "string" else json.loads(key), key_type, "key")
            except (ValueError, rowfilter.InvalidRowFilter):
                continue  # no key of this dataset: missing, like a key that does not exist
        version, found = _by_key(request, session, scope, list(values.values()))
    if intake.is_intake(scope.dataset):
        bound = values
    else:
        bound = {key: rowfilter.bind_value(value, "sqlite") for key, value in values.items()}
    records = {key: found[bound[key]] for key in keys if key in bound and bound[key] in found}
    missing = [key for key in keys if key not in records]
    # One line per key delivered (each citizen finds their own), all of the call's time and latency, handed to
    # the ledger at once: one KeyLines the writer expands into a line per key.
    line = ledger_line(scope, caller, kind="lookup", rows=0, keys=missing, status=404, started=started)
    delivered = KeyLines(dataclasses.replace(line, keys=[], status=200), keys=list(records),
                         rows=[len(rows) for rows in records.values()],
                         consents=[consents.get(key) for key in records] if consents else None)
    request.app.state.ledger.record_many([*([delivered] if records else []), *([line] if missing else [])])
    return json_response({"dataset": code, "version": version, "records": records, "missing": missing})


def json_response(body: dict[str, Any]) -> Response:
    # Encoded at once (dates as ISO text, as jsonable_encoder gives them): walking the records
    # through jsonable_encoder first, as JSONResponse would have them, cost more than looking them up.
    return Response(json.dumps(body, default=_iso, ensure_ascii=False, separators=(",", ":")), media_type="application/json")


def _iso(value: Any) -> str:
    if isinstance(value, date):  # dates and datetimes
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _encode_cursor(version: int, row: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"v": version, "r": row}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(data["v"]), int(data["r"])
    except (ValueError, KeyError, TypeError, OverflowError, binascii.Error):  # OverflowError: a row of 1e999
        raise InvalidQuery("cursor: not a cursor this server issued") from None


def _equals(request: Request, scope: service.Scope) -> dict[str, Any]:
    reserved = {"limit", "cursor"}
    types = {item["name"]: item["type"] for item in scope.items}
    equals = {}
    for name, raw in request.query_params.items():
        if name in reserved:
            continue
        if name == scope.lookup_key:
            scope.check_key_lookups()  # a page filtered by key is a lookup by key
        if name not in scope.columns or name in scope.masked:
            # Filtering on an item outside the grant (or masked in it) would reveal it, one answer at a time.
            raise InvalidQuery(f"{name}: not an item of your grant in the clear; filter on granted, unmasked items only")
        value: Any = raw
        if types[name] in ("integer", "number", "boolean"):
            try:
                value = json.loads(raw)
            except ValueError:
                raise InvalidQuery(f"{name}: {raw!r} is not a valid {types[name]}") from None
        try:
            equals[name] = rowfilter.convert_value(value, types[name], name)
        except rowfilter.InvalidRowFilter as problem:
            raise InvalidQuery(problem.detail) from None
    return equals


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "100")
    # isascii: str.isdigit() accepts digits such as '²' that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidQuery(f"limit: a whole number from 1 to {MAX_PAGE}")
    return int(raw)


@router.get(
    "/exchange/{code}/records",
    summary="Records within the caller's grant, filtered by granted items; paged, or an Arrow IPC stream",
    responses={200: {"content": {"application/json": {}, ARROW_STREAM: {}}}},
)
def query(code: str, request: Request, session: DbSession, caller: ServiceCaller):
    started = time.perf_counter()
    kind = "stream" if ARROW_STREAM in request.headers.get("accept", "") else "query"
    scope = _scope(request, session, caller, code, kind=kind, keys=[], started=started)
    equals = _equals(request, scope)
    key_column = scope.lookup_key if scope.lookup_key in scope.columns and scope.lookup_key not in scope.masked else None
    consents = _consented(request, session, scope, caller)  # consent_required: only consented citizens' rows, joined in DuckDB
    consented = keyed_store.Consented(scope.lookup_key, citizens.consented_table(consents)) if consents is not None else None
    if kind == "stream":
        request.app.state.ledger.admit()  # its line is recorded once the stream has gone out: refused now if it could not be
        _, store, scope = _store(request, session, scope)
        return StreamingResponse(
            _arrow_stream(request, store, scope, caller, equals, key_column, started, consents=consents, consented=consented),
            media_type=ARROW_STREAM,
        )
    limit = _limit(request)
    cursor = request.query_params.get("cursor")
    version, after = _decode_cursor(cursor) if cursor else (None, 0)
    if consents is not None and scope.lookup_key in equals and str(equals[scope.lookup_key]) not in consents:
        records, last = [], None  # one citizen's rows, without their consent: nothing, as outside the grant
    elif scope.lookup_key in equals and not intake.is_intake(scope.dataset):
        # A page of one key's rows (the key granted in the clear: checked by _equals) is read from the lookup store.
        version, path, scope = _snapshot(request, session, scope, version)
        row_filter, projection = scope.compiled("sqlite")
        others = {name: rowfilter.bind_value(value, "sqlite") for name, value in equals.items() if name != scope.lookup_key}
        records, last = lookup_store.page_by_key(
            lookup_store.ensure_store(path, key=scope.lookup_key, items=scope.version_items, store=request.app.state.store),
            key=scope.lookup_key,
            value=rowfilter.bind_value(equals[scope.lookup_key], "sqlite"), projection=projection, scope=row_filter,
            equals=others, after_row=after, limit=limit, names=scope.columns,
            decode=lookup_store.decoders(scope.columns, scope.masked, scope.version_items))
    else:
        version, store, scope = _store(request, session, scope, version)
        records, last = keyed_store.page(store, projection=scope.projection, scope=scope.row_filter, equals=equals,
                                         after_row=after, limit=limit, consented=consented)
    if consents is not None:  # each citizen's line names their consent, whether or not the grant gives the key
        keys = [str(record.pop(keyed_store.CONSENT_KEY, None) or record[scope.lookup_key]) for record in records]
    else:
        keys = [str(record[key_column]) for record in records] if key_column else []
    request.app.state.ledger.record(ledger_line(scope, caller, kind="query", rows=len(records), keys=keys, status=200, started=started,
                                                consents=consents))
    next_cursor = _encode_cursor(version, last) if last is not None and len(records) == limit else None
    return JSONResponse({"dataset": code, "version": version, "records": jsonable_encoder(records), "next_cursor": next_cursor})


class _Chunks:
    """A write-only file that hands back what was written since the last take()."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def _arrow_stream(request: Request, store, scope: service.Scope, caller: Caller, equals: dict[str, Any],
                  key_column: str | None, started: float, *, consents: dict[str, int] | None = None,
                  consented: keyed_store.Consented | None = None) -> Iterator[bytes]:
    rows, keys = 0, []
    stream = keyed_store.ArrowStream(store, projection=scope.projection, scope=scope.row_filter, equals=equals, consented=consented)
    schema = stream.schema
    if consented is not None:  # the key beside each row is for the ledger, never sent
        schema = schema.remove(schema.get_field_index(keyed_store.CONSENT_KEY))
    chunks = _Chunks()
    try:
        writer = pa.ipc.new_stream(pa.PythonFile(chunks, mode="w"), schema)
        for batch in stream:
            if consented is not None:
                # Every consented citizen's key is kept (each line names their consent), not only the first thousand.
                keys.extend(batch.column(keyed_store.CONSENT_KEY).to_pylist())
                batch = batch.drop_columns([keyed_store.CONSENT_KEY])
            elif key_column and len(keys) < 1000:
                keys.extend(str(value) for value in batch.column(key_column).to_pylist()[: 1000 - len(keys)])
            writer.write_batch(batch)
            rows += batch.num_rows
            yield chunks.take()
        writer.close()
        yield chunks.take()
    finally:
        stream.close()
        if consents is None:
            request.app.state.ledger.record(ledger_line(scope, caller, kind="stream", rows=rows, keys=keys, status=200, started=started),
                                            admitted=True)
        else:
            keys = list(dict.fromkeys(keys))
            for start in range(0, max(len(keys), 1), MAX_BATCH_KEYS):  # a line holds at most 1,000 keys
                part = keys[start:start + MAX_BATCH_KEYS]
                request.app.state.ledger.record(ledger_line(scope, caller, kind="stream", rows=rows if start == 0 else 0, keys=part,
                                                            status=200, started=started, consents=consents), admitted=True)


@router.get("/citizens/{citizen_id}/access-log", summary="Who used this citizen's data, when, why and on what basis")
def citizen_access_log(citizen_id: str, request: Request, session: DbSession,
                       caller: Annotated[Caller, Depends(require("citizens.access_log"))],
                       include_delayed: bool = False) -> dict[str, Any]:
    if include_delayed and not caller.has_role(Role.manager):
        # The portal shows citizens what they may see now; lines under a delayed disclosure are a manager's to look at.
        raise Forbidden("include_delayed: only a data manager sees accesses whose disclosure is delayed")
    lines = service.citizen_access_log(session, citizen_id=citizen_id, store=request.app.state.store,
                                       today=approvals.today(request.app.state.settings), include_delayed=include_delayed)
    consents = service.consents_named(session, citizen_id=citizen_id, entries=[line.entry for line in lines])
    return {
        "citizen_id": citizen_id,
        "entries": [
            {"at": line.entry.at.isoformat(), "department": line.entry.department_code, "dataset": line.entry.dataset_code,
             "grant_id": line.entry.grant_id, "application_id": line.entry.application_id,
             "service_item": line.entry.service_item, "basis": line.entry.basis, "purpose": line.entry.purpose,
             "kind": line.entry.kind, "rows": line.entry.rows,
             "delayed_until": line.delayed_until.isoformat() if line.delayed_until else None,
             "delay_basis": line.delay_basis, "consent_id": consents.get(line.entry.id)}
            for line in lines
        ],
    }
