"""Citizens signing in, for tests: a scripted OpenID provider behind an httpx transport (fast, and able to
misbehave on purpose: another issuer, audience, key, nonce), and the real one (``oidc-provider`` on Node.js,
tests/oidc/) for the end-to-end tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from govshare.settings import Settings
from govshare.web.citizens import IdentityProvider
from tests.factories import parse_html

HTML = {"Accept": "text/html"}
OIDC_DIR = Path(__file__).resolve().parent / "oidc"
NODE = "/usr/bin/node"


def citizen_settings(settings: Settings, *, issuer: str, client_id: str, client_secret: str, claim: str = "citizen_id",
                     scopes: str = "openid citizen", redirect_base: str | None = None) -> Settings:
    """``settings`` with citizens signing in through ``issuer`` (validated as the environment would be)."""
    values = settings.model_dump()
    values.update(citizen_oidc_issuer=issuer, citizen_oidc_client_id=client_id, citizen_oidc_client_secret=client_secret,
                  citizen_oidc_id_claim=claim, citizen_oidc_scopes=scopes, citizen_oidc_redirect_base=redirect_base)
    return Settings(**values)


@dataclass
class ScriptedProvider:
    """An OpenID provider answering from a script: its discovery document, its JWKS, and a token endpoint that checks
    the client's secret, the code, the redirect URI and the PKCE verifier, then answers the ID token ``id_token`` makes."""

    issuer: str = "https://id.example.gov"
    client_id: str = "govshare-me"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "idp-1", "use": "sig"}))
    citizen_id: str = "110101199003078515"  # who signs in next (the ID token's citizen_id claim)
    # What the next ID token holds, given the authorization request's parameters: tests replace it to misbehave.
    id_token: Callable[[dict[str, str]], str] | None = None
    authorizations: dict[str, dict[str, str]] = field(default_factory=dict)  # code -> the authorization request's parameters
    token_requests: list[dict[str, Any]] = field(default_factory=list)

    def claims(self, request: dict[str, str], **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "sub": "account-7", "citizen_id": self.citizen_id,
                  "nonce": request.get("nonce"), "iat": now, "exp": now + 300, "auth_time": now}
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], *, key: RSAKey | None = None, header: dict[str, Any] | None = None) -> str:
        key = key or self.key
        return jwt.encode(header or {"alg": "RS256", "kid": key.kid}, claims, key)

    def authorize(self, url: str) -> str:
        """What the provider does after the citizen signed in: a code for this request, and the callback URL."""
        params = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
        code = secrets.token_urlsafe(16)
        self.authorizations[code] = params
        return f"{params['redirect_uri']}?code={code}&state={params['state']}"

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/auth",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"]})
        if path == "/jwks":
            return httpx.Response(200, json={"keys": [self.key.as_dict(private=False)]})
        if path == "/token":
            form = {name: values[0] for name, values in parse_qs(request.content.decode()).items()}
            self.token_requests.append({"form": form, "authorization": request.headers.get("authorization")})
            expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            if request.headers.get("authorization") != expected:
                return httpx.Response(401, json={"error": "invalid_client"})
            authorization = self.authorizations.pop(form.get("code", ""), None)
            if authorization is None or form.get("redirect_uri") != authorization["redirect_uri"]:
                return httpx.Response(400, json={"error": "invalid_grant"})
            challenge = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
            if authorization.get("code_challenge_method") != "S256" or challenge != authorization.get("code_challenge"):
                return httpx.Response(400, json={"error": "invalid_grant", "error_description": "PKCE verification failed"})
            id_token = (self.id_token or (lambda request: self.sign(self.claims(request))))(authorization)
            return httpx.Response(200, json={"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                                             "expires_in": 300, "id_token": id_token})
        return httpx.Response(404)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def install(self, app, settings: Settings) -> Settings:
        """Point ``app`` at this provider; returns the settings it now runs on."""
        configured = citizen_settings(settings, issuer=self.issuer, client_id=self.client_id, client_secret=self.client_secret)
        app.state.settings = configured
        app.state.citizen_idp = IdentityProvider(configured, transport=self.transport)
        return configured


def csrf_of(response: httpx.Response) -> str:
    field_ = parse_html(response.text).find("input", name="csrf_token")
    assert field_ is not None, response.text
    return field_.get("value")


def start_sign_in(client) -> httpx.Response:
    """The citizen presses "Sign in" on /me/login: the answer is a redirect to the identity provider."""
    form = client.get("/me/login", headers=HTML)
    assert form.status_code == 200, form.text
    return client.post("/me/login", data={"csrf_token": csrf_of(form)}, headers=HTML, follow_redirects=False)


def sign_in_scripted(client, provider: ScriptedProvider) -> httpx.Response:
    """A whole sign-in against ``provider``: the callback's answer (303 to /me when it worked)."""
    started = start_sign_in(client)
    assert started.status_code == 303, started.text
    callback = provider.authorize(started.headers["location"])
    return client.get(callback.removeprefix("http://localhost"), headers=HTML, follow_redirects=False)


# --- the real provider ----------------------------------------------------------------------------------------


def ensure_provider_installed() -> None:
    """tests/oidc's packages (oidc-provider), installed from its lockfile if missing; fails, never skips, without Node.js."""
    assert Path(NODE).exists(), f"{NODE} is missing: apt-get install nodejs npm (the citizen sign-in tests need it)"
    if (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm is missing: apt-get install npm (tests/oidc installs oidc-provider with it)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True, capture_output=True, timeout=300)


@dataclass
class RealProvider:
    """``oidc-provider`` running tests/oidc/provider.mjs: its issuer, the client registered there, its test accounts."""

    issuer: str
    client_id: str
    client_secret: str
    accounts: dict[str, str]
    process: subprocess.Popen

    def register(self, redirect_uri: str) -> None:
        """Register govshare's redirect URI (known once the app serves) and wait until the provider answers."""
        self.process.stdin.write(json.dumps({"redirect_uri": redirect_uri}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert json.loads(line) == {"ready": True}, line


@contextmanager
def real_provider(accounts: dict[str, str], log: Path) -> Iterator[RealProvider]:
    """The real OpenID provider on a free loopback port, for one test; stopped (its own process only) afterwards."""
    ensure_provider_installed()
    client_id, client_secret = "govshare-me", secrets.token_urlsafe(32)
    env = {**os.environ, "OIDC_CLIENT_ID": client_id, "OIDC_CLIENT_SECRET": client_secret, "OIDC_ACCOUNTS": json.dumps(accounts),
           "NODE_ENV": "test"}
    with log.open("w") as errors:
        process = subprocess.Popen([NODE, str(OIDC_DIR / "provider.mjs")], cwd=OIDC_DIR, env=env, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
    try:
        line = process.stdout.readline()  # blocks until the provider listens (or exits: an empty line)
        assert line, f"the OpenID provider did not start:\n{log.read_text()}"
        yield RealProvider(json.loads(line)["issuer"], client_id, client_secret, accounts, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
