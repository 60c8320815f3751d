"""The citizen's page in Chromium, signed in through a real OpenID provider (``oidc-provider`` on Node.js, started by
the test from tests/oidc/): the log, one-click withdrawal, approving and refusing, by keyboard alone, at 200% zoom,
and nothing of another citizen's reachable by tampering with the page. Fails, never skips, without Node.js or Chromium.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from govshare.models import WebSession
from govshare.web.citizens import IdentityProvider
from tests.citizen_idp import RealProvider, citizen_settings, csrf_of, real_provider
from tests.factories import parse_html
from tests.exchange.test_citizen_page import CitizenWorld

pytestmark = pytest.mark.browser


@pytest.fixture
def world(client, factory, tmp_path, app) -> CitizenWorld:
    return CitizenWorld(client, factory, tmp_path, app)


@pytest.fixture
def provider(app, settings, live_server, world, tmp_path) -> RealProvider:
    """The real provider, knowing Alice and Bob; the app served at ``live_server`` signs citizens in through it."""
    with real_provider({"alice": world.alice, "bob": world.bob}, tmp_path / "oidc-provider.log") as running:
        configured = citizen_settings(settings, issuer=running.issuer, client_id=running.client_id,
                                      client_secret=running.client_secret, redirect_base=live_server)
        app.state.settings = configured
        app.state.citizen_idp = IdentityProvider(configured)
        running.register(configured.citizen_redirect_uri)
        yield running


def sign_in(page, live_server: str, provider: RealProvider, account: str) -> None:
    """Through the provider's own sign-in page, as a citizen would."""
    page.goto(f"{live_server}/me")
    assert page.url == f"{live_server}/me/login"
    page.get_by_role("button", name="Sign in with the identity service").click()
    assert page.url.startswith(provider.issuer)  # the provider's page, not ours
    page.locator("input[name=login]").fill(account)
    page.locator("input[name=password]").fill("any password: the development login checks none")
    page.get_by_role("button", name="Sign-in").click()
    page.wait_for_url(f"{live_server}/me")
    expect(page.get_by_role("status")).to_have_text("You are signed in.")


def test_a_citizen_signs_in_sees_the_log_withdraws_a_consent_approves_and_refuses(live_server, page, screenshot, world, provider):
    sign_in(page, live_server, provider, "alice")
    lines = page.locator("#access-log tr.log-line")
    expect(lines).to_have_count(1)
    expect(lines.first).to_have_attribute("data-department", "CAB")
    expect(lines.first.locator("td.purpose")).to_contain_text("register marriages without asking for household booklets")
    expect(lines.first.locator("td.basis")).to_contain_text("Marriage Registration Regulation art. 5")
    expect(page.locator("article.request")).to_have_count(2)
    screenshot(page, "signed-in")

    page.get_by_role("button", name=f"Withdraw consent {world.alice_consent}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Consent {world.alice_consent} withdrawn")
    expect(page.locator(f'tr[data-consent="{world.alice_consent}"] td.state')).to_contain_text("Withdrawn")
    screenshot(page, "consent-withdrawn")
    assert world.consents.lookup(world.alice).status_code == 404  # the very next call

    first, second = world.alice_requests
    page.get_by_role("button", name=f"Approve request {first}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Request {first} approved")
    page.get_by_role("button", name=f"Refuse request {second}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Request {second} refused")
    expect(page.locator("article.request")).to_have_count(0)
    screenshot(page, "requests-answered")
    state = world.state()
    assert state[("request", first)] == "approved" and state[("request", second)] == "refused"
    assert state[("consent", world.bob_consent)] == "active" and state[("request", world.bob_request)] == "awaiting_citizen"
    assert world.requests.read(first).json()["key"] == world.alice

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server}/me/login")
    page.goto(f"{live_server}/me")
    assert page.url == f"{live_server}/me/login"


