"""The OpenAPI document describes errors too: each operation's problem responses, derived, not hand-written.

FastAPI documents what a route returns when it succeeds. What it answers when it refuses
follows from how the route is reached and what it takes, so it is added here for every
operation, new ones included: 401 and 403 where a token is needed
(``govshare.permissions.ROUTES``), 404 where a path or a body names something, 409 where
the request changes state, 413 where there is a body, 422 where there is input, 429 where
calls are rate-limited, 400 where a protocol says so (OAuth2, Delta Sharing). Each is
``application/problem+json`` with the one ``Problem`` schema.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI

from govshare import permissions
from govshare.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from govshare.models import Role

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error (RFC 9457 problem details); ``type`` is stable, ``detail`` says what and where.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": f"{PROBLEM_BASE}<slug>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}, "description": "with 422: each invalid place"},
    },
    "additionalProperties": True,
}
# A client's roles are its token's scopes; each operation names the roles PERMISSIONS allows it.
SECURITY_SCHEMES: dict[str, Any] = {
    "oauth2": {"type": "oauth2", "flows": {"clientCredentials": {
        "tokenUrl": "/oauth/token", "scopes": {str(role): f"act as {role}" for role in Role}}}},
    "sharingToken": {"type": "http", "scheme": "bearer", "description": "the bearerToken of a Delta Sharing profile file"},
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
WRITING_METHODS = {"post", "put", "patch", "delete"}
RATE_LIMITED = {"exchange.read", "exchange.deposit", permissions.SHARING_TOKEN}
# Protocols whose own errors include a 400: OAuth2 (RFC 6749 5.2) and Delta Sharing (its PROTOCOL.md).
PROTOCOL_400 = ("/oauth/", "/delta-sharing/")


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation may answer, from how it is reached and what it takes."""
    access = permissions.ROUTES.get(f"{method.upper()} {path}")
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    statuses: set[int] = set()
    if access != permissions.PUBLIC:
        statuses |= {401, 403} if access != permissions.SIGNED_URL else {403}
    if "{" in path or operation.get("requestBody") or access in (permissions.SIGNED_URL, permissions.SHARING_TOKEN):
        statuses.add(404)
    if method in WRITING_METHODS and access != permissions.PUBLIC:
        statuses.add(409)
    if operation.get("requestBody") or method in WRITING_METHODS:
        statuses.add(413)
    if takes_input or method in WRITING_METHODS:
        statuses.add(422)
    if access in RATE_LIMITED:
        statuses.add(429)
    if path.startswith(PROTOCOL_400):
        statuses.add(400)
    if path.startswith("/oauth/") and method in WRITING_METHODS:
        statuses.add(401)  # client authentication failed (RFC 6749 5.2)
    return statuses


# Record ids are PostgreSQL integers: a larger one names nothing and cannot be looked up.
MAX_ID = 2**31 - 1


def _bound_id(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema", {})
    if parameter.get("in") == "path" and schema.get("type") == "integer":
        schema.setdefault("minimum", 1)
        schema.setdefault("maximum", MAX_ID)


# A NUL can be in no stored text, and govshare.limits.QueryText refuses it in any query string.
NO_NUL = "^[^\\u0000]*$"


def _text_without_nul(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema", {})
    for option in [schema, *schema.get("anyOf", [])]:
        if parameter.get("in") == "query" and option.get("type") == "string" and "enum" not in option:
            option.setdefault("pattern", NO_NUL)


def problem_response(status: int) -> dict[str, Any]:
    return {"description": HTTPStatus(status).phrase, "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}}


def add_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (an OpenAPI document of this app) with every operation's problem responses and the Problem component."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    # FastAPI's own 422 shape is never sent: the error handler answers every validation error as a problem.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    schema["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            access = permissions.ROUTES.get(f"{method.upper()} {path}")
            if access == permissions.SHARING_TOKEN:
                operation["security"] = [{"sharingToken": []}]
            elif access in permissions.PERMISSIONS:
                operation["security"] = [{"oauth2": sorted(str(role) for role in permissions.roles_for(access))}]
            for parameter in operation.get("parameters", []):
                _bound_id(parameter)
                _text_without_nul(parameter)
            responses = operation["responses"]
            for status in sorted(error_statuses(method, path, operation)):
                responses[str(status)] = problem_response(status)
    return schema


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe each operation's error responses (and keep describing new routes' alike)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_error_responses(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
