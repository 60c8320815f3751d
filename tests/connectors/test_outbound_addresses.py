"""Outbound calls refuse internal addresses, after DNS and on every redirect, unless the allowlist names them (issue 21 item 13).

The servers are real, on loopback ports; an address the policy refuses is never connected to,
so the tests naming 169.254.169.254 send nothing anywhere.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from govshare.settings import get_settings
from tests.factories import citizen_id
from tests.servers import PagedSource, serving

CODE = "PSB-HOUSEHOLD"
RECORDS = [{"citizen_id": citizen_id(f"11010119900307{n:03d}"), "name": f"person {n}", "district": "01", "birth_date": "1990-03-07"}
           for n in range(1, 4)]


@pytest.fixture
def allow(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set GOVSHARE_OUTBOUND_ALLOWLIST to the entries given (none: the default, nothing internal)."""

    def _allow(*entries: str) -> None:
        monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", json.dumps(list(entries)))
        get_settings.cache_clear()

    return _allow


@pytest.fixture
def redirector() -> Iterator[Callable[[str], str]]:
    """A loopback server answering every GET with a 302 to a target; ``redirector(target)`` gives its URL by name (localhost)."""
    target: list[str] = []
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            self.send_response(302)
            self.send_header("Location", target[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def to(url: str) -> str:
        target[:] = [url]
        return f"http://localhost:{server.server_address[1]}/moved"

    to.hits = hits
    yield to
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _bind_http(client, directory, url: str):
    return client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "http", "config": {"url": url}}, headers=directory.provider("PSB"))


def _assert_refused(response, *words: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:govshare:problem:outbound-refused"
    assert "GOVSHARE_OUTBOUND_ALLOWLIST" in problem["detail"]
    for word in words:
        assert word in problem["detail"]


def test_a_redirect_from_an_allowed_host_to_a_loopback_port_is_refused(client, directory, allow, redirector):
    directory.dataset()
    source = PagedSource(RECORDS)
    with serving(source) as url:  # http://127.0.0.1:port/people
        moved = redirector(url)
        allow("localhost")  # the first host by name; 127.0.0.1 itself is not named
        _assert_refused(_bind_http(client, directory, moved), "127.0.0.1", "loopback")
        assert redirector.hits == ["/moved"]  # the allowed host was asked; the loopback port never was
        assert source.requests == []
        # Named too, the same redirect is followed: the refusal was the address, nothing else.
        allow("localhost", "127.0.0.1")
        bound = _bind_http(client, directory, moved)
        assert bound.status_code == 200, bound.text
        assert set(bound.json()["source_schema"]) == {"citizen_id", "name", "district", "birth_date"}
        assert len(source.requests) == 1


def test_a_name_resolving_to_loopback_is_refused_after_resolution(client, directory, allow):
    directory.dataset()
    source = PagedSource(RECORDS)
    with serving(source) as url:
        allow()
        by_name = url.replace("127.0.0.1", "localhost")
        _assert_refused(_bind_http(client, directory, by_name), "localhost is 127.0.0.1", "loopback")
        _assert_refused(_bind_http(client, directory, url), "loopback")
        assert source.requests == []
        allow("127.0.0.0/8")  # a range: any name resolving into it
        assert _bind_http(client, directory, by_name).status_code == 200


@pytest.mark.parametrize("address", ["169.254.169.254", "[fd00:ec2::254]"])
def test_the_metadata_endpoint_is_refused_even_inside_an_allowed_range(client, directory, allow, address):
    directory.dataset()
    allow("169.254.0.0/16", "fd00::/8", "127.0.0.1")
    _assert_refused(_bind_http(client, directory, f"http://{address}/latest/meta-data/iam/security-credentials/"), "metadata")
    s3 = {"kind": "files", "config": {"path": "s3://bucket/data", "endpoint": f"http://{address}"}}
    answer = client.put(f"/api/v1/datasets/{CODE}/source", json=s3, headers=directory.provider("PSB"))
    _assert_refused(answer, "metadata")
    assert client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).status_code == 404


@pytest.mark.parametrize("url", ["http://10.0.0.5/people", "http://[::1]:9/people", "http://224.0.0.1/people", "http://0.0.0.0:9/people"])
def test_private_loopback_multicast_and_unspecified_addresses_are_refused(client, directory, allow, url):
    directory.dataset()
    allow()
    _assert_refused(_bind_http(client, directory, url))


async def _get(session, url: str) -> tuple[int, bytes]:
    async with session.request("GET", url) as response:
        return response.status, await response.read()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/people", "http://[::1]:9/people", "http://169.254.169.254/latest/meta-data/",
                                 "http://[fd00:ec2::254]/", "http://10.0.0.5/people", "http://0.0.0.0:9/people"])
def test_the_live_services_session_refuses_an_internal_address_written_in_the_url(url):
    # aiohttp connects to an address in the URL without asking a resolver: the session checks it first.
    from govshare import outbound
    from tests.servers import run_coroutine

    async def attempt():
        session = outbound.async_session(allowlist=["169.254.0.0/16"] if "169.254" in url else [])
        try:
            with pytest.raises(outbound.OutboundRefused) as refused:
                await _get(session, url)
            return str(refused.value)
        finally:
            await session.close()

    assert "GOVSHARE_OUTBOUND_ALLOWLIST" in run_coroutine(attempt())


def test_the_live_services_session_resolves_names_through_the_policy_and_follows_no_redirect(redirector):
    from govshare import outbound
    from tests.servers import run_coroutine

    source = PagedSource(RECORDS)
    with serving(source) as url:  # http://127.0.0.1:port/people
        moved = redirector(url)  # http://localhost:port/moved

        async def calls():
            refusing = outbound.async_session(allowlist=[])
            allowing = outbound.async_session(allowlist=["127.0.0.0/8", "::1"])
            try:
                with pytest.raises(outbound.OutboundRefused) as refused:  # the name resolves inside: refused before connecting
                    await _get(refusing, moved)
                status, _ = await _get(allowing, moved)  # allowed, but the redirect it answers is not followed
                return str(refused.value), status
            finally:
                await refusing.close()
                await allowing.close()

        refusal, status = run_coroutine(calls())
    assert "localhost is" in refusal and "loopback" in refusal
    assert status == 302
    assert redirector.hits == ["/moved"]  # the refusing session never reached the redirector; the allowing one once
    assert source.requests == []  # and the redirect's target was never called
