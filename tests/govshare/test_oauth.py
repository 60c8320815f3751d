"""The OAuth2 authorization server: issuing, refusing, revoking, introspecting tokens."""

from __future__ import annotations

import time

import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import select

from govshare.keys import KeyStore
from govshare.models import Client, IssuedToken

TOKEN_URL = "http://localhost/oauth/token"
PROBLEM = "application/problem+json"


def _rsa_pair(kid: str = "client-key-1") -> tuple[RSAKey, dict]:
    key = RSAKey.generate_key(2048, {"kid": kid}, private=True)
    return key, {"keys": [key.as_dict(private=False)]}


def _token_request(client, **data):
    return client.post("/oauth/token", data={"grant_type": "client_credentials", **data})


def _assert_oauth_error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["error"] == error
    assert body["status"] == status
    assert body["type"] == f"urn:govshare:problem:oauth-{error.replace('_', '-')}"
    assert "access_token" not in body


def _verified_claims(client, access_token: str) -> dict:
    jwks = KeySet.import_key_set(client.get("/oauth/jwks").json())
    return dict(jwt.decode(access_token, jwks).claims)


def test_client_secret_basic_issues_a_signed_jwt_with_the_clients_roles(client, factory):
    creds = factory.client("PSB", "provider", "demander")
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(creds.client_id, creds.client_secret))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "provider demander"
    assert response.headers["cache-control"] == "no-store"
    claims = _verified_claims(client, body["access_token"])
    assert claims["iss"] == "http://localhost"
    assert claims["sub"] == claims["client_id"] == creds.client_id
    assert claims["department"] == "PSB"
    assert claims["scope"] == "provider demander"
    assert claims["exp"] - claims["iat"] == 3600


def test_client_secret_post_issues_a_token(client, factory):
    creds = factory.client("CAB", "demander")
    response = _token_request(client, client_id=creds.client_id, client_secret=creds.client_secret)
    assert response.status_code == 200, response.text
    assert _verified_claims(client, response.json()["access_token"])["client_id"] == creds.client_id


def test_private_key_jwt_issues_a_token(client, factory):
    key, public = _rsa_pair()
    creds = factory.client("HRSS", "service", public_jwks=public, with_secret=False)
    assertion = private_key_jwt_sign(key, creds.client_id, TOKEN_URL)
    response = _token_request(
        client,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=assertion,
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "service"


def test_private_key_jwt_with_an_ec_key_issues_a_token(client, factory):
    key = ECKey.generate_key("P-256", {"kid": "ec-1"}, private=True)
    creds = factory.client("HRSS", "service", public_jwks={"keys": [key.as_dict(private=False)]}, with_secret=False)
    assertion = private_key_jwt_sign(key, creds.client_id, TOKEN_URL, alg="ES256")
    response = _token_request(
        client, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion=assertion
    )
    assert response.status_code == 200, response.text


def test_wrong_secret_is_refused(client, factory):
    creds = factory.client("PSB", "provider")
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(creds.client_id, "not-the-secret"))
    _assert_oauth_error(response, 401, "invalid_client")
    response = _token_request(client, client_id=creds.client_id, client_secret="not-the-secret")
    _assert_oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/revoke", "/oauth/introspect"])
def test_a_client_not_authenticated_gets_a_plain_invalid_client_by_every_method(client, factory, endpoint):
    """RFC 6749 section 5.2: 401 invalid_client, "client authentication failed" (not Authlib's list of its methods)."""
    secret_client = factory.client("PSB", "provider")
    key, public = _rsa_pair()
    keyed = factory.client("HRSS", "service", public_jwks=public, with_secret=False)
    impostor, _ = _rsa_pair()
    form = {"grant_type": "client_credentials"} if endpoint == "/oauth/token" else {"token": "whatever"}
    assertion_type = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    attempts = {
        "client_secret_basic": client.post(endpoint, data=form, auth=(secret_client.client_id, "not-the-secret")),
        "client_secret_post": client.post(endpoint, data={**form, "client_id": secret_client.client_id, "client_secret": "not-the-secret"}),
        "unknown client": client.post(endpoint, data=form, auth=("psb-nobody", "whatever")),
        "no credentials": client.post(endpoint, data=form),
        "private_key_jwt, another key": client.post(endpoint, data={
            **form, "client_assertion_type": assertion_type,
            "client_assertion": private_key_jwt_sign(impostor, keyed.client_id, f"http://localhost{endpoint}")}),
    }
    for method, response in attempts.items():
        _assert_oauth_error(response, 401, "invalid_client")
        # The same words for every failure: the answer does not tell whether the client exists.
        assert response.json()["error_description"] == "client authentication failed", (method, response.text)
        assert response.headers["www-authenticate"].startswith("Basic "), method


def test_unknown_client_is_refused(client, factory):
    factory.client("PSB", "provider")
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("psb-nobody", "whatever"))
    _assert_oauth_error(response, 401, "invalid_client")


