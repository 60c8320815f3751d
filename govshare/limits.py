"""Request limits: body size (413) and body arrival time (408), before any route reads a byte.

File uploads (multipart) may be as large as ``max_request_bytes``; every other body
(JSON, forms) is capped at ``max_json_bytes``, because those are parsed whole in
memory. A body must arrive within ``body_timeout_seconds`` of the first read, so a
client trickling bytes cannot hold a worker for ever.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from govshare.errors import PROBLEM_MEDIA_TYPE, problem_body


# Raised while a route reads its body. Starlette HTTPExceptions, because FastAPI passes those
# through its body parsing as they are, where any other error would become a vague 400.
def _too_large(detail: str) -> HTTPException:
    return HTTPException(413, detail, headers={"Connection": "close"})


def _too_slow(detail: str) -> HTTPException:
    return HTTPException(408, detail, headers={"Connection": "close"})


class BodySizeLimit:
    """Checks the declared length up front and counts streamed (chunked) bodies as they arrive."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_bytes: int | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.max_json_bytes = min(max_json_bytes, max_bytes) if max_json_bytes is not None else max_bytes

    def _limit(self, scope: Scope) -> int:
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").lower()
        return self.max_bytes if content_type.startswith(b"multipart/") else self.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        received = 0

        async def _counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(self._detail(limit))
            return message

        await self.app(scope, _counting_receive, send)

    def _detail(self, limit: int) -> str:
        if limit < self.max_bytes:
            return (f"the request body exceeds the limit of {limit} bytes for JSON and form bodies; "
                    f"only multipart file uploads may be larger (up to {self.max_bytes} bytes)")
        return f"the request body exceeds the limit of {limit} bytes"

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        body = problem_body(status=413, type="payload-too-large", title="Request body too large",
                            detail=self._detail(limit), instance=scope.get("path"), extra={})
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class BodyTimeout:
    """Answers 408 when a request body has not fully arrived ``timeout`` seconds after it was first read."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        complete = False

        async def _timed_receive() -> Message:
            nonlocal deadline, complete
            if complete:
                # After the body, receive() only waits for a disconnect: no deadline on that.
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.timeout
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise _too_slow(
                    f"the request body did not arrive within {self.timeout:g} seconds; send it faster or in a smaller request"
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, _timed_receive, send)
