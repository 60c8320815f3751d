"""SQL sources: real tables on this machine's PostgreSQL and MariaDB synced into versions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from connectors import service
from connectors.models import SourceBinding, SyncRun
from connectors.sources import SqlSource
from directory import service as directory_service
from govshare import storage
from govshare.keys import KeyStore
from tests.factories import citizen_id

CODE = "PSB-HOUSEHOLD"
PEOPLE = [citizen_id(f"11010119900307{n:03d}") for n in range(1, 6)]


def _insert(source_db, table: str, rows: list[tuple]) -> None:
    for cid, name, district, born, updated in rows:
        source_db.execute(
            f"INSERT INTO {table} (citizen_id, name, district, birth_date, updated_at, internal_note) "
            "VALUES (:cid, :name, :district, :born, :updated, 'not shared')",
            cid=cid, name=name, district=district, born=born, updated=updated,
        )


def _bind(client, directory, source_db, table: str, **body):
    payload = {"kind": "sql", "config": {"url": source_db.url, "table": table}, **body}
    return client.put(f"/api/v1/datasets/{CODE}/source", json=payload, headers=directory.provider("PSB"))


def _sync(client, directory):
    return client.post(f"/api/v1/datasets/{CODE}/sync", headers=directory.provider("PSB"))


def _snapshot(settings, database) -> pa.Table:
    with database.transaction(write=False) as session:
        dataset = directory_service.get_dataset(session, CODE)
        version = directory_service.latest_version(session, dataset=dataset)
        return pq.read_table(directory_service.snapshot_path(storage.for_settings(settings), version))


def _seed(source_db, table):
    _insert(source_db, table, [
        (PEOPLE[0], "Alice", "01", date(1990, 3, 7), datetime(2026, 1, 1, 8, 0)),
        (PEOPLE[1], "Bob", "02", date(1985, 12, 24), datetime(2026, 1, 1, 9, 0)),
        (PEOPLE[2], "Carol", "02", date(2001, 11, 30), datetime(2026, 1, 1, 10, 0)),
    ])


def test_a_table_syncs_into_a_version_and_a_second_full_sync_reports_changes(client, directory, source_db, source_table, settings, database):
    directory.dataset()
    _seed(source_db, source_table)
    bound = _bind(client, directory, source_db, source_table, update_column="updated_at")
    assert bound.status_code == 200, bound.text
    binding = bound.json()
    assert binding["mapping"] == {"citizen_id": "citizen_id", "name": "name", "district": "district", "birth_date": "birth_date"}
    assert binding["has_credential"] is True and binding["last_sync"] is None and binding["fresh"] is False

    first = _sync(client, directory)
    assert first.status_code == 201, first.text
    run = first.json()
    assert run["outcome"] == "ok" and run["version"] == 1 and run["mode"] == "full"
    assert (run["rows_read"], run["rows_added"], run["rows_changed"], run["rows_removed"]) == (3, 3, 0, 0)
    table = _snapshot(settings, database)
    assert table.schema.names == ["citizen_id", "name", "district", "birth_date"]  # internal_note is not an item
    assert sorted(table.column("citizen_id").to_pylist()) == sorted(PEOPLE[:3])
    assert table.schema.field("birth_date").type == pa.date32()

    # Between two syncs: one row changes, one is deleted, one arrives.
    source_db.execute(f"UPDATE {source_table} SET district = '09', updated_at = :at WHERE citizen_id = :cid", at=datetime(2026, 2, 1), cid=PEOPLE[0])
    source_db.execute(f"DELETE FROM {source_table} WHERE citizen_id = :cid", cid=PEOPLE[1])
    _insert(source_db, source_table, [(PEOPLE[3], "Dan", "03", date(1970, 1, 1), datetime(2026, 2, 2))])
    second = _sync(client, directory).json()
    assert second["outcome"] == "ok" and second["version"] == 2
    assert (second["rows_read"], second["rows_added"], second["rows_changed"], second["rows_removed"]) == (3, 1, 1, 1)
    rows = {row["citizen_id"]: row for row in _snapshot(settings, database).to_pylist()}
    assert set(rows) == {PEOPLE[0], PEOPLE[2], PEOPLE[3]} and rows[PEOPLE[0]]["district"] == "09"

    shown = client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).json()
    assert shown["last_sync"]["id"] == second["id"] and shown["fresh"] is True
    assert shown["watermark"].startswith("2026-02-02")
    listed = client.get(f"/api/v1/datasets/{CODE}/syncs", headers=directory.provider("PSB")).json()
    assert [r["version"] for r in listed["runs"]] == [2, 1]
    versions = client.get(f"/api/v1/datasets/{CODE}/versions", headers=directory.provider("CAB")).json()["versions"]
    assert [v["number"] for v in versions] == [2, 1] and versions[0]["format"] == "sql"


def test_the_password_is_stored_encrypted_and_never_shown(client, directory, source_db, source_table, database, settings):
    directory.dataset()
    _seed(source_db, source_table)
    responses = [_bind(client, directory, source_db, source_table)]
    responses.append(_sync(client, directory))
    source_db.execute(f"DROP TABLE {source_table}")  # the next sync fails: its error must not leak the password either
    responses.append(_sync(client, directory))
    responses.append(client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")))
    responses.append(client.get(f"/api/v1/datasets/{CODE}/syncs", headers=directory.provider("PSB")))
    assert [r.status_code for r in responses] == [200, 201, 422, 200, 200], [r.text for r in responses]
    assert responses[2].json()["sync_run"]["outcome"] == "failed"
    for response in responses:
        assert source_db.password not in response.text
    with database.transaction(write=False) as session:
        binding = session.execute(select(SourceBinding)).scalar_one()
        assert source_db.password not in str(binding.config) and source_db.password not in binding.secret_encrypted
        assert KeyStore(settings.resolved_keys_dir).decrypt(binding.secret_encrypted) == source_db.password
        for run in session.execute(select(SyncRun)).scalars():
            assert source_db.password not in (run.error or "")


def test_a_dropped_source_column_stops_the_sync_before_anything_is_replaced(client, directory, source_db, source_table, settings, database):
    directory.dataset()
    _seed(source_db, source_table)
    _bind(client, directory, source_db, source_table)
    assert _sync(client, directory).status_code == 201
    before = _snapshot(settings, database)
    source_db.execute(f"ALTER TABLE {source_table} DROP COLUMN district")

    response = _sync(client, directory)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"] == "urn:govshare:problem:source-schema-drift"
    assert "column district is gone" in problem["detail"]
    assert problem["sync_run"]["outcome"] == "failed" and problem["sync_run"]["version"] is None
    assert _snapshot(settings, database).equals(before)
    shown = client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("CAB")).json()
    assert shown["latest_version"]["number"] == 1
    runs = client.get(f"/api/v1/datasets/{CODE}/syncs", headers=directory.provider("PSB")).json()["runs"]
    assert [r["outcome"] for r in runs] == ["failed", "ok"] and runs[0]["error_type"] == "source-schema-drift"


def test_a_retyped_column_is_drift_too(client, directory, source_db, source_table):
    directory.dataset()
    _seed(source_db, source_table)
    _bind(client, directory, source_db, source_table)
    assert _sync(client, directory).status_code == 201
    retype = "MODIFY birth_date VARCHAR(20)" if source_db.name == "mariadb" else "ALTER COLUMN birth_date TYPE VARCHAR(20)"
    source_db.execute(f"ALTER TABLE {source_table} {retype}")
    response = _sync(client, directory)
    assert response.status_code == 409 and "column birth_date changed type from Date to String" in response.json()["detail"]


class _DroppingSource(SqlSource):
    """The real source, whose connection drops after the first batch (as a network failure would)."""

    def batches(self, columns, **kwargs) -> Iterator[pa.RecordBatch]:
        for number, batch in enumerate(super().batches(columns, batch_rows=2, **kwargs)):
            if number == 1:
                raise ConnectionResetError("connection to the source was reset")
            yield batch


def test_an_interrupted_sync_leaves_the_previous_version_served(client, directory, source_db, source_table, settings, database):
    directory.dataset()
    _seed(source_db, source_table)
    _bind(client, directory, source_db, source_table)
    assert _sync(client, directory).status_code == 201
    before = _snapshot(settings, database)
    _insert(source_db, source_table, [(PEOPLE[4], "Eve", "04", date(1999, 9, 9), datetime(2026, 3, 1))])

    with database.transaction(write=False) as session:
        binding = service.get_binding(session, dataset=directory_service.get_dataset(session, CODE))
    source = _DroppingSource(binding.config, source_db.password)
    run = service.run_sync(database, dataset_code=CODE, store=storage.for_settings(settings), keystore=KeyStore(settings.resolved_keys_dir), actor="test", source=source)
    assert run.outcome == "failed" and run.error == "ConnectionResetError: connection to the source was reset"

    assert _snapshot(settings, database).equals(before)
    files = sorted(p.name for p in (settings.resolved_data_dir / "datasets" / CODE).iterdir())
    assert files == ["v000001.parquet"]  # no half-written snapshot left behind
    runs = client.get(f"/api/v1/datasets/{CODE}/syncs", headers=directory.provider("PSB")).json()["runs"]
    assert runs[0]["outcome"] == "failed" and "reset" in runs[0]["error"]
    assert _sync(client, directory).json()["rows_added"] == 1  # the next sync picks it up


def test_a_row_that_breaks_the_items_refuses_the_sync(client, directory, source_db, source_table):
    directory.dataset()
    _seed(source_db, source_table)
    valid = citizen_id("11010119900307999")
    wrong_check = valid[:17] + ("0" if valid[17] != "0" else "1")
    _insert(source_db, source_table, [(wrong_check, "Bad", "01", date(1990, 3, 7), datetime(2026, 1, 1))])
    _bind(client, directory, source_db, source_table)
    response = _sync(client, directory)
    assert response.status_code == 422 and response.json()["type"] == "urn:govshare:problem:version-refused"
    assert client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("PSB")).json()["latest_version"] is None


def test_only_the_providing_department_manages_its_source(client, directory, source_db, source_table, factory):
    directory.dataset()
    for headers in (directory.provider("CAB"), factory.caller("PSB", "demander"), factory.caller("PSB", "manager")):
        assert _bind(client, directory, source_db, source_table).status_code == 200
        assert client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "sql", "config": {"url": source_db.url, "table": source_table}}, headers=headers).status_code == 403
        assert client.post(f"/api/v1/datasets/{CODE}/sync", headers=headers).status_code == 403
        assert client.get(f"/api/v1/datasets/{CODE}/source", headers=headers).status_code == 403


def test_a_binding_is_checked_against_the_source(client, directory, source_db, source_table):
    directory.dataset()
    missing = _bind(client, directory, source_db, source_table, mapping={"citizen_id": "no_such_column"})
    assert missing.status_code == 422 and "the source has no column no_such_column" in missing.json()["detail"]
    unmapped = _bind(client, directory, source_db, source_table, mapping={"name": "name"})
    assert unmapped.status_code == 422 and "required item citizen_id" in unmapped.json()["detail"]
    no_table = _bind(client, directory, source_db, "no_such_table")
    assert no_table.status_code == 422 and source_db.password not in no_table.text
    assert client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).status_code == 404


def test_an_incremental_sync_reads_only_changed_rows_and_applies_inserts_updates_and_deletes(client, directory, source_db, source_table, settings, database):
    directory.dataset()
    _seed(source_db, source_table)
    bound = _bind(client, directory, source_db, source_table, mode="incremental", update_column="updated_at")
    assert bound.status_code == 200, bound.text
    assert bound.json()["key_column"] == "citizen_id"  # the dataset's lookup key
    first = _sync(client, directory).json()
    assert first["mode"] == "full" and first["rows_added"] == 3  # nothing to start from: a full read

    source_db.execute(f"UPDATE {source_table} SET name = 'Alice B', updated_at = :at WHERE citizen_id = :cid", at=datetime(2026, 2, 1), cid=PEOPLE[0])
    source_db.execute(f"DELETE FROM {source_table} WHERE citizen_id = :cid", cid=PEOPLE[1])
    _insert(source_db, source_table, [(PEOPLE[3], "Dan", "03", date(1970, 1, 1), datetime(2026, 2, 2))])
    second = _sync(client, directory)
    assert second.status_code == 201, second.text
    run = second.json()
    assert run["mode"] == "incremental" and run["version"] == 2
    # Carol, at the watermark itself, is read again but not counted as changed.
    assert (run["rows_read"], run["rows_added"], run["rows_changed"], run["rows_removed"]) == (3, 1, 1, 1)
    rows = {row["citizen_id"]: row for row in _snapshot(settings, database).to_pylist()}
    assert set(rows) == {PEOPLE[0], PEOPLE[2], PEOPLE[3]}
    assert rows[PEOPLE[0]]["name"] == "Alice B" and rows[PEOPLE[2]]["name"] == "Carol" and rows[PEOPLE[3]]["birth_date"] == date(1970, 1, 1)

    third = _sync(client, directory).json()
    assert (third["mode"], third["rows_read"], third["rows_added"], third["rows_changed"], third["rows_removed"]) == ("incremental", 1, 0, 0, 0)
    assert _snapshot(settings, database).num_rows == 3
    full = client.post(f"/api/v1/datasets/{CODE}/sync?full=true", headers=directory.provider("PSB")).json()
    assert (full["mode"], full["rows_read"], full["rows_changed"]) == ("full", 3, 0)
    files = sorted(p.name for p in (settings.resolved_data_dir / "datasets" / CODE).iterdir())
    assert files == [f"v{n:06d}.parquet" for n in range(1, 5)]  # no temporary file left


def test_an_incremental_sync_checks_changed_rows_like_an_upload(client, directory, source_db, source_table, settings, database):
    directory.dataset()
    _seed(source_db, source_table)
    _bind(client, directory, source_db, source_table, mode="incremental", update_column="updated_at")
    assert _sync(client, directory).status_code == 201
    source_db.execute(f"UPDATE {source_table} SET birth_date = NULL, citizen_id = 'nonsense', updated_at = :at WHERE citizen_id = :cid", at=datetime(2026, 5, 1), cid=PEOPLE[2])
    response = _sync(client, directory)
    assert response.status_code == 422, response.text
    assert response.json()["sync_run"]["mode"] == "incremental"
    assert client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("PSB")).json()["latest_version"]["number"] == 1
    shown = client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).json()
    assert shown["watermark"].startswith("2026-01-01T10")  # a failed sync does not move the watermark


def test_a_query_source_syncs_its_rows_and_notices_a_column_gone(client, directory, source_db, source_table, settings, database):
    directory.dataset()
    _seed(source_db, source_table)
    query = f"SELECT citizen_id, name AS full_name, district, birth_date FROM {source_table} WHERE district = '02'"
    payload = {"kind": "sql", "config": {"url": source_db.url, "query": query},
               "mapping": {"citizen_id": "citizen_id", "name": "full_name", "district": "district", "birth_date": "birth_date"}}
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json=payload, headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    run = _sync(client, directory).json()
    assert (run["outcome"], run["rows_read"]) == ("ok", 2)
    assert sorted(_snapshot(settings, database).column("name").to_pylist()) == ["Bob", "Carol"]
    source_db.execute(f"ALTER TABLE {source_table} RENAME COLUMN name TO given_name")
    drift = _sync(client, directory)
    assert drift.status_code in (409, 502), drift.text  # the query itself no longer runs, or its column is gone
    assert client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("PSB")).json()["latest_version"]["number"] == 1


def test_a_refused_login_is_reported_without_the_password(client, directory, _mariadb_source, factory):
    directory.dataset()
    wrong = _mariadb_source.url.replace(_mariadb_source.password, "wrong-" + _mariadb_source.password)
    response = client.put(
        f"/api/v1/datasets/{CODE}/source", json={"kind": "sql", "config": {"url": wrong, "table": "anything"}}, headers=directory.provider("PSB"),
    )
    assert response.status_code == 502 and "Access denied" in response.json()["detail"]
    assert _mariadb_source.password not in response.text


def test_a_row_committed_late_with_the_watermarks_exact_time_is_not_missed(client, directory, source_db, source_table, settings, database):
    directory.dataset()
    _seed(source_db, source_table)  # the newest update is 2026-01-01 10:00: the watermark
    _bind(client, directory, source_db, source_table, mode="incremental", update_column="updated_at")
    assert _sync(client, directory).json()["rows_added"] == 3
    # A transaction that stamped its row at 10:00 commits only after that sync read the table.
    _insert(source_db, source_table, [(PEOPLE[3], "Dan", "03", date(1970, 1, 1), datetime(2026, 1, 1, 10, 0))])
    late = _sync(client, directory).json()
    assert (late["mode"], late["rows_added"], late["rows_changed"], late["rows_removed"]) == ("incremental", 1, 0, 0)
    again = _sync(client, directory).json()  # the rows at the watermark are read again and change nothing
    assert (again["rows_read"], again["rows_added"], again["rows_changed"], again["rows_removed"]) == (2, 0, 0, 0)
    snapshot = _snapshot(settings, database)
    assert sorted(snapshot.column("citizen_id").to_pylist()) == sorted(PEOPLE[:4])  # each once


def test_a_retyped_column_of_a_query_source_is_drift_too(client, directory, source_db, source_table):
    directory.dataset()
    _seed(source_db, source_table)
    query = f"SELECT citizen_id, name, district, birth_date FROM {source_table}"
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "sql", "config": {"url": source_db.url, "query": query}}, headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    assert bound.json()["source_schema"]["birth_date"].lower() == "date"  # the driver's own name for the type
    assert _sync(client, directory).status_code == 201
    retype = "MODIFY birth_date VARCHAR(20)" if source_db.name == "mariadb" else "ALTER COLUMN birth_date TYPE VARCHAR(20)"
    source_db.execute(f"ALTER TABLE {source_table} {retype}")
    response = _sync(client, directory)
    assert response.status_code == 409, response.text
    assert "column birth_date changed type from date to " in response.json()["detail"].lower()
    assert client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("PSB")).json()["latest_version"]["number"] == 1
