"""A real ``govshare serve`` killed outright (SIGKILL) in the middle of an upload, a sync and an extract, then restarted.

After the restart no partial version or file is visible, nothing that was committed is
lost, the sync ends as failed with the reason and the extract is taken up again and
finished. Each kill waits for evidence that the work is under way in the server's own
process (its temporary file, its heartbeat), never for a guessed time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest
from sqlalchemy import select

from directory.demo import citizens_sql
from exchange.models import Extract
from govshare import processes
from govshare.db import quote_path
from govshare.settings import get_settings
from tests.approvals.test_api import application_body
from tests.conftest import ISSUER
from tests.factories import DirectoryFactory, citizen_id
from tests.servers import GovshareServer, PagedSource, serving

pytestmark = pytest.mark.slow

ROWS = 1_000_000
SYNCED = [citizen_id(f"11010119900307{n:03d}") for n in range(1, 7)]


def _wait_for(what: str, found: Callable[[], object], timeout: float = 60, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, f"no evidence within {timeout} s that {what}"
        time.sleep(every)
    return result


def _temp_files_of(folder: Path, pid: int, purpose: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return [path for path in folder.rglob(f".{purpose}-{pid}@*.tmp") if path.is_file() and path.stat().st_size > 0]


@pytest.fixture
def held_source(monkeypatch) -> Iterator[tuple[threading.Event, threading.Event, str]]:
    """A department's JSON API whose second page is held back while ``hold`` is set: a sync stuck mid-way."""
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", '["127.0.0.1"]')  # it listens on a loopback port
    get_settings.cache_clear()
    hold, released = threading.Event(), threading.Event()

    def maybe_hold(offset: int) -> None:
        if offset > 0 and hold.is_set():
            released.wait(120)

    source = PagedSource([{"citizen_id": cid, "name": "n", "district": "01", "birth_date": "1990-03-07"} for cid in SYNCED],
                         before_page=maybe_hold)
    with serving(source) as url:
        try:
            yield hold, released, url
        finally:
            released.set()


def _in_background(call: Callable[[], httpx.Response]) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["response"] = call()
        except httpx.TransportError as error:  # the server died under it
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _visible(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))


