"""Citizens signing in to their page (/me) through the government's identity provider, with OpenID Connect.

The authorization code flow with PKCE (S256), driven by Authlib's client. The state, the
nonce and the PKCE verifier wait in a short-lived cookie encrypted with the server's key
(``govshare_me_sign_in``), so the callback is accepted only in the browser that started it.
The ID token's signature is checked against the provider's JWKS (keys fetched again for an
unknown ``kid``: the provider rotated them), then its issuer, audience, authorized party,
expiry and nonce. The citizen ID is the configured claim of that verified token and comes
from nowhere else: a citizen's session (``sessions.start_citizen``) holds that ID and no roles.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from cryptography.fernet import InvalidToken
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from govshare.db import DbSession
from govshare.errors import GovshareError
from govshare.settings import Settings
from govshare.web import sessions
from govshare.web.pages import PAGE_HEADERS, Pages, redirect
from govshare.web.signin import CheckedForm, SignInRequired

router = APIRouter(prefix="/me", include_in_schema=False)
pages = Pages()

SIGN_IN_COOKIE = "govshare_me_sign_in"
SIGN_IN_MAX_AGE = 600  # seconds a citizen has at the identity provider before the callback is refused
METADATA_MAX_AGE = 3600  # the provider's discovery document and keys are fetched again after this
KEYS_REFETCH_INTERVAL = 60  # at most one fetch of the keys a minute for an unknown kid (a forged token must not make us hammer the provider)
ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")  # never "none", never HMAC (the client secret is no signing key)
CLOCK_SKEW_SECONDS = 60
MAX_CITIZEN_ID_LENGTH = 64


class CitizenSignInUnavailable(GovshareError):
    status, type, title = 503, "citizen-sign-in-unavailable", "Citizen sign-in unavailable"


class IdentityProviderUnavailable(GovshareError):
    status, type, title = 502, "identity-provider-unavailable", "Identity provider unavailable"


class CitizenSignInRefused(GovshareError):
    status, type, title = 401, "citizen-sign-in-refused", "Sign-in refused"


@dataclass(frozen=True)
class Citizen:
    """The citizen signed in to this browser: their ID, as the identity provider's verified ID token named it."""

    citizen_id: str


# --- the identity provider ------------------------------------------------------------------------------