def _tab_to(page, name: str, limit: int = 60) -> None:
    """Press Tab until the button named ``name`` has the focus (fails if it is never reached)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate("[document.activeElement.tagName, document.activeElement.textContent.trim()]")
        if focused[0] == "BUTTON" and focused[1].startswith(name):
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline != "none", f"the focus on {name!r} is not visible"
            return
    raise AssertionError(f"Tab never reached the button {name!r}")


def test_the_page_works_with_the_keyboard_alone(live_server, page, world, provider):
    sign_in(page, live_server, provider, "alice")
    first, second = world.alice_requests
    for name, flash in ((f"Approve request {first}", f"Request {first} approved"),
                        (f"Refuse request {second}", f"Request {second} refused"),
                        (f"Withdraw consent {world.alice_consent}", f"Consent {world.alice_consent} withdrawn")):
        page.goto(f"{live_server}/me")  # from the top of the page, as a keyboard user arrives
        _tab_to(page, name)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text(flash)
    state = world.state()
    assert (state[("request", first)], state[("request", second)], state[("consent", world.alice_consent)]) == (
        "approved", "refused", "withdrawn")


def test_the_page_reflows_at_200_percent_zoom(live_server, browser, screenshot, world, provider):
    # 200% zoom of a 1280-pixel-wide window: a 640-CSS-pixel viewport at twice the pixel density.
    context = browser.new_context(viewport={"width": 640, "height": 900}, device_scale_factor=2)
    try:
        page = context.new_page()
        sign_in(page, live_server, provider, "alice")
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width, f"/me scrolls sideways: {scroll_width} > {inner_width}"
        buttons = page.locator("main button")
        assert buttons.count() == 5  # two requests' approve and refuse, one consent's withdrawal
        for index in range(buttons.count()):
            button = buttons.nth(index)
            button.scroll_into_view_if_needed()
            expect(button).to_be_visible()
            box = button.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= inner_width, button.inner_text()
        screenshot(page, "zoom-200")
        page.goto(f"{live_server}/me/login")
    finally:
        context.close()


def test_tampering_with_the_page_reaches_no_other_citizen_s_data(live_server, page, screenshot, world, provider):
    sign_in(page, live_server, provider, "alice")
    before = world.state()
    assert world.bob not in page.content()
    # Point Alice's withdraw form at Bob's consent, and add a citizen_id field naming Bob.
    page.evaluate("""([consent, bob]) => {
        const form = document.querySelector('form[action$="/withdraw"]');
        form.action = `/me/consents/${consent}/withdraw`;
        const field = document.createElement('input');
        field.type = 'hidden'; field.name = 'citizen_id'; field.value = bob;
        form.appendChild(field);
    }""", [world.bob_consent, world.bob])
    with page.expect_response(lambda response: response.url.endswith(f"/me/consents/{world.bob_consent}/withdraw")) as sent:
        page.locator('form[action$="/withdraw"] button').click()
    assert sent.value.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("No such consent")
    screenshot(page, "tampered-404")
    # And an approve form pointed at Bob's request.
    page.goto(f"{live_server}/me")
    page.evaluate("""(request) => {
        document.querySelector('form[action$="/approve"]').action = `/me/requests/${request}/approve`;
    }""", world.bob_request)
    with page.expect_response(lambda response: response.url.endswith(f"/me/requests/{world.bob_request}/approve")) as sent:
        page.locator('form[action$="/approve"] button').first.click()
    assert sent.value.status == 404
    assert world.state() == before
    # Bob signs in on his own: his consent and request are there, untouched.
    page.context.clear_cookies()
    sign_in(page, live_server, provider, "bob")
    expect(page.locator(f'tr[data-consent="{world.bob_consent}"] td.state')).to_contain_text("Active")
    expect(page.locator(f'article[data-request="{world.bob_request}"]')).to_have_count(1)
    expect(page.locator("#consent-list tr[data-consent]")).to_have_count(1)
    expect(page.locator(f'tr[data-consent="{world.alice_consent}"]')).to_have_count(0)


def _to_callback(http: httpx.Client, live_server: str, provider: RealProvider, account: str) -> str:
    """Sign in at the real provider as a browser without JavaScript would; the callback URL it sends back (unvisited)."""
    form = http.get(f"{live_server}/me/login")
    started = http.post(f"{live_server}/me/login", data={"csrf_token": csrf_of(form)})
    assert started.status_code == 303 and started.headers["location"].startswith(provider.issuer)
    login_page = http.get(started.headers["location"], follow_redirects=True)
    action = parse_html(login_page.text).find("form").get("action")
    answer = http.post(action if action.startswith("http") else f"{provider.issuer}{action}", data={"prompt": "login", "login": account, "password": "x"})
    for _ in range(5):
        location = answer.headers["location"]
        if location.startswith(f"{live_server}/me/callback?"):
            return location
        answer = http.get(location if location.startswith("http") else f"{provider.issuer}{location}")
    raise AssertionError("the provider did not send the citizen back")


def test_a_forged_state_or_issuer_on_the_way_back_from_the_real_provider_signs_nobody_in(live_server, world, provider, database,
                                                                                         capsys):
    with httpx.Client(headers={"Accept": "text/html"}, timeout=30) as http:
        callback = _to_callback(http, live_server, provider, "alice")
        query = dict(parse_qsl(urlsplit(callback).query))
        assert query["iss"] == provider.issuer  # oidc-provider names itself (RFC 9207)
        forged = urlsplit(callback)._replace(query=urlencode({**query, "state": "forged-" + query["state"][::-1]})).geturl()
        assert http.get(forged).status_code == 401
        # One callback per sign-in: after a forged one, the genuine answer is refused too.
        assert http.get(callback).status_code == 401
        other_issuer = _to_callback(http, live_server, provider, "alice")
        query = dict(parse_qsl(urlsplit(other_issuer).query))
        assert http.get(urlsplit(other_issuer)._replace(query=urlencode({**query, "iss": "https://evil.example"})).geturl()).status_code == 401
        with database.transaction(write=False) as session:
            assert session.scalar(select(func.count()).select_from(WebSession)) == 0
        # Untampered, the same way in works (timed: the sign-in page to the citizen's page, through the provider).
        started = time.perf_counter()
        done = http.get(_to_callback(http, live_server, provider, "alice"))
        assert done.status_code == 303 and done.headers["location"] == "/me"
        assert http.get(f"{live_server}/me").status_code == 200
        took = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nsign-in through oidc-provider, /me/login to /me (8 requests, 2 servers): {took * 1000:.0f} ms")
    with database.transaction(write=False) as session:
        assert session.execute(select(WebSession.citizen_id, WebSession.user_id)).all() == [(world.alice, None)]


def test_without_node_the_provider_fails_rather_than_skips(monkeypatch, tmp_path):
    """A machine without Node.js fails these tests with the reason, never skips them."""
    import tests.citizen_idp as citizen_idp

    monkeypatch.setattr(citizen_idp, "NODE", str(tmp_path / "no-node"))
    with pytest.raises(AssertionError, match="no-node is missing"):
        with real_provider({}, tmp_path / "log"):
            pass
