"""Keyed stores answer a lookup by probing the index, whatever the grant's filter adds."""

from __future__ import annotations

import duckdb

from approvals.masks import projection
from approvals.rowfilter import compile_filter
from exchange import keyed_store
from govshare.db import quote_path

ITEMS = [{"name": "citizen_id", "type": "string"}, {"name": "district", "type": "string"}, {"name": "income", "type": "number"}]


def test_a_lookup_within_a_filtered_grant_probes_the_index_instead_of_scanning(tmp_path):
    snapshot = tmp_path / "snap.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT lpad(CAST(i AS VARCHAR), 18, '0') AS citizen_id, ['01', '02', '03'][1 + i % 3] AS district, i * 1.5 AS income "
        f"FROM range(300000) t(i)) TO {quote_path(snapshot)} (FORMAT parquet)")
    store = keyed_store.ensure_store(snapshot, "citizen_id")
    scope = compile_filter({"district": {"in": ["01", "02"]}, "income": {"ge": 10}}, ITEMS)
    view = projection(["citizen_id", "income"], None, hash_key="k")
    key = "000000000000012345"  # district 01, income 18517.5: within the grant

    assert keyed_store.lookup(store, key="citizen_id", value=key, projection=view, scope=scope) == [
        {"citizen_id": key, "income": 18517.5}]
    assert keyed_store.lookup(store, key="citizen_id", value="000000000000012347", projection=view, scope=scope) == []  # district 03

    sql, params = keyed_store.lookup_query(key="citizen_id", value=key, projection=view, scope=scope)
    connection = duckdb.connect(str(store), read_only=True)
    plan = connection.execute(f"EXPLAIN ANALYZE {sql}", params).fetchall()[0][1]
    connection.close()
    assert "Index Scan" in plan, plan
    assert "Sequential Scan" not in plan, plan
