"""Time limits, escalation, webhooks and jobs: the parts of approvals that run on their own."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from approvals import service, webhooks
from approvals.calendar import WorkingCalendar
from govshare.jobs import Job, JobRunner
from govshare.settings import get_settings
from tests.approvals.test_api import World, application_body


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def test_due_dates_count_working_days_only():
    calendar = WorkingCalendar(holidays=[date(2026, 10, 1), date(2026, 10, 2)], extra_working_days=[date(2026, 10, 10)])
    monday = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert calendar.due(monday, 2) == datetime(2026, 11, 26, tzinfo=UTC)  # Tue, Wed; due at the end of Wednesday
    friday = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    assert calendar.due(friday, 10) == datetime(2026, 12, 12, tzinfo=UTC)  # two weekends skipped
    # filed on the eve of a holiday: Oct 1-2 are holidays, Sat Oct 10 is a make-up working day
    wednesday = datetime(2026, 9, 30, 10, 0, tzinfo=UTC)
    assert calendar.due(wednesday, 2) == datetime(2026, 10, 7, tzinfo=UTC)  # Mon 5, Tue 6
    assert calendar.due(datetime(2026, 10, 8, tzinfo=UTC), 2) == datetime(2026, 10, 11, tzinfo=UTC)  # Fri 9, Sat 10
    assert calendar.working_days_between(monday, datetime(2026, 11, 30, tzinfo=UTC)) == 5


def test_submission_sets_both_time_limits_from_the_settings(world, database, settings):
    application = world.filed()
    with database.transaction(write=False) as session:
        stored = service.get_application(session, application["id"])
        calendar = service.calendar(settings)
        assert stored.inspection_due == calendar.due(stored.filed_at, 2)
        assert stored.decision_due == calendar.due(stored.filed_at, 10)


def _file_in_the_past(database, settings, days_ago: int) -> int:
    filed = datetime.now(UTC) - timedelta(days=days_ago)
    body = application_body(period={"start": filed.date().isoformat(), "end": (filed.date() + timedelta(days=200)).isoformat()})
    with database.transaction() as session:
        application = service.file_application(session, department="CAB", actor="client:test", document=body, draft=False,
                                               settings=settings, now=filed)
        return application.id


def test_overdue_applications_are_escalated_once_and_listed(world, database, settings, client):
    late = _file_in_the_past(database, settings, days_ago=20)
    fresh = world.filed()["id"]
    with database.transaction() as session:
        escalated = [application.id for application in service.escalate_overdue(session)]
    assert escalated == [late]
    with database.transaction() as session:
        assert service.escalate_overdue(session) == []  # once only
    overdue = client.get("/api/v1/applications", params={"overdue": "true"}, headers=world.manager).json()["items"]
    assert [item["id"] for item in overdue] == [late]
    assert overdue[0]["overdue"] is True and overdue[0]["waiting_seconds"] >= 20 * 86400
    assert client.get(f"/api/v1/applications/{fresh}", headers=world.manager).json()["overdue"] is False
    kinds = [event["kind"] for event in client.get("/api/v1/events", headers=world.applicant).json()["items"]]
    assert kinds.count("application.overdue") == 1


class _Receiver:
    """A local HTTP endpoint that records what it is sent, answering with ``status``."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({key.lower(): value for key, value in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", '["127.0.0.1"]')  # the endpoint is a loopback server
    get_settings.cache_clear()
    endpoint = _Receiver()
    yield endpoint
    endpoint.close()


def test_webhooks_receive_signed_events_once_and_are_retried_after_a_failure(world, database, client, receiver):
    registered = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=world.applicant)
    assert registered.status_code == 201, registered.text
    secret = registered.json()["secret"]
    listed = client.get("/api/v1/webhooks", headers=world.applicant).json()["items"]
    assert [hook["url"] for hook in listed] == [receiver.url] and "secret" not in listed[0]

    application = world.filed()
    receiver.status = 503
    assert webhooks.deliver_once(database) == 0  # the endpoint is down: nothing is marked delivered
    receiver.status = 200
    assert webhooks.deliver_once(database) == 2
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-govshare-signature"], expected)
    events = json.loads(body)["events"]
    assert [event["kind"] for event in events] == ["application.drafted", "application.submitted"]
    assert all(event["application_id"] == application["id"] for event in events)
    assert webhooks.deliver_once(database) == 0  # nothing new, nothing sent again
    world.decide(application["id"], decision="approve")
    assert webhooks.deliver_once(database) == 1
    assert json.loads(receiver.received[-1][1])["events"][0]["kind"] == "application.awaiting_provider"


def test_webhook_urls_are_checked_and_belong_to_their_department(world, client, receiver):
    assert client.post("/api/v1/webhooks", json={"url": "ftp://example.org/x"}, headers=world.applicant).status_code == 422
    hook = client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=world.applicant).json()
    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=world.stranger).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=world.applicant).status_code == 204
    assert client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=world.manager).status_code == 403


def test_the_job_runner_runs_jobs_on_their_interval_and_survives_a_failure(database):
    runs: list[str] = []

    def flaky(_database) -> None:
        runs.append("flaky")
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    runner = JobRunner(database)
    runner.add(Job("flaky", 0.05, flaky))
    runner.start()
    deadline = time.monotonic() + 5
    while len(runs) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop()
    assert len(runs) >= 3
