"""Consent on the file paths: extracts and Delta Sharing hold only consenting citizens' rows (joined in DuckDB), a file
made before a withdrawal is served no more, and the citizen's log names the consent a file held their row under."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import httpx
import pyarrow.parquet as pq
import pytest

from exchange.extracts import service as extracts
from exchange.models import SharingFile
from govshare import storage
from govshare.keys import KeyStore
from tests.approvals.test_api import application_body
from tests.exchange.test_delta_sharing import app, port, server  # noqa: F401 (fixtures: the app served on a real port)
from tests.exchange.test_interfaces import _citizens, _csv
from tests.factories import DirectoryFactory


class Files:
    """PSB's household data with consent_required; CAB holds an extract grant on districts 01 and 02."""

    def __init__(self, client, factory, database, settings, *, explicit: bool = False) -> None:
        self.http, self.database, self.settings = client, database, settings
        directory = DirectoryFactory(factory)
        directory.dataset("PSB-HOUSEHOLD", "PSB", consent_required=True, **({"explicit_request": True} if explicit else {}))
        self.rows = _citizens(80)
        assert directory.upload("PSB-HOUSEHOLD", _csv(self.rows)).status_code == 201
        self.demander = factory.caller("CAB", "demander")
        self.manager = factory.caller("DATA", "manager")
        self.portal = factory.caller("DATA", "citizen_portal")
        body = application_body(delivery="extract", period={"start": date.today().isoformat(),
                                                            "end": (date.today() + timedelta(days=60)).isoformat()})
        application = client.post("/api/v1/applications", json=body, headers=self.demander).json()
        client.post(f"/api/v1/applications/{application['id']}/decision", json={"decision": "approve"}, headers=self.manager)
        self.grant_id = client.post(f"/api/v1/applications/{application['id']}/provider-decision", json={"decision": "approve"},
                                    headers=directory.provider("PSB")).json()["grant_id"]
        self.granted = [row["citizen_id"] for row in self.rows if row["district"] in ("01", "02")]

    def consent(self, citizen: str) -> int:
        answer = self.http.post(f"/api/v1/citizens/{citizen}/consents", headers=self.portal, json={
            "department": "CAB", "dataset": "PSB-HOUSEHOLD", "purpose": "statistics of marriages",
            "until": (date.today() + timedelta(days=10)).isoformat()})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def withdraw(self, citizen: str, consent_id: int) -> None:
        assert self.http.post(f"/api/v1/citizens/{citizen}/consents/{consent_id}/withdraw", headers=self.portal).status_code == 200

    def extract(self) -> dict:
        requested = self.http.post(f"/api/v1/grants/{self.grant_id}/extracts", json={"format": "parquet"}, headers=self.demander)
        assert requested.status_code == 202, requested.text
        extracts.run_pending(self.database, store=storage.for_settings(self.settings), keystore=KeyStore(self.settings.resolved_keys_dir))
        extract = self.http.get(f"/api/v1/extracts/{requested.json()['id']}", headers=self.demander).json()
        assert extract["status"] == "done", extract
        return extract

    def log(self, citizen: str) -> list[dict]:
        return self.http.get(f"/api/v1/citizens/{citizen}/access-log", headers=self.portal).json()["entries"]


@pytest.fixture
def files(client, factory, database, settings) -> Files:
    return Files(client, factory, database, settings)


def test_an_extract_holds_only_the_rows_of_citizens_who_consented_and_is_refused_after_a_withdrawal(files, app):
    alice, bob, carol = files.granted[:3]
    consents = {key: files.consent(key) for key in (alice, bob)}
    files.consent(files.rows[2]["citizen_id"])  # district 03: consented, but outside the grant
    extract = files.extract()
    assert extract["manifest"]["rows"] == 2
    download = files.http.get(extract["download_url"], headers=files.demander)
    assert download.status_code == 200
    assert sorted(pq.read_table(io.BytesIO(download.content)).column("citizen_id").to_pylist()) == sorted([alice, bob])
    app.state.ledger.flush()
    assert [(entry["kind"], entry["consent_id"]) for entry in files.log(alice)] == [("extract", consents[alice])]
    assert files.log(carol) == []  # in the grant's rows, but no consent: not in the file, not in their log
    files.withdraw(alice, consents[alice])
    refused = files.http.get(extract["download_url"], headers=files.demander)
    assert refused.status_code == 409 and refused.json()["type"] == "urn:govshare:problem:consent-lapsed"
    again = files.extract()  # a new extract leaves Alice out
    content = files.http.get(again["download_url"], headers=files.demander).content
    assert pq.read_table(io.BytesIO(content)).column("citizen_id").to_pylist() == [bob]


def test_an_extract_with_no_consent_at_all_is_empty(files):
    assert files.extract()["manifest"]["rows"] == 0


def test_an_explicit_request_dataset_is_not_extracted(client, factory, database, settings):
    explicit = Files(client, factory, database, settings, explicit=True)
    answer = client.post(f"/api/v1/grants/{explicit.grant_id}/extracts", json={"format": "parquet"}, headers=explicit.demander)
    assert answer.status_code == 403 and answer.json()["type"] == "urn:govshare:problem:explicit-request-required"


def _query(profile: dict, grant_id: int) -> list[dict]:
    answer = httpx.post(f"{profile['endpoint']}/shares/grant-{grant_id}/schemas/psb/tables/psb-household/query", json={},
                        headers={"Authorization": f"Bearer {profile['bearerToken']}"})
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def _shared_keys(lines: list[dict]) -> list[str]:
    [file] = [line["file"] for line in lines if "file" in line]
    content = httpx.get(file["url"]).content
    return sorted(pq.read_table(io.BytesIO(content)).column("citizen_id").to_pylist())


def test_delta_sharing_serves_only_consenting_citizens_and_a_withdrawal_holds_from_the_next_read(files, server, app):  # noqa: F811
    alice, bob = files.granted[:2]
    consents = {key: files.consent(key) for key in (alice, bob)}
    profile = files.http.get(f"/api/v1/grants/{files.grant_id}/sharing-profile", headers=files.demander).json()
    first = _query(profile, files.grant_id)
    assert _shared_keys(first) == sorted([alice, bob])
    [old_file] = [line["file"] for line in first if "file" in line]
    with files.database.transaction(write=False) as session:
        old_path = session.get(SharingFile, old_file["id"]).path
    store = storage.for_settings(files.settings)
    files.withdraw(alice, consents[alice])
    assert httpx.get(old_file["url"]).status_code == 403  # the file made under Alice's consent is served no more
    assert _shared_keys(_query(profile, files.grant_id)) == [bob]
    assert not store.exists(old_path)  # and, built again without her row, it is erased
    assert httpx.get(old_file["url"]).status_code == 404
    carol = files.granted[2]
    files.consent(carol)  # a new consent shows in the next read
    assert _shared_keys(_query(profile, files.grant_id)) == sorted([bob, carol])
    app.state.ledger.flush()
    alice_log = files.log(alice)
    assert [(entry["kind"], entry["consent_id"]) for entry in alice_log] == [("extract", consents[alice])]  # the first read only
    assert len(files.log(bob)) == 3
