"""``govshare sync CODE`` and the scheduled job that syncs sources due by their update frequency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectors import service
from connectors.models import SyncRun
from govshare import storage
from govshare.db import utcnow
from govshare.keys import KeyStore
from tests.factories import citizen_id

CODE = "PSB-HOUSEHOLD"
GOVSHARE = str(Path(sys.executable).with_name("govshare"))
PEOPLE = [citizen_id(f"11010119900307{n:03d}") for n in range(1, 4)]


def _folder_source(client, directory, settings, rows: int = 3, **changes) -> Path:
    directory.dataset(**changes)
    folder = settings.resolved_sources_dir / "household"
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{"citizen_id": cid, "name": "n", "district": "01", "birth_date": "1990-03-07"} for cid in PEOPLE[:rows]])
    pq.write_table(table, folder / "part.parquet")
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": {"path": "household"}}, headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    return folder


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    return subprocess.run([GOVSHARE, *args], env=environment, capture_output=True, text=True, timeout=120)


def test_govshare_sync_runs_a_sync_and_reports_it(client, directory, settings):
    folder = _folder_source(client, directory, settings)
    done = _cli(settings, "sync", CODE)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["outcome"], run["version"], run["rows_added"]) == ("ok", 1, 3)
    assert "rows read" in done.stderr  # the progress bar

    pq.write_table(pq.read_table(folder / "part.parquet").drop_columns(["name"]), folder / "part.parquet")
    failed = _cli(settings, "sync", CODE)
    assert failed.returncode == 1 and "column name is gone" in failed.stderr
    assert json.loads(failed.stdout)["outcome"] == "failed"
    missing = _cli(settings, "sync", "NO-SUCH")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_the_job_syncs_what_is_due_by_update_frequency_and_freshness_follows(client, directory, settings, database, factory):
    _folder_source(client, directory, settings, update_frequency="weekly")
    keystore = KeyStore(settings.resolved_keys_dir)

    def job(now):
        return service.sync_due(database, store=storage.for_settings(settings), keystore=keystore, files_root=settings.resolved_sources_dir, now=now)

    now = utcnow()
    [first] = job(now)  # never synced: due
    assert first.outcome == "ok" and first.actor == "job:source-syncs"
    assert job(now + timedelta(days=6)) == []  # weekly: fresh for seven days
    shown = client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).json()
    assert shown["fresh"] is True and shown["last_sync"]["outcome"] == "ok"
    listed = client.get(f"/api/v1/datasets/{CODE}", headers=factory.caller("CAB", "demander")).json()  # the directory, for anyone
    assert listed["sync"] == {
        "kind": "files", "last_sync_at": first.started_at.isoformat(), "last_outcome": "ok",
        "last_good_sync_at": first.finished_at.isoformat(), "fresh": True,
    }
    [second] = job(now + timedelta(days=8))
    assert second.version == 2

    (settings.resolved_sources_dir / "household" / "part.parquet").unlink()  # the source breaks
    later = now + timedelta(days=16)
    [failed] = job(later)
    assert failed.outcome == "failed"

    def failed_at(moment):  # the run records the wall clock; place it in the simulated timeline
        with database.transaction() as session:
            session.get(SyncRun, failed.id).started_at = moment

    failed_at(later - timedelta(minutes=30))
    assert job(later) == []  # a failed scheduled sync is retried only after an hour
    failed_at(later - timedelta(hours=2))
    assert len(job(later)) == 1


def test_irregular_datasets_are_synced_only_on_demand(client, directory, settings, database):
    directory.dataset("PSB-OTHER")
    assert "sync" not in client.get("/api/v1/datasets/PSB-OTHER", headers=directory.provider("PSB")).json()  # no source, no field
    _folder_source(client, directory, settings, update_frequency="irregular")
    keystore = KeyStore(settings.resolved_keys_dir)
    assert service.sync_due(database, store=storage.for_settings(settings), keystore=keystore, files_root=settings.resolved_sources_dir) == []
    assert client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).json()["fresh"] is None
