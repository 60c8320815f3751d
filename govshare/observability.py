"""Health and Prometheus metrics: request counts and latency by route and status; the process's memory; the access ledger writer's backlog, retries and losses. The server's log, kept free of personal data (``govshare.logs``)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from govshare.logs import WITHHELD, WithholdPersonalData, log_config, withhold_path  # noqa: F401 (their home before)


class RequestMetrics:
    """The metrics of one app (a registry each, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU seconds, open files
        self.requests = Counter(
            "govshare_http_requests", "HTTP requests handled", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "govshare_http_request_duration_seconds", "Time to answer an HTTP request",
            ["method", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.ledger = LedgerMetrics(self.registry)


class LedgerMetrics:
    """The access ledger writer's health: what waits to be written, what was tried again, what was lost."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.backlog = Gauge(
            "govshare_ledger_backlog", "Access ledger lines handed to the writer and not yet committed", registry=registry
        )
        self.batch_retries = Counter(
            "govshare_ledger_batch_retries",
            "Writes of a batch of ledger lines tried again because the record store was busy or away", registry=registry,
        )
        self.lines_lost = Counter(
            "govshare_ledger_lines_lost",
            "Ledger lines never written: refused by the store for what they hold, or still unwritten at shutdown",
            registry=registry,
        )


class MetricsMiddleware:
    """Counts every HTTP request under its route template (never the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)


router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness and readiness: the record store and the keys answer")
def healthz(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, Any] = {}
    try:
        with state.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # health must report, not raise
        checks["database"] = f"failing: {type(error).__name__}"
    checks["keys"] = "ok" if state.keystore.exists() else "missing"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if healthy else "failing", "checks": checks}, status_code=200 if healthy else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
