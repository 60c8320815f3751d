"""The demo directory: five datasets of synthetic citizens whose IDs all pass the check."""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq

from directory import service
from directory.demo import DEMO_DATASETS, citizens_sql, seed_directory
from govshare import storage
from govshare import demo
from tests.factories import citizen_id


def test_synthetic_citizens_are_unique_valid_and_the_same_every_time():
    first = duckdb.sql(citizens_sql(60_000)).fetchall()
    assert first == duckdb.sql(citizens_sql(60_000)).fetchall()
    ids = [row[0] for row in first]
    assert len(set(ids)) == len(ids)
    assert all(value == citizen_id(value[:17]) for value in ids[:2000] + ids[-2000:])


def test_seed_directory_registers_and_loads_the_demo_datasets(database, settings):
    with database.transaction() as session:
        demo.seed_identities(session)
        codes = seed_directory(session, store=storage.for_settings(settings), rows=5_000)
    assert codes == ["PSB-HOUSEHOLD", "HEALTH-BIRTH", "CAB-MARRIAGE", "HRSS-INSURANCE", "EDU-ENROLMENT"]
    assert [document["code"] for document, _ in DEMO_DATASETS] == codes
    with database.transaction(write=False) as session:
        household = service.get_dataset(session, "PSB-HOUSEHOLD")
        [version] = service.list_versions(session, dataset=household)
        assert version.rows == 5_000 and version.quality["items"]["citizen_id"]["nulls"] == 0
        table = pq.read_table(service.snapshot_path(storage.for_settings(settings), version))
        assert table.num_rows == 5_000
        for code in codes:
            dataset = service.get_dataset(session, code)
            assert dataset.latest_version == 1 and dataset.department_code == code.split("-")[0]
