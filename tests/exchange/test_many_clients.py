"""More clients at once than the server has worker threads or pooled connections.

A request used to hold a pooled connection between its steps while giving back its
worker thread; with enough requests in flight, every worker thread waited for a
connection while the requests holding the connections waited for a thread, until the
pool's 30-second timeout failed them. Requests now queue for a session on the event
loop, where waiting costs no thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import httpx
import pytest

from tests.exchange.test_soak import _token, arranged, served  # noqa: F401 (arranged is a fixture)
from tests.servers import run_coroutine

CLIENTS = 120  # the thread pool has 40 workers; the pool at most 30 connections (PostgreSQL), 20 (SQLite)
CALLS_EACH = 3


@pytest.mark.slow
def test_120_clients_at_once_are_all_answered_without_waiting_for_a_pool_timeout(arranged, settings, tmp_path):  # noqa: F811
    with served(settings, tmp_path) as (base, server):
        headers = {"Authorization": f"Bearer {_token(base, arranged.service)}"}
        statuses: Counter = Counter()
        slowest = [0.0]
        lock = threading.Lock()
        ready = threading.Barrier(CLIENTS)

        def client(offset: int) -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
                ready.wait()  # all at once
                for call in range(CALLS_EACH):
                    key = arranged.inside[(offset * CALLS_EACH + call) % len(arranged.inside)]
                    began = time.monotonic()
                    try:
                        status = http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{key}").status_code
                    except httpx.TransportError as problem:
                        status = type(problem).__name__
                    with lock:
                        statuses[status] += 1
                        slowest[0] = max(slowest[0], time.monotonic() - began)

        threads = [threading.Thread(target=client, args=(offset,)) for offset in range(CLIENTS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        assert server.poll() is None

    print(f"\n{CLIENTS * CALLS_EACH} lookups from {CLIENTS} clients in {elapsed:.1f} s; slowest {slowest[0]:.1f} s")
    assert statuses == Counter({200: CLIENTS * CALLS_EACH}), statuses
    # A wait for the connection pool's timeout (30 s) would show here; the calls themselves take milliseconds.
    assert slowest[0] < 20, slowest[0]


def test_lookups_beyond_one_per_core_wait_their_turn_and_are_all_answered(arranged, app, client, monkeypatch):  # noqa: F811
    # Lookups run at most LOOKUPS_AT_ONCE at a time (more only cost CPU: threads handing the
    # GIL around); the rest wait on the event loop. 32 sent together are all answered.
    from exchange.interfaces import api
    from exchange.ratelimit import RateLimiter

    running, most = [0], [0]
    lock = threading.Lock()
    plain_lookup = api._lookup

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.01)  # long enough for the others to pile up behind it
            return plain_lookup(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(api, "_lookup", counted)
    # In worker threads, as on a network record store (on a local SQLite one a lookup whose state is kept runs on the loop).
    monkeypatch.setattr(api, "_lookups_on_loop", lambda state: False)
    app.state.rate_limiter = RateLimiter(rate=1e9, burst=10**9)
    token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(arranged.service.client_id, arranged.service.client_secret)).json()["access_token"]

    async def together() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=str(client.base_url),
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            answers = await asyncio.gather(*(http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{key}")
                                             for key in arranged.inside[:32]))
        return [answer.status_code for answer in answers]

    assert run_coroutine(together()) == [200] * 32
    assert most[0] == api.LOOKUPS_AT_ONCE
