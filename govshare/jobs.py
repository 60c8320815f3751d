"""In-process periodic jobs (the embedded default): each runs in its own transaction.

A job is a function of the record store; a failing run is logged and tried again at
the next interval. Jobs that several replicas run take their work with row locks
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so nothing is done twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from govshare.db import Database

log = logging.getLogger("govshare.jobs")


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: float
    run: Callable[[Database], object]


class JobRunner:
    """Runs each job every ``interval_seconds`` on a daemon thread until stopped."""

    def __init__(self, database: Database) -> None:
        self.database = database
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
                job.run(self.database)
            except Exception:  # a job must not die: report and retry next time
                log.exception("job %s failed", job.name)

    def stop(self) -> None:
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=10)
