"""A file larger than the memory it may use: 2 million rows, streamed in bounded record batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from directory import service
from directory.demo import citizens_sql
from govshare.db import quote_path
from tests.factories import dataset_document

GOVSHARE = str(Path(sys.executable).parent / "govshare")
MB = 1 << 20

# Runs one command as its child and reports the child's peak resident memory, so the
# figure is that upload's alone (RUSAGE_CHILDREN covers only children already waited for).
MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-2000:],
                  "maxrss_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""

TEXT_ITEMS = [
    {"name": "household_no", "type": "string", "description": "household registration number", "sensitivity": "internal"},
    {"name": "birthplace", "type": "string", "description": "place of birth", "sensitivity": "personal"},
    {"name": "address", "type": "string", "description": "registered address", "sensitivity": "personal"},
    {"name": "employer", "type": "string", "description": "employer", "sensitivity": "personal"},
    {"name": "registered_on", "type": "date", "description": "date of registration", "sensitivity": "internal"},
    {"name": "members", "type": "integer", "description": "members of the household", "sensitivity": "internal"},
    {"name": "remarks", "type": "string", "description": "registrar's remarks", "sensitivity": "internal"},
]


def _write_people(path: Path, rows: int) -> None:
    """A household register of ``rows`` people, about 300 bytes a row (valid citizen IDs)."""
    duckdb.sql(f"""
        COPY (
            SELECT citizen_id, name, district, birth_date, household_no,
                   'Hospital of ' || district || ', ' || ['Beijing', 'Tianjin', 'Hebei', 'Shanxi'][1 + CAST(i % 4 AS INTEGER)] AS birthplace,
                   'No. ' || CAST(i % 997 AS VARCHAR) || ' Chang''an Avenue, Building ' || CAST(i % 37 AS VARCHAR)
                       || ', Unit ' || CAST(i % 5 AS VARCHAR) || ', Dongcheng District, Beijing' AS address,
                   ['Municipal Water Company', 'Beijing Number 4 Middle School', 'Capital Steel Group', 'Self-employed'][1 + CAST(i % 4 AS INTEGER)] AS employer,
                   DATE '1990-01-01' + CAST(i % 12000 AS INTEGER) AS registered_on,
                   CAST(1 + i % 6 AS INTEGER) AS members,
                   'moved in from ' || district || ' on ' || CAST(DATE '1990-01-01' + CAST(i % 12000 AS INTEGER) AS VARCHAR)
                       || '; documents checked by registrar ' || CAST(i % 113 AS VARCHAR) AS remarks
            FROM ({citizens_sql(rows)})
        ) TO {quote_path(path)} (HEADER, DELIMITER ',')
    """)


def _measured(settings, *arguments: str) -> tuple[str, int]:
    environment = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, GOVSHARE, *arguments],
        env=environment, capture_output=True, text=True, timeout=900, check=True,
    )
    report = json.loads(done.stdout)
    assert report["returncode"] == 0, report["stderr"]
    return report["stdout"], report["maxrss_bytes"]


def _upload_measured(settings, path: Path) -> tuple[dict, int]:
    output, peak = _measured(settings, "datasets", "upload", "PSB-HOUSEHOLD", str(path))
    return json.loads(output), peak


@pytest.mark.slow
def test_a_2_million_row_csv_loads_with_peak_memory_well_under_the_file_size(settings, factory, database, tmp_path):
    factory.department("PSB")
    document = dataset_document()
    document["items"] += TEXT_ITEMS
    with database.transaction() as session:
        service.register_dataset(session, document=document, department="PSB", actor="test")
    tiny, small, large = tmp_path / "tiny.csv", tmp_path / "small.csv", tmp_path / "large.csv"
    _write_people(tiny, 1)
    _write_people(small, 200_000)
    _write_people(large, 2_000_000)

    # The same command with one row to read: the interpreter and the libraries an upload imports
    # (which vary with what is installed: pyarrow.dataset pulls in pandas when present). Not
    # --help, which since the CLI imports lazily loads none of them.
    _, idle_peak = _upload_measured(settings, tiny)
    small_version, small_peak = _upload_measured(settings, small)
    version, peak = _upload_measured(settings, large)
    size = large.stat().st_size
    print(f"\n2,000,000 rows, file {size / MB:.0f} MB: peak RSS {peak / MB:.0f} MB; 200,000 rows: peak {small_peak / MB:.0f} MB;"
          f" the command with no data: {idle_peak / MB:.0f} MB")

    assert small_version["rows"] == 200_000
    assert version["number"] == 3 and version["rows"] == 2_000_000
    assert version["quality"]["items"]["citizen_id"]["nulls"] == 0
    assert size > 500 * MB
    # What reading the data adds to the process stays well under the file's size ...
    assert peak - idle_peak < size * 0.3
    # ... because memory does not grow with the file: ten times the rows, about the same peak.
    assert peak - small_peak < 64 * MB
    snapshot = next(settings.resolved_data_dir.rglob("v000003.parquet"))
    assert pq.ParquetFile(snapshot).metadata.num_rows == 2_000_000
