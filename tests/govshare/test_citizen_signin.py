"""Citizens signing in with OpenID Connect (govshare.web.citizens): the flow, and each way it must refuse.

The provider here is scripted (tests/citizen_idp.py) so that it can misbehave on purpose; the
end-to-end tests against the real provider are in tests/exchange/test_citizen_page.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from pydantic import ValidationError
from sqlalchemy import func, select

from govshare.models import WebSession
from govshare.settings import Settings
from govshare.web import sessions
from govshare.web.citizens import SIGN_IN_COOKIE
from tests.approvals.test_views import add_person, sign_in
from tests.citizen_idp import HTML, ScriptedProvider, citizen_settings, csrf_of, sign_in_scripted, start_sign_in


@pytest.fixture
def provider(app, settings) -> ScriptedProvider:
    scripted = ScriptedProvider()
    scripted.install(app, settings)
    return scripted


def _sessions(database) -> list[tuple[int | None, str | None]]:
    with database.transaction(write=False) as session:
        return [tuple(row) for row in session.execute(select(WebSession.user_id, WebSession.citizen_id))]


def _params(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


# --- the flow ---------------------------------------------------------------------------------------------------


def test_the_authorization_request_carries_pkce_state_nonce_and_asks_to_sign_in_again(client, provider):
    started = start_sign_in(client)
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith("https://id.example.gov/auth?")
    params = _params(location)
    assert params["response_type"] == "code" and params["client_id"] == "govshare-me"
    assert params["redirect_uri"] == "http://localhost/me/callback" and params["scope"] == "openid citizen"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43 and params["state"] != params["nonce"]
    assert params["prompt"] == "login"
    # What the callback must match waits in this browser, encrypted: neither the state nor the verifier shows.
    pending = client.cookies.get(SIGN_IN_COOKIE)
    assert pending and params["state"] not in pending and params["nonce"] not in pending
    # A second sign-in starts afresh.
    again = _params(start_sign_in(client).headers["location"])
    assert again["state"] != params["state"] and again["nonce"] != params["nonce"]
    assert again["code_challenge"] != params["code_challenge"]


def test_a_citizen_signs_in_and_the_session_holds_the_verified_claim_and_no_roles(client, provider, database):
    done = sign_in_scripted(client, provider)
    assert done.status_code == 303 and done.headers["location"] == "/me"
    assert _sessions(database) == [(None, "110101199003078515")]
    # The token request carried the verifier matching the challenge, and the client's secret (basic auth).
    (request,) = provider.token_requests
    assert request["form"]["grant_type"] == "authorization_code" and request["authorization"].startswith("Basic ")
    cookie = done.headers.get_list("set-cookie")
    assert any(value.startswith(f"{sessions.CITIZEN_COOKIE}=") and "Path=/me" in value and "HttpOnly" in value
               and "SameSite=lax" in value for value in cookie), cookie
    assert any(value.startswith(f"{SIGN_IN_COOKIE}=") and "Max-Age=0" in value for value in cookie)
    page = client.get("/me", headers=HTML)
    assert page.status_code == 200 and "You are signed in." in page.text


def test_the_configured_claim_names_the_citizen(client, app, settings, database):
    provider = ScriptedProvider()
    configured = provider.install(app, settings)
    app.state.settings = configured.model_copy(update={"citizen_oidc_id_claim": "sub"})
    from govshare.web.citizens import IdentityProvider

    app.state.citizen_idp = IdentityProvider(app.state.settings, transport=provider.transport)
    assert sign_in_scripted(client, provider).status_code == 303
    assert _sessions(database) == [(None, "account-7")]


def test_without_an_identity_provider_configured_no_citizen_can_sign_in(client, database):
    page = client.get("/me/login", headers=HTML)
    assert page.status_code == 503 and "not available" in page.text
    from govshare.web.sessions import csrf_token
    from starlette.requests import Request

    scope = {"type": "http", "path": "/me/login", "headers": [(b"cookie", f"govshare_me={client.cookies.get('govshare_me')}".encode())],
             "app": client.app, "query_string": b""}
    token = csrf_token(Request(scope))  # the token this browser's form would carry, had the page shown one
    refused = client.post("/me/login", data={"csrf_token": token}, headers=HTML, follow_redirects=False)
    assert refused.status_code == 503
    assert _sessions(database) == []


def test_an_unreachable_identity_provider_answers_502_and_signs_nobody_in(client, app, settings, database):
    import httpx

    from govshare.web.citizens import IdentityProvider

    def unreachable(request):
        raise httpx.ConnectError("connection refused", request=request)

    provider = ScriptedProvider()
    configured = provider.install(app, settings)
    app.state.citizen_idp = IdentityProvider(configured, transport=httpx.MockTransport(unreachable))
    answer = start_sign_in(client)
    assert answer.status_code == 502 and "identity provider" in answer.text
    assert _sessions(database) == []


# --- refusals -----------------------------------------------------------------------------------------------------


def _callback(client, provider: ScriptedProvider, *, state: str | None = None, drop_pending: bool = False):
    started = start_sign_in(client)
    callback = provider.authorize(started.headers["location"])
    if state is not None:
        callback = callback.split("&state=")[0] + f"&state={state}"
    if drop_pending:
        client.cookies.delete(SIGN_IN_COOKIE, domain="localhost.local", path="/me")
        client.cookies.clear()
    return client.get(callback.removeprefix("http://localhost"), headers=HTML, follow_redirects=False)


def test_a_forged_state_signs_nobody_in_and_the_code_is_not_used(client, provider, database):
    answer = _callback(client, provider, state="forged-" + "x" * 40)
    assert answer.status_code == 401 and "state does not match" in answer.text
    assert provider.token_requests == [] and _sessions(database) == []


def test_a_callback_in_another_browser_signs_nobody_in(client, provider, database):
    answer = _callback(client, provider, drop_pending=True)
    assert answer.status_code == 401 and "another browser" in answer.text
    assert provider.token_requests == [] and _sessions(database) == []


def test_a_callback_is_used_once(client, provider, database):
    started = start_sign_in(client)
    callback = provider.authorize(started.headers["location"]).removeprefix("http://localhost")
    assert client.get(callback, headers=HTML, follow_redirects=False).status_code == 303
    client.cookies.delete(sessions.CITIZEN_COOKIE)  # even signed out again, the same callback does not sign in
    assert client.get(callback, headers=HTML, follow_redirects=False).status_code == 401
    assert len(provider.token_requests) == 1


def test_an_expired_pending_sign_in_is_refused(client, provider, database, monkeypatch):
    started = start_sign_in(client)
    callback = provider.authorize(started.headers["location"]).removeprefix("http://localhost")
    real = time.time
    monkeypatch.setattr("govshare.web.citizens.time.time", lambda: real() + 601)
    assert client.get(callback, headers=HTML, follow_redirects=False).status_code == 401
    assert _sessions(database) == []


def test_an_answer_naming_another_issuer_is_refused_before_the_code_is_used(client, provider, database):
    """RFC 9207: a provider names itself in its answer (``iss``); another's answer is a mix-up, refused."""
    started = start_sign_in(client)
    callback = provider.authorize(started.headers["location"]).removeprefix("http://localhost")
    answer = client.get(callback + "&iss=https%3A%2F%2Fevil.example", headers=HTML, follow_redirects=False)
    assert answer.status_code == 401 and provider.token_requests == [] and _sessions(database) == []


