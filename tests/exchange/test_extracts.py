"""Extracts: exactly the grant's rows and columns, signed, served only to the grant's department."""

from __future__ import annotations

import hashlib
import io
from datetime import date, datetime, timedelta, UTC

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text

from exchange import crypto
from exchange.extracts import service as extracts
from exchange.models import Extract
from govshare import storage
from govshare.keys import KeyStore
from tests.approvals.test_api import application_body
from tests.exchange.test_interfaces import _citizens, _csv
from tests.factories import DirectoryFactory


class Extracts:
    def __init__(self, client, factory, tmp_path, database, settings) -> None:
        self.http, self.database, self.settings = client, database, settings
        directory = DirectoryFactory(factory)
        directory.dataset("PSB-HOUSEHOLD", "PSB")
        self.source = tmp_path / "household.csv"
        self.source.write_bytes(_csv(_citizens(80)))
        assert directory.upload("PSB-HOUSEHOLD", self.source.read_bytes()).status_code == 201
        self.demander = factory.caller("CAB", "demander")
        self.stranger = factory.caller("EDU", "demander")
        self.manager = factory.caller("DATA", "manager")
        body = application_body(delivery="extract", period={"start": date.today().isoformat(),
                                                            "end": (date.today() + timedelta(days=60)).isoformat()})
        application = client.post("/api/v1/applications", json=body, headers=self.demander).json()
        client.post(f"/api/v1/applications/{application['id']}/decision", json={"decision": "approve"}, headers=self.manager)
        self.grant_id = client.post(f"/api/v1/applications/{application['id']}/provider-decision", json={"decision": "approve"},
                                    headers=directory.provider("PSB")).json()["grant_id"]

    def expected(self) -> list[dict]:
        result = duckdb.connect().execute(
            "SELECT citizen_id, name, district FROM read_csv(?, all_varchar=true) WHERE district IN ('01', '02')", [str(self.source)])
        names = [column[0] for column in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]

    def request(self, headers=None, **body):
        return self.http.post(f"/api/v1/grants/{self.grant_id}/extracts", json=body, headers=headers or self.demander)

    def run(self) -> None:
        extracts.run_pending(self.database, store=storage.for_settings(self.settings), keystore=KeyStore(self.settings.resolved_keys_dir))

    def done(self, **body) -> dict:
        requested = self.request(**body)
        assert requested.status_code == 202, requested.text
        assert requested.json()["status"] == "queued"
        self.run()
        extract = self.http.get(f"/api/v1/extracts/{requested.json()['id']}", headers=self.demander).json()
        assert extract["status"] == "done", extract
        return extract


@pytest.fixture
def world(client, factory, tmp_path, database, settings) -> Extracts:
    return Extracts(client, factory, tmp_path, database, settings)


def _read(fmt: str, content: bytes) -> list[dict]:
    if fmt == "parquet":
        table = pq.read_table(io.BytesIO(content))
    elif fmt == "csv":
        table = pacsv.read_csv(io.BytesIO(content), convert_options=pacsv.ConvertOptions(column_types={
            "citizen_id": pa.string(), "name": pa.string(), "district": pa.string()}))
    else:
        table = pa.ipc.open_file(io.BytesIO(content)).read_all()
    return table.to_pylist()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow"])
def test_an_extract_holds_exactly_the_granted_rows_and_columns_with_a_signed_manifest(world, settings, fmt):
    extract = world.done(format=fmt)
    manifest = extract["manifest"]
    expected = world.expected()
    assert manifest["rows"] == len(expected) == 40
    assert manifest["columns"] == ["citizen_id", "name", "district"]
    assert manifest["format"] == fmt and manifest["version"] == 1
    download = world.http.get(extract["download_url"], headers=world.demander)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == manifest["sha256"] == download.headers["x-govshare-sha256"]
    assert _read(fmt, download.content) == expected
    keystore = KeyStore(settings.resolved_keys_dir)
    assert extracts.verify_manifest(manifest, keystore)
    assert not extracts.verify_manifest({**manifest, "rows": manifest["rows"] + 1}, keystore)


