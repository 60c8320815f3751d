"""Keyed stores answer a lookup by probing the index, whatever the grant's filter adds; paging leaves nothing behind."""

from __future__ import annotations

import ctypes

import duckdb
import pytest

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


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_in_use() -> int:
    """Bytes glibc's malloc has handed out and not had back (DuckDB allocates through it)."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("needs glibc's mallinfo2")
    mallinfo2.restype = _Mallinfo2
    return mallinfo2().uordblks


def test_paging_through_a_store_again_and_again_leaves_no_memory_behind(tmp_path):
    # Issue 9: each page left 2 to 3 KB in DuckDB's buffer pool (a hash join of late
    # materialization, and max(_row) answered as a table), so a server answering pages grew
    # for as long as it ran: 1000 pages here left about 3 MB.
    snapshot = tmp_path / "snap.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT lpad(CAST(i AS VARCHAR), 18, '0') AS citizen_id, ['01', '02', '03'][1 + i % 3] AS district, i * 1.5 AS income "
        f"FROM range(3000) t(i)) TO {quote_path(snapshot)} (FORMAT parquet)")
    store = keyed_store.ensure_store(snapshot, "citizen_id")
    scope = compile_filter({"district": {"in": ["01", "02"]}}, ITEMS)
    view = projection(["citizen_id", "income"], None, hash_key="k")

    def pages(count: int) -> None:
        for index in range(count):
            records, last = keyed_store.page(store, projection=view, scope=scope, equals={}, after_row=index % 1000,
                                             limit=(10, 50)[index % 2])
            assert len(records) == (10, 50)[index % 2] and last is not None

    pages(200)  # warm up: the store opened, plans and cursors made
    before = _malloc_in_use()
    pages(1000)
    assert _malloc_in_use() - before < 1_000_000
