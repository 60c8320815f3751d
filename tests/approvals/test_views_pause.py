"""Pausing and resuming a grant from the approval pages: the manager's grant page and the providing department's
application page, behind a confirmation; misuse; and in Chromium."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.approvals.test_api import World, _period, application_body
from tests.approvals.test_provider_views import officer
from tests.approvals.test_views import HTML, add_person, alert_text, browser_sign_in, csrf_of, page_of, post_form, sign_in


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def signed_off(world: World, **changes) -> dict:
    """CAB's application for PSB's conditional dataset, approved by the manager and signed off by PSB: its grant is active."""
    application = world.filed(period=_period(0, 60), **changes)
    assert world.decide(application["id"], decision="approve").status_code == 200
    signed = world.provider_decide(application["id"], decision="approve")
    assert signed.status_code == 200, signed.text
    return signed.json()


def status(world: World, grant_id: int) -> str:
    return world.http.get(f"/api/v1/grants/{grant_id}", headers=world.manager).json()["status"]


def test_the_manager_pauses_and_resumes_from_the_grant_page_after_confirming(client, world, database):
    add_person(database, "maria", "manager")
    sign_in(client, "maria")
    grant_id = signed_off(world)["grant_id"]
    page, path = f"/ui/grants/{grant_id}", f"/ui/grants/{grant_id}/pause"
    shown = page_of(client.get(page, headers=HTML))
    assert shown.find("label", for_="pause-reason").text == f"Reason for pausing grant {grant_id}"
    assert shown.find("input", id="pause-confirm").has("required") and shown.find("form", class_="resume-form") is None

    unconfirmed = post_form(client, path, {"reason": "district codes under correction"}, from_page=page)
    assert unconfirmed.status_code == 422 and "tick the box" in alert_text(unconfirmed)
    assert page_of(unconfirmed).find("textarea", id="pause-reason").text == "district codes under correction"  # kept
    empty = post_form(client, path, {"reason": "   ", "confirm": "yes"}, from_page=page)
    assert empty.status_code == 422 and "needs a reason" in alert_text(empty)
    too_long = post_form(client, path, {"reason": "x" * 2001, "confirm": "yes"}, from_page=page)
    assert too_long.status_code == 422
    assert status(world, grant_id) == "active"

    done = post_form(client, path, {"reason": "district codes under correction", "confirm": "yes"}, from_page=page)
    assert (done.status_code, done.headers["location"]) == (303, page)
    after = page_of(client.get(page, headers=HTML))
    assert after.find(role="status").text.startswith(f"Grant {grant_id} paused")
    assert after.find(id="state").text == "Paused"
    assert after.find(id="paused").text.endswith("by maria: “district codes under correction”")
    assert after.find("form", class_="pause-form") is None and after.find("form", class_="resume-form") is not None
    assert status(world, grant_id) == "paused"
    row = page_of(client.get("/ui/grants", params={"state": "paused"}, headers=HTML)).find("tr", data_grant=str(grant_id))
    assert row is not None and row.find("td", data_label="State").text == "Paused"

    again = post_form(client, path, {"reason": "twice", "confirm": "yes"}, from_page=page)
    assert again.status_code == 409 and "paused already" in alert_text(again)
    resume_path = f"/ui/grants/{grant_id}/resume"
    assert post_form(client, resume_path, {}, from_page=page).status_code == 422  # not confirmed
    assert status(world, grant_id) == "paused"
    resumed = post_form(client, resume_path, {"reason": "corrected", "confirm": "yes"}, from_page=page)
    assert resumed.status_code == 303 and status(world, grant_id) == "active"
    history = world.http.get(f"/api/v1/applications/{world.http.get(f'/api/v1/grants/{grant_id}', headers=world.manager).json()['application_id']}/history",
                             headers=world.manager).json()["items"]
    assert [(event["kind"], event["actor"]) for event in history][-2:] == [("grant.paused", "user:maria"), ("grant.resumed", "user:maria")]


def test_the_providing_departments_officer_pauses_from_the_application_page(client, world, database):
    signed = signed_off(world)
    grant_id, application_id = signed["grant_id"], signed["id"]
    officer(database, "pia", "PSB")
    sign_in(client, "pia")
    page = f"/ui/provider/applications/{application_id}"
    shown = page_of(client.get(page, headers=HTML))
    assert shown.find(id="grant-state").text.startswith(f"Grant {grant_id}: Active")
    assert shown.find("form", action=f"/ui/grants/{grant_id}/pause") is not None
    done = post_form(client, f"/ui/grants/{grant_id}/pause", {"reason": "a data error in district 02", "confirm": "yes"},
                     from_page=page)
    assert (done.status_code, done.headers["location"]) == (303, page)
    after = page_of(client.get(page, headers=HTML))
    assert "Paused" in after.find(id="grant-state").text and "a data error in district 02" in after.find(id="grant-state").text
    assert status(world, grant_id) == "paused"
    assert client.get(f"/ui/grants/{grant_id}", headers=HTML).status_code == 403  # the manager's pages stay the manager's
    unconfirmed = post_form(client, f"/ui/grants/{grant_id}/resume", {}, from_page=page)
    assert unconfirmed.status_code == 422 and "tick the box" in alert_text(unconfirmed)
    resumed = post_form(client, f"/ui/grants/{grant_id}/resume", {"confirm": "yes"}, from_page=page)
    assert resumed.status_code == 303 and status(world, grant_id) == "active"


def test_others_may_not_pause_from_the_pages(client, world, database):
    grant_id = signed_off(world)["grant_id"]
    for name, department, roles in (("hugo", "HRSS", ("provider",)), ("carl", "CAB", ("provider",)), ("dana", "CAB", ("demander",))):
        client.cookies.clear()
        officer(database, name, department, *roles)
        sign_in(client, name)
        token = csrf_of(client.get("/ui/login", headers=HTML))
        answer = client.post(f"/ui/grants/{grant_id}/pause", data={"csrf_token": token, "reason": "x", "confirm": "yes"}, headers=HTML)
        # HRSS may not know the grant exists; CAB's officer reads it (its own) but may not pause it; a demander has no such role.
        assert answer.status_code == {"hugo": 404, "carl": 403, "dana": 403}[name], (name, answer.text)
    client.cookies.clear()
    no_token = client.post(f"/ui/grants/{grant_id}/pause", data={"reason": "x", "confirm": "yes"}, headers=HTML, follow_redirects=False)
    assert no_token.status_code in (303, 403)
    assert status(world, grant_id) == "active"


def test_the_manager_sees_a_delayed_disclosure_on_the_application_page(client, world, database):
    add_person(database, "maria", "manager")
    sign_in(client, "maria")
    day = date.today() + timedelta(days=40)
    body = application_body(period=_period(0, 60), disclosure={"delay_until": day.isoformat(), "basis": "Audit Law art. 31"})
    application = client.post("/api/v1/applications", json=body, headers=world.applicant).json()
    shown = page_of(client.get(f"/ui/applications/{application['id']}", headers=HTML))
    assert "Audit Law art. 31" in shown.find(id="disclosure").text
    finding, = [item for item in shown.find_all("li") if item.get("data-rule") == "disclosure-delayed"]
    assert day.isoformat() in finding.text and "Audit Law art. 31" in finding.text


@pytest.mark.browser
def test_pausing_and_resuming_in_a_browser_needs_a_reason_and_a_confirmation(live_server, page, browser, screenshot, world, database):
    signed = signed_off(world)
    grant_id = signed["grant_id"]
    add_person(database, "maria", "manager")
    browser_sign_in(page, live_server, "maria")
    page.goto(f"{live_server}/ui/grants/{grant_id}")
    page.get_by_role("button", name=f"Pause grant {grant_id}").click()
    # Neither the reason nor the confirmation given: the browser keeps the form and nothing is sent.
    assert page.locator("#pause-reason").evaluate("box => box.validity.valueMissing") is True
    page.get_by_label(f"Reason for pausing grant {grant_id}").fill("district codes under correction")
    page.get_by_role("button", name=f"Pause grant {grant_id}").click()
    assert page.locator("#pause-confirm").evaluate("box => box.validity.valueMissing") is True
    assert page.locator("#state").inner_text() == "Active" and status(world, grant_id) == "active"
    page.get_by_label("I understand that CAB receives nothing under this grant until it is resumed").check()
    screenshot(page, "pause-confirmation")
    page.get_by_role("button", name=f"Pause grant {grant_id}").click()
    assert page.get_by_role("status").inner_text().startswith(f"Grant {grant_id} paused")
    assert page.locator("#state").inner_text() == "Paused"
    assert "district codes under correction" in page.locator("#paused").inner_text()
    screenshot(page, "grant-paused")
    assert status(world, grant_id) == "paused"

    # The providing department's officer resumes it from their application page, by keyboard alone.
    officer(database, "pia", "PSB")
    context = browser.new_context(viewport={"width": 640, "height": 900}, device_scale_factor=2)  # 200% zoom
    try:
        provider_page = context.new_page()
        browser_sign_in(provider_page, live_server, "pia")
        provider_page.goto(f"{live_server}/ui/provider/applications/{signed['id']}")
        scroll_width, inner_width = provider_page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width
        assert "Paused" in provider_page.locator("#grant-state").inner_text()
        provider_page.locator("#resume-reason").focus()
        provider_page.keyboard.type("corrected by PSB")
        provider_page.keyboard.press("Tab")
        provider_page.keyboard.press("Space")  # ticks the confirmation box
        assert provider_page.locator("#resume-confirm").is_checked()
        provider_page.keyboard.press("Tab")
        focused = provider_page.evaluate("document.activeElement.textContent.trim()")
        assert focused == f"Resume grant {grant_id}"
        screenshot(provider_page, "provider-resume-zoom")
        with provider_page.expect_navigation():
            provider_page.keyboard.press("Enter")
        assert provider_page.get_by_role("status").inner_text().startswith(f"Grant {grant_id} resumed")
    finally:
        context.close()
    assert status(world, grant_id) == "active"
