"""Sign-in throttling per account and per address: 429 with Retry-After, an audit entry, shared through the store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from govshare.db import utcnow
from govshare.models import AuditEntry
from govshare.web import throttle
from tests.approvals.test_views import HTML, PASSWORD, add_person, page_of, sign_in
from tests.conftest import ISSUER

START = utcnow()


@pytest.fixture
def people(app, factory, database):
    factory.department("DATA")
    for name in ("maria", "omar"):
        add_person(database, name, "manager")
    app.state.clock = lambda: START  # the pages' clock stands still unless a test moves it


@pytest.fixture
def browser_at(app):
    """A browser on the given address (each a client of its own, with its own cookies)."""
    opened = []

    def _open(address: str) -> TestClient:
        client = TestClient(app, base_url=ISSUER, raise_server_exceptions=False, client=(address, 40000))
        client.__enter__()
        opened.append(client)
        return client

    yield _open
    for client in opened:
        client.__exit__(None, None, None)


def _audit(database, action: str) -> list[tuple[str, str]]:
    with database.transaction(write=False) as session:
        return [(row.subject, row.details) for row in session.execute(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)).scalars()]


def test_after_too_many_wrong_passwords_the_right_one_waits(people, browser_at, app, database):
    attacker = browser_at("192.0.2.10")
    for _ in range(throttle.ACCOUNT_LIMIT):
        assert sign_in(attacker, "maria", "not the password").status_code == 401
    refused = sign_in(attacker, "maria", PASSWORD)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) == int(throttle.BLOCK.total_seconds())
    assert "Too many wrong passwords" in page_of(refused).find(role="alert").text
    # The rightful owner, from elsewhere, waits too: the block is on the account.
    assert sign_in(browser_at("198.51.100.7"), "maria", PASSWORD).status_code == 429
    assert [subject for subject, _ in _audit(database, "login.throttled")] == ["account:maria"]
    # Another account from another address is unaffected.
    assert sign_in(browser_at("198.51.100.8"), "omar", PASSWORD).status_code == 303

    app.state.clock = lambda: START + throttle.BLOCK - timedelta(seconds=30)
    late = sign_in(attacker, "maria", PASSWORD)
    assert (late.status_code, late.headers["retry-after"]) == (429, "30")
    app.state.clock = lambda: START + throttle.BLOCK + timedelta(seconds=1)
    assert sign_in(attacker, "maria", PASSWORD).status_code == 303


def test_a_right_password_before_the_limit_starts_the_count_again(people, browser_at):
    person = browser_at("192.0.2.11")
    for _ in range(throttle.ACCOUNT_LIMIT - 1):
        sign_in(person, "maria", "typo typo typo")
    assert sign_in(person, "maria", PASSWORD).status_code == 303
    for _ in range(throttle.ACCOUNT_LIMIT - 1):
        assert sign_in(person, "maria", "typo typo typo").status_code == 401
    assert sign_in(person, "maria", PASSWORD).status_code == 303


def test_failures_spread_over_time_are_forgotten(people, browser_at, app):
    person = browser_at("192.0.2.12")
    for minute in range(throttle.ACCOUNT_LIMIT + 2):
        app.state.clock = lambda minute=minute: START + throttle.WINDOW * minute
        assert sign_in(person, "maria", "wrong again, later").status_code == 401


def test_one_address_guessing_many_names_is_stopped_and_others_are_not(people, browser_at, database):
    spray = browser_at("192.0.2.13")
    for index in range(throttle.ADDRESS_LIMIT):
        assert sign_in(spray, f"guess{index}", "password123456").status_code == 401
    assert sign_in(spray, "omar", PASSWORD).status_code == 429
    assert ("address:192.0.2.13" in [subject for subject, _ in _audit(database, "login.throttled")])
    assert sign_in(browser_at("198.51.100.9"), "omar", PASSWORD).status_code == 303


def test_an_unknown_name_is_throttled_like_a_known_one(people, browser_at):
    known, unknown = browser_at("192.0.2.14"), browser_at("192.0.2.15")
    for _ in range(throttle.ACCOUNT_LIMIT):
        sign_in(known, "maria", "wrong password!")
        sign_in(unknown, "nobody-here", "wrong password!")
    answers = [sign_in(known, "maria", "wrong password!"), sign_in(unknown, "nobody-here", "wrong password!")]
    assert [answer.status_code for answer in answers] == [429, 429]
    assert answers[0].headers["retry-after"] == answers[1].headers["retry-after"]


def test_the_sign_in_form_still_needs_its_csrf_token_while_blocked(people, browser_at):
    attacker = browser_at("192.0.2.16")
    for _ in range(throttle.ACCOUNT_LIMIT):
        sign_in(attacker, "maria", "nope nope nope")
    attacker.get("/ui/login", headers=HTML)
    no_token = attacker.post("/ui/login", data={"name": "maria", "password": PASSWORD}, headers=HTML)
    assert no_token.status_code == 403
