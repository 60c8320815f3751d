"""One error model: RFC 9457 problem details for clients, an error page for browsers.

Every domain raises subclasses of ``GovshareError`` (in its own ``errors.py``); the
handlers installed by ``install_error_handlers`` turn any error, including
framework ones and unexpected exceptions, into the same shape.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

log = logging.getLogger("govshare.errors")

PROBLEM_BASE = "urn:govshare:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class GovshareError(Exception):
    """An error a caller can act on; ``type`` is stable and documented."""

    status: int = 500
    type: str = "internal-error"
    title: str = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        type: str | None = None,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if title is not None:
            self.title = title
        self.extra = extra or {}
        self.headers = headers or {}


class Unauthenticated(GovshareError):
    status, type, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str = "a valid bearer token is required", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="govshare"'})
        super().__init__(detail, **kwargs)


class Forbidden(GovshareError):
    status, type, title = 403, "forbidden", "Not allowed"


class NotFound(GovshareError):
    status, type, title = 404, "not-found", "Not found"


class Conflict(GovshareError):
    status, type, title = 409, "conflict", "Conflicting state"


class InvalidInput(GovshareError):
    status, type, title = 422, "invalid-input", "Invalid input"


class StoreBusy(GovshareError):
    status, type, title = 503, "store-busy", "Record store busy"

    def __init__(self, detail: str = "the record store is busy with other writes; try again shortly", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"Retry-After": "1"})
        super().__init__(detail, **kwargs)


# Framework errors (routing, method, body size) keep a stable type per status.
_STATUS_TYPES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at this request's path."""
    from starlette.routing import Match

    methods: set[str] = set()
    for candidate in request.app.router.routes:
        for route in getattr(candidate, "effective_candidates", lambda: [candidate])():
            if getattr(route, "methods", None) and route.matches(request.scope)[0] != Match.NONE:
                methods |= set(route.methods)
    return sorted(methods)


def problem_body(*, status: int, type: str, title: str, detail: str, instance: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    """The problem+json document (RFC 9457) for one error."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    path = request.url.path
    pages = path.startswith("/ui") or path == "/me" or path.startswith("/me/")  # the staff's pages and the citizen's
    return pages and "text/html" in accept


def _render(request: Request, body: dict[str, Any], headers: dict[str, str] | None = None):
    from fastapi.responses import JSONResponse

    error_page = getattr(request.app.state, "error_page", None)  # the web UI's, installed by govshare.app
    if error_page is not None and _wants_html(request):
        return error_page(request, body, headers)
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Make every 4xx and 5xx of ``app`` a problem+json (or an error page under /ui)."""
    # Imported here, not above: the error classes are raised by every command too, which
    # need not load the web framework (see govshare.cli).
    from fastapi.exceptions import RequestValidationError
    from sqlalchemy.exc import DataError, OperationalError
    from sqlalchemy.orm.exc import StaleDataError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from govshare.db import is_contention
    from govshare.storable import unstorable_text

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError):
        # Only input nested beyond reason recurses this deep (JSON parsing, validation).
        body = problem_body(
            status=422, type="invalid-input", title="Invalid input",
            detail="the request is nested too deeply to be processed", instance=request.url.path, extra={},
        )
        return _render(request, body)

    async def _invalid_body(request: Request, problem: str):
        message = "not a JSON document in UTF-8" if problem == "There was an error parsing the body" else problem
        body = problem_body(
            status=422, type="invalid-input", title="Invalid input", detail=f"body: {message}", instance=request.url.path,
            extra={"errors": [{"location": ["body"], "message": message, "rule": "body_invalid"}]},
        )
        return _render(request, body)

    @app.exception_handler(GovshareError)
    async def _govshare_error(request: Request, exc: GovshareError):
        body = problem_body(
            status=exc.status, type=exc.type, title=exc.title, detail=exc.detail,
            instance=request.url.path, extra=exc.extra,
        )
        return _render(request, body, exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        # For a page (govshare.web.address): which part of the address is wrong, in words; the
        # problem+json below keeps the framework's, naming the field, for API clients.
        request.state.validation_errors = exc.errors()
        errors = [
            {"location": list(error.get("loc", ())), "message": error.get("msg", ""), "rule": error.get("type", "")}
            for error in exc.errors()
        ]
        first = errors[0] if errors else {"location": [], "message": "invalid request"}
        where = ".".join(str(part) for part in first["location"])
        body = problem_body(
            status=422, type="invalid-input", title="Invalid input",
            detail=f"{where}: {first['message']}" if where else first["message"],
            instance=request.url.path, extra={"errors": errors},
        )
        return _render(request, body)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.__cause__, RecursionError):
            # FastAPI reports a body its JSON parser could not descend as a vague 400.
            return await _too_deep(request, exc.__cause__)
        status = exc.status_code
        if status == 400:
            # The framework's answer to a body it cannot parse (not JSON, not UTF-8, broken
            # multipart): invalid input like any other.
            return await _invalid_body(request, exc.detail if isinstance(exc.detail, str) else "cannot be read")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) else phrase
        headers = dict(getattr(exc, "headers", None) or {})
        if status == 405:
            # The router names the methods of the first route matching the path only; a path
            # served by several routes (one per method) allows all of theirs.
            headers["Allow"] = ", ".join(allowed_methods(request))
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        body = problem_body(
            status=status, type=_STATUS_TYPES.get(status, f"http-{status}"), title=phrase,
            detail=detail, instance=request.url.path, extra={},
        )
        return _render(request, body, headers)

    @app.exception_handler(StaleDataError)
    async def _stale(request: Request, exc: StaleDataError):
        # An optimistic lock lost: someone else changed the same record in the meantime.
        body = problem_body(
            status=409, type="conflict", title="Conflicting state",
            detail="someone else changed this record at the same time; reload it and try again",
            instance=request.url.path, extra={},
        )
        return _render(request, body)

    @app.exception_handler(OperationalError)
    async def _store_error(request: Request, exc: OperationalError):
        if not is_contention(exc):
            return await _unexpected(request, exc)
        log.warning("record store busy on %s %s: %s", request.method, request.url.path, exc.orig)
        return await _govshare_error(request, StoreBusy())

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _cannot_be_stored(request: Request, exc: Exception):
        # A value the record store refuses (a number beyond its integers; a NUL character in
        # text, which psycopg refuses and govshare.db's SQLite engine alike): the input's fault,
        # not ours. The transaction has been rolled back.
        detail = "a value in the request is out of the range this server stores (a number too large?)"
        if "NUL" in str(exc):  # "... text fields cannot contain NUL (0x00) bytes", from either store
            # Documents checked against a schema are refused by field before this; a body model's
            # text (a comment, a reason) is found here, in the JSON the route parsed (kept on the request).
            found = [error["field"] for error in unstorable_text(await _parsed_json(request))]
            detail = (f"{found[0]}: " if found else "") + "text in the request contains a NUL character (\\u0000), which cannot be stored"
        body = problem_body(status=422, type="invalid-input", title="Invalid input", detail=detail,
                            instance=request.url.path, extra={})
        return _render(request, body)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        body = problem_body(
            status=500, type="internal-error", title="Internal error",
            detail="the server failed to handle this request; it has been logged",
            instance=request.url.path, extra={},
        )
        return _render(request, body)


async def _parsed_json(request: Request) -> Any:
    """The request's JSON body as its route parsed it (Starlette keeps it on the request), or None."""
    try:
        return await request.json() if request.headers.get("content-type", "").startswith("application/json") else None
    except Exception:  # not JSON, or a body not kept: the detail then names no field
        return None
