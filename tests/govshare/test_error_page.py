"""What a person sees in a browser when a page under /ui fails: the site's layout, its navigation, a way back."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Query

from tests.approvals.test_views import HTML, add_person, browser_sign_in, page_of, sign_in


@pytest.mark.browser
def test_a_missing_page_shows_a_readable_error_with_a_way_back(live_server, page, screenshot):
    response = page.goto(f"{live_server}/ui/no-such-page")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Not Found"
    assert page.get_by_role("alert").is_visible()
    back = page.get_by_role("link", name="Back to the start page")
    assert back.get_attribute("href") == "/ui"
    assert screenshot(page, "not-found").stat().st_size > 0


@pytest.fixture
def people(factory, database):
    factory.department("DATA")
    factory.department("CAB")
    add_person(database, "maria", "manager")
    add_person(database, "chen", "demander")  # of DATA: a department's officer, no manager


def _styled(page) -> bool:
    """Whether the site's stylesheet applies (its header is dark), not a bare browser page."""
    return page.evaluate("getComputedStyle(document.querySelector('.site-header')).backgroundColor") == "rgb(11, 12, 12)"


@pytest.mark.browser
@pytest.mark.parametrize(("path", "status", "title"), [
    ("/ui/applications/999999", 404, "No such application"),
    ("/ui/applications/not-a-number", 422, "This address is not right"),
    ("/ui/grants/999999", 404, "No such grant"),
], ids=["404-application", "422", "404-grant"])
def test_an_error_page_for_a_manager_keeps_the_site_and_leads_back_to_the_queue(
        live_server, page, screenshot, people, path, status, title):
    browser_sign_in(page, live_server, "maria")
    response = page.goto(f"{live_server}{path}")
    assert response.status == status
    assert page.get_by_role("heading", level=1).inner_text() == title
    assert page.get_by_role("alert").is_visible()
    assert _styled(page)
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Applications").is_visible()
    assert page.get_by_role("button", name="Sign out").is_visible()
    page.get_by_role("link", name="Back to the start page").click()
    assert page.url == f"{live_server}/ui"
    page.go_back()
    screenshot(page, f"{status}")


@pytest.mark.browser
def test_a_403_page_leads_a_department_s_officer_back_to_their_own_page(live_server, page, screenshot, people):
    page.goto(f"{live_server}/ui/login")
    page.get_by_label("Name").fill("chen")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    response = page.goto(f"{live_server}/ui/grants")
    assert response.status == 403
    assert page.get_by_role("heading", level=1).inner_text() == "Not allowed"
    assert _styled(page)
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Delta Sharing").is_visible()
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Grants").count() == 0
    screenshot(page, "403")
    page.get_by_role("link", name="Back to the start page").click()
    assert page.url == f"{live_server}/ui/sharing"
    assert page.get_by_role("heading", level=1).inner_text() == "Delta Sharing"


def test_error_pages_carry_the_page_headers_and_the_favicon(client, people):
    sign_in(client, "maria")
    response = client.get("/ui/applications/999999", headers=HTML)
    assert response.status_code == 404 and response.headers["cache-control"] == "no-store"
    icon = page_of(response).find("link", rel="icon")
    assert icon is not None
    served = client.get(icon.get("href"))
    assert served.status_code == 200 and served.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/api/v1/no-such-thing").headers["content-type"].startswith("application/problem+json")


@pytest.mark.browser
def test_a_malformed_address_says_in_words_which_part_is_wrong_and_leads_back(live_server, page, screenshot, people):
    browser_sign_in(page, live_server, "maria")
    response = page.goto(f"{live_server}/ui/grants/abc")
    assert response.status == 422
    assert page.get_by_role("heading", level=1).inner_text() == "This address is not right"
    alert = page.get_by_role("alert")
    assert alert.locator("p.wrong-part").all_inner_texts() == ["The grant number in the address (“abc”) should be a whole number, like 12."]
    assert "Input should be" not in page.content() and "int_parsing" not in page.content()
    assert _styled(page)
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Grants").is_visible()
    screenshot(page, "grant-abc")
    page.get_by_role("link", name="Back to the start page").click()
    assert page.url == f"{live_server}/ui"
    assert page.get_by_role("heading", level=1).is_visible()


