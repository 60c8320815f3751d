"""Replicas share the jobs' work: each extract is built by one runner, a dead runner's work is taken over,
and a periodic job runs on one replica at a time (its lease). Time is passed in, never slept."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from exchange.extracts import service as extracts
from exchange.models import Extract
from govshare import jobs, storage
from govshare.db import utcnow
from govshare.keys import KeyStore
from govshare.models import AuditEntry
from tests.exchange.test_extracts import Extracts

LEASE = timedelta(seconds=30)


@pytest.fixture
def world(client, factory, tmp_path, database, settings) -> Extracts:
    return Extracts(client, factory, tmp_path, database, settings)


def _created(database, extract_id: str) -> int:
    with database.transaction(write=False) as session:
        return len(session.execute(select(AuditEntry).where(AuditEntry.action == "extract.created",
                                                            AuditEntry.subject == f"extract:{extract_id}")).all())


def _status(database, extract_id: str) -> tuple[str, int]:
    with database.transaction(write=False) as session:
        extract = session.get(Extract, extract_id)
        return extract.status, extract.attempts


def test_two_runners_at_once_each_take_a_different_extract_and_build_it_once(world):
    ids = [world.request(format="csv").json()["id"] for _ in range(2)]
    start, taken = threading.Barrier(2), []

    def runner() -> None:
        start.wait()
        taken.append(extracts._claim(world.database))

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(extract_id for extract_id, _attempt in taken) == sorted(ids)
    assert extracts._claim(world.database) is None  # nothing left to take
    store, keystore = storage.for_settings(world.settings), KeyStore(world.settings.resolved_keys_dir)
    for extract_id, attempt in taken:
        extracts._build(world.database, extract_id, store=store, keystore=keystore, attempt=attempt)
    assert [(_status(world.database, i), _created(world.database, i)) for i in ids] == [(("done", 1), 1)] * 2


def test_the_extract_of_a_dead_runner_is_taken_over_once_its_lease_lapses(world):
    extract_id = world.request(format="parquet").json()["id"]
    started = utcnow()
    dead = extracts._claim(world.database, now=started)  # then its replica dies: no beat, no build
    assert dead == (extract_id, 1)
    # Within the lease the work stays with its holder.
    assert extracts.recover(world.database, now=started + LEASE - timedelta(seconds=1), stale_after=LEASE) == 0
    assert extracts._claim(world.database) is None
    # Past it, another runner takes it over and builds it.
    assert extracts.recover(world.database, now=started + LEASE + timedelta(seconds=1), stale_after=LEASE) == 1
    successor = extracts._claim(world.database)
    assert successor == (extract_id, 2)
    store, keystore = storage.for_settings(world.settings), KeyStore(world.settings.resolved_keys_dir)
    extracts._build(world.database, extract_id, store=store, keystore=keystore, attempt=2)
    done = world.http.get(f"/api/v1/extracts/{extract_id}", headers=world.demander).json()
    assert done["status"] == "done"
    # The first runner was only slow, not dead: its late result is dropped, not recorded over its successor's.
    extracts._build(world.database, extract_id, store=store, keystore=keystore, attempt=1)
    assert world.http.get(f"/api/v1/extracts/{extract_id}", headers=world.demander).json()["manifest"] == done["manifest"]
    assert _created(world.database, extract_id) == 1
    downloaded = world.http.get(done["download_url"], headers=world.demander)
    assert downloaded.status_code == 200 and downloaded.headers["x-govshare-sha256"] == done["manifest"]["sha256"]


def test_a_periodic_job_runs_on_one_replica_at_a_time_and_a_lapsed_lease_is_taken_over(database):
    now = utcnow()
    assert jobs.take_lease(database, "escalation", owner="replica-a", seconds=30, now=now)
    assert not jobs.take_lease(database, "escalation", owner="replica-b", seconds=30, now=now + timedelta(seconds=10))
    assert jobs.take_lease(database, "escalation", owner="replica-a", seconds=30, now=now + timedelta(seconds=20))  # renewed
    assert not jobs.take_lease(database, "escalation", owner="replica-b", seconds=30, now=now + timedelta(seconds=49))
    # replica-a died: its last renewal ran out at +50 s.
    assert jobs.take_lease(database, "escalation", owner="replica-b", seconds=30, now=now + timedelta(seconds=51))
    assert not jobs.take_lease(database, "escalation", owner="replica-a", seconds=30, now=now + timedelta(seconds=52))
    assert jobs.take_lease(database, "webhooks", owner="replica-a", seconds=30, now=now)  # leases are per job


def test_run_leased_skips_a_job_another_replica_is_running_and_releases_its_own(database):
    runs: list[str] = []
    job = jobs.Job("rollups", 60, lambda _database: runs.append("ran"))
    assert jobs.take_lease(database, "rollups", owner="other-replica", seconds=30)
    assert not jobs.run_leased(database, job, owner="this-replica")
    jobs.release_lease(database, "rollups", owner="other-replica")
    assert jobs.run_leased(database, job, owner="this-replica")
    assert jobs.run_leased(database, job, owner="third-replica")  # released after its run: the next may take it
    assert runs == ["ran", "ran"]
