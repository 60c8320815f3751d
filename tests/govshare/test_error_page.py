"""What a person sees in a browser when a page under /ui fails: the site's layout, its navigation, a way back."""

from __future__ import annotations

import pytest

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
    ("/ui/applications/not-a-number", 422, "Invalid input"),
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