def test_the_link_refuses_another_department_a_forged_or_expired_link_and_a_revoked_grant(world):
    extract = world.done(format="csv")
    url = extract["download_url"]
    assert world.http.get(url, headers=world.stranger).status_code == 404
    assert world.http.get(url).status_code == 401
    forged = url[:-4] + ("0000" if not url.endswith("0000") else "1111")
    assert world.http.get(forged, headers=world.demander).status_code == 403
    secret = extracts.link_secret(KeyStore(world.settings.resolved_keys_dir))
    old = extracts.download_link(extract["id"], secret=secret, now=datetime.now(UTC) - timedelta(hours=2))
    expired = world.http.get(old, headers=world.demander)
    assert expired.status_code == 403 and expired.json()["type"] == "urn:govshare:problem:link-invalid"
    assert world.http.get(f"/api/v1/extracts/{extract['id']}", headers=world.stranger).status_code == 404
    world.http.post(f"/api/v1/grants/{world.grant_id}/revoke", json={"reason": "ended"}, headers=world.manager)
    assert world.http.get(url, headers=world.demander).status_code == 403


def test_downloads_resume_with_http_range(world):
    extract = world.done(format="csv")
    whole = world.http.get(extract["download_url"], headers=world.demander).content
    part = world.http.get(extract["download_url"], headers={**world.demander, "Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == whole[100:200]


def _key_pair() -> tuple[bytes, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_pem, public_pem


def test_an_encrypted_extract_decrypts_only_with_the_right_private_key(world, tmp_path):
    assert world.request(format="parquet", encrypt=True).status_code == 422  # no key registered yet
    private_pem, public_pem = _key_pair()
    registered = world.http.put("/api/v1/departments/CAB/public-key", json={"public_key": public_pem}, headers=world.demander)
    assert registered.status_code == 200, registered.text
    assert world.http.put("/api/v1/departments/CAB/public-key", json={"public_key": public_pem}, headers=world.stranger).status_code == 403
    extract = world.done(format="parquet", encrypt=True)
    sealed = world.http.get(extract["download_url"], headers=world.demander).content
    assert hashlib.sha256(sealed).hexdigest() == extract["manifest"]["sha256"]
    with pytest.raises(Exception):
        pq.read_table(io.BytesIO(sealed))
    (tmp_path / "x.enc").write_bytes(sealed)
    crypto.decrypt_file(tmp_path / "x.enc", tmp_path / "x.parquet", private_pem)
    assert pq.read_table(tmp_path / "x.parquet").to_pylist() == world.expected()
    wrong_private, _ = _key_pair()
    with pytest.raises(ValueError):
        crypto.decrypt_file(tmp_path / "x.enc", tmp_path / "y.parquet", wrong_private)


def test_an_interrupted_extract_is_taken_up_again_and_leaves_no_partial_file(world, database):
    requested = world.request(format="parquet").json()
    folder = world.settings.resolved_data_dir / "extracts"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{requested['id']}.crashed.tmp"
    partial.write_bytes(b"PAR1 half written")
    stale = datetime.now(UTC) - timedelta(minutes=5)
    with database.transaction() as session:  # as a killed worker leaves it: running, no heartbeat since
        extract = session.get(Extract, requested["id"])
        extract.status, extract.attempts, extract.heartbeat_at = "running", 1, stale
    assert extracts.recover(database) == 1
    world.run()
    done = world.http.get(f"/api/v1/extracts/{requested['id']}", headers=world.demander).json()
    assert done["status"] == "done" and done["manifest"]["rows"] == 40
    visible = [path.name for path in folder.iterdir() if not path.name.startswith(".")]
    assert visible == [f"{requested['id']}.parquet"]


def test_an_extract_interrupted_too_often_fails_with_a_reason(world, database):
    requested = world.request(format="csv").json()
    with database.transaction() as session:
        extract = session.get(Extract, requested["id"])
        extract.status, extract.attempts = "running", 3
        extract.heartbeat_at = datetime.now(UTC) - timedelta(minutes=5)
    extracts.recover(database)
    failed = world.http.get(f"/api/v1/extracts/{requested['id']}", headers=world.demander).json()
    assert failed["status"] == "failed" and "interrupted 3 times" in failed["error"]
    assert failed["download_url"] is None


def test_only_the_grants_department_may_request_and_only_for_extract_grants(world, factory, app):
    assert world.request(headers=world.stranger, format="csv").status_code == 404  # another department's grant: as none at all
    assert world.request(headers=world.manager, format="csv").status_code == 403
    assert world.request(format="xlsx").status_code == 422
    extract = world.done(format="csv")
    world.http.get(extract["download_url"], headers=world.demander)
    app.state.ledger.flush()
    with world.database.engine.connect() as connection:
        lines = connection.execute(text("SELECT kind, rows, department_code FROM access_log")).all()
    assert [tuple(line) for line in lines] == [("extract", 40, "CAB")]
    with world.database.engine.connect() as connection:
        audited = connection.execute(text("SELECT action FROM audit_entries WHERE subject = :s ORDER BY seq"),
                                     {"s": f"extract:{extract['id']}"}).scalars().all()
    assert audited == ["extract.created", "extract.downloaded"]


def test_a_citizen_sees_the_extracts_that_held_their_row(world, factory, app):
    extract = world.done(format="parquet")
    world.http.get(extract["download_url"], headers=world.demander)
    app.state.ledger.flush()
    portal = factory.caller("DATA", "citizen_portal")
    inside, outside = world.expected()[0]["citizen_id"], None
    for row in _citizens(80):
        if row["district"] == "03":
            outside = row["citizen_id"]
            break
    seen = world.http.get(f"/api/v1/citizens/{inside}/access-log", headers=portal).json()["entries"]
    assert [(entry["kind"], entry["department"], entry["grant_id"]) for entry in seen] == [("extract", "CAB", world.grant_id)]
    assert world.http.get(f"/api/v1/citizens/{outside}/access-log", headers=portal).json()["entries"] == []
    assert world.http.get(f"/api/v1/citizens/{inside}/access-log", headers=factory.caller("DATA", "admin")).status_code == 403


def test_a_citizen_added_in_a_later_version_is_not_in_an_earlier_extract(world, factory, app):
    extract = world.done(format="csv")
    world.http.get(extract["download_url"], headers=world.demander)
    app.state.ledger.flush()
    citizens = _citizens(120)  # version 2: forty more citizens, ten of them in granted district 01
    newcomer = next(row["citizen_id"] for row in citizens[80:] if row["district"] == "01")
    assert DirectoryFactory(factory).upload("PSB-HOUSEHOLD", _csv(citizens)).status_code == 201
    portal = factory.caller("DATA", "citizen_portal")
    assert world.http.get(f"/api/v1/citizens/{newcomer}/access-log", headers=portal).json()["entries"] == []
    second = world.done(format="csv")  # made from version 2, which holds the newcomer
    assert second["manifest"]["version"] == 2
    world.http.get(second["download_url"], headers=world.demander)
    app.state.ledger.flush()
    seen = world.http.get(f"/api/v1/citizens/{newcomer}/access-log", headers=portal).json()["entries"]
    assert [(entry["kind"], entry["grant_id"]) for entry in seen] == [("extract", world.grant_id)]


def test_a_request_wakes_the_extract_builder(world, app):
    woken = []
    app.state.jobs.wake = woken.append
    requested = world.request(format="parquet")
    assert requested.status_code == 202
    assert woken == ["extracts"]
    refused = world.request(format="parquet", headers=world.stranger)
    assert refused.status_code == 404 and woken == ["extracts"]  # nothing queued, nothing to wake
