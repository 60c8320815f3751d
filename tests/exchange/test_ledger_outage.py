"""The access ledger waits out a busy or absent record store: no line is dropped for it, and past a bound no data is served.

The store is made to refuse for real: on SQLite another connection holds the write lock
(``BEGIN IMMEDIATE``) past the writer's busy timeout; on PostgreSQL another connection holds
``access_log`` in ACCESS EXCLUSIVE mode, and the writer's backend is terminated or its
``lock_timeout`` runs out. Tests wait on conditions, never on a sleep's length.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from exchange import ledger as ledger_module
from exchange.ledger import LedgerLine, LedgerWriter
from govshare.app import create_app
from govshare.db import Database
from govshare.observability import LedgerMetrics
from tests.exchange.test_interfaces import exchange  # noqa: F401  (the fixture)

WAIT_SECONDS = 120  # generous: a loaded two-core machine; only a failure waits this long
BACKLOG_LIMIT = 3


@pytest.fixture
def app(settings):
    """The app, with a ledger that refuses calls once ``BACKLOG_LIMIT`` lines wait (a lookup's wait for the writer
    running out at once: the store is held far longer)."""
    return create_app(settings.model_copy(update={"ledger_backlog_limit": BACKLOG_LIMIT, "ledger_wait_seconds": 0.01}))


def _until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"waited {WAIT_SECONDS} s for {what}"
        time.sleep(0.02)


def _line(key: str, rows: int = 1) -> LedgerLine:
    return LedgerLine(kind="lookup", client_id="c1", department="CAB", dataset="PSB-HOUSEHOLD", grant_id=1,
                      application_id=1, service_item="svc", basis="basis", rows=rows, keys=[key])


def _ledger_keys(database: Database) -> list[str]:
    """The key of each ledger line, in the order of the lines' ids."""
    with database.engine.connect() as connection:
        return [row[0] for row in connection.execute(text(
            "SELECT k.key FROM access_log e JOIN access_log_keys k ON k.entry_id = e.id ORDER BY e.id"))]


def _line_count(database: Database) -> int:
    with database.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM access_log")).scalar_one()


class Holder:
    """Another connection that keeps the ledger's writes out until ``release()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = not url.startswith("sqlite")
        if self.postgres:
            self.engine = create_engine(url)
            self.connection = self.engine.connect()
            self.pid = self.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            self.connection.execute(text("LOCK TABLE access_log IN ACCESS EXCLUSIVE MODE"))
            # Another connection watches: in a transaction, pg_stat_activity would stay as first read.
            self.monitor = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        else:
            self.connection = sqlite3.connect(make_url(url).database, isolation_level=None, timeout=WAIT_SECONDS)
            self.connection.execute("BEGIN IMMEDIATE")

    def blocked_backends(self) -> list[int]:
        """PostgreSQL: the backends waiting for this holder's lock (the writer's, in its INSERT)."""
        return list(self.monitor.execute(
            text("SELECT pid FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"), {"holder": self.pid}).scalars())

    def terminate_blocked(self) -> None:
        """PostgreSQL: drop the connection of whoever waits for the lock, as a restart or a network cut would."""
        for pid in self.blocked_backends():
            self.monitor.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    def release(self) -> None:
        if self.connection is None:
            return
        if self.postgres:
            self.connection.rollback()
            self.connection.close()
            self.monitor.close()
            self.engine.dispose()
        else:
            self.connection.execute("ROLLBACK")
            self.connection.close()
        self.connection = None


@contextmanager
def held(url: str) -> Iterator[Holder]:
    holder = Holder(url)
    try:
        yield holder
    finally:
        holder.release()


def _impatient_url(url: str) -> str:
    """On PostgreSQL, ``url`` with a short lock_timeout: the writer's attempts fail fast instead of waiting for a lock."""
    if url.startswith("sqlite"):
        return url
    parsed = make_url(url)
    options = (parsed.query.get("options", "") + " -clock_timeout=100").strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


@contextmanager
def writer_of(settings, *, impatient: bool = False) -> Iterator[tuple[LedgerWriter, CollectorRegistry]]:
    """A started writer over the test's store whose SQLite busy timeout is short (and, ``impatient``, PostgreSQL's lock_timeout)."""
    url = settings.resolved_database_url
    database = Database(_impatient_url(url) if impatient else url, busy_timeout_seconds=0.1)
    registry = CollectorRegistry()
    writer = LedgerWriter(database, metrics=LedgerMetrics(registry))
    writer.start()
    try:
        yield writer, registry
    finally:
        writer.stop()
        database.dispose()


def _sample(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name) or 0.0


def _refused(holder: Holder, registry: CollectorRegistry, times: int = 2) -> None:
    """Wait until the writer has been refused ``times`` times (on PostgreSQL: its connection dropped while it waited for the lock)."""
    if holder.postgres:
        for attempt in range(times):
            _until(holder.blocked_backends, "the ledger writer to wait for the lock")
            holder.terminate_blocked()
            _until(lambda: _sample(registry, "govshare_ledger_batch_retries_total") >= attempt + 1,
                   "the writer to take the dropped connection for a passing refusal")
        _until(holder.blocked_backends, "the ledger writer to try again")
    else:
        _until(lambda: _sample(registry, "govshare_ledger_batch_retries_total") >= times, "the writer to be refused")


def test_lines_wait_out_a_store_that_refuses_and_all_land_in_order(settings, database):
    keys = [f"K{index}" for index in range(10)]
    with writer_of(settings) as (writer, registry):
        with held(settings.resolved_database_url) as holder:
            for key in keys[:5]:
                writer.record(_line(key))
            _refused(holder, registry)
            for key in keys[5:]:  # queued behind the batch that is being retried
                writer.record(_line(key))
            assert writer.backlog == 10
        writer.flush()
        assert writer.backlog == 0
        assert _sample(registry, "govshare_ledger_batch_retries_total") >= 2
        assert _sample(registry, "govshare_ledger_lines_lost_total") == 0
    assert _ledger_keys(database) == keys  # each once, in the order recorded


