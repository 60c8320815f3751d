"""A sync's own record while it runs: no write lock held, one run at a time, and what a killed process leaves is cleared up."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from connectors import service
from connectors.models import SourceBinding, SyncRun
from govshare import processes
from govshare.app import create_app
from govshare.db import utcnow
from tests.factories import citizen_id, dataset_document
from tests.servers import GOVSHARE, PagedSource, serving

CODE = "PSB-HOUSEHOLD"
PEOPLE = [citizen_id(f"11010119900307{n:03d}") for n in range(1, 7)]


@pytest.fixture
def slow_source() -> Iterator[tuple[threading.Event, threading.Event, str]]:
    """A JSON API whose second page is held back until the test sets ``release`` (a source mid-way through a read)."""
    held, release = threading.Event(), threading.Event()

    def hold(offset: int) -> None:
        if offset > 0:
            held.set()
            release.wait(60)

    source = PagedSource([{"citizen_id": cid, "name": "n", "district": "01", "birth_date": "1990-03-07"} for cid in PEOPLE], before_page=hold)
    with serving(source) as url:
        try:
            yield held, release, url
        finally:
            release.set()


def test_a_running_sync_holds_no_write_lock_beats_its_heartbeat_and_refuses_a_second(live_server, directory, slow_source, settings, database):
    held, release, url = slow_source
    directory.dataset()
    provider = directory.provider("PSB")
    bound = httpx.put(f"{live_server}/api/v1/datasets/{CODE}/source", json={"kind": "http", "config": {"url": url}}, headers=provider)
    assert bound.status_code == 200, bound.text
    answer: dict = {}
    syncing = threading.Thread(target=lambda: answer.update(response=httpx.post(f"{live_server}/api/v1/datasets/{CODE}/sync", headers=provider, timeout=120)))
    syncing.start()
    try:
        assert held.wait(30), "the sync never asked for the second page"
        deadline = time.monotonic() + 20
        while True:  # the heartbeat records the rows read so far
            [run] = httpx.get(f"{live_server}/api/v1/datasets/{CODE}/syncs", headers=provider).json()["runs"]
            if run["outcome"] == "running" and run["rows_read"] == 2:
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.2)
        started = time.monotonic()
        other = httpx.post(f"{live_server}/api/v1/datasets", headers=provider, timeout=20,
                           json=dataset_document("PSB-OTHER"))
        assert other.status_code == 201, other.text  # another write goes through while the sync reads its source
        assert time.monotonic() - started < 5
        second = httpx.post(f"{live_server}/api/v1/datasets/{CODE}/sync", headers=provider)
        assert second.status_code == 409 and second.json()["type"] == "urn:govshare:problem:sync-running"
    finally:
        release.set()
        syncing.join(timeout=60)
    assert answer["response"].status_code == 201, answer["response"].text
    done = answer["response"].json()
    assert (done["outcome"], done["rows_read"], done["version"]) == ("ok", 6, 1)


def _dead_pid() -> int:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(ended.stdout)


def test_start_up_ends_runs_of_ended_processes_and_removes_only_their_temporary_files(app, client, directory, settings, database):
    directory.dataset()
    folder = settings.resolved_sources_dir / "household"
    folder.mkdir(parents=True)
    (folder / "people.csv").write_text("citizen_id,name,district,birth_date\n" + f"{PEOPLE[0]},n,01,1990-03-07\n")
    bound = client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": {"path": "household", "format": "csv"}},
                       headers=directory.provider("PSB"))
    assert bound.status_code == 200, bound.text
    dead = _dead_pid()
    with database.transaction() as session:
        binding_id = session.execute(select(SourceBinding.id)).scalar_one()
        now = utcnow()
        killed = SyncRun(binding_id=binding_id, mode="full", started_at=now, outcome="running", actor="test", host=processes.HOST, pid=dead, heartbeat_at=now)
        silent = SyncRun(binding_id=binding_id, mode="full", started_at=now - timedelta(minutes=5), outcome="running", actor="test",
                         host="another-host", pid=1, heartbeat_at=now - timedelta(minutes=5))
        alive = SyncRun(binding_id=binding_id, mode="full", started_at=now, outcome="running", actor="test", host="another-host", pid=1, heartbeat_at=now)
        # A server restarted in a container often gets the pid its killed predecessor had: this process's own.
        reused = SyncRun(binding_id=binding_id, mode="full", started_at=now - timedelta(hours=1), outcome="running", actor="test",
                         host=processes.HOST, pid=os.getpid(), heartbeat_at=now)
        session.add_all([killed, silent, alive, reused])
    datasets = settings.resolved_data_dir / "datasets" / CODE
    datasets.mkdir(parents=True, exist_ok=True)
    left = datasets / f".sync-{dead}@{processes.HOST}-{'a' * 32}.parquet.tmp"
    ours = datasets / processes.temp_name("sync", ".parquet")
    elsewhere = datasets / f".sync-{dead}@another-host-{'b' * 32}.parquet.tmp"
    reused_pid = datasets / f".upload-{os.getpid()}@{processes.HOST}-{'c' * 32}.parquet.tmp"
    for path in (left, ours, elsewhere, reused_pid):
        path.write_bytes(b"partial")
    spill = datasets / f".keyed-{dead}@{processes.HOST}-{'d' * 32}.v000001.keyed.duckdb.tmp.spill"  # a keyed-store build's
    spill.mkdir()
    (spill / "duckdb_temp_storage_DEFAULT-0.tmp").write_bytes(b"spilled")
    an_hour_ago = time.time() - 3600
    os.utime(reused_pid, (an_hour_ago, an_hour_ago))  # written before this process started: by another with its pid

    with TestClient(create_app(settings)):  # a server starting up
        pass
    with database.transaction(write=False) as session:
        runs = {run.id: run for run in session.execute(select(SyncRun)).scalars()}
    assert (runs[killed.id].outcome, runs[killed.id].error, runs[killed.id].error_type) == ("failed", "interrupted: process ended", "sync-interrupted")
    assert runs[silent.id].outcome == "failed" and runs[silent.id].error.startswith("interrupted: no heartbeat since")
    assert runs[alive.id].outcome == "running"  # another host's live run is not ours to end
    assert (runs[reused.id].outcome, runs[reused.id].error) == ("failed", "interrupted: process ended")
    assert not left.exists() and not reused_pid.exists() and not spill.exists() and ours.exists() and elsewhere.exists()
    refused = client.post(f"/api/v1/datasets/{CODE}/sync", headers=directory.provider("PSB"))
    assert refused.status_code == 409 and "is running" in refused.json()["detail"]
    with database.transaction() as session:
        session.get(SyncRun, alive.id).heartbeat_at = utcnow() - timedelta(minutes=2)
    synced = client.post(f"/api/v1/datasets/{CODE}/sync", headers=directory.provider("PSB"))
    assert synced.status_code == 201, synced.text  # the silent run is ended, and the sync goes ahead
    with database.transaction(write=False) as session:
        assert session.get(SyncRun, alive.id).outcome == "failed"


def test_govshare_sync_ends_a_killed_run_first(client, directory, settings, database):
    directory.dataset()
    folder = settings.resolved_sources_dir / "household"
    folder.mkdir(parents=True)
    (folder / "people.csv").write_text("citizen_id,name,district,birth_date\n" + f"{PEOPLE[0]},n,01,1990-03-07\n")
    assert client.put(f"/api/v1/datasets/{CODE}/source", json={"kind": "files", "config": {"path": "household", "format": "csv"}},
                      headers=directory.provider("PSB")).status_code == 200
    with database.transaction() as session:
        binding_id = session.execute(select(SourceBinding.id)).scalar_one()
        session.add(SyncRun(binding_id=binding_id, mode="full", started_at=utcnow(), outcome="running", actor="test",
                            host=processes.HOST, pid=_dead_pid(), heartbeat_at=utcnow()))
    environment = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    done = subprocess.run([GOVSHARE, "sync", CODE], env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = client.get(f"/api/v1/datasets/{CODE}/syncs", headers=directory.provider("PSB")).json()["runs"]
    assert [(run["outcome"], run["error"]) for run in runs] == [("ok", None), ("failed", "interrupted: process ended")]
    assert service.recover_interrupted(database) == 0
