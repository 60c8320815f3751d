"""Submit once: service systems deposit what citizens submitted into an intake dataset."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from exchange.intake import service as intake
from exchange.dependencies import IntakeDatasetForDepositor
from exchange.ledger import LedgerLine
from govshare.auth import Caller, require
from govshare.db import DbSession

router = APIRouter(prefix="/api/v1", tags=["exchange"])


class DepositBody(BaseModel):
    consent_ref: str = Field(min_length=1, max_length=200, description="the citizen's consent to reuse, as recorded by the service")
    records: list[dict[str, Any]] = Field(min_length=1, max_length=intake.MAX_RECORDS)


@router.post("/exchange/{code}/records", status_code=201, summary="Deposit what citizens submitted into an intake dataset (submit once)")
def deposit(code: str, body: DepositBody, request: Request, session: DbSession, dataset: IntakeDatasetForDepositor,
            caller: Annotated[Caller, Depends(require("exchange.deposit"))]) -> dict[str, Any]:
    started = time.perf_counter()
    work_dir = request.app.state.settings.resolved_cache_dir / "intake"
    keys = intake.deposit(session, dataset=dataset, records=body.records, consent_ref=body.consent_ref,
                          department=caller.department, client_id=caller.client_id, work_dir=work_dir)
    request.app.state.ledger.record(LedgerLine(
        kind="deposit", client_id=caller.client_id, department=caller.department, dataset=code, grant_id=None,
        application_id=None, service_item=None, basis=f"citizen consent {body.consent_ref}", rows=len(keys), keys=keys,
        latency_ms=(time.perf_counter() - started) * 1000,
    ))
    return {"dataset": code, "deposited": len(keys), "keys": keys}
