"""The Delta Sharing server under /delta-sharing/, and the profile file of an extract grant.

Protocol: https://github.com/delta-io/delta-sharing/blob/main/PROTOCOL.md (parquet response
format). Hints from the client (``limitHint``, ``jsonPredicateHints``) may only drop files of
the grant's own data; the grant's columns, rows and masks are in the file itself.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from approvals import service as approvals
from exchange import ranges, service
from exchange.sharing import service as sharing
from exchange.dependencies import ExtractGrantForProfile, GrantForTokenKeeper
from exchange.ledger import LedgerLine
from exchange.models import SharingToken
from exchange.ratelimit import retry_after_header
from govshare import audit
from govshare.auth import Caller, require
from govshare.db import DbSession, utcnow

router = APIRouter(tags=["delta sharing"])
NDJSON = "application/x-ndjson; charset=utf-8"
# We answer in the parquet response format only; saying so lets clients choose it.
CAPABILITIES = {"delta-sharing-capabilities": "responseformat=parquet"}
PREFIX = "/delta-sharing"


# --- the profile --------------------------------------------------------------------------------


def profile_response(session, request: Request, *, scope: service.Scope, actor: str) -> JSONResponse:
    """A new profile file for the grant's share, as a download; the token is written in ``session``."""
    profile = sharing.issue_profile(session, scope=scope, actor=actor, settings=request.app.state.settings)
    audit.record(session, actor=actor, action="sharing.profile", subject=f"grant:{scope.grant.id}",
                 details={"expires": profile["expirationTime"]})
    return JSONResponse(profile, headers={
        "Content-Disposition": f'attachment; filename="govshare-grant-{scope.grant.id}.share"', "Cache-Control": "no-store"})


@router.get("/api/v1/grants/{grant_id}/sharing-profile",
            summary="A Delta Sharing profile file (endpoint, a new bearer token, expiration) for an extract grant")
def sharing_profile(request: Request, caller: Annotated[Caller, Depends(require("sharing.profile"))],
                    scope: ExtractGrantForProfile) -> JSONResponse:
    # A GET's transaction only reads (the contract fixes the method): the new token is its own write.
    with request.app.state.database.transaction() as session:
        return profile_response(session, request, scope=scope, actor=caller.actor)


# --- the grant's tokens ---------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def token_json(token: SharingToken, now: datetime) -> dict[str, Any]:
    """A sharing token as its keepers see it: never the token itself (it is stored only hashed anyway)."""
    return {"id": token.id, "grant_id": token.grant_id, "state": sharing.token_state(token, now),
            "created_at": _iso(token.created_at), "created_by": token.created_by, "expires_at": _iso(token.expires_at),
            "revoked_at": _iso(token.revoked_at), "revoked_by": token.revoked_by}


@router.get("/api/v1/grants/{grant_id}/sharing-tokens", summary="The grant's Delta Sharing tokens, newest first (never the token)")
def list_sharing_tokens(session: DbSession, grant: GrantForTokenKeeper) -> dict[str, Any]:
    now = utcnow()
    return {"items": [token_json(token, now) for token in sharing.tokens_of(session, grant=grant)]}


@router.post("/api/v1/grants/{grant_id}/sharing-tokens/{token_id}/revoke",
             summary="Revoke one Delta Sharing token of the grant (the grant and its other tokens go on)")
def revoke_sharing_token(token_id: int, session: DbSession, grant: GrantForTokenKeeper,
                         caller: Annotated[Caller, Depends(require("sharing.tokens"))]) -> dict[str, Any]:
    token = sharing.revoke_token(session, grant=grant, token_id=token_id, actor=caller.actor)
    return token_json(token, utcnow())


# --- the protocol ---------------------------------------------------------------------------------