def test_a_server_killed_mid_upload_mid_sync_and_mid_extract_loses_nothing_and_shows_nothing_partial(
    client, factory, settings, database, tmp_path, held_source
):
    hold, released, source_url = held_source
    directory = DirectoryFactory(factory)
    provider = directory.provider("PSB")
    data_dir = settings.resolved_data_dir

    # Arranged in-process over the same store: a million citizens as version 1, an extract grant, a synced source.
    people = tmp_path / "people.csv"
    duckdb.connect().execute(
        f"COPY (SELECT citizen_id, name, lpad(CAST(i % 8 + 1 AS VARCHAR), 2, '0') AS district, birth_date FROM ({citizens_sql(ROWS)})) "
        f"TO {quote_path(people)} (HEADER)"
    )
    directory.dataset("PSB-HOUSEHOLD")
    with people.open("rb") as file:
        first = client.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("people.csv", file)}, headers=provider)
    assert first.status_code == 201, first.text
    demander, manager = factory.caller("CAB", "demander"), factory.caller("DATA", "manager")
    period = {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=60)).isoformat()}
    application = client.post("/api/v1/applications", json=application_body(delivery="extract", period=period, row_filter=None), headers=demander).json()
    assert client.post(f"/api/v1/applications/{application['id']}/decision", json={"decision": "approve"}, headers=manager).status_code == 200
    grant_id = client.post(f"/api/v1/applications/{application['id']}/provider-decision", json={"decision": "approve"}, headers=provider).json()["grant_id"]
    directory.dataset("PSB-SYNCED")
    bound = client.put("/api/v1/datasets/PSB-SYNCED/source", json={"kind": "http", "config": {"url": source_url}}, headers=provider)
    assert bound.status_code == 200, bound.text
    assert client.post("/api/v1/datasets/PSB-SYNCED/sync", headers=provider).json()["version"] == 1
    audit_before = client.get("/api/v1/audit/verify", headers=manager).json()
    assert audit_before["ok"]

    server = GovshareServer({"GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url,
                             "GOVSHARE_ISSUER": ISSUER, "GOVSHARE_JOBS_ENABLED": "true",
                             "GOVSHARE_OUTBOUND_ALLOWLIST": '["127.0.0.1"]'}, tmp_path / "serve.log")
    try:
        # Life 1: a sync stuck reading its source and an upload being checked, then SIGKILL.
        server.start()
        hold.set()
        syncing, sync_outcome = _in_background(lambda: httpx.post(f"{server.base}/api/v1/datasets/PSB-SYNCED/sync", headers=provider, timeout=300))

        def sync_running():
            runs = httpx.get(f"{server.base}/api/v1/datasets/PSB-SYNCED/syncs", headers=provider).json()["runs"]
            return runs[0]["outcome"] == "running" and (runs[0]["rows_read"] or 0) >= 2 and runs[0]

        running = _wait_for("the sync is reading its source (heartbeat with rows read)", sync_running, every=0.1)

        def upload() -> httpx.Response:
            with people.open("rb") as file:
                return httpx.post(f"{server.base}/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("people.csv", file)},
                                  headers=provider, timeout=300)

        uploading, upload_outcome = _in_background(upload)
        [partial_upload] = _wait_for("the upload is being checked into its temporary snapshot",
                                     lambda: _temp_files_of(data_dir / "datasets" / "PSB-HOUSEHOLD", server.pid, "upload"))
        sync_temp = _temp_files_of(data_dir / "datasets" / "PSB-SYNCED", server.pid, "sync")
        assert sync_temp, "the sync writes its checked rows to a temporary file of its own process"
        killed_pid = server.pid
        server.kill()
        uploading.join(timeout=30)
        syncing.join(timeout=30)
        assert "error" in upload_outcome and "error" in sync_outcome  # both were cut off: no answer came
        assert partial_upload.exists()  # what a hard kill leaves behind, until the restart

        # Life 2: started again, nothing partial is visible, the sync ended with its reason and runs again.
        hold.clear()
        server.start()
        for purpose in ("upload", "sync"):
            assert _temp_files_of(data_dir, killed_pid, purpose) == [], f"{purpose} temporary files of the killed process remain"
        assert _visible(data_dir / "datasets" / "PSB-HOUSEHOLD") == ["v000001.parquet"]
        assert _visible(data_dir / "datasets" / "PSB-SYNCED") == ["v000001.parquet"]
        household = httpx.get(f"{server.base}/api/v1/datasets/PSB-HOUSEHOLD/versions", headers=provider).json()["versions"]
        assert [(version["number"], version["rows"]) for version in household] == [(1, ROWS)]
        runs = httpx.get(f"{server.base}/api/v1/datasets/PSB-SYNCED/syncs", headers=provider).json()["runs"]
        assert [(run["id"], run["outcome"], run["error_type"], run["error"]) for run in runs[:1]] == [
            (running["id"], "failed", "sync-interrupted", "interrupted: process ended")]
        assert [(run["outcome"], run["version"]) for run in runs[1:]] == [("ok", 1)]
        again = httpx.post(f"{server.base}/api/v1/datasets/PSB-SYNCED/sync", headers=provider, timeout=60)
        assert again.status_code == 201 and again.json()["version"] == 2, again.text

        # Life 2, then: an extract of the million rows being written, then SIGKILL.
        requested = httpx.post(f"{server.base}/api/v1/grants/{grant_id}/extracts", json={"format": "csv"}, headers=demander)
        assert requested.status_code == 202, requested.text
        extract_id = requested.json()["id"]
        _wait_for("the extract is being written", lambda: _temp_files_of(data_dir / "extracts", server.pid, "extract"))
        killed_pid = server.pid
        server.kill()
        with database.transaction(write=False) as session:
            extract = session.get(Extract, extract_id)
            assert (extract.status, extract.attempts, extract.worker_pid) == ("running", 1, killed_pid)
        assert not (data_dir / "extracts" / f"{extract_id}.csv").exists()

        # Life 3: the extract is taken up again at once and finished; its file is whole.
        server.start()
        assert _temp_files_of(data_dir / "extracts", killed_pid, "extract") == []

        def extract_done():
            shown = httpx.get(f"{server.base}/api/v1/extracts/{extract_id}", headers=demander).json()
            assert shown["status"] != "failed", shown
            return shown["status"] == "done" and shown

        done = _wait_for("the extract is finished after the restart", extract_done, timeout=120, every=0.2)
        with database.transaction(write=False) as session:
            extract = session.get(Extract, extract_id)
            assert (extract.attempts, extract.worker_pid) == (2, server.pid)
            path = data_dir / extract.path
        assert done["manifest"]["rows"] == ROWS
        assert hashlib.sha256(path.read_bytes()).hexdigest() == done["manifest"]["sha256"]
        assert duckdb.connect().execute("SELECT count(*) FROM read_csv(?)", [str(path)]).fetchone()[0] == ROWS
        assert [name for name in _visible(data_dir / "extracts")] == [f"{extract_id}.csv"]
        assert not [path for path in data_dir.rglob(".*.tmp") if processes.owner(path)]  # no temporary file of any process

        # Nothing committed before the kills was lost, and the audit chain is whole.
        audit_after = httpx.get(f"{server.base}/api/v1/audit/verify", headers=manager).json()
        assert audit_after["ok"] and audit_after["entries"] > audit_before["entries"], audit_after
        with database.transaction(write=False) as session:
            assert session.execute(select(Extract.id)).scalars().all() == [extract_id]
    finally:
        released.set()
        server.stop()
