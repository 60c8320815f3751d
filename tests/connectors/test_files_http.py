"""File sources (a folder of Parquet or CSV files) and HTTP JSON sources served by the test itself."""

from __future__ import annotations

from govshare import storage
from collections.abc import Iterator
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from directory import service as directory_service
from tests.factories import citizen_id
from tests.servers import PagedSource, serving

CODE = "PSB-HOUSEHOLD"
PEOPLE = [citizen_id(f"11010119900307{n:03d}") for n in range(1, 8)]


def _rows(*numbers: int, district: str = "01") -> list[dict]:
    return [{"citizen_id": PEOPLE[n], "name": f"person {n}", "district": district, "birth_date": "1990-03-07", "updated": f"2026-01-0{n + 1}"} for n in numbers]


def _snapshot(settings, database) -> pa.Table:
    with database.transaction(write=False) as session:
        dataset = directory_service.get_dataset(session, CODE)
        version = directory_service.latest_version(session, dataset=dataset)
        return pq.read_table(directory_service.snapshot_path(storage.for_settings(settings), version))


def _sync(client, directory):
    return client.post(f"/api/v1/datasets/{CODE}/sync", headers=directory.provider("PSB"))


def test_a_folder_of_parquet_files_syncs_and_a_dropped_column_stops_the_next_sync(client, directory, settings, database):
    directory.dataset()
    folder = settings.resolved_sources_dir / "household"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(_rows(0, 1)), folder / "part-1.parquet")
    pq.write_table(pa.Table.from_pylist(_rows(2)), folder / "part-2.parquet")
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": {"path": "household"}}, headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    run = _sync(client, directory).json()
    assert (run["outcome"], run["rows_read"], run["rows_added"]) == ("ok", 3, 3)
    assert sorted(_snapshot(settings, database).column("citizen_id").to_pylist()) == sorted(PEOPLE[:3])

    pq.write_table(pa.Table.from_pylist(_rows(3, 4)), folder / "part-3.parquet")
    (folder / "part-2.parquet").unlink()
    second = _sync(client, directory).json()
    assert (second["rows_added"], second["rows_changed"], second["rows_removed"]) == (2, 0, 1)

    for part in folder.iterdir():
        pq.write_table(pq.read_table(part).drop_columns(["district"]), part)
    drift = _sync(client, directory)
    assert drift.status_code == 409 and "column district is gone" in drift.json()["detail"]
    assert client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("PSB")).json()["latest_version"]["number"] == 2


def test_a_csv_file_syncs_and_paths_outside_the_sources_folder_are_refused(client, directory, settings, database):
    directory.dataset()
    settings.resolved_sources_dir.mkdir(parents=True, exist_ok=True)
    lines = ["citizen_id,name,district,birth_date"] + [f"{row['citizen_id']},{row['name']},{row['district']},{row['birth_date']}" for row in _rows(0, 1)]
    (settings.resolved_sources_dir / "people.csv").write_text("\n".join(lines) + "\n")
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": {"path": "people.csv", "format": "csv"}}, headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    assert _sync(client, directory).json()["rows_added"] == 2
    snapshot = _snapshot(settings, database)
    assert snapshot.column("birth_date").to_pylist() == [date(1990, 3, 7)] * 2
    assert snapshot.column("district").to_pylist() == ["01", "01"]  # text stays text: no leading zero lost
    for path in ("../keys", "/etc"):
        refused = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": {"path": path}}, headers=directory.provider("PSB"))
        assert refused.status_code == 422 and "under the sources folder" in refused.json()["detail"]