def test_a_provider_error_signs_nobody_in(client, provider, database):
    started = _params(start_sign_in(client).headers["location"])
    answer = client.get(f"/me/callback?error=access_denied&state={started['state']}", headers=HTML, follow_redirects=False)
    assert answer.status_code == 401 and _sessions(database) == []


def _refused_with(client, provider, database, make_token) -> None:
    provider.id_token = make_token
    answer = sign_in_scripted(client, provider)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert _sessions(database) == []
    assert client.get("/me", headers=HTML, follow_redirects=False).status_code == 303


def test_a_wrong_nonce_is_refused(client, provider, database):
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request, nonce="replayed-nonce")))


def test_a_token_without_a_nonce_is_refused(client, provider, database):
    _refused_with(client, provider, database, lambda request: provider.sign({
        name: value for name, value in provider.claims(request).items() if name != "nonce"}))


def test_a_token_from_another_issuer_is_refused(client, provider, database):
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request, iss="https://evil.example")))


def test_a_token_for_another_audience_is_refused(client, provider, database):
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request, aud="another-service")))


def test_a_token_for_several_audiences_must_name_govshare_as_authorized_party(client, provider, database):
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(
        request, aud=["govshare-me", "another-service"], azp="another-service")))


def test_a_token_signed_with_another_key_is_refused(client, provider, database):
    impostor = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})  # even under the provider's key id
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request), key=impostor))


