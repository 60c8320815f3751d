"""Request limits: head arrival time, body size (413) and body arrival time (408), before any route reads a byte.

File uploads (multipart) may be as large as ``max_request_bytes``; every other body
(JSON, forms) is capped at ``max_json_bytes``, because those are parsed whole in
memory. A body must arrive within ``body_timeout_seconds`` of the first read, so a
client trickling bytes cannot hold a worker for ever. The request head (request line
and headers) must arrive within ``header_timeout_seconds``: that one is kept by the
HTTP protocol ``govshare serve`` runs (``HeadDeadlineProtocol``), since no ASGI
middleware sees a request before its head is complete.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qsl

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

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


async def _send_problem(send: Send, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": body["status"],
                "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class QueryText:
    """Refuses a query string holding a NUL character (422 naming the parameter), on every route alike.

    No record store keeps a NUL (PostgreSQL refuses it), so a parameter holding one can match
    nothing; refusing it here answers every route the same way, as the OpenAPI document says
    (govshare.openapi gives every text query parameter that pattern).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"%00" in query or b"\x00" in query:
            names = [name for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if "\x00" in name + value]
            where = names[0] if names else "query string"  # named as every invalid-input detail names its field
            await _send_problem(send, problem_body(status=422, type="invalid-input", title="Invalid input",
                                                   detail=f"{where}: contains a NUL character (\\u0000), which no query parameter may hold",
                                                   instance=scope.get("path"), extra={}))
            return
        await self.app(scope, receive, send)


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


class CoalescingTransport:
    """A connection's transport whose writes made in one step of the event loop leave in one system call.

    uvicorn writes a response's head and its body apart, two sends where one would do; on
    loopback each send costs the kernel's whole delivery to the peer, the most expensive step
    of a small answer (evaluation/bench/REPORT.md, "live"). Writes are gathered and sent when
    the step ends, or at once past ``FLUSH_BYTES`` so that a large body meets the real
    transport's flow control as before. Everything else is the real transport's.
    """

    FLUSH_BYTES = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request head has not arrived ``head_timeout`` seconds on.

    uvicorn closes a kept-alive connection left idle (after 5 s), but puts no limit on how
    long a request's head may take: a client sending its headers a byte at a time (slowloris)
    held its connection, and a slot of the server, for ever. The clock starts when the
    connection opens and, on a kept-alive connection, at the first byte of each further
    request; it stops once the head is complete (the body has its own deadline, BodyTimeout).
    A client that sent part of a head gets a 408 before the connection is closed.
    """

    head_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_deadline: asyncio.TimerHandle | None = None
        super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._head_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()  # the first bytes of a further request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_deadline()  # the head is in (or the connection is done with)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head_deadline()  # a pipelined request's head, already buffered, was read
        elif self.conn.trailing_data[0]:
            self._arm_head_deadline()  # part of the next head came during the response

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial, _ = self.conn.trailing_data
        if partial:
            # Written by hand: h11 will not send a response to a request it has not read.
            self.logger.warning("request head not complete within %g seconds; connection closed", self.head_timeout)
            payload = json.dumps(problem_body(
                status=408, type="request-timeout", title="Request Timeout", instance=None, extra={},
                detail=f"the request head (request line and headers) did not arrive within {self.head_timeout:g} seconds",
            )).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: " + PROBLEM_MEDIA_TYPE.encode()
                                 + b"\r\ncontent-length: " + str(len(payload)).encode() + b"\r\nconnection: close\r\n\r\n" + payload)
        self.transport.close()
