"""The data manager's pages under /ui: sign-in, CSRF, the queue, decisions, grants; and in Chromium."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from govshare import identities
from govshare.db import utcnow
from tests.approvals.test_api import World
from tests.factories import parse_html

PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def add_person(database, name: str, *roles: str) -> None:
    with database.transaction() as session:
        identities.add_user(session, name=name, roles=list(roles), password=PASSWORD, department_code="DATA")


@pytest.fixture
def manager(world, database) -> str:
    add_person(database, "maria", "manager")
    return "maria"


def page_of(response):
    return parse_html(response.text)


def csrf_of(response) -> str:
    field = page_of(response).find("input", name="csrf_token")
    assert field is not None, response.text
    return field.get("value")


def sign_in(client, name: str, password: str = PASSWORD, next: str = "/ui"):
    form = client.get("/ui/login", headers=HTML)
    return client.post("/ui/login", data={"csrf_token": csrf_of(form), "name": name, "password": password, "next": next},
                       headers=HTML, follow_redirects=False)


@pytest.fixture
def signed_in(client, manager):
    response = sign_in(client, manager)
    assert response.status_code == 303, response.text
    return client


def post_form(client, path: str, data: dict, *, from_page: str, headers: dict | None = None):
    """POST ``data`` with the CSRF token taken from ``from_page``, as the browser would."""
    token = csrf_of(client.get(from_page, headers=HTML))
    return client.post(path, data={"csrf_token": token, **data}, headers={**HTML, **(headers or {})}, follow_redirects=False)


def status_of(world: World, application_id: int) -> str:
    return world.get(application_id, headers=world.manager).json()["status"]


def alert_text(response) -> str:
    alert = page_of(response).find(role="alert")
    assert alert is not None, response.text
    return alert.text


# --- signing in -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ui", "/ui/grants", "/ui/applications/1"])
def test_the_pages_send_a_visitor_to_sign_in(client, path):
    response = client.get(path, headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?next=")


def test_a_wrong_password_and_an_unknown_name_are_refused_alike(client, manager):
    wrong = sign_in(client, manager, "not the password at all")
    unknown = sign_in(client, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert alert_text(wrong) == alert_text(unknown)
    assert "name or the password is wrong" in alert_text(wrong)
    assert page_of(wrong).find("input", id="name").get("value") == manager
    assert client.get("/ui", headers=HTML, follow_redirects=False).status_code == 303


def test_signing_in_leads_back_to_the_page_asked_for_and_signing_out_ends_it(client, manager):
    response = sign_in(client, manager, next="/ui/grants")
    assert (response.status_code, response.headers["location"]) == (303, "/ui/grants")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    grants = client.get("/ui/grants", headers=HTML)
    assert grants.status_code == 200
    assert page_of(grants).find(role="status").text == f"Signed in as {manager}."
    assert grants.headers["cache-control"] == "no-store"
    out = post_form(client, "/ui/logout", {}, from_page="/ui/grants")
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login")
    assert client.get("/ui", headers=HTML, follow_redirects=False).status_code == 303


def test_sign_in_never_sends_people_to_another_site(client, manager):
    for target in ("https://evil.example/ui", "//evil.example/ui", "/api/v1/grants"):
        client.cookies.clear()
        assert sign_in(client, manager, next=target).headers["location"] == "/ui"


def test_a_person_without_the_manager_role_gets_a_403_page(client, world, database):
    add_person(database, "dana", "demander")
    assert sign_in(client, "dana").status_code == 303
    for path in ("/ui", "/ui/grants"):
        response = client.get(path, headers=HTML)
        assert response.status_code == 403
        assert page_of(response).find("h1").text == "Not allowed"
        assert "manager role" in alert_text(response)
    login = client.get("/ui/login", headers=HTML)
    assert "signed in as dana" in page_of(login).find("form", class_="signed-in-note").text
    out = client.post("/ui/logout", data={"csrf_token": csrf_of(login)}, headers=HTML, follow_redirects=False)
    assert out.status_code == 303
    assert page_of(client.get("/ui/login", headers=HTML)).find("form", class_="signed-in-note") is None


def test_an_admin_may_look_and_revoke_but_only_managers_decide_as_the_permissions_table_says(client, world, database):
    add_person(database, "ada", "admin")
    sign_in(client, "ada")
    application = world.filed()
    page = f"/ui/applications/{application['id']}"
    assert client.get("/ui", headers=HTML).status_code == 200
    shown = page_of(client.get(page, headers=HTML))
    assert shown.find(id="approve-form") is None and "not decide" in shown.find(id="no-decision").text
    refused = post_form(client, f"{page}/decision", {"decision": "reject", "reason_code": "duplicate"}, from_page=page)
    assert refused.status_code == 403 and "manager role" in alert_text(refused)
    assert status_of(world, application["id"]) == "submitted"
    grant_id = _approved(world)["grant_id"]
    assert page_of(client.get(f"/ui/grants/{grant_id}", headers=HTML)).find("form", action=f"/ui/grants/{grant_id}/revoke") is not None
    revoked = post_form(client, f"/ui/grants/{grant_id}/revoke", {"reason": "audit finding", "confirm": "yes"},
                        from_page=f"/ui/grants/{grant_id}")
    assert revoked.status_code == 303


# --- CSRF -------------------------------------------------------------------------------------


def test_a_form_without_the_right_csrf_token_changes_nothing(signed_in, world):
    application = world.filed()
    path = f"/ui/applications/{application['id']}/decision"
    missing = signed_in.post(path, data={"decision": "reject", "reason_code": "duplicate"}, headers=HTML)
    wrong = signed_in.post(path, data={"decision": "reject", "reason_code": "duplicate", "csrf_token": "guess"}, headers=HTML)
    for response in (missing, wrong):
        assert response.status_code == 403
        assert "Nothing was changed" in alert_text(response)
    assert status_of(world, application["id"]) == "submitted"


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}])
def test_a_form_sent_from_another_site_is_refused_even_with_the_token(signed_in, world, headers):
    application = world.filed()
    page = f"/ui/applications/{application['id']}"
    response = post_form(signed_in, f"{page}/decision", {"decision": "reject", "reason_code": "duplicate"},
                         from_page=page, headers=headers)
    assert response.status_code == 403
    assert "sent from another site" in alert_text(response)
    assert status_of(world, application["id"]) == "submitted"


def test_a_form_from_our_own_origin_is_accepted(signed_in, world):
    application = world.filed()
    page = f"/ui/applications/{application['id']}"
    response = post_form(signed_in, f"{page}/decision", {"decision": "reject", "reason_code": "duplicate"}, from_page=page,
                         headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 303
    assert status_of(world, application["id"]) == "rejected"


def test_signing_in_needs_the_csrf_token_too(client, manager):
    client.get("/ui/login", headers=HTML)
    response = client.post("/ui/login", data={"name": manager, "password": PASSWORD}, headers=HTML, follow_redirects=False)
    assert response.status_code == 403


# --- the queue ------------------------------------------------------------------------------------


def _make_overdue(database, application_id: int, days: int) -> None:
    """Time passes: the application was filed ``days + 10`` days ago and its decision was due ``days`` ago."""
    def stored(moment):  # SQLite keeps naive UTC; PostgreSQL an aware timestamp
        return moment if database.dialect == "postgresql" else moment.replace(tzinfo=None)

    with database.engine.begin() as connection:
        connection.execute(text("UPDATE applications SET filed_at = :filed, decision_due = :due WHERE id = :id"), {
            "filed": stored(utcnow() - timedelta(days=days + 10)), "due": stored(utcnow() - timedelta(days=days)),
            "id": application_id,
        })


def _queue_ids(client, **params) -> list[int]:
    response = client.get("/ui", params=params, headers=HTML)
    assert response.status_code == 200, response.text
    return [int(row.get("data-application")) for row in page_of(response).find_all("tr") if row.get("data-application")]


def test_the_queue_shows_open_applications_longest_waiting_first_with_filters(signed_in, world, database, factory):
    first = world.filed()
    insurance = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id", "insured_since"], delivery="extract", row_filter=None)
    other_department = world.filed(headers=factory.caller("EDU", "demander"))
    decided = world.filed()
    world.decide(decided["id"], decision="reject", reason_code="duplicate")
    _make_overdue(database, insurance["id"], days=2)

    assert _queue_ids(signed_in) == [insurance["id"], first["id"], other_department["id"]]
    assert _queue_ids(signed_in, dataset="PSB-HOUSEHOLD") == [first["id"], other_department["id"]]
    assert _queue_ids(signed_in, department="EDU") == [other_department["id"]]
    assert _queue_ids(signed_in, overdue="yes") == [insurance["id"]]
    assert _queue_ids(signed_in, status="rejected") == [decided["id"]]

    page = page_of(signed_in.get("/ui", headers=HTML))
    overdue_row = page.find("tr", data_application=str(insurance["id"]))
    assert "overdue" in overdue_row.get("class")
    assert overdue_row.find("td", data_label="Decision due").find(class_="tag-overdue").text.startswith("Overdue by 2 days")
    assert overdue_row.find("td", data_label="Waiting").text.startswith("12 days")
    fresh_row = page.find("tr", data_application=str(first["id"]))
    assert fresh_row.find(class_="tag-due").text.startswith("Due in ")
    assert fresh_row.find("a").get("href") == f"/ui/applications/{first['id']}"
    assert "1 overdue" in page.find(id="queue-summary").text
    # The filter form is labelled and keeps what was chosen.
    filtered = page_of(signed_in.get("/ui", params={"dataset": "PSB-HOUSEHOLD", "overdue": "yes"}, headers=HTML))
    assert filtered.find("label", for_="dataset") is not None
    assert filtered.find("option", value="PSB-HOUSEHOLD").has("selected")
    assert filtered.find("input", id="overdue").has("checked")


# --- one application --------------------------------------------------------------------------------


def test_the_application_page_shows_items_inspection_scope_and_both_histories(signed_in, world):
    earlier = world.filed()
    world.decide(earlier["id"], decision="reject", reason_code="items_beyond_need", comment="too many items")
    application = world.filed()
    response = signed_in.get(f"/ui/applications/{application['id']}", headers=HTML)
    assert response.status_code == 200
    page = page_of(response)
    assert page.find("h1").text == f"Application {application['id']}: PSB-HOUSEHOLD for CAB"
    assert page.find(id="status").text == "Waiting for a decision"

    items = {row.get("data-item"): row for row in page.find(id="items").find_all("tr") if row.get("data-item")}
    assert set(items) == {"citizen_id", "name", "district", "birth_date"}
    assert items["name"].find("td", data_label="Requested").text == "Requested"
    assert items["birth_date"].find("td", data_label="Requested").text == "Not requested"
    assert items["name"].find("td", data_label="Sensitivity").text == "personal"
    assert items["district"].find("td", data_label="Sensitivity").text == "internal"

    findings = {item.get("data-rule"): item for item in page.find_all("li", class_="finding")}
    assert "finding-warning" in findings["provider-sign-off"].get("class")
    assert findings["personal-explained"].text.startswith("Check: Personal items without a justification")
    assert "no problems" in page.find(id="inspection-result").text

    assert page.find(id="row-filter").text == "Only records where district is one of 01, 02."
    assert page.find(id="period").text.endswith("(181 days)")

    history_rows = page.find(id="applicant-history").find_all("tr")
    assert [row.find("a").get("href") for row in history_rows[1:]] == [f"/ui/applications/{earlier['id']}"]
    assert "Rejected – Items beyond need" in history_rows[1].text
    assert [item.get("data-kind") for item in page.find(id="history").find_all("li")] == [
        "application.drafted", "application.submitted"]

    buttons = [button.text for button in page.find(id="decision").find_all("button")]
    assert buttons == ["Approve", "Reject", "Return for changes"]
    reasons = [option.get("value") for option in page.find("select", id="reason_code").find_all("option")]
    assert reasons == ["", "no_legal_basis", "items_beyond_need", "duplicate", "data_not_shareable", "other"]
    conditions = [box.get("value") for box in page.find(id="approve-form").find_all("input", name="conditions")]
    assert conditions == ["Use only for civil registration services", "No onward sharing"]
    # Every field has a label.
    for field in page.find(id="decision").find_all("textarea") + page.find(id="decision").find_all("select"):
        assert page.find("label", for_=field.get("id")) is not None


def test_what_applicants_wrote_is_shown_as_text_never_as_markup(signed_in, world):
    application = world.filed(purpose='<script>alert("x")</script> to register marriages')
    response = signed_in.get(f"/ui/applications/{application['id']}", headers=HTML)
    assert '<script>alert("x")</script>' not in response.text
    assert page_of(response).find("script") is None
    assert '&lt;script&gt;' in response.text


def test_a_session_ends_eight_hours_after_signing_in(signed_in, app):
    from govshare.web import sessions

    assert signed_in.get("/ui", headers=HTML, follow_redirects=False).status_code == 200
    later = utcnow() + timedelta(seconds=sessions.SESSION_MAX_AGE + 60)
    app.state.clock = lambda: later  # the pages' clock moves on; the cookie is the same
    assert signed_in.get("/ui", headers=HTML, follow_redirects=False).status_code == 303


def test_an_unknown_application_is_a_404_page(signed_in):
    response = signed_in.get("/ui/applications/999999", headers=HTML)
    assert response.status_code == 404
    assert page_of(response).find(role="alert") is not None


def test_decisions_from_the_page_act_as_the_signed_in_person(signed_in, world, manager):
    rejected, approved, returned = world.filed(), world.filed(), world.filed()
    page = f"/ui/applications/{rejected['id']}"
    response = post_form(signed_in, f"{page}/decision", {"decision": "reject", "reason_code": "no_legal_basis",
                                                          "comment": "basis is about another service"}, from_page=page)
    assert (response.status_code, response.headers["location"]) == (303, page)
    after = signed_in.get(page, headers=HTML)
    assert page_of(after).find(role="status").text == f"Application {rejected['id']} rejected (No legal basis)."
    assert page_of(after).find(id="status").text == "Rejected – No legal basis"
    assert page_of(after).find(id="no-decision") is not None
    history = world.http.get(f"/api/v1/applications/{rejected['id']}/history", headers=world.manager).json()["items"]
    assert (history[-1]["actor"], history[-1]["reason_code"]) == (f"user:{manager}", "no_legal_basis")

    page = f"/ui/applications/{approved['id']}"
    post_form(signed_in, f"{page}/decision", {"decision": "approve", "conditions": ["No onward sharing"]}, from_page=page)
    body = world.get(approved["id"], headers=world.manager).json()
    assert (body["status"], body["conditions"]) == ("awaiting_provider", ["No onward sharing"])

    page = f"/ui/applications/{returned['id']}"
    post_form(signed_in, f"{page}/decision", {"decision": "return", "comment": "narrow the districts"}, from_page=page)
    assert status_of(world, returned["id"]) == "returned"


def test_an_invalid_decision_is_explained_on_the_page_and_keeps_what_was_typed(signed_in, world):
    application = world.filed()
    page = f"/ui/applications/{application['id']}"
    response = post_form(signed_in, f"{page}/decision", {"decision": "reject", "reason_code": "other", "comment": ""},
                         from_page=page)
    assert response.status_code == 422
    assert "reason “Other” needs a comment" in alert_text(response) and "'other'" not in alert_text(response)
    assert page_of(response).find("option", value="other").has("selected")
    no_reason = post_form(signed_in, f"{page}/decision", {"decision": "reject", "comment": "keep me"}, from_page=page)
    assert no_reason.status_code == 422 and "needs a reason" in alert_text(no_reason)
    assert "reason_code" not in alert_text(no_reason) and "no_legal_basis" not in alert_text(no_reason)
    assert page_of(no_reason).find("textarea", id="reject-comment").text == "keep me"
    assert status_of(world, application["id"]) == "submitted"


def test_an_approval_may_set_masks_that_suit_each_item(signed_in, world):
    application = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id", "insured_since"], delivery="extract", row_filter=None)
    page = f"/ui/applications/{application['id']}"
    form = page_of(signed_in.get(page, headers=HTML)).find(id="approve-form")
    offered = {select.get("name"): [option.get("value") for option in select.find_all("option")]
               for select in form.find_all("select")}
    assert offered == {
        "mask.citizen_id": ["", "keep_first", "keep_last", "keyed_hash", "null"],
        "mask.insured_since": ["", "keyed_hash", "year_only", "null"],
    }
    assert form.find("input", name="mask_count.citizen_id") is not None
    assert form.find("input", name="mask_count.insured_since") is None

    no_count = post_form(signed_in, f"{page}/decision", {"decision": "approve", "mask.citizen_id": "keep_last"}, from_page=page)
    assert no_count.status_code == 422 and "say how many" in alert_text(no_count)
    assert page_of(no_count).find("option", value="keep_last").has("selected")
    wrong_type = post_form(signed_in, f"{page}/decision", {"decision": "approve", "mask.insured_since": "keep_first",
                                                            "mask_count.insured_since": "2"}, from_page=page)
    assert wrong_type.status_code == 422 and "text items only" in alert_text(wrong_type)
    assert status_of(world, application["id"]) == "submitted"

    approved = post_form(signed_in, f"{page}/decision", {
        "decision": "approve", "mask.citizen_id": "keep_last", "mask_count.citizen_id": "4", "mask.insured_since": "year_only",
    }, from_page=page)
    assert approved.status_code == 303
    body = world.get(application["id"], headers=world.manager).json()
    grant = world.http.get(f"/api/v1/grants/{body['grant_id']}", headers=world.manager).json()
    assert grant["masks"] == {"citizen_id": {"keep_last": 4}, "insured_since": "year_only"}
    shown = page_of(signed_in.get(page, headers=HTML)).find(id="masks").text
    assert shown == "citizen_id: last 4 characters kept, the rest hidden; insured_since: year only"
    row = page_of(signed_in.get("/ui/grants", headers=HTML)).find("tr", data_grant=str(body["grant_id"]))
    assert "Masks: citizen_id last 4 characters kept" in row.find("td", data_label="Items and rows").text


def test_a_decision_after_another_manager_decided_is_a_clear_message(signed_in, world):
    application = world.filed()
    page = f"/ui/applications/{application['id']}"
    token = csrf_of(signed_in.get(page, headers=HTML))  # the page is open in the browser...
    world.decide(application["id"], decision="reject", reason_code="duplicate")  # ...when another manager decides
    response = signed_in.post(f"{page}/decision", data={"csrf_token": token, "decision": "approve"}, headers=HTML,
                              follow_redirects=False)
    assert response.status_code == 409
    assert "another manager decided it first" in alert_text(response)
    assert page_of(response).find(id="status").text == "Rejected – Duplicate application"
    assert status_of(world, application["id"]) == "rejected"


# --- grants ---------------------------------------------------------------------------------------------


def _approved(world) -> dict:
    application = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id", "insured_since"], delivery="extract",
                              row_filter={"insured_since": {"ge": "2020-01-01"}})
    return world.decide(application["id"], decision="approve").json()


def test_grants_are_listed_with_their_state_and_revoked_with_a_reason_after_confirming(signed_in, world, manager):
    approved = _approved(world)
    grant_id = approved["grant_id"]
    page = page_of(signed_in.get("/ui/grants", headers=HTML))
    row = page.find("tr", data_grant=str(grant_id))
    assert row.find("td", data_label="State").text == "Not yet started"  # the period starts tomorrow
    assert row.find("td", data_label="Items and rows").text.startswith(
        "citizen_id, insured_since Only records where insured_since is at least 2020-01-01.")
    # The list holds no revoke form, only the way to the grant's own page, where revoking is a confirmed step.
    assert row.find("form") is None and row.find("textarea") is None
    assert row.find("a", class_="revoke-link").get("href") == f"/ui/grants/{grant_id}#revoke"
    assert row.find("th").find("a").get("href") == f"/ui/grants/{grant_id}"
    detail = page_of(signed_in.get(f"/ui/grants/{grant_id}", headers=HTML))
    assert detail.find("h1").text == f"Grant {grant_id}: HRSS-INSURANCE for CAB"
    assert detail.find("label", for_="reason").text == f"Reason for revoking grant {grant_id}"
    assert detail.find("input", id="confirm").has("required")

    path, from_page = f"/ui/grants/{grant_id}/revoke", f"/ui/grants/{grant_id}"
    unconfirmed = post_form(signed_in, path, {"reason": "used outside the service"}, from_page=from_page)
    assert unconfirmed.status_code == 422 and "tick the box" in alert_text(unconfirmed)
    assert page_of(unconfirmed).find("textarea", id="reason").text == "used outside the service"
    empty = post_form(signed_in, path, {"reason": "  ", "confirm": "yes"}, from_page=from_page)
    assert empty.status_code == 422 and "needs a reason" in alert_text(empty)
    assert world.http.get(f"/api/v1/grants/{grant_id}", headers=world.manager).json()["state"] != "revoked"
    done = post_form(signed_in, path, {"reason": "used outside the service", "confirm": "yes"}, from_page=from_page)
    assert (done.status_code, done.headers["location"]) == (303, from_page)
    detail = page_of(signed_in.get(from_page, headers=HTML))
    assert detail.find(id="state").text == "Revoked"
    assert detail.find(id="revoked").text.split(": ")[0].endswith(f"by {manager}")
    assert detail.find("form", class_="revoke-form") is None
    row = page_of(signed_in.get("/ui/grants", headers=HTML)).find("tr", data_grant=str(grant_id))
    assert row.find("td", data_label="State").text == "Revoked"
    assert f"by {manager}:" in row.find("td", data_label="Revoke").text and "user:" not in row.text
    again = signed_in.post(path, data={"csrf_token": csrf_of(signed_in.get("/ui", headers=HTML)), "reason": "again",
                                       "confirm": "yes"}, headers=HTML)
    assert again.status_code == 409 and "revoked already" in alert_text(again)
    assert world.http.get(f"/api/v1/grants/{grant_id}", headers=world.manager).json()["state"] == "revoked"
    assert _grant_ids(signed_in, state="revoked") == [grant_id]
    assert _grant_ids(signed_in, state="active") == []


def test_the_grant_page_is_for_managers_and_an_unknown_grant_is_a_404(client, world, database):
    grant_id = _approved(world)["grant_id"]
    assert client.get(f"/ui/grants/{grant_id}", headers=HTML, follow_redirects=False).status_code == 303
    add_person(database, "dana", "demander")
    sign_in(client, "dana")
    assert client.get(f"/ui/grants/{grant_id}", headers=HTML).status_code == 403
    refused = client.post(f"/ui/grants/{grant_id}/revoke", headers=HTML, data={
        "csrf_token": csrf_of(client.get("/ui/login", headers=HTML)), "reason": "x", "confirm": "yes"})
    assert refused.status_code == 403
    add_person(database, "maria", "manager")
    client.cookies.clear()
    sign_in(client, "maria")
    assert client.get("/ui/grants/999999", headers=HTML).status_code == 404
    assert client.get("/ui/grants/not-a-number", headers=HTML).status_code == 422
    no_token = client.post(f"/ui/grants/{grant_id}/revoke", headers=HTML, data={"reason": "x", "confirm": "yes"})
    assert no_token.status_code == 403
    assert world.http.get(f"/api/v1/grants/{grant_id}", headers=world.manager).json()["state"] != "revoked"


def test_the_application_s_grant_link_opens_that_grant(signed_in, world):
    approved = _approved(world)
    page = page_of(signed_in.get(f"/ui/applications/{approved['id']}", headers=HTML))
    link, = [link for link in page.find_all("a") if link.text == f"Grant {approved['grant_id']}"]
    assert link.get("href") == f"/ui/grants/{approved['grant_id']}"
    assert signed_in.get(link.get("href"), headers=HTML).status_code == 200


def _grant_ids(client, **params) -> list[int]:
    page = page_of(client.get("/ui/grants", params=params, headers=HTML))
    return [int(row.get("data-grant")) for row in page.find_all("tr") if row.get("data-grant")]


def test_the_stylesheet_is_served_by_the_app_without_signing_in(client):
    response = client.get("/ui/style.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert ":focus" in response.text


# --- in Chromium -----------------------------------------------------------------------------------------


def browser_sign_in(page, live_server: str, name: str) -> None:
    page.goto(f"{live_server}/ui")
    assert page.url.startswith(f"{live_server}/ui/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("status").inner_text() == f"Signed in as {name}."


@pytest.mark.browser
def test_a_manager_works_through_the_queue_in_a_browser(live_server, page, screenshot, world, manager, database):
    to_reject = world.filed()
    to_approve = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id", "insured_since"], delivery="extract", row_filter=None,
                             justifications={"citizen_id": "to find the person"})
    _make_overdue(database, to_reject["id"], days=1)

    browser_sign_in(page, live_server, manager)
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(2)
    screenshot(page, "queue")
    page.get_by_label("Dataset").select_option("HRSS-INSURANCE")
    page.get_by_role("button", name="Show applications").click()
    expect(page).to_have_url(f"{live_server}/ui?status=open&dataset=HRSS-INSURANCE&department=")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-application", str(to_approve["id"]))
    page.get_by_label("Dataset").select_option("")
    page.get_by_label("Overdue only").check()
    page.get_by_role("button", name="Show applications").click()
    expect(page.get_by_label("Overdue only")).to_be_checked()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-application", str(to_reject["id"]))
    page.get_by_role("link", name=f"Application {to_reject['id']}").click()

    assert page.get_by_role("heading", level=1).inner_text().startswith(f"Application {to_reject['id']}")
    screenshot(page, "application")
    page.get_by_label("Reason").select_option(label="Items beyond need")
    page.get_by_label("Comment (needed for “Other”)").fill("the name is not needed to register a marriage")
    page.get_by_role("button", name="Reject").click()
    assert page.get_by_role("status").inner_text() == f"Application {to_reject['id']} rejected (Items beyond need)."
    assert page.locator("#status").inner_text() == "Rejected – Items beyond need"

    page.goto(f"{live_server}/ui/applications/{to_approve['id']}")
    page.get_by_text("Masks (optional)").click()
    page.get_by_label("citizen_id (string, personal)").select_option(label="Keyed hash (linkable, not readable)")
    screenshot(page, "approve-with-masks")
    page.get_by_role("button", name="Approve").click()
    grant_id = world.get(to_approve["id"], headers=world.manager).json()["grant_id"]
    assert page.get_by_role("status").inner_text() == f"Application {to_approve['id']} approved: grant {grant_id} created."

    page.get_by_role("link", name="Grants").click()
    row = page.locator(f'tr[data-grant="{grant_id}"]')
    assert row.locator("td.state").inner_text() == "Not yet started"
    expect(row).to_contain_text("Masks: citizen_id replaced by a keyed hash")
    screenshot(page, "grants")
    row.get_by_role("link", name=f"Revoke grant {grant_id}…").click()
    page.get_by_label(f"Reason for revoking grant {grant_id}").fill("the service was discontinued")
    page.get_by_role("button", name=f"Revoke grant {grant_id}").click()
    # The confirmation box is required: without it the browser keeps the form and nothing is sent.
    assert page.locator("#confirm").evaluate("box => box.validity.valueMissing") is True
    assert page.locator("#state").inner_text() == "Not yet started"
    page.get_by_label("I understand that CAB loses this access now").check()
    screenshot(page, "revoke-confirmation")
    page.get_by_role("button", name=f"Revoke grant {grant_id}").click()
    assert page.get_by_role("status").inner_text().startswith(f"Grant {grant_id} revoked")
    assert page.locator("#state").inner_text() == "Revoked"


@pytest.mark.browser
def test_the_pages_reflow_at_200_percent_zoom(live_server, browser, screenshot, world, manager):
    application = world.filed()
    approved = _approved(world)
    # 200% zoom of a 1280-pixel-wide window: a 640-CSS-pixel viewport at twice the pixel density.
    context = browser.new_context(viewport={"width": 640, "height": 900}, device_scale_factor=2)
    try:
        page = context.new_page()
        browser_sign_in(page, live_server, manager)
        for path, name in (("/ui", "queue-zoom"), (f"/ui/applications/{application['id']}", "application-zoom"),
                           ("/ui/grants", "grants-zoom"), (f"/ui/grants/{approved['grant_id']}", "grant-zoom")):
            page.goto(f"{live_server}{path}")
            scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert scroll_width <= inner_width, f"{path} scrolls sideways: {scroll_width} > {inner_width}"
            screenshot(page, name)
        assert approved["grant_id"]
    finally:
        context.close()


@pytest.mark.browser
def test_a_decision_can_be_made_with_the_keyboard_alone(live_server, page, world, manager):
    application = world.filed()
    browser_sign_in(page, live_server, manager)
    page.goto(f"{live_server}/ui/applications/{application['id']}")
    page.locator("#return-comment").focus()
    page.keyboard.type("please narrow the districts to 01")
    page.keyboard.press("Tab")
    focused = page.evaluate("[document.activeElement.tagName, document.activeElement.textContent.trim()]")
    assert focused == ["BUTTON", "Return for changes"]
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.get_by_role("status").inner_text() == f"Application {application['id']} returned to CAB for changes."
    assert page.locator("#status").inner_text() == "Returned for changes"
    assert status_of(world, application["id"]) == "returned"
