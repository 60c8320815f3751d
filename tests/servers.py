"""Servers the tests run: ``govshare serve`` as a child process, and a paged JSON source on a thread."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx

from evaluation.bench.servers import free_port

GOVSHARE = str(Path(sys.executable).with_name("govshare"))


class GovshareServer:
    """``govshare serve`` on a free loopback port, with its output in ``log``; ``start`` again after ``kill`` to restart.

    ``env`` is laid over this process's environment; a value of None unsets that variable
    (GOVSHARE_ISSUER unset: the issuer follows the port served).
    """

    def __init__(self, env: dict[str, str | None], log: Path, *, args: tuple[str, ...] = (), up_within: float = 60) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {name: value for name, value in {**os.environ, **env}.items() if value is not None}
        self.log = log
        self.args, self.up_within = [*args, "--port", str(self.port)], up_within
        self.process: subprocess.Popen | None = None

    def start(self) -> GovshareServer:
        with self.log.open("a") as output:  # appended: a restart keeps the earlier lives' output
            self.process = subprocess.Popen([GOVSHARE, "serve", *self.args], env=self.env, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.up_within
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"the server did not come up within {self.up_within:g} s:\n{self.log.read_text()[-5000:]}"
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        """SIGKILL: no shutdown handler, no cleanup, no commit runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def __enter__(self) -> GovshareServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PagedSource:
    """A department's JSON API: pages of ``records`` linked by a ``next`` path, optionally behind a bearer token.

    ``before_page(offset)`` runs before each page is sent: a test holds a page there (a source mid-way through a read).
    """

    def __init__(self, records: list[dict] | None = None, *, page_size: int = 2, records_key: str = "records", next_key: str = "next",
                 token: str | None = None, before_page: Callable[[int], None] | None = None) -> None:
        self.records, self.page_size, self.records_key, self.next_key = records or [], page_size, records_key, next_key
        self.token, self.before_page = token, before_page
        self.requests: list[str] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                source.requests.append(self.path)
                if source.token is not None and self.headers.get("Authorization") != f"Bearer {source.token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                query = parse_qs(urlparse(self.path).query)
                if "page" in query:  # page-number paging, 1-based
                    query["offset"] = [str((int(query["page"][0]) - 1) * source.page_size)]
                offset = int(query.get("offset", ["0"])[0])
                if source.before_page is not None:
                    source.before_page(offset)
                following = offset + source.page_size
                body = {source.records_key: source.records[offset:following],
                        source.next_key: f"/people?offset={following}" if following < len(source.records) else None}
                payload = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler


@contextmanager
def serving(source: PagedSource) -> Iterator[str]:
    """``source`` served on a loopback port by a thread of the test; yields the URL of its first page."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), source.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/people"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def in_thread(app, port: int | None = None, **config) -> Iterator[str]:
    """``app`` served by uvicorn in a thread of the test process on a loopback port; yields its base URL.

    ``config`` goes to ``uvicorn.Config``: with ``ssl_certfile`` it serves HTTPS (and with
    ``ssl_cert_reqs``, mutual TLS).
    """
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "live server did not start"
        time.sleep(0.05)
    try:
        yield f"{'https' if config.get('ssl_certfile') else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_coroutine(coroutine):
    """``asyncio.run`` in a thread of its own: another test's event loop (Playwright's, kept for the session)
    may be running in this one, where ``asyncio.run`` refuses to start."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()
