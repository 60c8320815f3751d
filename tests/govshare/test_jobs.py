"""The job runner: periodic jobs that can also be woken to run at once."""

from __future__ import annotations

import threading

from govshare.jobs import Job, JobRunner


def test_a_woken_job_runs_now_not_at_its_next_interval(database):
    ran = threading.Event()
    runner = JobRunner(database)
    runner.add(Job("hourly", 3600, lambda _database: ran.set()))
    runner.start()
    try:
        assert not ran.wait(0.3)  # nothing runs before its interval...
        runner.wake("hourly")
        assert ran.wait(10)  # ...unless woken
        runner.wake("not-a-job")  # waking a job this process does not run is harmless
    finally:
        runner.stop()
