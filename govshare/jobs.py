"""Periodic jobs, run in every replica's process: each runs in its own transaction.

A job is a function of the record store; a failing run is logged and tried again at
the next interval. Several replicas run the same jobs on one record store, so a shared
job first takes its lease (a ``job_leases`` row: owner and expiry, renewed while it
works): one replica at a time runs it, and a lease its dead holder stopped renewing is
taken over once expired. Work items inside a job are claimed on their own rows as well
(an extract is taken by a conditional update of its status). A job whose work is this
replica's own (building its lookup caches) takes no lease.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from govshare import processes
from govshare.db import Database, utcnow
from govshare.models import JobLease

log = logging.getLogger("govshare.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: float
    run: Callable[[Database], object]
    shared: bool = True  # one replica at a time (False: each replica does its own)


REPLICA = f"{processes.HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def take_lease(database: Database, name: str, *, owner: str, seconds: float, now: datetime | None = None) -> bool:
    """Take (or renew) job ``name``'s lease for ``owner`` until ``now + seconds``; False while another holds it."""
    now = now or utcnow()
    expires = now + timedelta(seconds=seconds)
    with database.transaction() as session:
        taken = session.execute(
            update(JobLease).where(JobLease.name == name, (JobLease.expires_at < now) | (JobLease.owner == owner))
            .values(owner=owner, expires_at=expires)
        ).rowcount
        if taken:
            return True
        try:
            with session.begin_nested():
                session.add(JobLease(name=name, owner=owner, expires_at=expires))
        except IntegrityError:
            return False  # another replica holds it
        return True


def release_lease(database: Database, name: str, *, owner: str) -> None:
    with database.transaction() as session:
        session.execute(delete(JobLease).where(JobLease.name == name, JobLease.owner == owner))


def run_leased(database: Database, job: Job, *, owner: str = REPLICA, lease_seconds: float = 30.0) -> bool:
    """Run ``job`` once if its lease can be taken, renewing it while it runs; whether it ran."""
    if not take_lease(database, job.name, owner=owner, seconds=lease_seconds):
        return False
    done = threading.Event()

    def renew() -> None:
        while not done.wait(lease_seconds / 3):
            try:
                take_lease(database, job.name, owner=owner, seconds=lease_seconds)
            except Exception:  # a missed renewal is retried at the next beat
                log.warning("job %s: lease not renewed", job.name, exc_info=True)

    beat = threading.Thread(target=renew, name=f"govshare-lease-{job.name}", daemon=True)
    beat.start()
    try:
        job.run(database)
    finally:
        done.set()
        beat.join(timeout=10)
        release_lease(database, job.name, owner=owner)
    return True


class JobRunner:
    """Runs each job every ``interval_seconds`` on a daemon thread until stopped."""

    def __init__(self, database: Database, *, lease_seconds: float = 30.0) -> None:
        self.database, self.lease_seconds = database, lease_seconds
        self.jobs: list[Job] = []
        self._stop = threading.Event()
        self._wake: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []

    def add(self, job: Job) -> None:
        self.jobs.append(job)
        self._wake[job.name] = threading.Event()

    def wake(self, name: str) -> None:
        """Run job ``name`` now rather than at its next interval (no-op when it is not running here)."""
        event = self._wake.get(name)
        if event is not None:
            event.set()

    def start(self) -> None:
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"govshare-job-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _loop(self, job: Job) -> None:
        wake = self._wake[job.name]
        while True:
            wake.wait(job.interval_seconds)
            wake.clear()
            if self._stop.is_set():
                return
            try:
                if job.shared:
                    run_leased(self.database, job, lease_seconds=self.lease_seconds)
                else:
                    job.run(self.database)
            except Exception:  # a job must not die: report and retry next time
                log.exception("job %s failed", job.name)

    def stop(self) -> None:
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=10)