def test_a_csv_column_whose_values_change_kind_stops_the_sync(client, directory, settings, database):
    directory.dataset()
    settings.resolved_sources_dir.mkdir(parents=True, exist_ok=True)
    path = settings.resolved_sources_dir / "people.csv"

    def write(birth_date: str) -> None:
        lines = ["citizen_id,name,district,birth_date"] + [f"{row['citizen_id']},{row['name']},{row['district']},{birth_date}" for row in _rows(0, 1)]
        path.write_text("\n".join(lines) + "\n")

    write("1990-03-07")
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": {"path": "people.csv", "format": "csv"}}, headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    assert _sync(client, directory).status_code == 201
    write("07/03/1990")  # an export now writes dates day first: still text, but no longer dates
    drift = _sync(client, directory)
    assert drift.status_code == 409, drift.text
    assert "column birth_date changed type from string holding date32[day] to string" in drift.json()["detail"]
    assert client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("PSB")).json()["latest_version"]["number"] == 1


@pytest.fixture
def http_source() -> Iterator[tuple[PagedSource, str]]:
    """A department's JSON API: pages of records behind a bearer token, linked by ``next``."""
    pages = PagedSource(records_key="data", next_key="links", token="tok-" + "9f3e2a7c1b")
    with serving(pages) as url:
        yield pages, url


def test_an_http_json_source_is_read_page_by_page(client, directory, settings, database, http_source):
    pages, url = http_source
    pages.records = _rows(0, 1, 2, 3, 4)
    directory.dataset()
    config = {"url": url, "records": "data", "next": "links", "token": pages.token}
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "http", "config": config}, headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    assert bound.json()["config"] == {"url": url, "records": "data", "next": "links"} and bound.json()["has_credential"]
    run = _sync(client, directory)
    assert run.status_code == 201, run.text
    assert (run.json()["rows_read"], run.json()["rows_added"]) == (5, 5)
    assert sorted(_snapshot(settings, database).column("citizen_id").to_pylist()) == sorted(PEOPLE[:5])
    assert "/people?offset=4" in pages.requests  # three pages of two were followed

    pages.records = _rows(0, 1) + _rows(2, district="07") + _rows(5)
    second = _sync(client, directory).json()
    assert (second["rows_added"], second["rows_changed"], second["rows_removed"]) == (1, 1, 2)

    pages.token = "rotated"  # the stored token no longer works: the sync fails, never showing the old one
    failed = _sync(client, directory)
    assert failed.status_code == 502 and "401" in failed.json()["detail"]
    listed = client.get(f"/api/v1/datasets/{CODE}/syncs", headers=directory.provider("PSB"))
    for response in (bound, run, failed, listed):
        assert "tok-9f3e2a7c1b" not in response.text


def test_a_sqlite_source_is_read_only_from_the_sources_folder(client, directory, settings, database):
    import sqlite3

    directory.dataset()
    settings.resolved_sources_dir.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(settings.resolved_sources_dir / "people.db")
    connection.execute("CREATE TABLE people (citizen_id TEXT, name TEXT, district TEXT, birth_date TEXT)")
    connection.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", [(r["citizen_id"], r["name"], r["district"], r["birth_date"]) for r in _rows(0, 1, 2)])
    connection.commit()
    connection.close()

    def bind(url: str, table: str = "people"):
        return client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "sql", "config": {"url": url, "table": table}}, headers=directory.provider("PSB"))

    assert bind("sqlite:///people.db").status_code == 200
    assert _sync(client, directory).json()["rows_added"] == 3
    record_store = settings.resolved_home / "govshare.db"  # the exchange's own records must stay out of reach
    for url in (f"sqlite:///{record_store}", "sqlite:///../govshare.db", "sqlite://"):
        refused = bind(url, table="clients")
        assert refused.status_code == 422 and "sources folder" in refused.json()["detail"], refused.text


def test_an_http_source_paged_by_page_number(client, directory, settings, database, http_source):
    pages, url = http_source
    pages.records = _rows(0, 1, 2)
    directory.dataset()
    config = {"url": url, "records": "data", "page_param": "page", "token": pages.token}
    assert client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "http", "config": config}, headers=directory.provider("PSB")).status_code == 200
    run = _sync(client, directory).json()
    assert (run["outcome"], run["rows_read"]) == ("ok", 3)
    assert "/people?page=3" in pages.requests  # pages 1 and 2 held the rows; page 3 came back empty and ended the read
