"""Property test: DuckDB (the keyed store) and SQLite (the lookup store) give identical answers.

For random data (every item type, NULLs included, repeated keys), random grants (columns,
row filters, masks), each key's lookup through the lookup store equals the keyed store's,
value for value and in the same order: the row filter and masks are compiled for each
engine from their one definition (``approvals.scope``), so this is what keeps them one.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings, strategies as st

from approvals import masks, rowfilter
from directory.loading import arrow_schema
from exchange.stores import keyed_store, lookup_store

ITEMS = [
    {"name": "citizen_id", "type": "string"},
    {"name": "district", "type": "string"},
    {"name": "age", "type": "integer"},
    {"name": "income", "type": "number"},
    {"name": "born", "type": "date"},
    {"name": "seen", "type": "datetime"},
    {"name": "active", "type": "boolean"},
]
TYPES = {item["name"]: item["type"] for item in ITEMS}
NASTY = ["01", "02", "x'; DROP TABLE records; --", "\" OR 1=1 --", "NULL", "%", "_", "é北京", "'", "", "Zoë", "🙂x", "a\tb"]

values = {
    "string": st.sampled_from(NASTY) | st.text(st.characters(blacklist_categories=("Cs", "Cc", "Mn", "Me", "Cf")), max_size=6),
    "integer": st.integers(-(2**63), 2**63 - 1) | st.integers(-5, 120),
    "number": st.floats(allow_nan=False, allow_infinity=False) | st.floats(-1000, 1000).map(lambda x: round(x, 2)),
    "date": st.dates(date(1000, 1, 1), date(9999, 12, 31)),
    "datetime": st.datetimes(datetime(1000, 1, 1), datetime(9999, 12, 31), timezones=st.just(UTC)),
    "boolean": st.booleans(),
}
MASKS = {
    "string": st.sampled_from(["keyed_hash", "null"]) | st.builds(lambda rule, count: {rule: count},
                                                                  st.sampled_from(["keep_first", "keep_last"]), st.integers(0, 5)),
    "integer": st.sampled_from(["keyed_hash", "null"]),
    "number": st.sampled_from(["keyed_hash", "null"]),
    "boolean": st.sampled_from(["keyed_hash", "null"]),
    "date": st.sampled_from(["keyed_hash", "null", "year_only"]),
    "datetime": st.sampled_from(["keyed_hash", "null", "year_only"]),
}


@st.composite
def rows(draw):
    result = []
    for _ in range(draw(st.integers(1, 30))):
        row = {"citizen_id": draw(st.none() | st.sampled_from([f"ID{index:03d}" for index in range(8)]))}
        for item in ITEMS[1:]:
            row[item["name"]] = draw(st.none() | values[item["type"]])
        result.append(row)
    return result


def _literal(value):
    return value.isoformat() if isinstance(value, date) else value  # datetimes too (a subclass of date)


@st.composite
def conditions(draw):
    item = draw(st.sampled_from(ITEMS))
    name, item_type = item["name"], item["type"]
    operator = draw(st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge", "in", "between", "is_null"]))
    if operator == "is_null":
        return {name: {"is_null": draw(st.booleans())}}
    if operator == "in":
        return {name: {"in": [_literal(v) for v in draw(st.lists(values[item_type], min_size=1, max_size=4))]}}
    if operator == "between":
        low, high = draw(values[item_type]), draw(values[item_type])
        return {name: {"between": [_literal(low), _literal(high)]}}
    return {name: {operator: _literal(draw(values[item_type]))}}


filters = st.none() | st.recursive(
    conditions(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda parts: {"and": parts}),
        st.lists(children, min_size=1, max_size=3).map(lambda parts: {"or": parts}),
    ),
    max_leaves=6,
)


@st.composite
def grants(draw):
    columns = [item["name"] for item in ITEMS if draw(st.booleans())] or ["district"]
    masked = {name: draw(MASKS[TYPES[name]]) for name in columns if name != "citizen_id" and draw(st.booleans())}
    return columns, masked


counter = itertools.count()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=rows(), row_filter=filters, grant=grants())
def test_the_lookup_store_answers_exactly_as_duckdb(tmp_path, data, row_filter, grant):
    columns, masked = grant
    folder = tmp_path / str(next(counter))
    folder.mkdir()
    snapshot = folder / "v000001.parquet"
    pq.write_table(pa.Table.from_pylist(data, schema=arrow_schema(ITEMS)), snapshot)
    duck = keyed_store.ensure_store(snapshot, "citizen_id")
    lite = lookup_store.ensure_store(snapshot, key="citizen_id", items=ITEMS)

    compiled = {dialect: (rowfilter.compile_filter(row_filter, ITEMS, dialect=dialect),
                          masks.projection(columns, masked, hash_key="department key", dialect=dialect, items=ITEMS))
                for dialect in rowfilter.DIALECTS}
    decode = lookup_store.decoders(columns, masked, ITEMS)
    keys = sorted({row["citizen_id"] for row in data if row["citizen_id"] is not None} | {"ID999"})
    from_sqlite = lookup_store.lookup_many(lite, key="citizen_id", values=keys, projection=compiled["sqlite"][1],
                                           scope=compiled["sqlite"][0], names=columns, decode=decode)
    for key in keys:
        from_duckdb = keyed_store.lookup(duck, key="citizen_id", value=key, projection=compiled["duckdb"][1],
                                         scope=compiled["duckdb"][0])
        assert from_sqlite.get(key, []) == from_duckdb, key
        alone = lookup_store.lookup_many(lite, key="citizen_id", values=[key], projection=compiled["sqlite"][1],
                                         scope=compiled["sqlite"][0], names=columns, decode=decode)
        assert alone.get(key, []) == from_duckdb, key
        assert [[type(value) for value in record.values()] for record in from_sqlite.get(key, [])] == \
               [[type(value) for value in record.values()] for record in from_duckdb]
