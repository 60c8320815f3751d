"""HTTP routes of the connectors: a dataset's source binding, syncing it now, and its sync runs."""

# No "from __future__ import annotations": FastAPI must see the dependency types as objects.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from connectors import service
from directory import service as directory
from directory.models import Dataset
from govshare.auth import Caller, require
from govshare.db import DbSession, release_request_session
from govshare.errors import PROBLEM_MEDIA_TYPE, problem_body

router = APIRouter(prefix="/api/v1", tags=["connectors"])

SourceManager = Annotated[Caller, Depends(require("sources.manage"))]
# How a failed sync answers, by the problem type recorded on its run.
FAILURE_STATUS = {
    "source-schema-drift": 409, "dataset-retired": 409, "version-conflict": 409,
    "version-refused": 422, "invalid-file": 422, "invalid-source": 422, "source-failed": 502, "source-timeout": 504,
    "sync-failed": 500,
    "sync-running": 409, "sync-interrupted": 409,
}


def _dataset_for_source_manager(code: str, session: DbSession, caller: SourceManager) -> Dataset:
    return directory.ensure_own(directory.get_dataset(session, code), department=caller.department)


OwnDataset = Annotated[Dataset, Depends(_dataset_for_source_manager)]


class SourceBody(BaseModel):
    kind: str = Field(description="sql, files or http")
    config: dict[str, Any] = Field(
        description="sql: url (its password is stored encrypted), table (and schema) or query; "
        "files: path (under the sources folder, or s3://bucket/prefix with endpoint, access_key, secret_key), format parquet or csv; "
        "http: url, records (the key of the records list), next (the key of the next page's link) or page_param, token (a bearer token)"
    )
    mapping: dict[str, str] | None = Field(None, description="data item -> source column; by default items map to same-named columns")
    mode: str = "full"
    update_column: str | None = None
    key_column: str | None = Field(None, description="the item that identifies a row (default: the lookup key)")


@router.put("/datasets/{code}/source", summary="Bind a dataset to the source its data is synced from")
def bind_source(request: Request, session: DbSession, dataset: OwnDataset, caller: SourceManager, body: SourceBody) -> dict[str, Any]:
    state = request.app.state
    code = dataset.code
    # The source is read (its columns) with no transaction open and the session slot given back:
    # a source that is slow to answer, or never does, must not hold the record store's write
    # lock (SQLite) from every other writer. The binding is then written in a short transaction.
    release_request_session(session)
    inspected = service.inspect_source(
        kind=body.kind, config=body.config, files_root=state.settings.resolved_sources_dir,
        connect_timeout=state.settings.source_connect_timeout_seconds,
    )
    with state.database.transaction() as write:
        # Looked up again: the dataset may have changed hands while the source was read.
        dataset = directory.ensure_own(directory.get_dataset(write, code), department=caller.department)
        binding = service.bind_source(
            write, dataset=dataset, kind=body.kind, config=body.config, mapping=body.mapping, mode=body.mode,
            update_column=body.update_column, key_column=body.key_column, keystore=state.keystore, actor=caller.actor,
            files_root=state.settings.resolved_sources_dir, inspected=inspected,
        )
        return service.binding_view(write, dataset=dataset, binding=binding)


@router.get("/datasets/{code}/source", summary="A dataset's source binding (never its credential), last sync and freshness")
def get_source(session: DbSession, dataset: OwnDataset) -> dict[str, Any]:
    return service.binding_view(session, dataset=dataset, binding=service.get_binding(session, dataset=dataset))


@router.post("/datasets/{code}/sync", status_code=201, summary="Sync a dataset from its source now")
def sync_now(
    request: Request, session: DbSession, dataset: OwnDataset, caller: SourceManager,
    full: Annotated[bool, Query(description="read everything even when the binding is incremental")] = False,
) -> Any:
    state = request.app.state
    code = dataset.code
    # End the request's transaction (it has only read) and give back its session slot, so neither a
    # lock nor a slot is held while the sync reads its source, for minutes perhaps: the sync writes
    # in short transactions of its own.
    release_request_session(session)
    run = service.run_sync(
        state.database, dataset_code=code, store=state.store, keystore=state.keystore, actor=caller.actor,
        full=full, files_root=state.settings.resolved_sources_dir,
    )
    if run.outcome == "ok":
        return service.run_view(run)
    # The failed run is recorded (no exception): the answer is the problem and the run.
    status = FAILURE_STATUS.get(run.error_type or "", 502)
    body = problem_body(
        status=status, type=run.error_type or "source-failed", title="Sync failed", detail=run.error or "the sync failed",
        instance=request.url.path, extra={"sync_run": service.run_view(run)},
    )
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


@router.get("/datasets/{code}/syncs", summary="A dataset's sync runs, newest first")
def list_syncs(session: DbSession, dataset: OwnDataset) -> dict[str, Any]:
    binding = service.get_binding(session, dataset=dataset)
    return {"dataset": dataset.code, "runs": [service.run_view(run) for run in service.list_runs(session, binding=binding)]}