def test_a_page_s_422_names_the_wrong_part_of_the_address_while_the_api_keeps_the_field(app, client, factory, people):
    # A page with a typed query parameter (the pages of today read theirs as text): a probe
    # route on this test's app, through the same handler and error page as every page.
    @app.get("/ui/probe")
    def probe(page: Annotated[int, Query(ge=1)], day: str = "") -> dict:
        return {}

    sign_in(client, "maria")
    for path, sentence in [
        ("/ui/probe?page=0", "The page after the ? in the address (“0”) should be at least 1."),
        ("/ui/probe?page=two", "The page after the ? in the address (“two”) should be a whole number, like 12."),
        ("/ui/probe", "The address needs a page (?page=…)."),
        ("/ui/applications/" + "9" * 5 + "x", "The application number in the address (“99999x”) should be a whole number, like 12."),
    ]:
        response = client.get(path, headers=HTML)
        assert response.status_code == 422 and response.headers["content-type"].startswith("text/html"), path
        page = page_of(response)
        assert page.find("h1").text == "This address is not right"
        assert [p.text for p in page.find_all("p", class_="wrong-part")] == [sentence], path
        assert "Input should" not in response.text
        assert page.find("a", id="way-back").get("href") == "/ui"
    long = client.get("/ui/grants/" + "x" * 100, headers=HTML)
    assert "“" + "x" * 40 + "…”" in page_of(long).find("p", class_="wrong-part").text  # a long value is cut, not repeated whole
    markup = client.get("/ui/grants/%3Cb%3Ebold", headers=HTML)
    assert "<b>bold" not in markup.text and "&lt;b&gt;bold" in markup.text  # quoted back as text, never as markup

    api = client.get("/api/v1/grants/abc", headers=factory.caller("DATA", "manager"))
    assert api.status_code == 422 and api.headers["content-type"].startswith("application/problem+json")
    problem = api.json()
    assert problem["detail"].startswith("path.grant_id: ")
    assert problem["errors"][0]["location"] == ["path", "grant_id"] and problem["errors"][0]["rule"] == "int_parsing"
    as_json = client.get("/ui/grants/abc", headers={"Accept": "application/json"})
    assert as_json.status_code == 422 and as_json.json()["errors"][0]["location"] == ["path", "grant_id"]


def test_the_words_for_a_form_field_and_for_unknown_rules():
    from govshare.web import address

    found = address.describe([
        {"loc": ("body", "reason"), "type": "string_too_long", "ctx": {"max_length": 4000}},
        {"loc": ("query", "state"), "type": "literal_error", "ctx": {"expected": "'all' or 'active'"}},
        {"loc": ("query", "when"), "type": "date_from_datetime_parsing", "ctx": {"error": "x"}},
        {"loc": ("header", "x-thing"), "type": "missing"},
        {"loc": ("path", "code"), "type": "something_new"},
    ], path_params={"code": "A<b>"}, query_params={"state": "gone", "when": "2026-13-01"})
    assert found.heading == "This address is not right"
    assert found.sentences == [
        "The form's reason is too long: at most 4000 characters.",
        "The state after the ? in the address (“gone”) should be one of 'all' or 'active'.",
        "The when after the ? in the address (“2026-13-01”) should be a date written year-month-day, like 2026-12-07.",
        "The code in the address (“A<b>”) is not a value this page can take.",
    ]
    form_only = address.describe([{"loc": ("body", "count"), "type": "int_parsing"}], path_params={}, query_params={})
    assert form_only.heading == "The form could not be read" and form_only.sentences == ["The form's count should be a whole number, like 12."]
    assert address.describe([{"loc": ("header", "x"), "type": "missing"}], path_params={}, query_params={}) is None