def sharing_access(request: Request, session: DbSession) -> sharing.Access:
    """The access of this request's sharing token (every request checks its grant again)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""
    access = sharing.authenticate(session, bearer=bearer, settings=request.app.state.settings)
    # The same per-caller budget as the interfaces, counted per sharing token.
    wait = request.app.state.rate_limiter.take(f"sharing-token:{access.token.id}")
    if wait > 0:
        raise sharing.SharingRateLimited("too many requests with this sharing token; slow down",
                                         headers={"Retry-After": retry_after_header(wait)})
    return access


SharingAccess = Annotated[sharing.Access, Depends(sharing_access)]


def _share_json(access: sharing.Access) -> dict[str, Any]:
    return {"name": sharing.share_name(access.grant), "id": sharing.table_id(access.grant)}


def _table_json(access: sharing.Access) -> dict[str, Any]:
    return {"name": sharing.table_name(access.scope), "schema": sharing.schema_name(access.scope),
            "share": sharing.share_name(access.grant), "shareId": sharing.table_id(access.grant),
            "id": sharing.table_id(access.grant)}


def _max_results(request: Request) -> int | None:
    raw = request.query_params.get("maxResults")
    if raw is None:
        return None
    if not raw.isdigit():
        raise sharing.SharingError("maxResults: a whole number from 1 to 1000")
    return int(raw)


def _listing(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    return sharing.page(items, max_results=_max_results(request), page_token=request.query_params.get("pageToken"))


@router.get(PREFIX + "/shares", summary="Delta Sharing: list shares (one per token: its grant's)")
def list_shares(request: Request, access: SharingAccess) -> dict[str, Any]:
    return _listing(request, [_share_json(access)])


@router.get(PREFIX + "/shares/{share}", summary="Delta Sharing: get a share")
def get_share(share: str, access: SharingAccess) -> dict[str, Any]:
    sharing.check_share(access, share)
    return {"share": _share_json(access)}


@router.get(PREFIX + "/shares/{share}/schemas", summary="Delta Sharing: list schemas in a share")
def list_schemas(share: str, request: Request, access: SharingAccess) -> dict[str, Any]:
    sharing.check_share(access, share)
    return _listing(request, [{"name": sharing.schema_name(access.scope), "share": sharing.share_name(access.grant)}])


@router.get(PREFIX + "/shares/{share}/schemas/{schema}/tables", summary="Delta Sharing: list tables in a schema")
def list_tables(share: str, schema: str, request: Request, access: SharingAccess) -> dict[str, Any]:
    sharing.check_table(access, share, schema)
    return _listing(request, [_table_json(access)])


@router.get(PREFIX + "/shares/{share}/all-tables", summary="Delta Sharing: list all tables in a share")
def list_all_tables(share: str, request: Request, access: SharingAccess) -> dict[str, Any]:
    sharing.check_share(access, share)
    return _listing(request, [_table_json(access)])


@router.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/version", summary="Delta Sharing: table version")
def table_version(share: str, schema: str, table: str, request: Request, session: DbSession, access: SharingAccess,
                  startingTimestamp: str | None = None) -> Response:  # noqa: N803 (the protocol's name)
    sharing.check_table(access, share, schema, table)
    version = sharing.table_version(session, access.scope, starting_timestamp=startingTimestamp)
    return Response(status_code=200, headers={"Delta-Table-Version": str(version.number), **CAPABILITIES})


def _protocol_lines(access: sharing.Access, file) -> list[dict[str, Any]]:
    dataset = access.scope.dataset
    metadata = {
        "id": sharing.table_id(access.grant), "name": sharing.table_name(access.scope),
        "description": dataset.document.get("title"), "format": {"provider": "parquet"},
        "schemaString": json.dumps(file.schema), "partitionColumns": [], "configuration": {},
        "version": file.version_number, "size": file.size_bytes, "numFiles": 1,
    }
    return [{"protocol": {"minReaderVersion": 1}}, {"metaData": metadata}]


def _ndjson(lines: list[dict[str, Any]], version: int) -> Response:
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    return Response(body, media_type=NDJSON, headers={"Delta-Table-Version": str(version), **CAPABILITIES})


@router.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/metadata", summary="Delta Sharing: table metadata")
def table_metadata(share: str, schema: str, table: str, request: Request, session: DbSession, access: SharingAccess) -> Response:
    sharing.check_table(access, share, schema, table)
    version = sharing.table_version(session, access.scope)
    state = request.app.state
    # This request only reads; the first build of a version's file is its own write.
    with state.database.transaction() as write_session:
        file = sharing.ensure_file(write_session, scope=access.scope, version=version, store=state.store,
                                   today=approvals.today(state.settings))
    return _ndjson(_protocol_lines(access, file), version.number)


@router.get(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/changes",
            summary="Delta Sharing: the change data feed (not shared: answers why)")
def table_changes(share: str, schema: str, table: str, access: SharingAccess) -> Response:
    sharing.check_table(access, share, schema, table)
    raise sharing.SharingError("the change data feed is not shared; read a table version (each snapshot is one) instead")


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    predicateHints: list[str] | None = None  # noqa: N815 (the protocol's names)
    jsonPredicateHints: str | None = None  # noqa: N815
    limitHint: int | None = Field(default=None, ge=0)  # noqa: N815
    version: int | None = Field(default=None, ge=0)
    timestamp: str | None = None
    startingVersion: int | None = None  # noqa: N815
    endingVersion: int | None = None  # noqa: N815
    includeRefreshToken: bool = False  # noqa: N815
    refreshToken: str | None = None  # noqa: N815


async def _query_body(request: Request) -> QueryBody:
    raw = await request.body()
    try:
        return QueryBody.model_validate_json(raw or b"{}")
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "body"
        raise sharing.SharingError(f"{where}: {first.get('msg', 'invalid')}") from None


@router.post(PREFIX + "/shares/{share}/schemas/{schema}/tables/{table}/query",
             summary="Delta Sharing: read a table version (protocol, metadata and signed file URLs)")
def query_table(share: str, schema: str, table: str, request: Request, session: DbSession, access: SharingAccess,
                body: Annotated[QueryBody, Depends(_query_body)]) -> Response:
    started = time.perf_counter()
    sharing.check_table(access, share, schema, table)
    state = request.app.state
    if body.startingVersion is not None or body.endingVersion is not None:
        raise sharing.SharingError("startingVersion: the change data feed is not shared; read a version instead")
    if body.version is not None and body.timestamp is not None:
        raise sharing.SharingError("version and timestamp: give one of them, not both")
    refreshing = body.refreshToken is not None
    number = (sharing.refreshed_version(state.keystore, access=access, refresh=body.refreshToken, settings=state.settings)
              if refreshing else body.version)
    version = sharing.table_version(session, access.scope, version=number, timestamp=body.timestamp)
    file = sharing.ensure_file(session, scope=access.scope, version=version, store=state.store, today=approvals.today(state.settings))
    lines = _protocol_lines(access, file)
    predicate = sharing.parse_predicate(body.jsonPredicateHints)
    # Hints only drop the file when it cannot help: no rows wanted, or none that may match.
    wanted = body.limitHint != 0 and (predicate is None or sharing.may_match(predicate, file.stats, hidden=access.scope.masked))
    if refreshing:
        wanted = True  # a refresh renews the URLs of the read it continues
    url, expires_ms = sharing.file_url(file=file, token=access.token, settings=state.settings,
                                       secret=sharing.url_secret(state.keystore))
    if state.settings.downloads == "presigned":  # as Delta Sharing intends: the reader fetches from the object store
        url = state.store.presigned_url(file.path, expires_seconds=state.settings.sharing_url_seconds)
    if wanted:
        lines.append({"file": {
            "url": url, "id": file.id, "partitionValues": {}, "size": file.size_bytes,
            "stats": json.dumps(file.stats, separators=(",", ":")), "version": file.version_number,
            "expirationTimestamp": expires_ms,
        }})
        if not refreshing:
            _record(request, session, access, file, started)
    if body.includeRefreshToken or refreshing:
        lines.append({"endStreamAction": {
            "refreshToken": body.refreshToken or sharing.refresh_token(state.keystore, access=access, version=version.number),
            "minUrlExpirationTimestamp": expires_ms,
        }})
    return _ndjson(lines, version.number)


def _record(request: Request, session, access: sharing.Access, file, started: float) -> None:
    """A file handed out is a delivery: on the ledger (citizens find it through its grant and version) and the audit chain."""
    scope = access.scope
    request.app.state.ledger.record(LedgerLine(
        kind="extract", client_id=f"sharing-token:{access.token.id}", department=access.grant.department_code,
        dataset=scope.dataset.code, grant_id=access.grant.id, application_id=scope.application.id,
        service_item=scope.application.service_item, basis=scope.application.basis, purpose=scope.application.purpose, rows=file.rows,
        latency_ms=(time.perf_counter() - started) * 1000, extract_id=file.id,
    ))
    audit.record(session, actor=f"sharing-token:{access.token.id}", action="sharing.file_served", subject=f"grant:{access.grant.id}",
                 details={"file": file.id, "version": file.version_number, "rows": file.rows, "sha256": file.sha256})


@router.get(PREFIX + "/files/{file_id}", response_class=FileResponse,
            summary="Delta Sharing: a file, through the signed URL a query gave (HTTP Range supported)")
@router.head(PREFIX + "/files/{file_id}", response_class=FileResponse, operation_id="sharing_file_head",
             summary="Delta Sharing: a file's size, for readers that ask before reading")
def sharing_file(file_id: str, request: Request, session: DbSession, token: int = 0, expires: int = 0,
                 signature: str = "") -> FileResponse:
    state = request.app.state
    if not sharing.url_is_valid(file_id=file_id, token_id=token, expires=expires, signature=signature,
                                secret=sharing.url_secret(state.keystore)):
        raise sharing.SharingForbidden("this file URL is forged or has expired; query the table again, or refresh")
    file = sharing.servable_file(session, file_id=file_id, token_id=token, settings=state.settings)
    path = state.store.local_path(file.path)
    ranges.planned_delivery(request, path)  # a refused Range: a problem, not text
    return FileResponse(path, media_type="application/vnd.apache.parquet",
                        headers={"Cache-Control": "no-store"})
