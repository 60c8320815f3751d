"""Binding a source reads it with no write transaction open, and gives up on a source that never answers.

The source is a real TCP server on a loopback port that accepts connections and never says
a word (a database host that hangs, as found by the probe of issue 21).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from govshare.settings import Settings

CODE = "PSB-HOUSEHOLD"


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; ``accepted`` is set once a client is connected."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = threading.Event()
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections.append(connection)
            self.accepted.set()

    def hang_up(self) -> None:
        """Close every accepted connection: the client sees the server go away."""
        for connection in self.connections:
            connection.close()

    def close(self) -> None:
        self.listener.close()
        self.hang_up()
        self._thread.join(timeout=10)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def _sql_source(port: int) -> dict:
    return {"kind": "sql", "config": {"url": f"postgresql+psycopg://reader:secret@127.0.0.1:{port}/households", "table": "people"}}


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch, request) -> Settings:
    # A writer held up by the lock gives up (503) soon instead of after the default 30 s.
    monkeypatch.setenv("GOVSHARE_SQLITE_BUSY_TIMEOUT_SECONDS", "3")
    monkeypatch.setenv("GOVSHARE_SOURCE_CONNECT_TIMEOUT_SECONDS", str(getattr(request, "param", 120)))
    return Settings()


def test_other_writers_go_ahead_while_a_binding_waits_for_its_source(client, directory, factory, silent_server):
    directory.dataset()
    provider = directory.provider("PSB")
    credentials = factory.client("CAB", "service")
    with ThreadPoolExecutor(max_workers=1) as pool:
        binding = pool.submit(client.put, f"/api/v1/datasets/{CODE}/source", json=_sql_source(silent_server.port), headers=provider)
        assert silent_server.accepted.wait(timeout=60), "the binding never connected to its source"
        try:
            # The binding is now waiting for its source (which answers only after this): a token
            # request, which writes, must not wait for it.
            token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                                auth=(credentials.client_id, credentials.client_secret))
            assert token.status_code == 200, token.text
            assert not binding.done()
        finally:
            silent_server.hang_up()
        answer = binding.result(timeout=120)
    assert answer.status_code == 502, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == "urn:govshare:problem:source-failed"
    assert client.get(f"/api/v1/datasets/{CODE}/source", headers=provider).status_code == 404  # nothing was bound


@pytest.mark.parametrize("settings", [1], indirect=True)
def test_a_source_that_never_answers_ends_the_binding_with_504_after_the_connect_timeout(client, directory, silent_server):
    directory.dataset()
    provider = directory.provider("PSB")
    answer = client.put(f"/api/v1/datasets/{CODE}/source", json=_sql_source(silent_server.port), headers=provider)
    assert silent_server.accepted.is_set()
    assert answer.status_code == 504, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "urn:govshare:problem:source-timeout"
    assert "GOVSHARE_SOURCE_CONNECT_TIMEOUT_SECONDS" in problem["detail"]
    assert "secret" not in answer.text
    assert client.get(f"/api/v1/datasets/{CODE}/source", headers=provider).status_code == 404

