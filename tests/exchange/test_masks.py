"""Masks: sensitive items disguised the same way in interfaces and extracts."""

from __future__ import annotations

import hashlib
import io
from datetime import date, timedelta

import pyarrow.parquet as pq
import pytest

from exchange.extracts import service as extracts
from govshare import storage
from govshare.keys import KeyStore
from tests.exchange.test_interfaces import _citizens, _csv
from tests.factories import DirectoryFactory

MASKS = {"name": {"keep_first": 1}, "citizen_id": {"keep_last": 4}, "birth_date": "year_only", "district": "keyed_hash"}


class Masked:
    def __init__(self, client, factory, database, settings) -> None:
        self.http, self.database, self.settings = client, database, settings
        directory = DirectoryFactory(factory)
        directory.dataset("PSB-HOUSEHOLD", "PSB", share_type="unconditional")
        self.rows = _citizens(12)
        assert directory.upload("PSB-HOUSEHOLD", _csv(self.rows)).status_code == 201
        self.demander, self.manager = factory.caller("CAB", "demander"), factory.caller("DATA", "manager")
        self.service = factory.caller("CAB", "service")
        self.grants = {}
        for delivery in ("interface", "extract"):
            body = {"dataset": "PSB-HOUSEHOLD", "service_item": "pension-eligibility", "basis": "Pension Regulation art. 3",
                    "items": ["citizen_id", "name", "district", "birth_date"], "delivery": delivery,
                    "purpose": "check age without reading identities",
                    "period": {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=30)).isoformat()}}
            application = client.post("/api/v1/applications", json=body, headers=self.demander).json()
            self.application_id = application["id"]
            decided = client.post(f"/api/v1/applications/{application['id']}/decision",
                                  json={"decision": "approve", "masks": MASKS}, headers=self.manager)
            assert decided.status_code == 200, decided.text
            self.grants[delivery] = decided.json()["grant_id"]


@pytest.fixture
def world(client, factory, database, settings) -> Masked:
    return Masked(client, factory, database, settings)


def _expected(row: dict, token) -> dict:
    return {"citizen_id": "*" * 14 + row["citizen_id"][-4:], "name": row["name"][0] + "*" * (len(row["name"]) - 1),
            "district": token(row["district"]), "birth_date": int(row["birth_date"][:4])}


def _interface_records(world) -> dict[str, dict]:
    """The grant's records through the paged interface, by the last four characters of the (masked) ID.

    Not by lookups: with the key masked, lookups by key are refused (tests/exchange/test_key_lookups.py).
    """
    body = world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"limit": 100}, headers=world.service).json()
    return {record["citizen_id"][-4:]: record for record in body["records"]}


def test_interfaces_and_extracts_mask_alike(world):
    person = world.rows[3]
    served = _interface_records(world)
    assert len(served) == len(world.rows)
    record = served[person["citizen_id"][-4:]]
    assert record["citizen_id"] == "*" * 14 + person["citizen_id"][-4:]
    assert record["name"] == "C" + "*" * (len(person["name"]) - 1)
    assert record["birth_date"] == int(person["birth_date"][:4])
    assert record["district"] != person["district"]
    assert len(record["district"]) == 64 and all(char in "0123456789abcdef" for char in record["district"])
    # the keyed hash links: same district, same token; different district, different token
    same = [row for row in world.rows if row["district"] == person["district"] and row is not person][0]
    other = [row for row in world.rows if row["district"] != person["district"]][0]
    token_of = {row["citizen_id"]: served[row["citizen_id"][-4:]]["district"] for row in (person, same, other)}
    assert token_of[same["citizen_id"]] == record["district"] != token_of[other["citizen_id"]]
    assert record["district"] != hashlib.sha256(person["district"].encode()).hexdigest()  # keyed, not a plain hash

    requested = world.http.post(f"/api/v1/grants/{world.grants['extract']}/extracts", json={"format": "parquet"}, headers=world.demander).json()
    extracts.run_pending(world.database, store=storage.for_settings(world.settings), keystore=KeyStore(world.settings.resolved_keys_dir))
    extract = world.http.get(f"/api/v1/extracts/{requested['id']}", headers=world.demander).json()
    assert extract["manifest"]["masks"] == MASKS
    table = pq.read_table(io.BytesIO(world.http.get(extract["download_url"], headers=world.demander).content)).to_pylist()
    by_tail = {row["citizen_id"][-4:]: row for row in table}
    tokens = {row["district"]: token_of[row["citizen_id"]] for row in (person, same, other)}
    for row in (person, same, other):
        assert by_tail[row["citizen_id"][-4:]] == _expected(row, tokens.get)


def test_a_masked_item_cannot_be_used_as_a_filter(world):
    refused = world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"district": "01"}, headers=world.service)
    assert refused.status_code == 422 and "district" in refused.json()["detail"]


@pytest.mark.parametrize(
    "masks",
    [{"religion": "null"}, {"birth_date": {"keep_first": 2}}, {"name": "year_only"}, {"name": {"keep_first": -1}}, {"name": "scramble"}],
)
def test_invalid_masks_are_refused(client, factory, masks):

    directory = DirectoryFactory(factory)
    directory.dataset("PSB-HOUSEHOLD", "PSB", share_type="unconditional")
    demander, manager = factory.caller("CAB", "demander"), factory.caller("DATA", "manager")
    body = {"dataset": "PSB-HOUSEHOLD", "service_item": "x", "basis": "y", "items": ["citizen_id", "name", "birth_date"],
            "delivery": "interface", "purpose": "z",
            "period": {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=30)).isoformat()}}
    application = client.post("/api/v1/applications", json=body, headers=demander).json()
    response = client.post(f"/api/v1/applications/{application['id']}/decision", json={"decision": "approve", "masks": masks},
                           headers=manager)
    assert response.status_code == 422, response.text
    assert client.get(f"/api/v1/applications/{application['id']}", headers=manager).json()["status"] == "submitted"

