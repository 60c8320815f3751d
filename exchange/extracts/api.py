"""Table extracts of extract grants: request, status and signed manifest, the download; departments' keys for encrypted ones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from approvals import service as approvals
from exchange import ranges, service
from exchange.citizens import service as citizens
from exchange.errors import ConsentLapsed, ExplicitRequestRequired
from exchange.extracts import service as extracts
from exchange.dependencies import DepartmentForKeyHolder, ExtractForDownload, ExtractForReader, ExtractGrantForRequester
from exchange.interfaces.api import ledger_line
from exchange.models import Extract
from govshare import audit
from govshare.auth import Caller, require
from govshare.db import DbSession

router = APIRouter(prefix="/api/v1", tags=["exchange"])


class ExtractRequest(BaseModel):
    format: str = Field(default="parquet", description="parquet, csv or arrow")
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="a snapshot version; the newest when absent")
    encrypt: bool = Field(default=False, description="encrypt to the department's registered public key")
    csv_formula_guard: bool = Field(default=True, description="csv: prefix text cells starting with = + - @, a tab or a carriage "
                                    "return with ' so spreadsheets do not run them as formulas; false for machine consumers "
                                    "(recorded in the manifest)")


class PublicKeyBody(BaseModel):
    public_key: str = Field(min_length=100, max_length=20000, description="RSA public key, PEM")


def _extract_json(extract: Extract, keystore) -> dict[str, Any]:
    body = {
        "id": extract.id, "grant_id": extract.grant_id, "dataset": extract.dataset_code, "format": extract.format,
        "encrypted": extract.encrypt, "status": extract.status, "progress": round(extract.progress, 3),
        "manifest": extract.manifest, "error": extract.error, "created_at": extract.created_at.isoformat(),
        "finished_at": extract.finished_at.isoformat() if extract.finished_at else None, "download_url": None,
        # Its grant ended and its file was erased (exchange.retention): the record and manifest stay.
        "erased": extract.status == "done" and extract.path is None,
    }
    if extract.status == "done" and extract.path is not None:
        body["download_url"] = extracts.download_link(extract.id, secret=extracts.link_secret(keystore))
    return body


@router.post("/grants/{grant_id}/extracts", status_code=202, summary="Request a table extract of an extract grant")
def request_extract(body: ExtractRequest, request: Request, session: DbSession, scope: ExtractGrantForRequester,
                    caller: Annotated[Caller, Depends(require("extracts.request"))]) -> JSONResponse:
    if citizens.explicit_request(scope.dataset):
        raise ExplicitRequestRequired(f"dataset {scope.dataset.code} is delivered only on the citizen's approval of a request, "
                                      "one citizen at a time; it is not extracted")
    extract = extracts.request_extract(session, scope=scope, actor=caller.actor, format=body.format,
                                       version=body.version, encrypt=body.encrypt, csv_formula_guard=body.csv_formula_guard)
    # Start building once the response (and so the commit) is out, not at the job's next interval.
    return JSONResponse(_extract_json(extract, request.app.state.keystore), status_code=202,
                        headers={"Location": f"/api/v1/extracts/{extract.id}"},
                        background=BackgroundTask(request.app.state.jobs.wake, "extracts"))


@router.get("/extracts/{extract_id}", summary="An extract's status, progress, signed manifest and download link")
def get_extract(request: Request, extract: ExtractForReader) -> dict[str, Any]:
    return _extract_json(extract, request.app.state.keystore)


@router.get("/extracts/{extract_id}/download", summary="The extract file (signed link + a token of the grant's department; Range supported)",
            response_class=FileResponse)
def download_extract(extract_id: str, request: Request, session: DbSession, extract: ExtractForDownload,
                     caller: Annotated[Caller, Depends(require("extracts.request"))]) -> FileResponse:
    started = time.perf_counter()
    state = request.app.state
    today = approvals.today(state.settings)
    scope = service.active_grant(session, department=caller.department, dataset_code=extract.dataset_code,
                                 delivery="extract", today=today, grant_id=extract.grant_id)
    if citizens.consent_required(scope.dataset) and citizens.consent_lapsed(session, file_id=extract.id, today=today):
        raise ConsentLapsed(f"a citizen whose row extract {extract.id} holds has withdrawn their consent (or it ended); "
                            "request a new extract")
    presigned = state.settings.downloads == "presigned"
    if presigned:
        # Straight from the object store: what is handed out is a link to the whole file.
        delivery = ranges.Delivery(None, extract.manifest["bytes"], extract.manifest["bytes"])
    else:
        path = state.store.local_path(extract.path)
        # A Range the file cannot satisfy is refused (400, 416) before the delivery is recorded anywhere.
        delivery = ranges.planned_delivery(request, path)
    line = ledger_line(scope, caller, kind="extract", rows=extract.manifest["rows"], keys=[], status=200, started=started)
    line.extract_id = extract_id
    state.ledger.record(line)
    # A download is a delivery: it goes on the audit chain too (its own write; this request only reads).
    with state.database.transaction() as audit_session:
        audit.record(audit_session, actor=caller.actor, action="extract.downloaded", subject=f"extract:{extract_id}",
                     details={"grant_id": extract.grant_id, "rows": extract.manifest["rows"], "sha256": extract.manifest["sha256"],
                              "range": delivery.described(), "bytes": delivery.bytes})
    if presigned:
        # The link lives no longer than this API's own links.
        url = state.store.presigned_url(extract.path, expires_seconds=int(extracts.LINK_LIFETIME.total_seconds()))
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    media = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv", "arrow": "application/vnd.apache.arrow.file"}
    return FileResponse(
        path,
        media_type="application/octet-stream" if extract.encrypt else media[extract.format],
        filename=Path(extract.path).name,
        headers={"X-Govshare-Sha256": extract.manifest["sha256"]},
    )


@router.put("/departments/{code}/public-key", summary="Register the department's RSA public key for encrypted extracts")
def register_public_key(body: PublicKeyBody, session: DbSession, department: DepartmentForKeyHolder,
                        caller: Annotated[Caller, Depends(require("departments.keys"))]) -> dict[str, Any]:
    key = extracts.register_public_key(session, department=department, public_key_pem=body.public_key, actor=caller.actor)
    return {"department": key.department_code, "registered_at": key.registered_at.isoformat()}
