"""The OAuth2 authorization server, built on Authlib.

Client credentials only (machines, not people), authenticated by
client_secret_basic, client_secret_post or private_key_jwt (RFC 7523). Access
tokens are JWTs (RFC 9068) signed with the exchange's active key, so any replica
can verify them from the JWKS; each token's ``jti`` is also recorded, which is what
lets revocation (RFC 7009) take effect on the very next request. Introspection
(RFC 7662) and server metadata (RFC 8414) complete the set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError, InvalidScopeError, TokenMixin
from authlib.oauth2.rfc6749.authenticate_client import ClientAuthentication
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload, OAuth2Request
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from govshare import audit
from govshare.db import Database, utcnow
from govshare.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from govshare.keys import ALGORITHM, KeyStore
from govshare.models import Client, IssuedToken, Role, UsedAssertion
from govshare.security import verify_secret
from govshare.settings import Settings

log = logging.getLogger("govshare.oauth")

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
SECRET_METHODS = {"client_secret_basic", "client_secret_post"}
ASSERTION_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OAuthClient(ClientMixin):
    """Authlib's view of one of our clients."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def get_allowed_scope(self, scope: str | None) -> str:
        roles = list(self.client.roles)
        if not scope:
            return " ".join(roles)
        return " ".join(role for role in scope.split() if role in roles)

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client.secret_hash is not None and verify_secret(client_secret, self.client.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method in SECRET_METHODS:
            return self.client.secret_hash is not None
        if method == "private_key_jwt":
            return self.client.public_jwks is not None
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class TokenRecord(TokenMixin):
    """A presented token, as found in the record of issued tokens."""

    def __init__(self, issued: IssuedToken, claims: dict[str, Any], client: Client) -> None:
        self.issued, self.claims, self.client = issued, claims, client

    def check_client(self, client: OAuthClient) -> bool:
        return self.issued.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.issued.scope

    def get_expires_in(self) -> int:
        return int((self.issued.expires_at - self.issued.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return self.issued.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        return self.issued.revoked_at is not None or not self.client.active

    def get_client(self) -> OAuthClient:
        return OAuthClient(self.client)

    def get_user(self) -> None:
        return None


class _FormRequest(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        # OAuth2Request.__init__ is not called: its per-request https check is replaced
        # by the check on the issuer (settings.py), since behind a TLS-terminating proxy
        # every request arrives as http. These are the fields it would set.
        self.method, self.uri, self.headers, self._body = method, uri, headers, None
        self.client = self.auth_method = self.user = None
        self.authorization_code = self.refresh_token = self.credential = self._scope = None
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class PrivateKeyJWT(JWTBearerClientAssertion):
    """private_key_jwt: the client signs an assertion with a key whose public part it registered."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: GovshareAuthorizationServer) -> None:
        super().__init__(validate_jti=True)
        self.server = server

    def get_audiences(self) -> list[str]:
        return [self.server.settings.token_endpoint, self.server.settings.issuer]

    def verify_claims(self, claims: Any) -> None:
        super().verify_claims(claims)
        # A long-lived assertion is as good as a password: refuse those.
        lifetime = int(claims["exp"]) - int(claims.get("iat", utcnow().timestamp()))
        if lifetime > self.server.settings.client_assertion_max_age_seconds:
            raise InvalidClientError(description="client assertion lives too long")

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        session = self.server.session
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
        try:
            with session.begin_nested():
                session.add(UsedAssertion(client_id=claims["sub"], jti=str(jti), expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        if not client.client.public_jwks:
            raise InvalidClientError(description="the client has no registered public key")
        return KeySet.import_key_set(client.client.public_jwks)


class _ClientCredentials(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = (self.request.payload.scope or "").split()
        outside = [scope for scope in requested if scope not in self.request.client.client.roles]
        if outside:
            raise InvalidScopeError(f"the client does not hold the role(s): {' '.join(outside)}")


class _TokenGenerator(JWTBearerTokenGenerator):
    def __init__(self, server: GovshareAuthorizationServer) -> None:
        settings = server.settings
        super().__init__(issuer=settings.issuer, alg=ALGORITHM, expires_generator=settings.token_ttl_seconds)
        self.server = server

    def get_jwks(self) -> Any:
        # With the key's "kid" in the header, verifiers holding several keys pick the right one.
        return self.server.keystore.signing_keyset()

    def get_audiences(self, client: Any, user: Any, scope: Any) -> str:
        return self.server.settings.issuer

    def get_extra_claims(self, client: OAuthClient, grant_type: str, user: Any, scope: str) -> dict[str, Any]:
        return {"department": client.client.department_code}


class _TokenLookup:
    """Finding a presented token: its signature must be ours, then its jti must be on record."""

    server: GovshareAuthorizationServer
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        claims = self.server.decode_token(token_string)
        if claims is None:
            return None
        row = self.server.session.execute(
            select(IssuedToken, Client).join(Client, Client.client_id == IssuedToken.client_id)
            .where(IssuedToken.jti == str(claims.get("jti")))
        ).first()
        if row is None:
            return None
        return TokenRecord(row[0], claims, row[1])


class _Revocation(_TokenLookup, RevocationEndpoint):
    def revoke_token(self, token: TokenRecord, request: OAuth2Request) -> None:
        if token.issued.revoked_at is None:
            token.issued.revoked_at = utcnow()
            self.server.session.flush()
            audit.record(
                self.server.session, actor=f"client:{token.issued.client_id}", action="token.revoked",
                subject=f"token:{token.issued.jti}",
            )


class _Introspection(_TokenLookup, IntrospectionEndpoint):
    def check_permission(self, token: TokenRecord, client: OAuthClient, request: OAuth2Request) -> bool:
        # A client may introspect its own tokens; an admin client any token.
        return token.check_client(client) or Role.admin in client.client.roles

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        return {
            "active": True,
            "token_type": "Bearer",
            "client_id": token.issued.client_id,
            "scope": token.issued.scope,
            "sub": token.claims.get("sub"),
            "aud": token.claims.get("aud"),
            "iss": token.claims.get("iss"),
            "exp": int(token.issued.expires_at.timestamp()),
            "iat": int(token.issued.issued_at.timestamp()),
            "jti": token.issued.jti,
            "department": token.client.department_code,
        }


class _ClientAuthentication(ClientAuthentication):
    """Authlib's, answering a plain RFC 6749 ``invalid_client`` (401) when the client is not authenticated.

    Authlib's own answer ("The client cannot authenticate with methods: [...]") lists its
    methods instead of saying what happened. Every failure answers the same words, so that
    the answer tells no one whether a client exists; the reason goes to the server's log.
    """

    FAILED = "client authentication failed"

    def authenticate(self, request: OAuth2Request, methods: list[str], endpoint: str) -> ClientMixin:
        for method in methods:
            try:
                client = self._methods[method](self.query_client, request)
            except InvalidClientError as error:
                log.info("client authentication failed (%s): %s", method, error.description)
                raise InvalidClientError(status_code=401, description=self.FAILED) from error
            if client and client.check_endpoint_auth_method(method, endpoint):
                request.auth_method = method
                return client
        raise InvalidClientError(status_code=401, description=self.FAILED)


class GovshareAuthorizationServer(AuthorizationServer):
    """Authlib's server bound to one request's session."""

    def __init__(self, *, session: Session, settings: Settings, keystore: KeyStore) -> None:
        super().__init__(scopes_supported=[role.value for role in Role])
        self.session, self.settings, self.keystore = session, settings, keystore
        self._client_auth = _ClientAuthentication(self.query_client)
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", _TokenGenerator(self))
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWT(self))
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    def query_client(self, client_id: str) -> OAuthClient | None:
        client = self.session.get(Client, client_id)
        if client is None or not client.active:
            return None
        return OAuthClient(client)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        claims = self.decode_token(token["access_token"])
        assert claims is not None  # we signed it a moment ago
        self.session.add(
            IssuedToken(
                jti=claims["jti"],
                client_id=claims["client_id"],
                scope=token.get("scope", ""),
                issued_at=datetime.fromtimestamp(claims["iat"], UTC),
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
            )
        )
        self.session.flush()

    def decode_token(self, token_string: str) -> dict[str, Any] | None:
        """The claims of a token signed by one of our keys (expired or not), else None."""
        try:
            return dict(jwt.decode(token_string, self.keystore.public_keyset(), algorithms=[ALGORITHM]).claims)
        except (JoseError, ValueError, TypeError):
            return None

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple[int, Any, dict[str, str]]:
        return status, body, dict(headers)


def oauth_problem(status: int, body: dict[str, Any], headers: dict[str, str]) -> JSONResponse:
    """An OAuth2 error (RFC 6749 section 5.2) that is also a problem+json document."""
    error = body.get("error", "invalid_request")
    description = body.get("error_description") or error.replace("_", " ")
    problem = {
        "type": PROBLEM_BASE + "oauth-" + error.replace("_", "-"),
        "title": error.replace("_", " ").capitalize(),
        "status": status,
        "detail": description,
        "error": error,
        "error_description": description,
    }
    headers = {key: value for key, value in headers.items() if key.lower() != "content-type"}
    return JSONResponse(problem, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


class _Refused(Exception):
    """Rolls the transaction back and carries the OAuth2 error response out."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__("refused")
        self.response = response


def _run_endpoint(request: Request, form: dict[str, str], endpoint: str | None) -> JSONResponse:
    state = request.app.state
    database: Database = state.database
    uri = state.settings.issuer + request.url.path
    oauth_request = _FormRequest("POST", uri, request.headers, form)  # case-insensitive headers
    try:
        # Issued tokens and used jtis are written; a refused request must leave nothing behind.
        with database.transaction() as session:
            server = GovshareAuthorizationServer(session=session, settings=state.settings, keystore=state.keystore)
            if endpoint is None:
                status, body, headers = server.create_token_response(oauth_request)
            else:
                status, body, headers = server.create_endpoint_response(endpoint, oauth_request)
            if status >= 400:
                raise _Refused(oauth_problem(status, body, headers))
    except _Refused as refused:
        return refused.response
    headers = {key: value for key, value in headers.items() if key.lower() != "content-type"}
    return JSONResponse(body, status_code=status, headers=headers)


router = APIRouter(tags=["oauth2"])


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


TOKEN_FORM = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "scope": {"type": "string", "description": "roles, space-separated; by default all of the client's"},
        "client_id": {"type": "string"}, "client_secret": {"type": "string"},
        "client_assertion_type": {"type": "string", "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
        "client_assertion": {"type": "string"},
    }}}}}}


