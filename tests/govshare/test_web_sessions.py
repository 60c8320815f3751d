"""Server-side web sessions: a saved cookie is worth nothing after sign-out, a new password or new roles."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from govshare import identities
from govshare.models import AuditEntry, WebSession
from govshare.web import sessions
from tests.approvals.test_api import World
from tests.approvals.test_views import HTML, PASSWORD, add_person, csrf_of, page_of, post_form, sign_in

NEW_PASSWORD = "another long passphrase"


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


@pytest.fixture
def saved_cookie(client, world, database) -> str:
    """maria, a manager, signed in; the session cookie as an attacker would have copied it."""
    add_person(database, "maria", "manager")
    assert sign_in(client, "maria").status_code == 303
    return client.cookies.get(sessions.COOKIE)


def _replay(client, cookie: str, world: World) -> tuple[int, int, str]:
    """With only the copied cookie: the queue, and an attempt to reject an application (with a token from that cookie)."""
    application = world.filed()
    client.cookies.clear()
    client.cookies.set(sessions.COOKIE, cookie, path="/ui")
    page = client.get("/ui", headers=HTML, follow_redirects=False)
    token = csrf_of(client.get("/ui/login", headers=HTML))  # what that cookie's forms would carry
    client.cookies.set(sessions.COOKIE, cookie, path="/ui")
    reject = client.post(f"/ui/applications/{application['id']}/decision", headers=HTML, follow_redirects=False,
                         data={"csrf_token": token, "decision": "reject", "reason_code": "duplicate"})
    status = world.get(application["id"], headers=world.manager).json()["status"]
    return page.status_code, reject.status_code, status


def test_the_cookie_holds_only_a_random_id_and_the_store_only_its_hash(saved_cookie, database):
    assert len(saved_cookie) == 43 and "maria" not in saved_cookie and "." not in saved_cookie
    with database.transaction(write=False) as session:
        stored = session.execute(select(WebSession.id_hash)).scalars().all()
    assert stored == [sessions._digest(saved_cookie)]


def test_a_cookie_saved_before_signing_out_is_refused_afterwards(client, saved_cookie, world, database):
    assert client.get("/ui", headers=HTML, follow_redirects=False).status_code == 200
    out = post_form(client, "/ui/logout", {}, from_page="/ui")
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login")
    page, reject, status = _replay(client, saved_cookie, world)
    assert page == 303 and reject == 303  # to the sign-in page
    assert status == "submitted"
    with database.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(WebSession)) == 0


def test_the_same_cookie_works_until_then(client, saved_cookie, world):
    page, reject, status = _replay(client, saved_cookie, world)
    assert (page, reject, status) == (200, 303, "rejected")


def test_a_new_password_ends_every_session_of_that_person(client, saved_cookie, world, database):
    with database.transaction() as session:
        identities.set_password(session, name="maria", password=NEW_PASSWORD)
    page, reject, status = _replay(client, saved_cookie, world)
    assert (page, reject, status) == (303, 303, "submitted")
    client.cookies.clear()
    assert sign_in(client, "maria", PASSWORD).status_code == 401
    assert sign_in(client, "maria", NEW_PASSWORD).status_code == 303
    with database.transaction(write=False) as session:
        actions = session.execute(select(AuditEntry.action).where(AuditEntry.subject == "user:maria")).scalars().all()
    assert "user.password_changed" in actions


def test_new_roles_end_every_session_of_that_person(client, saved_cookie, world, database):
    with database.transaction() as session:
        identities.set_roles(session, name="maria", roles=["demander"])
    page, reject, status = _replay(client, saved_cookie, world)
    assert (page, reject, status) == (303, 303, "submitted")


def test_another_person_s_session_is_untouched_by_a_password_change(client, saved_cookie, world, database):
    add_person(database, "omar", "manager")
    with database.transaction() as session:
        identities.set_password(session, name="omar", password=NEW_PASSWORD)
    assert _replay(client, saved_cookie, world)[0] == 200


def test_a_made_up_or_malformed_cookie_signs_no_one_in(client, world, database):
    add_person(database, "maria", "manager")
    for forged in ("x" * 43, "maria", "", "a" * 5000):
        client.cookies.clear()
        client.cookies.set(sessions.COOKIE, forged, path="/ui")
        assert client.get("/ui", headers=HTML, follow_redirects=False).status_code == 303


def test_the_sign_in_form_s_token_does_not_survive_signing_in(client, world, database):
    """A token planted before sign-in (session fixation) is refused after it: the id, and so the token, is new."""
    add_person(database, "maria", "manager")
    before = csrf_of(client.get("/ui/login", headers=HTML))
    assert sign_in(client, "maria").status_code == 303
    application = world.filed()
    refused = client.post(f"/ui/applications/{application['id']}/decision", headers=HTML,
                          data={"csrf_token": before, "decision": "reject", "reason_code": "duplicate"})
    assert refused.status_code == 403
    assert page_of(refused).find(role="alert") is not None


def test_users_set_password_and_set_roles_commands_end_sessions(settings, saved_cookie, client, world):
    from tests.govshare.test_cli import run

    done = run(settings, "users", "set-password", "maria", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert _replay(client, saved_cookie, world)[0] == 303
    short = run(settings, "users", "set-password", "maria", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "12 characters" in short.stderr
    unknown = run(settings, "users", "set-roles", "nobody", "--role", "manager")
    assert unknown.returncode != 0 and "does not exist" in unknown.stderr
    roles = run(settings, "users", "set-roles", "maria", "--role", "provider")
    assert roles.returncode == 0, roles.stderr
