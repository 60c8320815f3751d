"""Tampering: an altered, deleted or re-signed audit entry; a forged, altered or expired download link;
a token signed with another key, altered, expired, revoked, or of a disabled client. Each is refused,
and the audit chain names the first entry that was tampered with.

The chain here is written by real requests (a decision, an extract and its download), not by hand.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select, text

from exchange.extracts import service as extracts
from govshare import identities
from govshare.audit import canonical_json, entry_hash
from govshare.keys import KeyStore
from govshare.models import AuditEntry
from tests.exchange.test_extracts import Extracts

pytestmark = pytest.mark.slow  # builds extracts and runs the CLI: about 40 s

PROBLEM = "application/problem+json"


@pytest.fixture
def world(client, factory, tmp_path, database, settings) -> Extracts:
    """CAB holds an extract grant on PSB's household data, and one extract of it has been built."""
    built = Extracts(client, factory, tmp_path, database, settings)
    built.extract = built.done(format="csv")
    return built


def _entry(database, action: str) -> AuditEntry:
    with database.transaction(write=False) as session:
        return session.execute(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)).scalars().first()


def _verify(world: Extracts) -> dict:
    response = world.http.get("/api/v1/audit/verify", headers=world.manager)
    assert response.status_code == 200, response.text
    return response.json()


def _verify_cli(settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOVSHARE_HOME": str(settings.resolved_home), "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    return subprocess.run([sys.executable, "-m", "govshare", "audit", "verify"], env=env, capture_output=True, text=True, timeout=60)


def _der_signature(key: ECKey, message: bytes) -> str:
    signature = key.private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    return base64.urlsafe_b64encode(signature).decode().rstrip("=")


def _alter_details(connection, entry: AuditEntry, world) -> str:
    details = json.loads(entry.details)
    details["decision"] = "reject"  # what an insider would want the record to say
    connection.execute(text("UPDATE audit_entries SET details = :d WHERE seq = :s"), {"d": canonical_json(details), "s": entry.seq})
    return "content does not match its hash (altered)"


def _alter_actor(connection, entry: AuditEntry, world) -> str:
    connection.execute(text("UPDATE audit_entries SET actor = 'user:someone-else' WHERE seq = :s"), {"s": entry.seq})
    return "content does not match its hash (altered)"


def _delete(connection, entry: AuditEntry, world) -> str:
    connection.execute(text("DELETE FROM audit_entries WHERE seq = :s"), {"s": entry.seq})
    return f"entry {entry.seq} is missing"


def _resign_with_another_key(connection, entry: AuditEntry, world) -> str:
    """Rewrite the entry, recompute its hash as the code does, and sign it with a key of the same name that is not ours."""
    details = canonical_json({**json.loads(entry.details), "decision": "reject"})
    forged_hash = entry_hash(seq=entry.seq, at=entry.at.isoformat(), actor=entry.actor, action=entry.action,
                             subject=entry.subject, details=details, prev_hash=entry.prev_hash)
    impostor = ECKey.generate_key("P-256", {"kid": entry.key_id}, private=True)
    connection.execute(text("UPDATE audit_entries SET details = :d, hash = :h, signature = :sig WHERE seq = :s"),
                       {"d": details, "h": forged_hash, "sig": _der_signature(impostor, forged_hash.encode()), "s": entry.seq})
    return "signature does not verify"


@pytest.mark.parametrize("tamper", [_alter_details, _alter_actor, _delete, _resign_with_another_key],
                         ids=["altered-details", "altered-actor", "deleted", "re-signed-with-another-key"])
def test_a_tampered_audit_entry_is_detected_and_named_by_the_api_and_the_cli(world, database, settings, tamper):
    world.http.get(world.extract["download_url"], headers=world.demander)  # a download: one more entry on the chain
    assert _verify(world)["ok"] is True
    decision = _entry(database, "application.awaiting_provider")  # the manager's approval
    assert decision is not None, "the approval left no audit entry"
    with database.engine.begin() as connection:
        reason = tamper(connection, decision, world)
    result = _verify(world)
    assert result["ok"] is False
    assert result["first_broken"]["seq"] == decision.seq
    assert result["first_broken"]["reason"] == reason
    completed = _verify_cli(settings)
    assert completed.returncode == 1
    assert f"BROKEN at entry {decision.seq}" in completed.stderr


def test_entries_cut_off_the_end_after_a_download_are_detected(world, database):
    assert world.http.get(world.extract["download_url"], headers=world.demander).status_code == 200
    downloaded = _entry(database, "extract.downloaded")
    assert downloaded is not None
    with database.engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_entries WHERE seq >= :s"), {"s": downloaded.seq})
    result = _verify(world)
    assert result["ok"] is False and result["first_broken"]["seq"] == downloaded.seq
    assert "missing from the end" in result["first_broken"]["reason"]


# --- download links -----------------------------------------------------------------------------------


def _with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return f"{parts.path}?{urlencode(query)}"


def _link_cases(world: Extracts) -> dict[str, str]:
    url = world.extract["download_url"]
    query = dict(parse_qsl(urlsplit(url).query))
    secret = extracts.link_secret(KeyStore(world.settings.resolved_keys_dir))
    other = world.done(format="parquet")
    return {
        "a made-up signature": _with_query(url, signature="0" * 64),
        "a truncated signature": _with_query(url, signature=query["signature"][:-2]),
        "no signature": _with_query(url, signature=""),
        "non-ASCII in the signature": _with_query(url, signature="é" * 64),
        "the expiry pushed back": _with_query(url, expires=str(int(query["expires"]) + 86400)),
        "another extract's signature": _with_query(url, signature=dict(parse_qsl(urlsplit(other["download_url"]).query))["signature"],
                                                   expires=dict(parse_qsl(urlsplit(other["download_url"]).query))["expires"]),
        "an expired link": extracts.download_link(world.extract["id"], secret=secret, now=datetime.now(UTC) - timedelta(hours=2)),
        "a link signed with another secret": extracts.download_link(world.extract["id"], secret=b"x" * 32),
    }


def test_forged_altered_and_expired_download_links_are_refused_and_the_real_one_works(world, database):
    for name, link in _link_cases(world).items():
        response = world.http.get(link, headers=world.demander)
        assert response.status_code == 403, (name, response.text)
        assert response.headers["content-type"].startswith(PROBLEM), name
        assert response.json()["type"] == "urn:govshare:problem:link-invalid", name
    # A refused link delivers nothing: no download on the audit chain.
    assert _entry(database, "extract.downloaded") is None
    genuine = world.http.get(world.extract["download_url"], headers=world.demander)
    assert genuine.status_code == 200
    assert genuine.headers["x-govshare-sha256"] == world.extract["manifest"]["sha256"]
    assert _entry(database, "extract.downloaded") is not None


# --- tokens ----------------------------------------------------------------------------------------------


def _claims(world: Extracts, token: str) -> dict:
    return dict(jwt.decode(token, KeySet.import_key_set(world.http.get("/oauth/jwks").json())).claims)


def _sign(claims: dict, key: ECKey) -> str:
    return jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}, claims, key)


