"""Keyed stores answer a lookup by probing the index, whatever the grant's filter adds; paging leaves nothing behind; builds fit their memory."""

from __future__ import annotations

import duckdb

from approvals.masks import projection
from approvals.rowfilter import compile_filter
from exchange.stores import keyed_store
from govshare import memory
from govshare.db import quote_path

ITEMS = [{"name": "citizen_id", "type": "string"}, {"name": "district", "type": "string"}, {"name": "income", "type": "number"}]


def _snapshot(path, rows: int):
    """A snapshot of ``rows`` citizens: 18-character ids, districts 01-03 in turn, incomes of 1.5 per row number."""
    duckdb.connect().execute(
        f"COPY (SELECT lpad(CAST(i AS VARCHAR), 18, '0') AS citizen_id, ['01', '02', '03'][1 + i % 3] AS district, i * 1.5 AS income "
        f"FROM range(?) t(i)) TO {quote_path(path)} (FORMAT parquet)", [rows])
    return path


def test_a_lookup_within_a_filtered_grant_probes_the_index_instead_of_scanning(tmp_path):
    snapshot = _snapshot(tmp_path / "snap.parquet", 300_000)
    store = keyed_store.ensure_store(snapshot, "citizen_id")
    scope = compile_filter({"district": {"in": ["01", "02"]}, "income": {"ge": 10}}, ITEMS)
    view = projection(["citizen_id", "income"], None, hash_key="k")
    key = "000000000000012345"  # district 01, income 18517.5: within the grant

    assert keyed_store.lookup(store, key="citizen_id", value=key, projection=view, scope=scope) == [
        {"citizen_id": key, "income": 18517.5}]
    assert keyed_store.lookup(store, key="citizen_id", value="000000000000012347", projection=view, scope=scope) == []  # district 03

    sql, params = keyed_store.lookup_query(key="citizen_id", value=key, projection=view, scope=scope)
    connection = keyed_store.open_read(store)
    plan = connection.execute(f"EXPLAIN ANALYZE {sql}", params).fetchall()[0][1]
    connection.close()
    assert "Index Scan" in plan, plan
    assert "Sequential Scan" not in plan, plan


def test_lookups_pages_and_streams_share_one_store_and_its_single_thread(tmp_path):
    # DuckDB refuses a second connection to an open file with other settings: a stream
    # opened beside the lookups' connection must read with the same ones.
    snapshot = _snapshot(tmp_path / "snap.parquet", 3_000)
    store = keyed_store.ensure_store(snapshot, "citizen_id")
    scope = compile_filter({"district": {"in": ["01"]}}, ITEMS)
    view = projection(["citizen_id", "district"], None, hash_key="k")
    assert keyed_store.lookup(store, key="citizen_id", value="000000000000000003", projection=view, scope=scope) == [
        {"citizen_id": "000000000000000003", "district": "01"}]
    stream = keyed_store.ArrowStream(store, projection=view, scope=scope, equals={})
    try:
        assert sum(batch.num_rows for batch in stream) == 1_000
    finally:
        stream.close()
    records, _ = keyed_store.page(store, projection=view, scope=scope, equals={}, after_row=0, limit=5)
    assert [record["citizen_id"] for record in records] == [f"{index:018d}" for index in (0, 3, 6, 9, 12)]
    reader = keyed_store.open_read(store)
    assert reader.execute("SELECT current_setting('threads')").fetchone() == (1,)
    reader.close()


def _malloc_in_use() -> int:
    return memory.malloc_figures().in_use  # glibc's figures: the product's platform (Debian); DuckDB's objects come from it


def test_paging_through_a_store_again_and_again_leaves_no_memory_behind(tmp_path):
    # Issue 9: each page left 2 to 3 KB in DuckDB's buffer pool (a hash join of late
    # materialization, and max(_row) answered as a table), so a server answering pages grew
    # for as long as it ran: 1000 pages here left about 3 MB.
    snapshot = _snapshot(tmp_path / "snap.parquet", 3_000)
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


def test_the_memory_duckdb_holds_for_open_stores_is_counted_and_let_go_at_close(tmp_path):
    keyed_store.close_all()
    assert keyed_store.memory_bytes() == 0
    store = keyed_store.ensure_store(_snapshot(tmp_path / "snap.parquet", 300_000), "citizen_id")
    view = projection(["citizen_id", "income"], None, hash_key="k")
    for row in range(0, 300_000, 1_000):  # probes all over the index bring its blocks into the buffer pool
        keyed_store.lookup(store, key="citizen_id", value=str(row).zfill(18), projection=view, scope=compile_filter(None, ITEMS))
    assert keyed_store.memory_bytes() > 1_000_000
    keyed_store.close_all()
    assert keyed_store.memory_bytes() == 0


def test_the_build_memory_limit_grows_with_rows_and_key_length_above_a_floor(tmp_path, monkeypatch):
    snapshot = _snapshot(tmp_path / "snap.parquet", 100_000)
    assert keyed_store.build_memory_limit(snapshot, "citizen_id") == keyed_store.BUILD_MEMORY_FLOOR
    monkeypatch.setattr(keyed_store, "BUILD_MEMORY_FLOOR", 0)
    expected = (keyed_store.BUILD_MEMORY_BASE + 100_000 * (18 + keyed_store.INDEX_BYTES_PER_ROW)) * keyed_store.BUILD_MEMORY_MARGIN
    assert keyed_store.build_memory_limit(snapshot, "citizen_id") == int(expected)
    assert keyed_store.build_memory_limit(snapshot, None) == int(expected - 100_000 * 18 * keyed_store.BUILD_MEMORY_MARGIN)


def test_a_build_short_of_memory_is_tried_again_with_more_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    snapshot = _snapshot(tmp_path / "snap.parquet", 200_000)
    limits = []
    build = keyed_store._build

    def short_once(snapshot, key, target, memory_limit):
        limits.append(memory_limit)
        # The first attempt gets far too little memory for its indexes.
        return build(snapshot, key, target, memory_limit if len(limits) > 1 else 4 * 1024**2)

    monkeypatch.setattr(keyed_store, "_build", short_once)
    store = keyed_store.ensure_store(snapshot, "citizen_id")
    assert limits == [limits[0], 2 * limits[0]]
    assert keyed_store.open_read(store).execute("SELECT count(*) FROM records").fetchone() == (200_000,)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["snap.keyed.duckdb", "snap.parquet"]

    store.unlink()
    monkeypatch.setattr(keyed_store, "_build", lambda snapshot, key, target, memory_limit: build(snapshot, key, target, 4 * 1024**2))
    try:
        keyed_store.ensure_store(snapshot, "citizen_id")
    except duckdb.OutOfMemoryException:
        pass
    else:
        raise AssertionError("a build within 4 MiB should run out of memory")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["snap.parquet"]  # no store, no temporary files