@router.post("/oauth/token", summary="Issue an access token (client credentials)", openapi_extra=TOKEN_FORM)
async def issue_token(request: Request) -> JSONResponse:
    return await run_in_threadpool(_run_endpoint, request, await _form(request), None)


@router.post("/oauth/revoke", summary="Revoke an access token (RFC 7009)")
async def revoke_token(request: Request) -> JSONResponse:
    return await run_in_threadpool(_run_endpoint, request, await _form(request), "revocation")


@router.post("/oauth/introspect", summary="Introspect an access token (RFC 7662)")
async def introspect_token(request: Request) -> JSONResponse:
    return await run_in_threadpool(_run_endpoint, request, await _form(request), "introspection")


@router.get("/oauth/jwks", summary="The public keys that sign tokens, manifests and audit entries")
def jwks(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.keystore.public_jwks(), headers={"Cache-Control": "public, max-age=300"})


def server_metadata(settings: Settings) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    issuer = settings.issuer
    metadata = AuthorizationServerMetadata(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "jwks_uri": f"{issuer}/oauth/jwks",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "introspection_endpoint": f"{issuer}/oauth/introspect",
            "scopes_supported": [role.value for role in Role],
            "response_types_supported": ["token"],
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
            "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        }
    )
    return dict(metadata)


@router.get("/.well-known/oauth-authorization-server", summary="Authorization server metadata (RFC 8414)")
def metadata(request: Request) -> dict[str, Any]:
    return server_metadata(request.app.state.settings)