class IdentityProvider:
    """The configured OpenID provider: its discovery document and keys (fetched on first use, kept an hour),
    the authorization URL, the code exchange and the ID token's checks."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        if not settings.citizen_oidc_issuer:
            raise CitizenSignInUnavailable("Citizens cannot sign in here: no identity provider is configured.")
        self.issuer = settings.citizen_oidc_issuer
        self.client_id = settings.citizen_oidc_client_id or ""
        self.client_secret = settings.citizen_oidc_client_secret.get_secret_value() if settings.citizen_oidc_client_secret else ""
        self.claim = settings.citizen_oidc_id_claim
        self.scopes = settings.citizen_oidc_scopes
        self.redirect_uri = settings.citizen_redirect_uri
        self._transport = transport
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self.keys_refetch_interval = KEYS_REFETCH_INTERVAL

    def _http(self) -> httpx.Client:
        return httpx.Client(transport=self._transport, timeout=10.0, follow_redirects=False)

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            with self._http() as http:
                response = http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise IdentityProviderUnavailable(
                "The identity provider did not answer as expected; try again in a few minutes.") from error
        if not isinstance(document, dict):
            raise IdentityProviderUnavailable("The identity provider's answer was not a JSON object.")
        return document

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, whose ``issuer`` must be exactly the configured one (OpenID Connect Discovery 4.3)."""
        with self._lock:
            if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_MAX_AGE:
                document = self._get_json(f"{self.issuer}/.well-known/openid-configuration")
                if document.get("issuer") != self.issuer:
                    raise IdentityProviderUnavailable("The identity provider's discovery document names another issuer.")
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(document.get(field), str):
                        raise IdentityProviderUnavailable(f"The identity provider's discovery document lacks {field}.")
                self._metadata, self._metadata_at = document, time.monotonic()
            return self._metadata

    def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's public signing keys; ``refresh``: fetched again (a token signed with a key we do not know yet)."""
        jwks_uri = self.metadata()["jwks_uri"]
        with self._lock:
            stale = self._keys is None or time.monotonic() - self._keys_at > METADATA_MAX_AGE
            if stale or (refresh and time.monotonic() - self._keys_at >= self.keys_refetch_interval):
                try:
                    self._keys = KeySet.import_key_set(self._get_json(jwks_uri))
                except (JoseError, ValueError, TypeError, KeyError) as error:
                    raise IdentityProviderUnavailable("The identity provider's keys could not be read.") from error
                self._keys_at = time.monotonic()
            return self._keys

    def _client(self):
        # Imported on first use: Authlib's httpx integration warns on import that it prefers httpx2 (it works on httpx).
        from authlib.integrations.httpx_client import OAuth2Client

        return OAuth2Client(client_id=self.client_id, client_secret=self.client_secret, scope=self.scopes,
                            redirect_uri=self.redirect_uri, code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_basic", transport=self._transport, timeout=10.0)

    def authorization_url(self, *, state: str, nonce: str, code_verifier: str) -> str:
        """Where to send the citizen: the provider's sign-in, asking for a code bound to this state, nonce and verifier."""
        with self._client() as client:
            url, _ = client.create_authorization_url(self.metadata()["authorization_endpoint"], state=state,
                                                     code_verifier=code_verifier, nonce=nonce, prompt="login")
        return url

    def exchange(self, *, code: str, code_verifier: str) -> str:
        """The ID token the provider gives for ``code`` (with the PKCE verifier and the client's secret)."""
        try:
            with self._client() as client:
                token = client.fetch_token(self.metadata()["token_endpoint"], grant_type="authorization_code", code=code,
                                           code_verifier=code_verifier, redirect_uri=self.redirect_uri)
        except AuthlibBaseError as error:
            raise CitizenSignInRefused(
                "The identity provider did not confirm this sign-in (the link may have been used already): "
                "sign in again.") from error
        except httpx.HTTPError as error:
            raise IdentityProviderUnavailable(
                "The identity provider did not answer as expected; try again in a few minutes.") from error
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise CitizenSignInRefused("The identity provider sent no ID token: sign in again.")
        return id_token

    def verify(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of ``id_token`` once its signature (the provider's keys), issuer, audience, times and nonce hold."""
        try:
            keys = self.keys()
            kid = extract_compact(id_token.encode()).headers().get("kid")
            if kid is not None and not any(key.kid == kid for key in keys.keys):
                keys = self.keys(refresh=True)  # a key the provider rotated in since we fetched its keys
            decoded = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
            claims = decoded.claims
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_SKEW_SECONDS,
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(claims)
        except (JoseError, ValueError, TypeError) as error:
            raise CitizenSignInRefused("The identity provider's answer could not be verified: sign in again.") from error
        audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audience) > 1 and claims.get("azp") != self.client_id:  # OpenID Connect Core 3.1.3.7, 4 and 5
            raise CitizenSignInRefused("The identity provider's answer was meant for another service: sign in again.")
        return claims

    def citizen_id(self, claims: dict[str, Any]) -> str:
        """The citizen ID the verified claims hold, in the configured claim."""
        value = claims.get(self.claim)
        # Taken exactly as signed: a value with spaces around it is not silently made into another citizen's ID.
        if not isinstance(value, str) or not value or value != value.strip() or len(value) > MAX_CITIZEN_ID_LENGTH:
            raise CitizenSignInRefused(
                "The identity provider did not say which citizen you are, so your page cannot be shown.")
        return value


def identity_provider(request: Request) -> IdentityProvider:
    """This app's identity provider (made on first use; tests may put their own in ``app.state.citizen_idp``)."""
    state = request.app.state
    provider = getattr(state, "citizen_idp", None)
    if provider is None:
        provider = state.citizen_idp = IdentityProvider(state.settings)
    return provider


# --- the citizen's session --------------------------------------------------------------------------------


def signed_in_citizen(request: Request, session: DbSession) -> Citizen:
    """The citizen signed in to this browser (a citizen's session under /me), or a redirect to their sign-in page."""
    citizen_id = sessions.current_citizen(request, session)
    if citizen_id is None:
        raise SignInRequired("sign in to see your page", headers={"Location": "/me/login"})
    return Citizen(citizen_id)


SignedInCitizen = Annotated[Citizen, Depends(signed_in_citizen)]


# --- the pending sign-in: state, nonce, PKCE verifier -----------------------------------------------------------


def _pending_cookie(request: Request, pending: dict[str, Any]) -> str:
    return request.app.state.keystore.encrypt(json.dumps(pending))


def _pending(request: Request) -> dict[str, Any] | None:
    value = request.cookies.get(SIGN_IN_COOKIE)
    if not value or len(value) > 4096:
        return None
    try:
        pending = json.loads(request.app.state.keystore.decrypt(value))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(pending, dict) or not all(isinstance(pending.get(name), str) for name in ("state", "nonce", "verifier")):
        return None
    if not isinstance(pending.get("at"), (int, float)) or time.time() - pending["at"] > SIGN_IN_MAX_AGE:
        return None
    return pending


# --- the routes -------------------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, session: DbSession) -> Response:
    if sessions.current_citizen(request, session) is not None:
        return redirect(request, "/me")
    issuer = request.app.state.settings.citizen_oidc_issuer
    if not issuer:
        return pages.render(request, "citizen_login.html", configured=False, status_code=503)
    # The sign-in form's answer is a redirect to the identity provider: the policy's form-action must allow its origin.
    issuer_url = urlsplit(issuer)
    policy = PAGE_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {issuer_url.scheme}://{issuer_url.netloc}")
    return pages.render(request, "citizen_login.html", configured=True, headers={"Content-Security-Policy": policy})


@router.post("/login", dependencies=CheckedForm)
def start_sign_in(request: Request) -> Response:
    """Send the citizen to the identity provider, remembering (encrypted, in this browser) what the callback must match."""
    provider = identity_provider(request)
    pending = {"state": secrets.token_urlsafe(32), "nonce": secrets.token_urlsafe(32),
               "verifier": secrets.token_urlsafe(64), "at": time.time()}
    url = provider.authorization_url(state=pending["state"], nonce=pending["nonce"], code_verifier=pending["verifier"])
    response = sessions.finish(request, RedirectResponse(url, status_code=303))
    response.set_cookie(SIGN_IN_COOKIE, _pending_cookie(request, pending), **sessions.cookie_options(request, SIGN_IN_MAX_AGE))
    return response


@router.get("/callback")
def finish_sign_in(request: Request, session: DbSession, code: str | None = None, state: str | None = None,
                   error: str | None = None, iss: str | None = None) -> Response:
    """The identity provider sends the citizen back here: check the state, exchange the code, verify the ID token, sign in."""
    pending = _pending(request)
    try:
        if pending is None:
            raise CitizenSignInRefused("This sign-in has expired or was started in another browser: sign in again.")
        if not isinstance(state, str) or not hmac.compare_digest(state.encode(), pending["state"].encode()):
            raise CitizenSignInRefused("This sign-in was not started here (its state does not match): sign in again.")
        if error is not None or not code:
            raise CitizenSignInRefused("The identity provider did not sign you in. Nothing was shown or changed.")
        provider = identity_provider(request)
        if iss is not None and iss != provider.issuer:  # RFC 9207: an answer from another provider (a mix-up attack)
            raise CitizenSignInRefused("This answer came from another identity provider: sign in again.")
        claims = provider.verify(provider.exchange(code=code, code_verifier=pending["verifier"]), nonce=pending["nonce"])
        sessions.start_citizen(request, session, provider.citizen_id(claims))
    except GovshareError as refused:
        # One callback per sign-in, whatever its outcome: the pending state, nonce and verifier go.
        refused.headers = {**(refused.headers or {}), "Set-Cookie": _expired_pending_cookie(request)}
        raise
    response = redirect(request, "/me", flash="You are signed in.")
    response.delete_cookie(SIGN_IN_COOKIE, path=sessions.CITIZEN.path)
    return response


def _expired_pending_cookie(request: Request) -> str:
    """A Set-Cookie header value that removes the pending sign-in from the browser."""
    response = Response()
    response.delete_cookie(SIGN_IN_COOKIE, path=sessions.CITIZEN.path)
    return response.headers["set-cookie"]


@router.post("/logout", dependencies=CheckedForm)
def logout(request: Request, session: DbSession) -> Response:
    sessions.end(request, session)
    return redirect(request, "/me/login", flash="You have signed out.")
