"""What a person sees in a browser when a page under /ui does not exist."""

from __future__ import annotations

import pytest


@pytest.mark.browser
def test_a_missing_page_shows_a_readable_error_with_a_way_back(live_server, page, screenshot):
    response = page.goto(f"{live_server}/ui/no-such-page")
    assert response.status == 404
    assert page.locator("h1").inner_text() == "Not Found"
    assert page.get_by_role("alert").is_visible()
    back = page.get_by_role("link", name="Back to the start page")
    assert back.get_attribute("href") == "/ui"
    assert screenshot(page, "not-found").stat().st_size > 0