def test_an_unsigned_token_is_refused(client, provider, database):
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    def unsigned(request):
        return f"{part({'alg': 'none'})}.{part(provider.claims(request))}."

    _refused_with(client, provider, database, unsigned)


def test_a_token_signed_with_the_client_secret_is_refused(client, provider, database):
    secret = OctKey.import_key(provider.client_secret.encode())
    _refused_with(client, provider, database, lambda request: jwt.encode(
        {"alg": "HS256"}, provider.claims(request), secret, algorithms=["HS256"]))


def test_an_expired_token_is_refused(client, provider, database):
    now = int(time.time())
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request, iat=now - 900, exp=now - 600)))


def test_a_token_without_the_citizen_claim_is_refused(client, provider, database):
    _refused_with(client, provider, database, lambda request: provider.sign({
        name: value for name, value in provider.claims(request).items() if name != "citizen_id"}))
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request, citizen_id="x" * 65)))
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request, citizen_id=" 110101199003078515")))
    _refused_with(client, provider, database, lambda request: provider.sign(provider.claims(request, citizen_id=110101199003078515)))


def test_a_wrong_pkce_verifier_gets_no_token(client, provider, database, monkeypatch):
    """The provider checks the verifier against the challenge: a code intercepted without the verifier is worthless."""
    started = start_sign_in(client)
    location = started.headers["location"]
    other = base64.urlsafe_b64encode(hashlib.sha256(b"not the verifier").digest()).rstrip(b"=").decode()
    challenge = _params(location)["code_challenge"]
    callback = provider.authorize(location.replace(challenge, other))
    answer = client.get(callback.removeprefix("http://localhost"), headers=HTML, follow_redirects=False)
    assert answer.status_code == 401 and _sessions(database) == []


def test_a_rotated_provider_key_is_fetched_again(client, provider, database):
    assert sign_in_scripted(client, provider).status_code == 303
    provider.key = RSAKey.generate_key(2048, parameters={"kid": "idp-2", "use": "sig"})
    client.cookies.clear()
    # Within a minute of the last fetch an unknown key id is not fetched again (forged tokens must not make us
    # hammer the provider); past it, the new key is fetched and the sign-in works.
    assert sign_in_scripted(client, provider).status_code == 401
    client.app.state.citizen_idp.keys_refetch_interval = 0
    client.cookies.clear()
    assert sign_in_scripted(client, provider).status_code == 303


# --- sessions and forms ------------------------------------------------------------------------------------------------


def test_the_sign_in_and_sign_out_forms_need_the_csrf_token(client, provider, database):
    client.get("/me/login", headers=HTML)
    assert client.post("/me/login", data={}, headers=HTML, follow_redirects=False).status_code == 403
    assert client.post("/me/login", data={"csrf_token": "made-up"}, headers=HTML, follow_redirects=False).status_code == 403
    assert sign_in_scripted(client, provider).status_code == 303
    assert client.post("/me/logout", data={}, headers=HTML, follow_redirects=False).status_code == 403
    cross = client.post("/me/logout", data={"csrf_token": csrf_of(client.get("/me", headers=HTML))},
                        headers={**HTML, "Sec-Fetch-Site": "cross-site"}, follow_redirects=False)
    assert cross.status_code == 403
    assert _sessions(database) == [(None, "110101199003078515")]


