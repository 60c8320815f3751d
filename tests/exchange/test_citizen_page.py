"""The citizen's page, /me: their access log, consents and requests, and nothing of anyone else's.

Signed in through a scripted OpenID provider (tests/citizen_idp.py); the browser test against
the real provider is tests/exchange/test_citizen_page_browser.py.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text

from govshare.web import sessions
from tests.approvals.test_views import add_person, sign_in
from tests.citizen_idp import HTML, ScriptedProvider, csrf_of, sign_in_scripted
from tests.exchange.test_consent import ConsentWorld
from tests.exchange.test_explicit_requests import RequestWorld
from tests.factories import parse_html


class CitizenWorld:
    """PSB-HOUSEHOLD needs consent (CAB holds a grant); PSB-FAMILY is delivered on explicit requests (CAB too).
    Alice and Bob each gave CAB a consent and each have requests waiting; CAB looked Alice and Bob up."""

    def __init__(self, client, factory, tmp_path, app) -> None:
        self.http, self.app = client, app
        self.consents = ConsentWorld(client, factory, tmp_path)
        self.requests = RequestWorld(client, factory, tmp_path, code="PSB-FAMILY", consent_required=False, explicit_request=True)
        self.alice, self.bob = self.consents.alice, self.consents.bob
        self.alice_consent = self.consents.consent(self.alice).json()["id"]
        self.bob_consent = self.consents.consent(self.bob).json()["id"]
        assert self.consents.lookup(self.alice).status_code == 200
        assert self.consents.lookup(self.bob).status_code == 200
        self.alice_requests = [self.requests.ask(self.alice).json()["id"] for _ in range(2)]
        self.bob_request = self.requests.ask(self.bob).json()["id"]
        app.state.ledger.flush()

    def state(self) -> dict:
        """What the page could change: every consent's and request's state, as the portal's API reads them."""
        found = {}
        for citizen in (self.alice, self.bob):
            consents = self.http.get(f"/api/v1/citizens/{citizen}/consents", headers=self.consents.portal).json()["items"]
            found.update({("consent", item["id"]): item["status"] for item in consents})
            requests = self.requests.pending(citizen).json()["items"]
            found.update({("request", item["id"]): item["status"] for item in requests})
        return found


@pytest.fixture
def world(client, factory, tmp_path, app) -> CitizenWorld:
    return CitizenWorld(client, factory, tmp_path, app)


@pytest.fixture
def alice(client, app, settings, world) -> ScriptedProvider:
    """Alice signed in to her page (the scripted provider's ID token names her)."""
    provider = ScriptedProvider(citizen_id=world.alice)
    provider.install(app, settings)
    assert sign_in_scripted(client, provider).status_code == 303
    return provider


def _page(client):
    page = client.get("/me", headers=HTML)
    assert page.status_code == 200, page.text
    return page


def _post(client, path: str, data: dict | None = None, headers: dict | None = None):
    token = csrf_of(_page(client))
    return client.post(path, data={"csrf_token": token, **(data or {})}, headers={**HTML, **(headers or {})}, follow_redirects=False)


# --- what the page shows ------------------------------------------------------------------------------------------


def test_the_page_shows_who_used_the_data_when_why_and_on_what_basis(client, world, alice):
    shown = parse_html(_page(client).text)
    log = shown.find("table", id="access-log")
    lines = log.find_all("tr", class_="log-line")
    assert len(lines) == 1  # CAB's lookup of Alice: Bob's lookup is not hers
    line = lines[0]
    assert line.get("data-department") == "CAB" and line.get("data-dataset") == "PSB-HOUSEHOLD"
    assert "looked up your record" in line.find("td", class_="dataset").text
    why = line.find("td", class_="purpose").text
    assert "marriage-registration" in why and "register marriages without asking for household booklets" in why
    basis = line.find("td", class_="basis").text
    assert "Marriage Registration Regulation art. 5" in basis and f"under your consent {world.alice_consent}" in basis
    assert line.find("time").get("datetime")
    # Her consents and her requests, no one else's.
    consents = [row.get("data-consent") for row in shown.find("table", id="consent-list").find_all("tr") if row.get("data-consent")]
    assert consents == [str(world.alice_consent)]
    pending = [item.get("data-request") for item in shown.find_all("article")]
    assert pending == [str(number) for number in sorted(world.alice_requests, reverse=True)]
    assert world.bob not in shown.text and str(world.bob_request) not in pending


