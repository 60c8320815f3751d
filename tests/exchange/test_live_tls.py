"""Live services with a client certificate (issue 24): mutual TLS to a real provider under uvicorn that requires one.

The test makes its own CA with ``cryptography``: the provider's server certificate (for
127.0.0.1) and the exchange's client certificate are signed by it; the dataset names that
CA in ``live.ca_certificate``, so nothing turns verification off. A certificate from another
CA, or none, is refused by the provider in the handshake: the call answers 502.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI, Request
from sqlalchemy import func, select

from directory.models import Dataset, LiveCredential
from tests.exchange.test_live import INSIDE, PEOPLE, World, _lines, _problem
from tests.factories import DirectoryFactory, dataset_document
from tests.servers import in_thread


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@dataclass
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return _pem(self.certificate)

    @property
    def key_pem(self) -> str:
        return _key_pem(self.key)


class CA:
    """A certificate authority made for the test (keys generated, never stored beyond the test's folder)."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(timezone.utc)
        self.certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
                            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                            .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return _pem(self.certificate)

    def issue(self, name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(self.certificate.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                                  critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
        return Issued(builder.sign(self.key, hashes.SHA256()), key)


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch):
    # The provider runs on this machine: loopback is internal, so it must be named (before the app's settings are read).
    monkeypatch.setenv("GOVSHARE_OUTBOUND_ALLOWLIST", '["127.0.0.1"]')


@pytest.fixture(scope="module")
def pki():
    ca, rogue = CA("Test provider CA"), CA("Someone else's CA")
    return {"ca": ca, "server": ca.issue("127.0.0.1", server=True), "client": ca.issue("govshare exchange", server=False),
            "rogue": rogue, "rogue_client": rogue.issue("govshare exchange", server=False)}


class TlsProvider:
    """The provider's residents API over HTTPS, requiring a client certificate signed by its CA."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.mode = "ok"
        app = FastAPI()

        @app.get("/residents/{key}")
        def resident(key: str, request: Request):
            self.calls.append(key)
            return [PEOPLE[key]]

        self.app = app


@pytest.fixture
def provider(pki, tmp_path: Path):
    files = {"cert": tmp_path / "server.pem", "key": tmp_path / "server-key.pem", "ca": tmp_path / "ca.pem"}
    files["cert"].write_text(pki["server"].pem)
    files["key"].write_text(pki["server"].key_pem)
    files["ca"].write_text(pki["ca"].pem)
    provider = TlsProvider()
    with in_thread(provider.app, ssl_certfile=str(files["cert"]), ssl_keyfile=str(files["key"]),
                   ssl_ca_certs=str(files["ca"]), ssl_cert_reqs=ssl.CERT_REQUIRED) as base:
        assert base.startswith("https://")
        provider.base = base
        yield provider


def tls_document(base: str, *, ca: str | None, certificate: str | None = None, private_key: str | None = None,
                 code: str = "PSB-RESIDENTS") -> dict:
    live = {"url": f"{base}/residents/{{key}}", "timeout_seconds": 10}
    if ca is not None:
        live["ca_certificate"] = ca
    if certificate is not None or private_key is not None:
        live["auth"] = {"type": "client_certificate",
                        **({"certificate": certificate} if certificate is not None else {}),
                        **({"private_key": private_key} if private_key is not None else {})}
    return dataset_document(code, "PSB", title="Residents (live, mutual TLS)", delivery_modes=["live"],
                            share_type="unconditional", live=live)


class TlsWorld(World):
    def __init__(self, client, factory, app, provider, document: dict) -> None:
        self.http, self.factory, self.app, self.provider, self.department = client, factory, app, provider, "CAB"
        self.directory = DirectoryFactory(factory)
        response = client.post("/api/v1/datasets", headers=self.directory.provider("PSB"), json=document)
        assert response.status_code == 201, response.text
        self.registered = response.json()
        self.manager, self.service = factory.caller("DATA", "manager"), factory.caller("CAB", "service")
        self.application = self.grant(["citizen_id", "district"])


def test_a_live_call_over_mutual_tls_with_the_right_certificate(client, factory, app, provider, pki, database):
    document = tls_document(provider.base, ca=pki["ca"].pem, certificate=pki["client"].pem, private_key=pki["client"].key_pem)
    world = TlsWorld(client, factory, app, provider, document)
    response = world.call(INSIDE)
    assert response.status_code == 200, response.text
    assert response.json()["records"] == [{"citizen_id": INSIDE, "district": "01"}]
    assert world.call(INSIDE).status_code == 200  # again, on the dataset's kept connection
    assert provider.calls == [INSIDE, INSIDE]
    # The certificate and key are write-only, stored encrypted; the CA (public) is in the description.
    shown = client.get("/api/v1/datasets/PSB-RESIDENTS", headers=world.service)
    key_body = pki["client"].key_pem.splitlines()[1]
    cert_body = pki["client"].pem.splitlines()[1]
    assert key_body not in shown.text and cert_body not in shown.text and key_body not in str(world.registered)
    with database.transaction(write=False) as session:
        stored = session.execute(select(LiveCredential)).scalar_one()
        described = session.execute(select(Dataset.document)).scalar_one()
    assert stored.auth_type == "client_certificate"
    assert key_body not in stored.secret_encrypted and cert_body not in stored.secret_encrypted
    assert key_body not in str(described) and described["live"]["auth"] == {"type": "client_certificate"}
    # A change without the certificate keeps it: calls still go through.
    changed = tls_document(provider.base, ca=pki["ca"].pem)
    changed["live"]["auth"] = {"type": "client_certificate"}
    changed["title"] = "Residents, live"
    assert client.put("/api/v1/datasets/PSB-RESIDENTS", json=changed, headers=world.directory.provider("PSB")).status_code == 200
    assert world.call(INSIDE).status_code == 200


@pytest.mark.parametrize("presented", ["none", "another CA's"])
def test_without_the_right_client_certificate_the_call_is_502(client, factory, app, provider, pki, database, presented):
    certificate = {} if presented == "none" else {"certificate": pki["rogue_client"].pem, "private_key": pki["rogue_client"].key_pem}
    world = TlsWorld(client, factory, app, provider, tls_document(provider.base, ca=pki["ca"].pem, **certificate))
    body = _problem(world.call(INSIDE), 502, "live-provider-error")
    assert "PSB-RESIDENTS" in body["detail"]
    assert provider.calls == []  # refused in the handshake: the provider's API never saw the call
    app.state.ledger.flush()
    assert [line.status for line in _lines(database)] == [502]


def test_the_provider_is_verified_against_the_datasets_ca(client, factory, app, provider, pki):
    # Without the CA the provider's certificate is not trusted (the public roots do not know it): 502, no call.
    document = tls_document(provider.base, ca=None, certificate=pki["client"].pem, private_key=pki["client"].key_pem)
    world = TlsWorld(client, factory, app, provider, document)
    body = _problem(world.call(INSIDE), 502, "live-provider-error")
    assert "CERTIFICATE_VERIFY_FAILED" in body["detail"]
    # Nor with another CA named.
    document["live"]["ca_certificate"] = pki["rogue"].pem
    assert client.put("/api/v1/datasets/PSB-RESIDENTS", json=document, headers=world.directory.provider("PSB")).status_code == 200
    _problem(world.call(INSIDE), 502, "live-provider-error")
    assert provider.calls == []
    # The right CA: the same dataset's next call gets through (its client made again for the new CA).
    document["live"]["ca_certificate"] = pki["ca"].pem
    assert client.put("/api/v1/datasets/PSB-RESIDENTS", json=document, headers=world.directory.provider("PSB")).status_code == 200
    assert world.call(INSIDE).status_code == 200
    assert provider.calls == [INSIDE]


def _refused(client, factory, document: dict, field: str) -> None:
    directory = DirectoryFactory(factory)
    response = client.post("/api/v1/datasets", json=document, headers=directory.provider("PSB"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"].startswith(f"{field}:"), response.json()


def _nothing_stored(database) -> None:
    with database.transaction(write=False) as session:
        assert session.execute(select(func.count()).select_from(LiveCredential)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(Dataset)).scalar_one() == 0


def test_unusable_certificates_are_refused_at_registration(client, factory, database, pki):
    base = "https://127.0.0.1:9"
    ca, good = pki["ca"], pki["client"]
    garbage = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    cases = [
        (tls_document(base, ca=ca.pem, certificate=garbage, private_key=good.key_pem), "live.auth.certificate"),
        (tls_document(base, ca=ca.pem, certificate="just text", private_key=good.key_pem), "live.auth.certificate"),
        (tls_document(base, ca=ca.pem, certificate=good.pem, private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
         "live.auth.private_key"),
        # a key that is not the certificate's
        (tls_document(base, ca=ca.pem, certificate=good.pem, private_key=pki["rogue_client"].key_pem), "live.auth.private_key"),
        # a certificate without its key, and a key without its certificate
        (tls_document(base, ca=ca.pem, certificate=good.pem), "live.auth.private_key"),
        (tls_document(base, ca=ca.pem, private_key=good.key_pem), "live.auth.certificate"),
        # a CA that is not one
        (tls_document(base, ca=garbage, certificate=good.pem, private_key=good.key_pem), "live.ca_certificate"),
        (tls_document(base, ca=good.key_pem), "live.ca_certificate"),
    ]
    for document, field in cases:
        _refused(client, factory, document, field)
    _nothing_stored(database)
    # A first registration with the auth form but no certificate at all: required.
    document = tls_document(base, ca=ca.pem)
    document["live"]["auth"] = {"type": "client_certificate"}
    _refused(client, factory, document, "live.auth.certificate and private_key")
    _nothing_stored(database)


def test_a_change_to_a_mismatched_key_is_refused_and_keeps_the_stored_one(client, factory, app, provider, pki, database):
    document = tls_document(provider.base, ca=pki["ca"].pem, certificate=pki["client"].pem, private_key=pki["client"].key_pem)
    world = TlsWorld(client, factory, app, provider, document)
    with database.transaction(write=False) as session:
        before = session.execute(select(LiveCredential.secret_encrypted)).scalar_one()
    document["live"]["auth"]["private_key"] = pki["rogue_client"].key_pem
    response = client.put("/api/v1/datasets/PSB-RESIDENTS", json=document, headers=world.directory.provider("PSB"))
    assert response.status_code == 422 and response.json()["detail"].startswith("live.auth.private_key:"), response.text
    # Oversized: refused by the schema before anything is parsed.
    document["live"]["auth"]["private_key"] = "-----BEGIN PRIVATE KEY-----\n" + "A" * 100_000 + "\n-----END PRIVATE KEY-----\n"
    oversized = client.put("/api/v1/datasets/PSB-RESIDENTS", json=document, headers=world.directory.provider("PSB"))
    assert oversized.status_code == 422 and oversized.json()["type"] == "urn:govshare:problem:schema-violation", oversized.text
    # Another department's provider cannot put its own certificate on PSB's dataset.
    document["live"]["auth"] = {"type": "client_certificate", "certificate": pki["rogue_client"].pem,
                                "private_key": pki["rogue_client"].key_pem}
    other = client.put("/api/v1/datasets/PSB-RESIDENTS", json=document, headers=world.directory.provider("HRSS"))
    assert other.status_code == 403, other.text
    with database.transaction(write=False) as session:
        assert session.execute(select(LiveCredential.secret_encrypted)).scalar_one() == before
    assert world.call(INSIDE).status_code == 200