def test_a_bad_line_in_a_batch_held_up_by_the_store_is_dropped_alone(settings, database, caplog):
    with writer_of(settings) as (writer, registry), caplog.at_level(logging.ERROR, logger="govshare.ledger"):
        with held(settings.resolved_database_url) as holder:
            writer.record(_line("K-before"))
            writer.record(_line("K-too-many-rows", rows=2**70))  # no store's integer column takes this
            writer.record(_line("K-after"))
            _refused(holder, registry)
        writer.flush()
        assert _sample(registry, "govshare_ledger_lines_lost_total") == 1
        # The loss is logged, without the citizen's key: the log is no ledger.
        assert "lost a ledger line" in caplog.text and "1 key(s)" in caplog.text
        assert "K-too-many-rows" not in caplog.text
        assert writer.backlog == 0
    assert _ledger_keys(database) == ["K-before", "K-after"]


def test_stop_gives_up_on_a_store_still_refusing_after_its_bound_and_says_how_many_lines(settings, database, caplog, monkeypatch):
    monkeypatch.setattr(ledger_module, "STOP_RETRY_SECONDS", 0.5)
    monkeypatch.setattr(ledger_module, "STOP_GRACE_SECONDS", WAIT_SECONDS)  # an attempt slowed by a loaded machine is no failure
    with held(settings.resolved_database_url):
        with writer_of(settings, impatient=True) as (writer, registry):
            for index in range(7):
                writer.record(_line(f"K{index}"))
            _until(lambda: _sample(registry, "govshare_ledger_batch_retries_total") >= 1, "the writer to be refused")
            with caplog.at_level(logging.ERROR, logger="govshare.ledger"):
                started = time.monotonic()
                writer.stop()
                took = time.monotonic() - started
            assert took < WAIT_SECONDS  # it returned: no hang
            assert "7 access ledger lines could not be written" in caplog.text
            assert _sample(registry, "govshare_ledger_lines_lost_total") == 7
            assert writer.backlog == 0
    assert _line_count(database) == 0


def _metric(client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_past_the_backlog_limit_calls_are_refused_with_503_and_serve_nothing(exchange, app, settings, database):  # noqa: F811
    inside = [row["citizen_id"] for row in exchange.rows if row["district"] in ("01", "02")]
    assert exchange.lookup(inside[0]).status_code == 200
    app.state.ledger.flush()
    assert _metric(exchange.http, "govshare_ledger_backlog") == 0
    with held(settings.resolved_database_url):
        for key in inside[1:1 + BACKLOG_LIMIT]:  # answered: their lines wait for the store
            assert exchange.lookup(key).status_code == 200
        assert app.state.ledger.backlog == BACKLOG_LIMIT
        refused = [
            exchange.lookup(inside[5]),
            exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", headers=exchange.service),
            exchange.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records",
                              headers={**exchange.service, "Accept": "application/vnd.apache.arrow.stream"}),
        ]
        for response in refused:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) > 0
            body = response.json()
            assert body["type"] == "urn:govshare:problem:ledger-unavailable"
            assert "records" not in body and not any(row["name"] in response.text for row in exchange.rows)
        assert _metric(exchange.http, "govshare_ledger_backlog") == BACKLOG_LIMIT
    app.state.ledger.flush()  # the store takes the lines again
    assert app.state.ledger.backlog == 0
    assert exchange.lookup(inside[5]).status_code == 200
    app.state.ledger.flush()
    # The calls answered are all on the ledger, in order; the refused ones served nothing and are not.
    assert _ledger_keys(database) == [*inside[:1 + BACKLOG_LIMIT], inside[5]]
    assert _metric(exchange.http, "govshare_ledger_lines_lost_total") == 0
    assert _metric(exchange.http, "govshare_ledger_batch_retries_total") >= 0  # shown (how often depends on the busy timeout)


def test_a_batch_whose_commit_landed_but_whose_answer_was_lost_is_not_written_twice(settings, database):
    # The connection drops after the store has committed and before its answer arrives: the
    # writer sees a transient failure and tries the batch again. (The loss is made by raising
    # once right after the real COMMIT; the store itself has the lines.)
    lost: list[bool] = []

    class AnswerLostOnce(Database):
        @contextmanager
        def transaction(self, *, write: bool = True):
            with super().transaction(write=write) as session:
                yield session
            if write and not lost:
                lost.append(True)
                raise OperationalError("COMMIT", None, ConnectionResetError("connection reset by peer"), connection_invalidated=True)

    store = AnswerLostOnce(settings.resolved_database_url, busy_timeout_seconds=0.1)
    registry = CollectorRegistry()
    writer = LedgerWriter(store, metrics=LedgerMetrics(registry))
    writer.start()
    try:
        for key in ("K1", "K2", "K3"):
            writer.record(_line(key))
        writer.flush()
        assert lost and _sample(registry, "govshare_ledger_batch_retries_total") == 1
        assert writer.backlog == 0 and _sample(registry, "govshare_ledger_lines_lost_total") == 0
    finally:
        writer.stop()
        store.dispose()
    assert _ledger_keys(database) == ["K1", "K2", "K3"]  # once each
    with database.engine.connect() as connection:  # and counted once in the metrics' rollups
        assert connection.execute(text("SELECT sum(calls) FROM ledger_day_counts WHERE dimension = 'dataset'")).scalar_one() == 3
