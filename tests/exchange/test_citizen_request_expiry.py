"""Explicit requests expire: GOVSHARE_CITIZEN_REQUEST_DAYS after the day it was asked, a request awaiting the citizen or
approved but never collected can be neither approved nor collected (410 request-expired), on every read whether or not
the retention job has run; the job records it as expired and erases its preview. Time is moved, never waited for."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from exchange import jobs, retention
from exchange.citizens.service import RequestExpiry
from exchange.models import CitizenRequest
from govshare import audit
from govshare.keys import KeyStore
from govshare.models import AuditEntry
from govshare.settings import Settings
from tests.exchange.test_delayed_disclosure import on_day
from tests.exchange.test_explicit_requests import RequestWorld

EXPIRED = "urn:govshare:problem:request-expired"


@pytest.fixture
def world(client, factory, tmp_path) -> RequestWorld:
    return RequestWorld(client, factory, tmp_path, consent_required=False, explicit_request=True)


def _row(database, request_id: int) -> dict:
    """What the record store holds of a request (read afresh)."""
    with database.transaction(write=False) as session:
        row = session.get(CitizenRequest, request_id)
        return {"status": row.status, "preview": row.preview, "decided_at": row.decided_at, "delivered_at": row.delivered_at}


def _entries(database, **where) -> list[tuple[str, str, str, dict]]:
    with database.transaction(write=False) as session:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        for column, value in where.items():
            query = query.where(getattr(AuditEntry, column) == value)
        return [(entry.actor, entry.action, entry.subject, json.loads(entry.details)) for entry in session.execute(query).scalars()]


def _expire(database, settings) -> int:
    return retention.erase_expired_requests(database, expiry=RequestExpiry.of(settings))


def _item(world, citizen: str, request_id: int) -> dict:
    return next(item for item in world.pending(citizen).json()["items"] if item["id"] == request_id)


# --- the rule -----------------------------------------------------------------------------------------------------------


def test_the_last_day_is_counted_in_the_configured_time_zone():
    zone = ZoneInfo("Asia/Shanghai")
    asked = SimpleNamespace(status="awaiting_citizen", created_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC))  # 2 March there
    on = {day: RequestExpiry(today=day, days=30, zone=zone) for day in (date(2026, 4, 1), date(2026, 4, 2))}
    assert on[date(2026, 4, 1)].last_day(asked) == date(2026, 4, 1)
    assert on[date(2026, 4, 1)].status(asked) == "awaiting_citizen"
    assert on[date(2026, 4, 2)].status(asked) == "expired"
    for state in ("refused", "delivered", "expired"):  # only a request still holding its preview lapses
        assert on[date(2026, 4, 2)].status(SimpleNamespace(status=state, created_at=asked.created_at)) == state
    assert on[date(2026, 4, 2)].status(SimpleNamespace(status="approved", created_at=asked.created_at)) == "expired"


@pytest.mark.parametrize("days", [0, -1, 366, "thirty"])
def test_the_setting_is_refused_outside_1_to_365_days(monkeypatch, days):
    monkeypatch.setenv("GOVSHARE_CITIZEN_REQUEST_DAYS", str(days))
    with pytest.raises(ValidationError, match="citizen_request_days"):
        Settings()


def test_the_setting_defaults_to_30_days(monkeypatch):
    monkeypatch.delenv("GOVSHARE_CITIZEN_REQUEST_DAYS", raising=False)
    assert Settings().citizen_request_days == 30


# --- through the API, without the job ---------------------------------------------------------------------------------


def test_on_its_last_day_a_request_is_still_decided_and_collected(world, monkeypatch):
    request_id = world.ask(world.alice).json()["id"]
    last_day = date.today() + timedelta(days=30)
    assert _item(world, world.alice, request_id)["valid_until"] == last_day.isoformat()
    on_day(monkeypatch, last_day)
    assert _item(world, world.alice, request_id)["status"] == "awaiting_citizen"
    assert world.decide(world.alice, request_id, "approve").status_code == 200
    assert world.read(request_id).status_code == 200


def test_past_its_last_day_an_awaiting_request_is_expired_and_cannot_be_decided_and_nothing_changes(world, monkeypatch, database):
    request_id = world.ask(world.alice).json()["id"]
    before = _row(database, request_id)
    audit_before = _entries(database)
    on_day(monkeypatch, date.today() + timedelta(days=31))
    item = _item(world, world.alice, request_id)
    assert item["status"] == "expired" and item["preview"] is None  # no longer shown, though the job has not run
    for decision in ("approve", "refuse"):
        answer = world.decide(world.alice, request_id, decision)
        assert answer.status_code == 410, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"] == EXPIRED and "expired after" in answer.json()["detail"]
    answer = world.read(request_id)
    assert answer.status_code == 410 and answer.json()["type"] == EXPIRED  # not the 409 that invites asking again
    assert _row(database, request_id) == before and before["status"] == "awaiting_citizen"  # a refused action changes nothing
    assert _entries(database) == audit_before


def test_an_approved_request_never_collected_cannot_be_collected_past_its_last_day(world, monkeypatch, database, app):
    request_id = world.ask(world.alice).json()["id"]
    assert world.decide(world.alice, request_id, "approve").status_code == 200
    before = _row(database, request_id)
    on_day(monkeypatch, date.today() + timedelta(days=31))
    answer = world.read(request_id)
    assert answer.status_code == 410 and answer.json()["type"] == EXPIRED
    assert world.decide(world.alice, request_id, "refuse").json()["type"] == EXPIRED
    assert _row(database, request_id) == before and before["status"] == "approved"
    assert _item(world, world.alice, request_id)["status"] == "expired"
    app.state.ledger.flush()
    log = world.http.get(f"/api/v1/citizens/{world.alice}/access-log", headers=world.portal).json()["entries"]
    assert log == []  # nothing was delivered


def test_delivered_and_refused_requests_keep_their_state_past_the_day(world, monkeypatch):
    delivered, refused = (world.ask(world.alice).json()["id"] for _ in range(2))
    world.decide(world.alice, delivered, "approve")
    assert world.read(delivered).status_code == 200
    world.decide(world.alice, refused, "refuse")
    on_day(monkeypatch, date.today() + timedelta(days=400))
    assert _item(world, world.alice, delivered)["status"] == "delivered"
    assert _item(world, world.alice, refused)["status"] == "refused"
    assert world.read(delivered).json()["type"] == "urn:govshare:problem:request-delivered"
    assert world.read(refused).json()["type"] == "urn:govshare:problem:request-refused"


def test_a_shorter_setting_expires_sooner(world, monkeypatch, app):
    monkeypatch.setattr(app.state.settings, "citizen_request_days", 1)
    request_id = world.ask(world.alice).json()["id"]
    on_day(monkeypatch, date.today() + timedelta(days=1))
    assert _item(world, world.alice, request_id)["status"] == "awaiting_citizen"
    on_day(monkeypatch, date.today() + timedelta(days=2))
    assert world.decide(world.alice, request_id, "approve").json()["type"] == EXPIRED


# --- the retention job ------------------------------------------------------------------------------------------------


def test_the_job_records_expiry_and_erases_the_previews_and_keeps_everything_else(world, monkeypatch, database, settings):
    awaiting, approved = (world.ask(world.alice).json()["id"] for _ in range(2))
    delivered, refused = (world.ask(world.bob).json()["id"] for _ in range(2))
    world.decide(world.alice, approved, "approve")
    world.decide(world.bob, delivered, "approve")
    assert world.read(delivered).status_code == 200
    world.decide(world.bob, refused, "refuse")
    assert _expire(database, settings) == 0  # nothing past its day yet
    assert _row(database, awaiting)["preview"] is not None

    on_day(monkeypatch, date.today() + timedelta(days=31))
    assert _expire(database, settings) == 2
    for request_id, was in ((awaiting, "awaiting_citizen"), (approved, "approved")):
        row = _row(database, request_id)
        assert row["status"] == "expired" and row["preview"] is None and row["delivered_at"] is None
        [entry] = _entries(database, subject=f"citizen_request:{request_id}", action="citizen_request.expired")
        assert entry[0] == retention.ACTOR and entry[3]["was"] == was
    # What holds no preview any more keeps its state.
    assert _row(database, delivered)["status"] == "delivered" and _row(database, refused)["status"] == "refused"
    with database.transaction(write=False) as session:
        assert audit.verify(session).ok


def test_the_job_leaves_a_request_within_its_days_and_a_rerun_finds_nothing(world, monkeypatch, database, settings):
    old, later = world.ask(world.alice).json()["id"], world.ask(world.bob).json()["id"]
    with database.transaction() as session:  # as if asked 20 days later
        session.execute(update(CitizenRequest).where(CitizenRequest.id == later)
                        .values(created_at=datetime.now(UTC) + timedelta(days=20)))
    on_day(monkeypatch, date.today() + timedelta(days=31))
    assert _expire(database, settings) == 1
    assert _row(database, old)["status"] == "expired"
    assert _row(database, later)["status"] == "awaiting_citizen" and _row(database, later)["preview"] is not None
    assert _expire(database, settings) == 0
    # Expired as recorded: the API says the same as before the job ran.
    assert _item(world, world.alice, old)["status"] == "expired"
    assert world.decide(world.alice, old, "approve").json()["type"] == EXPIRED
    assert world.decide(world.bob, later, "approve").status_code == 200


def test_the_servers_job_expires_requests(world, monkeypatch, database, settings):
    request_id = world.ask(world.alice).json()["id"]
    job = next(job for job in jobs.jobs(settings, KeyStore(settings.resolved_keys_dir)) if job.name == "expired-requests")
    job.run(database)
    assert _row(database, request_id)["status"] == "awaiting_citizen"
    on_day(monkeypatch, date.today() + timedelta(days=31))
    job.run(database)
    assert _row(database, request_id) == {"status": "expired", "preview": None, "decided_at": None, "delivered_at": None}