def test_assertion_signed_with_a_wrong_key_is_refused(client, factory):
    _registered, public = _rsa_pair("same-kid")
    impostor, _ = _rsa_pair("same-kid")
    creds = factory.client("HRSS", "service", public_jwks=public, with_secret=False)
    assertion = private_key_jwt_sign(impostor, creds.client_id, TOKEN_URL)
    response = _token_request(
        client, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion=assertion
    )
    _assert_oauth_error(response, 401, "invalid_client")


def test_assertion_replayed_is_refused(client, factory):
    key, public = _rsa_pair()
    creds = factory.client("HRSS", "service", public_jwks=public, with_secret=False)
    assertion = private_key_jwt_sign(key, creds.client_id, TOKEN_URL)
    data = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": assertion}
    assert _token_request(client, **data).status_code == 200
    _assert_oauth_error(_token_request(client, **data), 401, "invalid_client")


def test_assertion_for_another_audience_or_too_long_lived_is_refused(client, factory):
    key, public = _rsa_pair()
    creds = factory.client("HRSS", "service", public_jwks=public, with_secret=False)
    kind = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    elsewhere = private_key_jwt_sign(key, creds.client_id, "https://other.example/oauth/token")
    _assert_oauth_error(_token_request(client, client_assertion_type=kind, client_assertion=elsewhere), 401, "invalid_client")
    now = int(time.time())
    long_lived = private_key_jwt_sign(key, creds.client_id, TOKEN_URL, claims={"iat": now, "exp": now + 7 * 86400})
    _assert_oauth_error(_token_request(client, client_assertion_type=kind, client_assertion=long_lived), 401, "invalid_client")


def test_secret_client_cannot_use_private_key_jwt_and_vice_versa(client, factory):
    key, public = _rsa_pair()
    keyed = factory.client("HRSS", "service", public_jwks=public, with_secret=False)
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(keyed.client_id, ""))
    assert response.status_code in (400, 401)
    secret_only = factory.client("PSB", "provider")
    assertion = private_key_jwt_sign(key, secret_only.client_id, TOKEN_URL)
    response = _token_request(
        client, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion=assertion
    )
    _assert_oauth_error(response, 401, "invalid_client")


def test_a_role_outside_the_clients_is_refused_at_the_token_endpoint(client, factory):
    creds = factory.client("CAB", "demander")
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "demander manager"},
        auth=(creds.client_id, creds.client_secret),
    )
    _assert_oauth_error(response, 400, "invalid_scope")


def test_a_narrower_scope_gives_a_token_with_only_that_role(client, factory):
    creds = factory.client("DATA", "manager", "admin")
    token = factory.token(creds, scope="admin")
    assert _verified_claims(client, token)["scope"] == "admin"
    # the narrowed token cannot do what only the other role may do... and can do its own
    assert client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_role_outside_the_token_is_refused_at_the_api(client, factory):
    headers = factory.caller("CAB", "demander")
    response = client.get("/api/v1/audit/verify", headers=headers)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["type"] == "urn:govshare:problem:forbidden"
    assert "manager" in response.json()["detail"]


def test_unsupported_grant_type_is_refused(client, factory):
    creds = factory.client("PSB", "provider")
    response = client.post("/oauth/token", data={"grant_type": "password"}, auth=(creds.client_id, creds.client_secret))
    _assert_oauth_error(response, 400, "unsupported_grant_type")


def test_revoked_token_is_refused_on_the_next_request(client, factory):
    creds = factory.client("DATA", "manager")
    token = factory.token(creds)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/audit/verify", headers=headers).status_code == 200
    response = client.post("/oauth/revoke", data={"token": token}, auth=(creds.client_id, creds.client_secret))
    assert response.status_code == 200, response.text
    refused = client.get("/api/v1/audit/verify", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the access token has been revoked"
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_another_client_cannot_revoke_my_token(client, factory):
    mine = factory.client("DATA", "manager")
    other = factory.client("CAB", "demander")
    token = factory.token(mine)
    response = client.post("/oauth/revoke", data={"token": token}, auth=(other.client_id, other.client_secret))
    assert response.status_code == 400
    assert client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_introspection_reports_active_then_inactive_after_revocation(client, factory):
    creds = factory.client("PSB", "provider")
    token = factory.token(creds)
    auth = (creds.client_id, creds.client_secret)
    active = client.post("/oauth/introspect", data={"token": token}, auth=auth).json()
    assert active["active"] is True
    assert active["client_id"] == creds.client_id
    assert active["scope"] == "provider"
    assert active["department"] == "PSB"
    client.post("/oauth/revoke", data={"token": token}, auth=auth)
    assert client.post("/oauth/introspect", data={"token": token}, auth=auth).json() == {"active": False}
    assert client.post("/oauth/introspect", data={"token": "garbage"}, auth=auth).json() == {"active": False}


def test_introspection_of_another_clients_token_needs_admin(client, factory):
    owner = factory.client("PSB", "provider")
    token = factory.token(owner)
    stranger = factory.client("CAB", "demander")
    admin = factory.client("DATA", "admin")
    assert client.post("/oauth/introspect", data={"token": token}, auth=(stranger.client_id, stranger.client_secret)).json() == {"active": False}
    assert client.post("/oauth/introspect", data={"token": token}, auth=(admin.client_id, admin.client_secret)).json()["active"] is True


def test_a_disabled_clients_tokens_stop_working_and_it_gets_no_new_ones(client, factory, database):
    from govshare import identities

    creds = factory.client("DATA", "manager")
    headers = {"Authorization": f"Bearer {factory.token(creds)}"}
    with database.transaction() as session:
        identities.disable_client(session, client_id=creds.client_id)
    assert client.get("/api/v1/audit/verify", headers=headers).status_code == 401
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(creds.client_id, creds.client_secret))
    _assert_oauth_error(response, 401, "invalid_client")


