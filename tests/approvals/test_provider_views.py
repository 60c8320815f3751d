"""The providing department's sign-off page (/ui/provider): who sees what, decisions, misuse; and in Chromium."""

from __future__ import annotations

import pytest

from govshare import identities
from tests.approvals.test_api import World
from tests.approvals.test_views import HTML, PASSWORD, csrf_of, page_of, sign_in


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def officer(database, name: str, department: str, *roles: str) -> str:
    with database.transaction() as session:
        identities.add_user(session, name=name, roles=list(roles or ("provider",)), password=PASSWORD, department_code=department)
    return name


def awaiting(world: World, **changes) -> dict:
    """An application for PSB's conditional dataset that the manager approved: it waits for PSB."""
    application = world.filed(**changes)
    decided = world.decide(application["id"], decision="approve")
    assert decided.json()["status"] == "awaiting_provider", decided.text
    return application


def status_of(world: World, application_id: int) -> str:
    return world.get(application_id, headers=world.manager).json()["status"]


def decide(client, application_id: int, **form):
    page = f"/ui/provider/applications/{application_id}"
    token = csrf_of(client.get("/ui/provider", headers=HTML))
    return client.post(f"{page}/decision", data={"csrf_token": token, **form}, headers=HTML, follow_redirects=False)


def test_a_provider_officer_lands_on_the_sign_off_list_and_signs_off(client, world, database):
    application = awaiting(world)
    other = world.filed()  # submitted, not yet approved by the manager: not PSB's to sign off yet
    officer(database, "pia", "PSB")
    landed = sign_in(client, "pia")
    assert (landed.status_code, landed.headers["location"]) == (303, "/ui/provider")
    page = page_of(client.get("/ui/provider", headers=HTML))
    ids = [row.get("data-application") for row in page.find(id="provider-queue").find_all("tr") if row.get("data-application")]
    assert ids == [str(application["id"])]
    nav = [link.text for link in page.find("nav").find_all("a")]
    assert nav == ["Sign-off"]

    detail = page_of(client.get(f"/ui/provider/applications/{application['id']}", headers=HTML))
    assert detail.find(id="row-filter").text == "Only records where district is one of 01, 02."
    assert [button.text for button in detail.find(id="decision").find_all("button")] == ["Sign off", "Refuse", "Return for changes"]
    done = decide(client, application["id"], decision="approve", comment="fine by PSB")
    assert (done.status_code, done.headers["location"]) == (303, f"/ui/provider/applications/{application['id']}")
    after = page_of(client.get(done.headers["location"], headers=HTML))
    body = world.get(application["id"], headers=world.manager).json()
    assert after.find(role="status").text == f"Application {application['id']} signed off: grant {body['grant_id']} created for CAB."
    assert body["status"] == "approved"
    history = world.http.get(f"/api/v1/applications/{application['id']}/history", headers=world.manager).json()["items"]
    assert history[-1]["actor"] == "user:pia"
    assert after.find(id="no-decision") is not None
    assert status_of(world, other["id"]) == "submitted"


def test_refusing_needs_a_reason_and_keeps_what_was_typed(client, world, database):
    application = awaiting(world)
    officer(database, "pia", "PSB")
    sign_in(client, "pia")
    missing = decide(client, application["id"], decision="reject", comment="keep me")
    assert missing.status_code == 422
    assert "a rejection needs a reason" in page_of(missing).find(role="alert").text
    assert "reason_code" not in page_of(missing).find(role="alert").text
    assert page_of(missing).find("textarea", id="reject-comment").text == "keep me"
    for bad in ({"decision": "maybe"}, {"decision": "approve", "comment": "x" * 4001}):
        assert decide(client, application["id"], **bad).status_code == 422
    assert status_of(world, application["id"]) == "awaiting_provider"
    refused = decide(client, application["id"], decision="reject", reason_code="data_not_shareable")
    assert refused.status_code == 303
    assert status_of(world, application["id"]) == "rejected"
    again = decide(client, application["id"], decision="approve")
    assert again.status_code == 409 and "not saved" in page_of(again).find(role="alert").text


