"""Uploading data as versions: checked against the items, refused whole, or stored as a Parquet snapshot."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from directory import service
from directory.models import DatasetVersion
from govshare import storage
from govshare.models import AuditEntry
from tests.factories import citizen_id

ALICE = citizen_id("11010119900307002")
BOB = citizen_id("44030519851224003")
CAROL = citizen_id("31010420011130004")
HEADER = "citizen_id,name,district,birth_date\n"


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\n" for row in rows)).encode()


GOOD = _csv(f"{ALICE},Alice,01,1990-03-07", f"{BOB},Bob,02,1985-12-24", f"{CAROL},Carol,02,2001-11-30")


def _files(settings) -> list:
    return sorted(path for path in settings.resolved_data_dir.rglob("*") if path.is_file())


def _versions(database) -> list[int]:
    with database.transaction(write=False) as session:
        return list(session.execute(select(DatasetVersion.number)).scalars())


def _refused(response, *, rule: str) -> list[dict]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == "urn:govshare:problem:version-refused"
    assert any(error["rule"] == rule for error in body["errors"]), body
    return body["errors"]


def test_a_valid_csv_becomes_version_1_with_a_quality_report(client, directory, settings, database):
    directory.dataset()
    response = directory.upload("PSB-HOUSEHOLD", GOOD)
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["number"] == 1 and version["rows"] == 3 and version["format"] == "csv"
    quality = version["quality"]
    assert quality["rows"] == 3
    assert quality["items"]["district"] == {"nulls": 0, "distinct": 2}
    assert quality["items"]["citizen_id"] == {"nulls": 0, "distinct": 3}
    assert set(quality["violations"].values()) == {0}

    shown = client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=directory.provider("CAB")).json()
    assert shown["latest_version"]["number"] == 1 and shown["latest_version"]["quality"] == quality
    listed = client.get("/api/v1/datasets/PSB-HOUSEHOLD/versions", headers=directory.provider("CAB")).json()
    assert [v["number"] for v in listed["versions"]] == [1]

    [snapshot] = _files(settings)
    table = pq.read_table(snapshot)
    assert table.schema.field("birth_date").type == pa.date32()
    assert table.column("citizen_id").to_pylist() == [ALICE, BOB, CAROL]
    assert snapshot.name == "v000001.parquet"
    with database.transaction(write=False) as session:
        [entry] = session.execute(select(AuditEntry).where(AuditEntry.action == "dataset.version_added")).scalars()
        assert entry.subject == "dataset:PSB-HOUSEHOLD" and json.loads(entry.details)["rows"] == 3


def test_each_upload_is_a_new_immutable_version(directory, settings):
    directory.dataset()
    assert directory.upload("PSB-HOUSEHOLD", GOOD).json()["number"] == 1
    first = _files(settings)[0].read_bytes()
    second = directory.upload("PSB-HOUSEHOLD", _csv(f"{ALICE},Alice,03,1990-03-07"))
    assert second.status_code == 201 and second.json()["number"] == 2 and second.json()["rows"] == 1
    files = _files(settings)
    assert [path.name for path in files] == ["v000001.parquet", "v000002.parquet"]
    assert files[0].read_bytes() == first


def test_a_bad_date_in_row_3_refuses_the_whole_file_and_stores_nothing(client, directory, settings, database):
    directory.dataset()
    bad = _csv(f"{ALICE},Alice,01,1990-03-07", f"{BOB},Bob,02,1985-12-24", f"{CAROL},Carol,02,2001-02-30")
    errors = _refused(directory.upload("PSB-HOUSEHOLD", bad), rule="type")
    assert errors == [{"row": 3, "column": "birth_date", "rule": "type", "message": "not a valid date"}]
    assert "row 3" in client.post(
        "/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("d.csv", bad)}, headers=directory.provider("PSB")
    ).json()["detail"]
    assert _versions(database) == []
    assert _files(settings) == []
    assert client.get("/api/v1/datasets/PSB-HOUSEHOLD", headers=directory.provider("PSB")).json()["latest_version"] is None


def test_a_citizen_id_with_a_wrong_check_digit_is_refused(directory, settings, database):
    directory.dataset()
    wrong = BOB[:-1] + ("1" if BOB[-1] != "1" else "2")
    errors = _refused(directory.upload("PSB-HOUSEHOLD", _csv(f"{ALICE},Alice,01,1990-03-07", f"{wrong},Bob,02,1985-12-24")), rule="citizen_id")
    assert errors == [{"row": 2, "column": "citizen_id", "rule": "citizen_id", "message": "the citizen ID's check digit is wrong (GB 11643)"}]
    assert _versions(database) == [] and _files(settings) == []


def test_the_citizen_id_check_applies_to_items_declared_with_the_format(directory):
    items = [
        {"name": "holder", "type": "string", "description": "policy holder", "sensitivity": "personal", "format": "citizen_id"},
        {"name": "amount", "type": "number", "description": "monthly amount", "sensitivity": "internal"},
    ]
    directory.dataset("HRSS-PENSION", "HRSS", lookup_key="holder", items=items)
    ok = directory.upload("HRSS-PENSION", f"holder,amount\n{ALICE},12.5\n{BOB}x,3\n".encode(), department="HRSS")
    errors = _refused(ok, rule="citizen_id")
    assert errors == [{"row": 2, "column": "holder", "rule": "citizen_id", "message": "not an 18-character citizen ID (17 digits and a digit or X)"}]
    assert directory.upload("HRSS-PENSION", f"holder,amount\n{ALICE},12.5\n{BOB},\n".encode(), department="HRSS").status_code == 201


def test_required_items_patterns_and_types_are_checked_by_row_and_column(directory):
    items = [
        {"name": "citizen_id", "type": "string", "description": "id", "sensitivity": "personal", "required": True},
        {"name": "district", "type": "string", "description": "district", "sensitivity": "internal", "pattern": "^[0-9]{2}$"},
        {"name": "children", "type": "integer", "description": "children", "sensitivity": "internal"},
        {"name": "insured", "type": "boolean", "description": "insured", "sensitivity": "internal"},
        {"name": "changed_at", "type": "datetime", "description": "changed", "sensitivity": "internal"},
    ]
    directory.dataset(items=items)
    content = (
        "citizen_id,district,children,insured,changed_at\n"
        f"{ALICE},01,2,true,2026-01-01T08:00:00+08:00\n"
        f",1,two,maybe,yesterday\n"
        f"{BOB},02,1.5,false,2026-01-01 10:00:00\n"
    ).encode()
    errors = _refused(directory.upload("PSB-HOUSEHOLD", content), rule="required")
    assert [(e["row"], e["column"], e["rule"]) for e in errors] == [
        (2, "changed_at", "type"), (2, "children", "type"), (2, "citizen_id", "required"),
        (2, "district", "pattern"), (2, "insured", "type"), (3, "children", "type"),
    ]


def test_at_most_20_errors_are_listed_in_row_order(directory):
    directory.dataset()
    rows = [f"{ALICE},Alice,01,not-a-date" for _ in range(50)]
    errors = _refused(directory.upload("PSB-HOUSEHOLD", _csv(*rows)), rule="type")
    assert [error["row"] for error in errors] == list(range(1, 21))


def test_columns_that_are_not_items_or_missing_required_items_are_refused(directory):
    directory.dataset()
    errors = _refused(directory.upload("PSB-HOUSEHOLD", f"citizen_id,name,salary\n{ALICE},Alice,100\n".encode()), rule="unknown_column")
    assert errors == [{"row": None, "column": "salary", "rule": "unknown_column", "message": "the file has a column that is not a data item"}]
    errors = _refused(directory.upload("PSB-HOUSEHOLD", b"name\nAlice\n"), rule="missing_column")
    assert errors[0]["column"] == "citizen_id"
    # Optional items may be left out: they are stored as empty.
    assert directory.upload("PSB-HOUSEHOLD", f"citizen_id\n{ALICE}\n".encode()).json()["quality"]["items"]["name"]["nulls"] == 1


def test_parquet_and_json_lines_files_are_accepted(directory, settings):
    directory.dataset()
    table = pa.table({"citizen_id": [ALICE, BOB], "name": ["Alice", "Bob"], "district": ["01", "02"], "birth_date": ["1990-03-07", "1985-12-24"]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    parquet = directory.upload("PSB-HOUSEHOLD", buffer.getvalue(), filename="people.parquet")
    assert parquet.status_code == 201, parquet.text
    assert parquet.json()["format"] == "parquet" and parquet.json()["rows"] == 2
    lines = "".join(json.dumps(row) + "\n" for row in table.to_pylist()).encode()
    jsonl = directory.upload("PSB-HOUSEHOLD", lines, filename="people.jsonl")
    assert jsonl.status_code == 201, jsonl.text
    assert jsonl.json()["format"] == "jsonl" and jsonl.json()["number"] == 2
    assert pq.read_table(_files(settings)[1]).column("birth_date").type == pa.date32()
    bad = lines.replace(b"1985-12-24", b"1985-12-32")
    assert _refused(directory.upload("PSB-HOUSEHOLD", bad, filename="people.jsonl"), rule="type")[0]["row"] == 2


def test_an_unreadable_file_is_refused(directory, settings):
    directory.dataset()
    response = directory.upload("PSB-HOUSEHOLD", b"PAR1 this is not parquet", filename="x.parquet")
    assert response.status_code == 422 and response.json()["type"] == "urn:govshare:problem:invalid-file"
    assert _files(settings) == []


def test_a_version_whose_transaction_rolls_back_leaves_no_file(directory, settings, database):
    directory.dataset()

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        with database.transaction() as session:
            dataset = service.get_dataset(session, "PSB-HOUSEHOLD")
            service.add_version(session, dataset=dataset, source=io.BytesIO(GOOD), filename="a.csv", store=storage.for_settings(settings), actor="test")
            assert len(_files(settings)) == 1  # in place, awaiting commit
            raise Crash
    assert _files(settings) == [] and _versions(database) == []
    assert directory.upload("PSB-HOUSEHOLD", GOOD).json()["number"] == 1


def test_a_csv_with_a_byte_order_mark_and_quoted_line_breaks_is_read_as_written(directory, settings):
    directory.dataset()
    content = ("\ufeff" + HEADER + f'{ALICE},"Alice\nZhang",01,1990-03-07\n').encode()
    response = directory.upload("PSB-HOUSEHOLD", content)
    assert response.status_code == 201, response.text
    assert pq.read_table(_files(settings)[0]).column("name").to_pylist() == ["Alice\nZhang"]


def test_a_retired_dataset_takes_no_new_versions(client, directory, settings):
    directory.dataset()
    client.post("/api/v1/datasets/PSB-HOUSEHOLD/retire", headers=directory.provider("PSB"))
    response = directory.upload("PSB-HOUSEHOLD", GOOD)
    assert response.status_code == 409 and response.json()["type"] == "urn:govshare:problem:dataset-retired"
    assert _files(settings) == []
