"""Property test: a live answer reads the same through the SQLite path as through DuckDB.

A live call reads the provider's JSON answer through the grant's scope. Most grants are read
in an in-memory SQLite table whose values are typed by the row filter's own rules
(``rowfilter.convert_value``); grants that key-hash a number or a datetime are read through
DuckDB from an Arrow table. For random answers (every item type, NULLs, repeated keys), random
row filters and masks, both give the same records, value for value, type for type, in order.
"""

from __future__ import annotations

import json
from datetime import date

from hypothesis import HealthCheck, given, settings, strategies as st

from approvals import masks
from approvals.models import Application, Grant
from approvals.scope import Scope
from directory.models import Dataset
from exchange.intake import service as intake
from exchange.live import service as live
from tests.exchange.test_lookup_store_properties import ITEMS, TYPES, filters, grants, rows


def _as_json(value):
    return value.isoformat() if isinstance(value, date) else value  # dates and datetimes as a provider sends them


def _scope(columns, masked, row_filter) -> Scope:
    dataset = Dataset(code="PSB-LIVE", document={"items": ITEMS, "lookup_key": "citizen_id"})
    grant = Grant(columns=columns, masks=masked or None, row_filter=row_filter)
    return Scope(grant=grant, application=Application(), dataset=dataset, columns=columns, version_items=ITEMS,
                 hash_key="department key")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=rows(), row_filter=filters, grant=grants())
def test_a_live_answer_reads_the_same_through_sqlite_and_duckdb(data, row_filter, grant):
    columns, masked = grant
    # A keyed hash of a number or datetime is DuckDB's text to define: such grants are only ever read through DuckDB.
    masked = {name: mask for name, mask in masked.items()
              if not (masks._rule(mask)[0] == "keyed_hash" and TYPES[name] in masks.TEXT_KEPT)}
    scope = _scope(columns, masked, row_filter)
    assert not live._hashes_duckdb_text(scope)
    answer = json.loads(json.dumps([{name: _as_json(value) for name, value in row.items()} for row in data]))
    for key in sorted({row["citizen_id"] for row in data if row["citizen_id"] is not None} | {"ID999"}):
        by_sqlite = live._in_scope_sqlite(live._sqlite_rows(answer, scope=scope), scope=scope, key_value=key)
        by_duckdb = live._in_scope_duckdb(intake.records_table(answer, items=ITEMS), scope=scope, key_value=key)
        assert by_sqlite == by_duckdb, key
        assert [[type(value) for value in record.values()] for record in by_sqlite] == \
               [[type(value) for value in record.values()] for record in by_duckdb]