def _refused_tokens(world: Extracts, factory, database) -> dict[str, str]:
    ours = KeyStore(world.settings.resolved_keys_dir).active_key()
    credentials = factory.client("CAB", "demander")
    good = factory.token(credentials)
    claims = _claims(world, good)
    header, payload, signature = good.split(".")
    widened = base64.urlsafe_b64encode(json.dumps({**claims, "scope": "demander manager admin"}).encode()).decode().rstrip("=")
    now = int(time.time())

    revoked = factory.token(credentials)
    assert world.http.post("/oauth/revoke", data={"token": revoked},
                           auth=(credentials.client_id, credentials.client_secret)).status_code == 200
    disabled_credentials = factory.client("CAB", "demander")
    of_disabled = factory.token(disabled_credentials)
    with database.transaction() as session:
        identities.disable_client(session, client_id=disabled_credentials.client_id)

    return {
        "signed with another key of the same name": _sign(claims, ECKey.generate_key("P-256", {"kid": ours.kid}, private=True)),
        "payload altered, signature kept": f"{header}.{widened}.{signature}",
        "unsigned (alg none)": base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').decode().rstrip("=") + f".{widened}.",
        "expired (signed by us)": _sign({**claims, "iat": now - 7200, "exp": now - 3600}, ours),
        "for another audience (signed by us)": _sign({**claims, "aud": "https://elsewhere.example"}, ours),
        "revoked": revoked,
        "of a disabled client": of_disabled,
    }


def test_tokens_forged_altered_expired_revoked_or_of_a_disabled_client_are_refused(world, factory, database):
    tokens = _refused_tokens(world, factory, database)
    targets = [("GET", f"/api/v1/grants/{world.grant_id}"), ("POST", f"/api/v1/grants/{world.grant_id}/extracts"),
               ("GET", world.extract["download_url"])]
    for name, token in tokens.items():
        for method, path in targets:
            response = world.http.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                          json={"format": "csv"} if method == "POST" else None)
            assert response.status_code == 401, (name, path, response.text)
            assert response.headers["content-type"].startswith(PROBLEM), (name, path)
            assert response.json()["type"] == "urn:govshare:problem:unauthenticated", (name, path)
            assert response.headers["www-authenticate"].startswith("Bearer"), (name, path)
    # The department's valid token still works: the refusals were about the tokens, not the caller.
    assert world.http.get(f"/api/v1/grants/{world.grant_id}", headers=world.demander).status_code == 200
