"""A batch call's lines handed over at once (KeyLines) are stored exactly as the same lines one by one.

The writer expands a KeyLines straight into rows (on SQLite in multi-row INSERTs, on PostgreSQL with COPY
from ``COPY_FROM_LINES`` lines a batch); what it stores must not differ from what the per-line path stores,
rollups and signed live messages included, and a line the store refuses must not take the others with it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import text

from exchange import ledger as ledger_module
from exchange.ledger import KEY_LENGTH, KeyLines, LedgerLine, LedgerWriter
from govshare import audit

KEYS = 250  # more than COPY_FROM_LINES: on PostgreSQL the KeyLines' batch goes through COPY
ENTRY_COLUMNS = ("at, kind, client_id, department_code, grant_id, application_id, service_item, basis, purpose, rows, "
                 "status, latency_ms, extract_id, request_sha256, answer_sha256, requested_at, answered_at")


def _template(dataset: str) -> LedgerLine:
    return LedgerLine(kind="lookup", client_id="client-1", department="CAB", dataset=dataset, grant_id=7, application_id=3,
                      service_item="housing benefit \u00e9", basis="law \x00 section 4", purpose="benefit checks \U0001F600",
                      rows=0, status=200, latency_ms=41.25, at=datetime(2026, 12, 7, 15, 1, 2, 345678, tzinfo=UTC),
                      request_sha256="a" * 64, answer_sha256="b" * 64,
                      requested_at=datetime(2026, 12, 7, 15, 1, 2, 100000, tzinfo=UTC),
                      answered_at=datetime(2026, 12, 7, 15, 1, 2, 300000, tzinfo=UTC))


def _key_lines(dataset: str) -> KeyLines:
    keys = [f"K{index:04d}" for index in range(KEYS - 3)] + ["a\x00b", "lone \ud800 surrogate", "9" * 1000]
    return KeyLines(_template(dataset), keys=keys, rows=[index % 3 for index in range(KEYS)],
                    consents=[None if index % 5 == 0 else 1000 + index for index in range(KEYS)])


def _stored(database, dataset: str) -> list[tuple]:
    """Every line of ``dataset`` with its keys, as the store holds them (no id: the two ways differ in that only)."""
    with database.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(
            f"SELECT {ENTRY_COLUMNS}, k.key, k.consent_id FROM access_log l LEFT JOIN access_log_keys k ON k.entry_id = l.id "
            "WHERE l.dataset_code = :dataset ORDER BY l.id, k.key"), {"dataset": dataset})]


def _counts(database, dataset: str) -> tuple:
    with database.engine.connect() as connection:
        return tuple(connection.execute(text(
            "SELECT calls, rows, interface_calls, interface_server_errors, errors FROM ledger_day_counts "
            "WHERE dimension = 'dataset' AND key = :dataset"), {"dataset": dataset}).one())


def _signed_messages(database, dataset: str) -> list[tuple]:
    """The live messages signed on the audit chain for ``dataset``'s lines, without their entry ids."""
    with database.engine.connect() as connection:
        ids = {row[0] for row in connection.execute(text("SELECT id FROM access_log WHERE dataset_code = :dataset"),
                                                    {"dataset": dataset})}
        details = [row[0] for row in connection.execute(text("SELECT details FROM audit_entries WHERE action = :action"),
                                                        {"action": ledger_module.MESSAGES_ACTION})]
    return sorted(tuple(sorted((name, value) for name, value in message.items() if name != "entry"))
                  for entry in details for message in json.loads(entry)["messages"] if message["entry"] in ids)


def test_key_lines_are_stored_as_the_same_lines_one_by_one(database, monkeypatch):
    copies = []
    write_copy = ledger_module._write_copy
    monkeypatch.setattr(ledger_module, "_write_copy", lambda *args: copies.append(1) or write_copy(*args))
    writer = LedgerWriter(database)  # not started: flush writes what is queued, as one batch, in this thread
    writer.record_many([_key_lines("D-AT-ONCE")])
    writer.flush()
    assert len(copies) == (1 if database.dialect == "postgresql" else 0)  # the batch went through COPY there
    for line in _key_lines("D-ONE-BY-ONE").lines():
        writer.record(line)
        writer.flush()  # a batch of one line: the per-line path (INSERT ... RETURNING on PostgreSQL)
    assert writer.backlog == 0
    at_once, one_by_one = _stored(database, "D-AT-ONCE"), _stored(database, "D-ONE-BY-ONE")
    assert len(at_once) == KEYS
    assert at_once == one_by_one
    keys = [row[-2] for row in at_once]
    assert "ab" in keys and "lone ? surrogate" in keys and "9" * KEY_LENGTH in keys
    assert sorted(row[-1] for row in at_once if row[-1] is not None) == sorted(
        1000 + index for index in range(KEYS) if index % 5)
    assert _counts(database, "D-AT-ONCE") == _counts(database, "D-ONE-BY-ONE") == (
        KEYS, sum(index % 3 for index in range(KEYS)), KEYS, 0, 0)
    messages = _signed_messages(database, "D-AT-ONCE")
    assert len(messages) == KEYS and messages == _signed_messages(database, "D-ONE-BY-ONE")
    with database.transaction(write=False) as session:
        assert audit.verify(session).ok


def test_a_line_the_store_refuses_does_not_take_a_big_batch_with_it(database):
    # On PostgreSQL the batch goes through COPY, which the bad row aborts: the lines are then written one by one.
    lines = _key_lines("D-BAD-ROW")
    lines.rows[10] = 2**70  # no store's integer column takes this
    writer = LedgerWriter(database)  # not started: flush writes what is queued in this thread
    writer.record_many([lines, _template("D-BAD-ROW")])
    writer.flush()
    assert writer.backlog == 0
    stored = _stored(database, "D-BAD-ROW")
    assert len(stored) == KEYS  # the KeyLines' lines but the bad one, and the single line (without keys)
    assert "K0010" not in [row[-2] for row in stored]
    assert sum(1 for row in stored if row[-2] is None) == 1


def test_a_key_lines_counts_its_keys_in_the_backlog_and_needs_one_count_per_key(database):
    writer = LedgerWriter(database)  # not started: nothing is written until flush
    writer.record_many([_key_lines("D-BACKLOG"), _template("D-BACKLOG")])
    assert writer.backlog == KEYS + 1
    writer.flush()
    assert writer.backlog == 0
    assert len(_stored(database, "D-BACKLOG")) == KEYS + 1
    try:
        KeyLines(_template("D-BACKLOG"), keys=["K1", "K2"], rows=[1])
    except ValueError:
        pass
    else:
        raise AssertionError("a KeyLines with fewer row counts than keys was accepted")
