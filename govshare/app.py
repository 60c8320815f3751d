"""The application factory: the shell's routers plus every domain's."""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from approvals import api as approvals_api
from approvals import views as approvals_views
from approvals import jobs as approvals_jobs
from approvals import scope as approvals_scope
from connectors import api as connectors_api
from connectors import jobs as connectors_jobs
from connectors import service as connectors_service
from directory import api as directory_api
from directory import search
from directory import service as directory_service
from evaluation import api as evaluation_api
from evaluation import views as evaluation_views
from exchange.citizens import api as exchange_citizens_api
from exchange.citizens import views as exchange_citizens_views
from exchange.extracts import api as exchange_extracts_api
from exchange.intake import api as exchange_intake_api
from exchange.interfaces import api as exchange_interfaces_api
from exchange.stores import keyed_store
from exchange import jobs as exchange_jobs
from exchange.live import service as exchange_live
from exchange.live import api as exchange_live_api
from exchange.sharing import api as exchange_sharing_api
from exchange.sharing import views as exchange_sharing_views
from exchange.ledger import LedgerWriter
from exchange.ratelimit import limiter_for
from govshare import __version__, audit, memory, oauth, observability, storage
from govshare.db import Database
from govshare.errors import install_error_handlers
from govshare.jobs import JobRunner
from govshare.keys import KeyStore
from govshare.limits import BodySizeLimit, BodyTimeout, QueryText
from govshare.openapi import document_errors
from govshare.settings import Settings, get_settings
from govshare import web


# FastAPI's own OpenTelemetry bridge (FastAPI 0.16x) asks the tracer, meter and logger providers and the environment
# on every request: 4% of a live call's CPU, for telemetry govshare does not use (its metrics are govshare.observability's).
_NO_FASTAPI_TELEMETRY = ({"telemetry": {"tracing": False, "metrics": False, "logs": False}}
                         if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


def create_app(settings: Settings | None = None) -> FastAPI:
    """A govshare app over the store that ``settings`` names (which must be initialised)."""
    settings = settings or get_settings()
    keystore = KeyStore(settings.resolved_keys_dir)
    database = Database(settings.resolved_database_url, keystore=keystore, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds)

    runner = JobRunner(database, lease_seconds=settings.job_lease_seconds)
    if settings.jobs_enabled:
        for job in [*approvals_jobs.jobs(settings), *exchange_jobs.jobs(settings, keystore), *connectors_jobs.jobs(settings, keystore)]:
            runner.add(job)

    metrics = observability.RequestMetrics()
    ledger = LedgerWriter(database, backlog_limit=settings.ledger_backlog_limit, high_water=settings.ledger_high_water,
                          wait_seconds=settings.ledger_wait_seconds, metrics=metrics.ledger)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # What a process killed outright (SIGKILL) left behind: runs ended as interrupted, temporary files removed.
        connectors_service.recover_interrupted(database)
        app.state.store.remove_stale_temporaries()
        # Directory search's filter columns, read now rather than by the first search: reading
        # them whole is slow at scale, a change afterwards costs little (evaluation/bench/REPORT.md).
        with database.transaction(write=False) as session:
            search.filter_columns(session)
        ledger.start()
        runner.start()
        yield
        runner.stop()
        ledger.stop()
        await app.state.live.aclose()
        database.dispose()

    # /docs and /redoc from assets shipped in the fastapi-offline package, not a CDN: they work without internet.
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="govshare",
        version=__version__,
        summary="Data-sharing exchange and resource directory for government departments",
        lifespan=lifespan,
        **_NO_FASTAPI_TELEMETRY,
    )
    app.state.settings = settings
    app.state.keystore = keystore
    app.state.store = storage.for_settings(settings)
    app.state.database = database
    app.state.ledger = ledger
    app.state.jobs = runner
    app.state.rate_limiter = limiter_for(settings)
    app.state.live = exchange_live.Protection.for_settings(settings)
    app.state.metrics = metrics
    metrics.registry.register(memory.MemoryCollector(keyed_store_memory=keyed_store.memory_bytes))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes, max_json_bytes=settings.max_json_bytes)
    app.add_middleware(BodyTimeout, timeout=settings.request_body_timeout_seconds)
    app.add_middleware(QueryText)
    app.add_middleware(observability.MetricsMiddleware, metrics=app.state.metrics)
    install_error_handlers(app)

    # First the interface calls and the live calls, the busiest routes: routes are matched in order.
    app.include_router(exchange_interfaces_api.router)
    app.include_router(exchange_live_api.router)
    app.include_router(exchange_intake_api.router)
    app.include_router(exchange_extracts_api.router)
    app.include_router(observability.router)
    app.include_router(oauth.router)
    app.include_router(audit.router)
    app.include_router(directory_api.router)
    app.include_router(connectors_api.router)
    directory_service.add_view_extension(connectors_service.sync_summary)
    directory_service.add_version_warning(approvals_scope.version_warnings)
    app.include_router(approvals_api.router)
    app.include_router(exchange_sharing_api.router)
    app.include_router(exchange_citizens_api.router)
    app.include_router(evaluation_api.router)
    web.install(app, navigation=[*approvals_views.NAVIGATION, *evaluation_views.NAVIGATION, *exchange_sharing_views.NAVIGATION])
    app.include_router(approvals_views.router)
    app.include_router(evaluation_views.router)
    app.include_router(exchange_sharing_views.router)
    app.include_router(exchange_citizens_views.router)
    document_errors(app)
    return app