def test_each_request_shows_exactly_what_would_be_sent(client, world, alice):
    shown = parse_html(_page(client).text)
    article = shown.find("article", id=f"request-{world.alice_requests[0]}")
    preview = world.requests.pending(world.alice).json()["items"][-1]["preview"]
    [record] = preview
    shown_items = {dt.text.strip(): dd.text.strip() for dt, dd in zip(article.find_all("dt"), article.find_all("dd"))}
    assert shown_items == {name: str(value) for name, value in record.items()}
    buttons = [button.text.strip() for button in article.find_all("button")]
    assert buttons == [f"Approve request {world.alice_requests[0]}", f"Refuse request {world.alice_requests[0]}"]


def test_a_delayed_line_stays_off_the_page_until_its_day_then_shows_marked(client, world, alice, database):
    day = date.today() + timedelta(days=30)
    grant = world.consents.grant(world.consents.other_demander, service_item="fraud-investigation", purpose="investigate benefit fraud",
                                 disclosure={"delay_until": day.isoformat(), "basis": "Criminal Procedure Act art. 9"})
    world.consents.consent(world.alice, department="EDU")
    assert world.consents.lookup(world.alice, headers=world.consents.other_service).status_code == 200
    world.app.state.ledger.flush()
    assert [line.get("data-department") for line in parse_html(_page(client).text).find_all("tr", class_="log-line")] == ["CAB"]
    with database.transaction() as session:  # the day has come
        session.execute(text("UPDATE applications SET disclosure_delay_until = :day WHERE id = "
                             "(SELECT application_id FROM grants WHERE id = :grant)"), {"day": date.today(), "grant": grant})
    lines = parse_html(_page(client).text).find_all("tr", class_="log-line")
    assert [line.get("data-department") for line in lines] == ["EDU", "CAB"]
    delayed = lines[0]
    assert "delayed" in delayed.get("class")
    assert "Shown late" in delayed.text and "Criminal Procedure Act art. 9" in delayed.text
    assert "investigate benefit fraud" in delayed.text


# --- what the citizen does ------------------------------------------------------------------------------------------


def test_a_consent_is_withdrawn_with_one_click_and_the_next_lookup_is_refused(client, world, alice):
    done = _post(client, f"/me/consents/{world.alice_consent}/withdraw")
    assert done.status_code == 303 and done.headers["location"] == "/me#consents"
    assert world.state()[("consent", world.alice_consent)] == "withdrawn"
    assert world.consents.lookup(world.alice).status_code == 404  # the very next call
    assert world.consents.lookup(world.bob).status_code == 200
    shown = parse_html(_page(client).text)
    assert f"Consent {world.alice_consent} withdrawn" in shown.find(role="status").text
    row = shown.find("tr", **{"data-consent": str(world.alice_consent)})
    assert "Withdrawn" in row.text and row.find("button") is None


def test_the_citizen_approves_one_request_and_refuses_another(client, world, alice):
    first, second = world.alice_requests
    assert _post(client, f"/me/requests/{first}/approve").status_code == 303
    assert _post(client, f"/me/requests/{second}/refuse").status_code == 303
    state = world.state()
    assert state[("request", first)] == "approved" and state[("request", second)] == "refused"
    assert state[("request", world.bob_request)] == "awaiting_citizen"
    delivered = world.requests.read(first)
    assert delivered.status_code == 200 and delivered.json()["key"] == world.alice
    assert world.requests.read(second).status_code == 403
    # Answered already: a second answer changes nothing.
    again = _post(client, f"/me/requests/{second}/approve")
    assert again.status_code == 409
    assert world.state()[("request", second)] == "refused"
    shown = parse_html(_page(client).text)
    assert shown.find_all("article") == [] and shown.find(id="requests-empty") is not None


# --- no one else's data ---------------------------------------------------------------------------------------------


def test_another_citizen_s_consent_and_requests_answer_404_and_nothing_changes(client, world, alice):
    before = world.state()
    for path in (f"/me/consents/{world.bob_consent}/withdraw", f"/me/requests/{world.bob_request}/approve",
                 f"/me/requests/{world.bob_request}/refuse", "/me/consents/999999/withdraw", "/me/requests/999999/approve"):
        answer = _post(client, path)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html")
    assert _post(client, "/me/consents/not-a-number/withdraw").status_code == 422
    assert world.state() == before


