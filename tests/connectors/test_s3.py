"""File sources on an S3-compatible store: moto's S3 server (real HTTP, in this process) read through pyarrow.fs."""

from __future__ import annotations

from govshare import storage
import secrets
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from directory import service as directory_service
from tests.factories import citizen_id

CODE = "PSB-HOUSEHOLD"
PEOPLE = [citizen_id(f"11010119900307{n:03d}") for n in range(1, 7)]


@dataclass
class Store:
    endpoint: str
    bucket: str
    filesystem: pafs.S3FileSystem
    access_key: str
    secret_key: str

    def config(self, prefix: str, **more) -> dict:
        return {"path": f"s3://{self.bucket}/{prefix}", "endpoint": self.endpoint, "access_key": self.access_key,
                "secret_key": self.secret_key, **more}


@pytest.fixture
def s3(s3_endpoint) -> Store:
    """A fresh bucket on the S3 server, and a department's key pair for it."""
    access_key, secret_key = f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
    filesystem = pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, endpoint_override=s3_endpoint,
                                   region="us-east-1", allow_bucket_creation=True)
    bucket = f"dept-{secrets.token_hex(6)}"
    filesystem.create_dir(bucket)
    return Store(s3_endpoint, bucket, filesystem, access_key, secret_key)


def _rows(*numbers: int, district: str = "01", birth_date: str = "1990-03-07") -> list[dict]:
    return [{"citizen_id": PEOPLE[n], "name": f"person {n}", "district": district, "birth_date": birth_date} for n in numbers]


def _snapshot(settings, database) -> pa.Table:
    with database.transaction(write=False) as session:
        dataset = directory_service.get_dataset(session, CODE)
        version = directory_service.latest_version(session, dataset=dataset)
        return pq.read_table(directory_service.snapshot_path(storage.for_settings(settings), version))


def _bind(client, directory, config: dict):
    return client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": config}, headers=directory.provider("PSB"))


def _sync(client, directory):
    return client.post(f"/api/v1/datasets/{CODE}/sync", headers=directory.provider("PSB"))


def test_parquet_objects_on_s3_sync_report_changes_and_a_dropped_column_stops_the_sync(client, directory, settings, database, s3):
    directory.dataset()
    pq.write_table(pa.Table.from_pylist(_rows(0, 1)), f"{s3.bucket}/household/part-1.parquet", filesystem=s3.filesystem)
    pq.write_table(pa.Table.from_pylist(_rows(2)), f"{s3.bucket}/household/part-2.parquet", filesystem=s3.filesystem)
    bound = _bind(client, directory, s3.config("household"))
    assert bound.status_code == 200, bound.text
    assert bound.json()["has_credential"] is True and "secret_key" not in bound.json()["config"]
    run = _sync(client, directory).json()
    assert (run["outcome"], run["rows_read"], run["rows_added"]) == ("ok", 3, 3)
    assert sorted(_snapshot(settings, database).column("citizen_id").to_pylist()) == sorted(PEOPLE[:3])

    pq.write_table(pa.Table.from_pylist(_rows(3, 4) + _rows(0, district="09")), f"{s3.bucket}/household/part-3.parquet", filesystem=s3.filesystem)
    pq.write_table(pa.Table.from_pylist(_rows(1)), f"{s3.bucket}/household/part-1.parquet", filesystem=s3.filesystem)
    s3.filesystem.delete_file(f"{s3.bucket}/household/part-2.parquet")
    second = _sync(client, directory).json()
    assert (second["rows_added"], second["rows_changed"], second["rows_removed"]) == (2, 1, 1)
    rows = {row["citizen_id"]: row for row in _snapshot(settings, database).to_pylist()}
    assert set(rows) == {PEOPLE[0], PEOPLE[1], PEOPLE[3], PEOPLE[4]} and rows[PEOPLE[0]]["district"] == "09"

    for name in ("part-1.parquet", "part-3.parquet"):
        path = f"{s3.bucket}/household/{name}"
        pq.write_table(pq.read_table(path, filesystem=s3.filesystem).drop_columns(["district"]), path, filesystem=s3.filesystem)
    drift = _sync(client, directory)
    assert drift.status_code == 409 and "column district is gone" in drift.json()["detail"]
    assert client.get(f"/api/v1/datasets/{CODE}", headers=directory.provider("PSB")).json()["latest_version"]["number"] == 2
    listed = client.get(f"/api/v1/datasets/{CODE}/syncs", headers=directory.provider("PSB"))
    for response in (bound, listed, drift):
        assert s3.secret_key not in response.text


def test_a_csv_object_on_s3_syncs_as_text_and_dates_turned_to_free_text_stop_the_sync(client, directory, settings, database, s3):
    directory.dataset()

    def put(rows: list[dict]) -> None:
        lines = ["citizen_id,name,district,birth_date"] + [",".join(row[key] for key in ("citizen_id", "name", "district", "birth_date")) for row in rows]
        with s3.filesystem.open_output_stream(f"{s3.bucket}/exports/people.csv") as stream:
            stream.write(("\n".join(lines) + "\n").encode())

    put(_rows(0, 1, 2))
    bound = _bind(client, directory, s3.config("exports/people.csv", format="csv"))
    assert bound.status_code == 200, bound.text
    run = _sync(client, directory).json()
    assert (run["outcome"], run["rows_added"]) == ("ok", 3)
    assert _snapshot(settings, database).column("district").to_pylist() == ["01"] * 3  # text stays text

    put(_rows(0, 1, 2, 3))
    assert _sync(client, directory).json()["rows_added"] == 1
    put(_rows(0, 1, 2, 3, birth_date="07/03/1990"))
    drift = _sync(client, directory)
    assert drift.status_code == 409, drift.text
    assert "column birth_date changed type from string holding date32[day] to string" in drift.json()["detail"]
    assert _snapshot(settings, database).num_rows == 4


def test_a_wrong_bucket_is_reported_when_binding(client, directory, s3):
    directory.dataset()
    refused = _bind(client, directory, {**s3.config("household"), "path": "s3://no-such-bucket-here/household"})
    assert refused.status_code == 502, refused.text
    assert refused.json()["type"] == "urn:govshare:problem:source-failed" and s3.secret_key not in refused.text
