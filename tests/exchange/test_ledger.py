"""The access ledger loses nothing: refused calls are lines too, and one bad line does not sink its batch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from exchange.ledger import KEY_LENGTH, LedgerLine, LedgerWriter
from tests.exchange.test_interfaces import exchange  # noqa: F401  (the fixture)


def _lines(database) -> list[tuple]:
    with database.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(
            "SELECT kind, client_id, department_code, dataset_code, grant_id, rows, status FROM access_log ORDER BY id"))]


def _keys(database) -> list[str]:
    with database.engine.connect() as connection:
        return sorted(row[0] for row in connection.execute(text("SELECT key FROM access_log_keys")))


def test_calls_refused_for_want_of_a_grant_are_on_the_ledger(exchange, app, database, factory):  # noqa: F811
    outsider = factory.client("EDU", "service")
    headers = factory.headers(outsider)
    key = exchange.rows[0]["citizen_id"]
    assert exchange.lookup(key, headers=headers).status_code == 403
    assert exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", headers=headers).status_code == 403
    arrow = exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records",
                              headers={**headers, "Accept": "application/vnd.apache.arrow.stream"})
    assert arrow.status_code == 403
    assert exchange.lookup(key, headers=headers).json()["type"] == "urn:govshare:problem:no-active-grant"
    app.state.ledger.flush()
    refused = ("EDU", "PSB-HOUSEHOLD", None, 0, 403)
    assert _lines(database) == [
        ("lookup", outsider.client_id, *refused), ("query", outsider.client_id, *refused),
        ("stream", outsider.client_id, *refused), ("lookup", outsider.client_id, *refused),
    ]
    assert _keys(database) == [key, key]  # the key each refused lookup asked for


def _line(key: str, rows: int = 1) -> LedgerLine:
    return LedgerLine(kind="lookup", client_id="c1", department="CAB", dataset="PSB-HOUSEHOLD", grant_id=1,
                      application_id=1, service_item="svc", basis="basis", rows=rows, keys=[key])


@contextmanager
def _running(database) -> Iterator[LedgerWriter]:
    """A started ledger writer on ``database``, stopped (what waits written) at the end."""
    writer = LedgerWriter(database)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()


def test_a_line_the_store_refuses_does_not_take_its_batch_with_it(database):
    with _running(database) as writer:
        for index in range(5):
            writer.record(_line(f"K{index}"))
        writer.record(_line("K-too-many-rows", rows=2**70))  # no store's integer column takes this
        writer.record(_line("K-after"))
        writer.flush()
    assert [line[5] for line in _lines(database)] == [1] * 6
    assert _keys(database) == ["K-after", "K0", "K1", "K2", "K3", "K4"]


def test_keys_from_callers_are_stored_cleaned_not_lost(database):
    with _running(database) as writer:
        writer.record(_line("a\x00b"))
        writer.record(_line("lone \ud800 surrogate"))
        writer.record(_line("9" * 10_000))
        writer.record(_line("ok"))
        writer.flush()
    assert len(_lines(database)) == 4
    assert _keys(database) == sorted(["ab", "lone ? surrogate", "9" * KEY_LENGTH, "ok"])


def test_lines_recorded_together_go_in_one_batch_and_stopping_writes_what_waits(database):
    # The writer gathers a batch asleep for FLUSH_SECONDS from its first line, then takes
    # what came; stopping cuts the gathering short and writes what is queued.
    with _running(database) as writer:
        for index in range(40):
            writer.record(_line(f"K{index:02d}"))
        writer.flush()
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM ledger_batches")).scalar_one() == 1
        writer.record(_line("K-last"))
    assert _keys(database) == sorted([f"K{index:02d}" for index in range(40)] + ["K-last"])
    assert writer.backlog == 0