def test_signing_out_ends_the_session_for_good(client, provider, database):
    assert sign_in_scripted(client, provider).status_code == 303
    saved = client.cookies.get(sessions.CITIZEN_COOKIE)
    out = client.post("/me/logout", data={"csrf_token": csrf_of(client.get("/me", headers=HTML))}, headers=HTML,
                      follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/me/login"
    assert _sessions(database) == []
    client.cookies.clear()
    client.cookies.set(sessions.CITIZEN_COOKIE, saved, path="/me")
    assert client.get("/me", headers=HTML, follow_redirects=False).status_code == 303


def test_a_citizen_s_session_ends_after_eight_hours(client, app, provider, database):
    from datetime import timedelta

    from govshare.db import utcnow

    assert sign_in_scripted(client, provider).status_code == 303
    assert client.get("/me", headers=HTML, follow_redirects=False).status_code == 200
    app.state.clock = lambda: utcnow() + timedelta(seconds=sessions.SESSION_MAX_AGE + 1)
    answer = client.get("/me", headers=HTML, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/me/login"


def test_the_citizen_s_pages_are_kept_out_of_caches_and_frames(client, provider):
    assert sign_in_scripted(client, provider).status_code == 303
    page = client.get("/me", headers=HTML)
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    login = client.get("/me/login", headers=HTML, follow_redirects=False)  # signed in: straight to the page
    assert login.status_code == 303 and login.headers["location"] == "/me"
    client.cookies.clear()
    login = client.get("/me/login", headers=HTML)
    # The sign-in form leads to the identity provider: the page's policy lets the form go there, and nowhere else.
    assert "form-action 'self' https://id.example.gov" in login.headers["content-security-policy"]


def test_a_staff_session_does_not_open_the_citizen_s_page(client, provider, database, factory):
    factory.department("DATA")
    add_person(database, "maria", "manager")
    assert sign_in(client, "maria").status_code == 303
    staff = client.cookies.get(sessions.COOKIE)
    # Sent where the browser would not send it, the staff session is still no citizen's session.
    client.cookies.set(sessions.CITIZEN_COOKIE, staff, path="/me")
    answer = client.get("/me", headers=HTML, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/me/login"


def test_a_citizen_s_session_does_not_open_the_staff_s_pages(client, provider, database):
    assert sign_in_scripted(client, provider).status_code == 303
    citizen = client.cookies.get(sessions.CITIZEN_COOKIE)
    client.cookies.set(sessions.COOKIE, citizen, path="/ui")
    for path in ("/ui", "/ui/grants", "/ui/dashboard", "/ui/sharing"):
        answer = client.get(path, headers=HTML, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login"), path


def test_a_session_row_is_a_staff_member_s_or_a_citizen_s_never_both(database):
    from sqlalchemy.exc import IntegrityError

    from govshare.db import utcnow

    with pytest.raises(IntegrityError):
        with database.transaction() as session:
            session.add(WebSession(id_hash="0" * 64, user_id=None, citizen_id=None, created_at=utcnow(), expires_at=utcnow()))
    with database.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(WebSession)) == 0


# --- settings ----------------------------------------------------------------------------------------------------------


def test_the_settings_refuse_an_incomplete_or_insecure_identity_provider(settings):
    with pytest.raises(ValidationError, match="CLIENT_SECRET"):
        Settings(**{**settings.model_dump(), "citizen_oidc_issuer": "https://id.example.gov", "citizen_oidc_client_id": "x"})
    with pytest.raises(ValidationError, match="https"):
        citizen_settings(settings, issuer="http://id.example.gov", client_id="x", client_secret="y")
    with pytest.raises(ValidationError, match="openid"):
        citizen_settings(settings, issuer="https://id.example.gov", client_id="x", client_secret="y", scopes="citizen")
    configured = citizen_settings(settings, issuer="https://id.example.gov/", client_id="x", client_secret="s3cr3t-value-42",
                                  redirect_base="https://exchange.example.gov/")
    assert configured.citizen_oidc_issuer == "https://id.example.gov"
    assert configured.citizen_redirect_uri == "https://exchange.example.gov/me/callback"
    assert "s3cr3t-value-42" not in repr(configured)