def test_another_department_s_officer_finds_nothing_and_changes_nothing(client, world, database):
    application = awaiting(world)
    officer(database, "hana", "HRSS")
    sign_in(client, "hana")
    assert page_of(client.get("/ui/provider", headers=HTML)).find(id="provider-queue-empty") is not None
    assert client.get(f"/ui/provider/applications/{application['id']}", headers=HTML).status_code == 404
    assert decide(client, application["id"], decision="approve").status_code == 404
    assert client.get("/ui/provider/applications/999999", headers=HTML).status_code == 404
    assert status_of(world, application["id"]) == "awaiting_provider"


@pytest.mark.parametrize("roles", [("demander",), ("manager",), ("service",)])
def test_people_without_the_provider_role_are_refused(client, world, database, roles):
    application = awaiting(world)
    officer(database, "pat", "PSB", *roles)
    sign_in(client, "pat")
    assert client.get("/ui/provider", headers=HTML).status_code == 403
    assert client.get(f"/ui/provider/applications/{application['id']}", headers=HTML).status_code == 403
    token = csrf_of(client.get("/ui/login", headers=HTML))
    refused = client.post(f"/ui/provider/applications/{application['id']}/decision", headers=HTML,
                          data={"csrf_token": token, "decision": "approve"})
    assert refused.status_code == 403
    assert status_of(world, application["id"]) == "awaiting_provider"


def test_a_provider_without_a_department_is_refused(client, world, database):
    with database.transaction() as session:
        identities.add_user(session, name="nomad", roles=["provider"], password=PASSWORD)
    sign_in(client, "nomad")
    assert client.get("/ui/provider", headers=HTML).status_code == 403


def test_signing_off_needs_sign_in_and_the_csrf_token(client, world, database):
    application = awaiting(world)
    path = f"/ui/provider/applications/{application['id']}/decision"
    assert client.get("/ui/provider", headers=HTML, follow_redirects=False).status_code == 303
    assert client.post(path, data={"decision": "approve"}, headers=HTML, follow_redirects=False).status_code in (303, 403)
    officer(database, "pia", "PSB")
    sign_in(client, "pia")
    for token in (None, "forged"):
        data = {"decision": "approve", **({"csrf_token": token} if token else {})}
        assert client.post(path, data=data, headers=HTML).status_code == 403
    cross = client.post(
        path, data={"csrf_token": csrf_of(client.get("/ui/provider", headers=HTML)), "decision": "approve"},
        headers={**HTML, "Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert status_of(world, application["id"]) == "awaiting_provider"


def test_nobody_signs_off_their_own_department_s_application(client, world, database, factory):
    # PSB applying for its own conditional dataset: the manager's decision is the independent one,
    # and PSB has nothing to sign off for itself (approvals.service.needs_provider_sign_off).
    application = world.filed(headers=factory.caller("PSB", "demander"))
    decided = world.decide(application["id"], decision="approve")
    assert decided.json()["status"] == "approved", decided.text
    officer(database, "pia", "PSB")
    sign_in(client, "pia")
    queue = page_of(client.get("/ui/provider", headers=HTML))
    listed = [row.get("data-application") for row in queue.find_all("tr") if row.get("data-application")]
    assert str(application["id"]) not in listed
    assert decide(client, application["id"], decision="reject", reason_code="other").status_code == 403
    assert status_of(world, application["id"]) == "approved"


@pytest.mark.browser
def test_a_provider_officer_signs_off_in_a_browser_with_the_keyboard(live_server, page, screenshot, world, database):
    application = awaiting(world)
    officer(database, "pia", "PSB")
    page.goto(f"{live_server}/ui/login")
    page.get_by_label("Name").fill("pia")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    assert page.url == f"{live_server}/ui/provider"
    screenshot(page, "provider-queue")
    page.get_by_role("link", name=f"Application {application['id']}").click()
    screenshot(page, "provider-application")
    page.locator("#approve-comment").focus()
    page.keyboard.type("checked against the share conditions")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Sign off"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_by_role("status").inner_text().startswith(f"Application {application['id']} signed off")
    assert page.locator("#status").inner_text() == "Approved"
    assert status_of(world, application["id"]) == "approved"
