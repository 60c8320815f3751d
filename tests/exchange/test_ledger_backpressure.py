"""Backpressure: above the ledger's high-water mark lookups wait for its writer, before serving anything.

The writer is held back for real, as in test_ledger_outage: another connection keeps the record
store's write lock (SQLite) or an exclusive lock on ``access_log`` (PostgreSQL) until the test lets
go. Tests wait on conditions (calls waiting, threads done), never on a sleep's length.
"""

from __future__ import annotations

import threading

import pytest

from govshare.app import create_app
from tests.exchange.test_interfaces import exchange  # noqa: F401  (the fixture)
from tests.exchange.test_ledger_outage import WAIT_SECONDS, _ledger_keys, _until, held

URL = "/api/v1/exchange/PSB-HOUSEHOLD/records:batch"
HIGH_WATER = 2


def _app(settings, *, wait_seconds: float):
    return create_app(settings.model_copy(update={"ledger_backlog_limit": 1000, "ledger_high_water": HIGH_WATER,
                                                  "ledger_wait_seconds": wait_seconds}))


@pytest.fixture
def app(settings, request):
    return _app(settings, wait_seconds=getattr(request, "param", WAIT_SECONDS))


def _inside(exchange) -> list[str]:  # noqa: F811
    return [row["citizen_id"] for row in exchange.rows if row["district"] in ("01", "02")]


def _post_in_thread(exchange, keys: list[str], answers: dict) -> threading.Thread:  # noqa: F811
    def post() -> None:
        answers[tuple(keys)] = exchange.http.post(URL, json={"keys": keys}, headers=exchange.service)

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_above_the_mark_batches_wait_for_the_writer_and_are_served_once_it_writes(exchange, app, database):  # noqa: F811
    inside = _inside(exchange)
    assert exchange.lookup(inside[0]).status_code == 200
    app.state.ledger.flush()
    writer = app.state.ledger
    batches = [inside[3:6], [*inside[6:9], "nobody"]]
    answers: dict = {}
    with held(app.state.settings.resolved_database_url):
        for key in inside[1:1 + HIGH_WATER]:  # below the mark a lookup is served at once; its line waits for the store
            assert exchange.lookup(key).status_code == 200
        assert writer.backlog == HIGH_WATER
        threads = [_post_in_thread(exchange, keys, answers) for keys in batches]
        _until(lambda: writer.waiting == len(batches), "both batches waiting for the writer")
        # Waiting before anything is read or served: no answer yet, and no line of theirs handed over.
        assert not answers and writer.backlog == HIGH_WATER
    for thread in threads:  # the store takes the lines again: the writer writes, and the batches are let in
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()
    for keys in batches:
        response = answers[tuple(keys)]
        assert response.status_code == 200, response.text
        assert list(response.json()["records"]) == [key for key in keys if key != "nobody"]
    writer.flush()
    assert writer.backlog == 0 and writer.waiting == 0
    # Every key served is on the ledger (and the missing one too, as a 404 line).
    assert sorted(_ledger_keys(database)) == sorted([*inside[:1 + HIGH_WATER], *batches[0], *batches[1]])


@pytest.mark.parametrize("app", [0.01], indirect=True)  # the store is held until the answers are in: far longer than this
def test_a_store_refusing_longer_than_the_wait_refuses_with_503_and_serves_nothing(exchange, app, database):  # noqa: F811
    inside = _inside(exchange)
    assert exchange.lookup(inside[0]).status_code == 200
    app.state.ledger.flush()
    with held(app.state.settings.resolved_database_url):
        for key in inside[1:1 + HIGH_WATER]:
            assert exchange.lookup(key).status_code == 200
        refused = [exchange.http.post(URL, json={"keys": inside[3:6]}, headers=exchange.service), exchange.lookup(inside[6])]
        for response in refused:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["type"] == "urn:govshare:problem:ledger-unavailable"
            assert "records" not in response.json() and not any(row["name"] in response.text for row in exchange.rows)
        assert app.state.ledger.backlog == HIGH_WATER and app.state.ledger.waiting == 0
    app.state.ledger.flush()
    assert app.state.ledger.backlog == 0
    served = exchange.http.post(URL, json={"keys": inside[3:6]}, headers=exchange.service)  # the writer caught up: served again
    assert served.status_code == 200 and list(served.json()["records"]) == inside[3:6]
    app.state.ledger.flush()
    # The refused calls served nothing and are not on the ledger; the others all are.
    assert sorted(_ledger_keys(database)) == sorted([*inside[:1 + HIGH_WATER], *inside[3:6]])
