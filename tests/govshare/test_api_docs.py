"""/docs (Swagger UI) and /redoc render in Chromium with every request off this machine blocked."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect


@pytest.fixture
def offline_page(browser):
    """A page that may reach only loopback: whatever it asks of another host is refused and noted."""
    context = browser.new_context()
    refused: list[str] = []

    def only_loopback(route):
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    page.refused = refused
    yield page
    context.close()


@pytest.mark.browser
def test_swagger_ui_lists_the_operations_without_internet(live_server, offline_page, screenshot):
    page = offline_page
    page.goto(f"{live_server}/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible(timeout=20_000)
    paths = {path.replace("\u200b", "") for path in operations.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/oauth/token", "/api/v1/datasets", "/api/v1/applications"} <= paths
    assert operations.count() > 20
    assert page.refused == []
    screenshot(page, "swagger-ui")


@pytest.mark.browser
def test_redoc_renders_without_internet(live_server, offline_page, screenshot):
    page = offline_page
    page.goto(f"{live_server}/redoc")
    heading = page.get_by_role("heading", name="govshare", exact=False).first
    expect(heading).to_be_visible(timeout=20_000)
    expect(page.locator("[data-section-id^='operation/']").first).to_be_attached()
    assert page.locator("[data-section-id^='operation/']").count() > 20
    # ReDoc's bundle links its "powered by" badge from its maker's site: that image alone is missing offline.
    assert all(url.startswith("https://cdn.redoc.ly/") and url.endswith(".svg") for url in page.refused)
    screenshot(page, "redoc")


def test_the_docs_pages_name_no_other_host(client):
    for path in ("/docs", "/redoc"):
        response = client.get(path)
        assert response.status_code == 200
        assert "cdn." not in response.text and "fonts.googleapis" not in response.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-assets/redoc.standalone.js").status_code == 200