def _forge(settings, key, **overrides) -> str:
    now = int(time.time())
    claims = {"iss": settings.issuer, "aud": settings.issuer, "sub": "x", "client_id": "x", "iat": now,
              "exp": now + 600, "jti": "forged", "scope": "manager admin"}
    claims.update(overrides)
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, claims, key)


def test_a_token_signed_with_another_key_is_refused(client, factory, settings):
    creds = factory.client("DATA", "manager")
    real = _verified_claims(client, factory.token(creds))
    ours = KeyStore(settings.resolved_keys_dir).active_key()
    impostor = ECKey.generate_key("P-256", {"kid": ours.kid}, private=True)
    forged = _forge(settings, impostor, sub=creds.client_id, client_id=creds.client_id, jti=real["jti"])
    response = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)


def test_an_expired_or_unrecorded_token_is_refused(client, factory, settings):
    creds = factory.client("DATA", "manager")
    real = _verified_claims(client, factory.token(creds))
    key = KeyStore(settings.resolved_keys_dir).active_key()
    now = int(time.time())
    expired = _forge(settings, key, sub=creds.client_id, client_id=creds.client_id, jti=real["jti"], iat=now - 7200, exp=now - 3600)
    assert client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    # signed by us but never issued (e.g. a key leaked to a test rig): the jti is not on record
    unrecorded = _forge(settings, key, sub=creds.client_id, client_id=creds.client_id, jti="never-issued")
    response = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {unrecorded}"})
    assert response.status_code == 401


def test_a_token_accepted_once_is_refused_when_it_expires(client, factory, settings):
    # The server remembers a token's checked signature between calls; its expiry is checked on every call.
    creds = factory.client("DATA", "manager")
    real = _verified_claims(client, factory.token(creds))
    key = KeyStore(settings.resolved_keys_dir).active_key()
    now = int(time.time())
    short = _forge(settings, key, sub=creds.client_id, client_id=creds.client_id, jti=real["jti"], iat=now, exp=now + 2)
    assert client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {short}"}).status_code == 200
    time.sleep(max(0.0, now + 3 - time.time()))
    response = client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {short}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer not.a.jwt"])
def test_missing_or_malformed_bearer_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/audit/verify", headers=headers)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:govshare:problem:unauthenticated"


def test_key_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key(client, factory, settings):
    creds = factory.client("DATA", "manager")
    old_token = factory.token(creds)
    new_kid = KeyStore(settings.resolved_keys_dir).rotate()
    jwks = client.get("/oauth/jwks").json()
    assert [key["kid"] for key in jwks["keys"]][-1] == new_kid
    assert len(jwks["keys"]) == 2
    assert all("d" not in key for key in jwks["keys"])  # never the private part
    new_token = factory.token(creds)
    assert jwt.decode(new_token, KeySet.import_key_set(jwks)).header["kid"] == new_kid
    for token in (old_token, new_token):
        assert client.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_server_metadata_describes_the_endpoints(client):
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["issuer"] == "http://localhost"
    assert metadata["token_endpoint"] == "http://localhost/oauth/token"
    assert metadata["jwks_uri"] == "http://localhost/oauth/jwks"
    assert metadata["revocation_endpoint"] == "http://localhost/oauth/revoke"
    assert metadata["introspection_endpoint"] == "http://localhost/oauth/introspect"
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert "manager" in metadata["scopes_supported"]


def test_client_secrets_are_stored_only_as_hashes(factory, database):
    creds = factory.client("PSB", "provider")
    with database.transaction(write=False) as session:
        stored = session.get(Client, creds.client_id)
        assert stored.secret_hash and creds.client_secret not in stored.secret_hash
        assert len(stored.secret_hash) == 64


def test_each_issued_token_is_recorded(client, factory, database):
    creds = factory.client("PSB", "provider")
    claims = _verified_claims(client, factory.token(creds))
    with database.transaction(write=False) as session:
        issued = session.execute(select(IssuedToken).where(IssuedToken.jti == claims["jti"])).scalar_one()
        assert issued.client_id == creds.client_id
        assert int(issued.expires_at.timestamp()) == claims["exp"]