def test_a_citizen_id_in_a_form_field_or_the_query_is_ignored(client, world, alice):
    before = world.state()
    shown = client.get("/me", params={"citizen_id": world.bob}, headers=HTML)
    assert world.bob not in shown.text and str(world.bob_consent) not in [
        row.get("data-consent") for row in parse_html(shown.text).find_all("tr")]
    # Alice's own consent withdrawn, whatever the form says: Bob's untouched.
    answer = _post(client, f"/me/consents/{world.alice_consent}/withdraw",
                   data={"citizen_id": world.bob, "consent_id": str(world.bob_consent)})
    assert answer.status_code == 303
    after = world.state()
    assert after[("consent", world.alice_consent)] == "withdrawn"
    assert {key: value for key, value in after.items() if key != ("consent", world.alice_consent)} == {
        key: value for key, value in before.items() if key != ("consent", world.alice_consent)}


def test_without_a_citizen_s_session_or_the_form_s_token_nothing_changes(client, world, app, settings, database, factory):
    before = world.state()
    path = f"/me/consents/{world.alice_consent}/withdraw"
    # No session at all: the sign-in page.
    anonymous = client.post(path, data={}, headers=HTML, follow_redirects=False)
    assert anonymous.status_code == 403  # no session, so no token this form could carry
    assert client.get("/me", headers=HTML, follow_redirects=False).headers["location"] == "/me/login"
    # A manager's session, even sent to /me, is no citizen's.
    factory.department("DATA")
    add_person(database, "maria", "manager")
    assert sign_in(client, "maria").status_code == 303
    staff = client.cookies.get(sessions.COOKIE)
    client.cookies.set(sessions.CITIZEN_COOKIE, staff, path="/me")
    assert client.get("/me", headers=HTML, follow_redirects=False).status_code == 303
    assert client.post(path, data={}, headers=HTML, follow_redirects=False).status_code == 403
    client.cookies.clear()
    # Alice signed in, but the form without its token, with another's, or from another site.
    provider = ScriptedProvider(citizen_id=world.alice)
    provider.install(app, settings)
    assert sign_in_scripted(client, provider).status_code == 303
    assert client.post(path, data={}, headers=HTML, follow_redirects=False).status_code == 403
    assert client.post(path, data={"csrf_token": "0" * 64}, headers=HTML, follow_redirects=False).status_code == 403
    assert _post(client, path, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _post(client, path, headers={"Origin": "https://evil.example"}).status_code == 403
    assert world.state() == before


def test_the_page_lists_every_line_of_a_busy_citizen(client, world, alice, capsys):
    """Hundreds of uses of one citizen's data, each on the page (newest first); prints how long the page took."""
    import time

    for _ in range(299):
        assert world.consents.lookup(world.alice).status_code == 200
    world.app.state.ledger.flush()
    started = time.perf_counter()
    page = _page(client)
    took = time.perf_counter() - started
    lines = parse_html(page.text).find_all("tr", class_="log-line")
    assert len(lines) == 300
    stamps = [line.find("time").get("datetime") for line in lines]
    assert stamps == sorted(stamps, reverse=True)
    with capsys.disabled():
        print(f"\nGET /me with {len(lines)} log lines, 1 consent, 2 requests: {took * 1000:.0f} ms ({len(page.content) // 1024} KiB)")


# --- expiry ------------------------------------------------------------------------------------------------------------


def test_a_waiting_request_shows_its_last_day_and_once_past_it_shows_as_expired(client, world, alice, monkeypatch):
    from tests.exchange.test_delayed_disclosure import on_day

    last_day = date.today() + timedelta(days=30)
    article = parse_html(_page(client).text).find("article", id=f"request-{world.alice_requests[0]}")
    assert f"until the end of {last_day.day} {last_day:%b %Y}" in article.find("p", class_="request-expiry").text
    before = world.state()
    on_day(monkeypatch, last_day + timedelta(days=1))
    shown = parse_html(_page(client).text)
    assert shown.find_all("article") == [] and shown.find(id="requests-empty") is not None  # nothing to answer any more
    earlier = {item.get("data-request"): item for item in shown.find("ul", class_="decided-requests").find_all("li")}
    for request_id in world.alice_requests:
        assert earlier[str(request_id)].get("data-state") == "expired" and "Expired" in earlier[str(request_id)].text
    answer = _post(client, f"/me/requests/{world.alice_requests[0]}/approve")  # a form kept open in another tab
    assert answer.status_code == 410 and answer.headers["content-type"].startswith("text/html")
    requests_now = {key: state for key, state in world.state().items() if key[0] == "request"}
    assert set(before.values()) == {"active", "awaiting_citizen"}  # the consents lapse that day too: not this test's point
    assert requests_now == {("request", number): "expired" for number in [*world.alice_requests, world.bob_request]}
    with world.app.state.database.transaction(write=False) as session:  # as recorded: unchanged, the job has not run
        assert set(session.execute(text("SELECT status FROM citizen_requests")).scalars()) == {"awaiting_citizen"}
