"""Submit once: one service deposits what a citizen submitted, another pulls it under its grant."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.factories import DirectoryFactory, citizen_id

BABY = citizen_id("11010120260301001")
MOTHER = citizen_id("11010119900101002")
ITEMS = [
    {"name": "citizen_id", "type": "string", "description": "the newborn's ID", "sensitivity": "personal", "required": True},
    {"name": "name", "type": "string", "description": "the newborn's name", "sensitivity": "personal", "required": True},
    {"name": "birth_date", "type": "date", "description": "date of birth", "sensitivity": "personal", "required": True},
    {"name": "mother_id", "type": "string", "description": "the mother's ID", "sensitivity": "personal", "format": "citizen_id"},
]


class Intake:
    def __init__(self, client, factory) -> None:
        self.http = client
        directory = DirectoryFactory(factory)
        directory.dataset("HEALTH-BIRTH-INTAKE", "HEALTH", intake=True, share_type="unconditional", title="Births as registered",
                          domain="birth", lookup_key="citizen_id", items=ITEMS)
        self.hospital = factory.caller("HEALTH", "service")
        self.registry = factory.caller("CAB", "service")
        self.portal = factory.caller("DATA", "citizen_portal")
        demander, manager = factory.caller("CAB", "demander"), factory.caller("DATA", "manager")
        body = {"dataset": "HEALTH-BIRTH-INTAKE", "service_item": "household-registration-of-newborns",
                "basis": "Household Registration Regulation art. 7", "items": ["citizen_id", "name", "birth_date", "mother_id"],
                "justifications": {"name": "registered name", "birth_date": "registered date", "mother_id": "links to the household"},
                "delivery": "interface", "purpose": "register newborns without a paper birth certificate",
                "period": {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=100)).isoformat()}}
        application = client.post("/api/v1/applications", json=body, headers=demander).json()
        assert client.post(f"/api/v1/applications/{application['id']}/decision", json={"decision": "approve"},
                           headers=manager).json()["status"] == "approved"

    def deposit(self, records, headers=None, consent_ref="consent-2026-0001"):
        return self.http.post("/api/v1/exchange/HEALTH-BIRTH-INTAKE/records", json={"consent_ref": consent_ref, "records": records},
                              headers=headers or self.hospital)

    def pull(self, key):
        return self.http.get(f"/api/v1/exchange/HEALTH-BIRTH-INTAKE/records/{key}", headers=self.registry)


@pytest.fixture
def world(client, factory) -> Intake:
    return Intake(client, factory)


def test_a_deposit_is_pulled_by_another_departments_service(world):
    response = world.deposit([{"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01", "mother_id": MOTHER}])
    assert response.status_code == 201, response.text
    assert response.json() == {"dataset": "HEALTH-BIRTH-INTAKE", "deposited": 1, "keys": [BABY]}
    pulled = world.pull(BABY)
    assert pulled.status_code == 200, pulled.text
    assert pulled.json()["records"] == [{"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01", "mother_id": MOTHER}]
    assert world.pull(citizen_id("11010120260301019")).status_code == 404


def test_a_second_deposit_of_the_same_key_updates_it(world):
    world.deposit([{"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01"}])
    world.deposit([{"citizen_id": BABY, "name": "Li Ming", "birth_date": "2026-03-01", "mother_id": MOTHER}], consent_ref="consent-2")
    records = world.pull(BABY).json()["records"]
    assert records == [{"citizen_id": BABY, "name": "Li Ming", "birth_date": "2026-03-01", "mother_id": MOTHER}]
    page = world.http.get("/api/v1/exchange/HEALTH-BIRTH-INTAKE/records", headers=world.registry).json()
    assert [record["citizen_id"] for record in page["records"]] == [BABY]


def test_a_bad_record_refuses_the_whole_deposit_naming_row_and_item(world):
    wrong_check = BABY[:-1] + ("0" if BABY[-1] != "0" else "1")
    response = world.deposit([
        {"citizen_id": citizen_id("11010120260302003"), "name": "Wang Fang", "birth_date": "2026-03-02"},
        {"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01", "mother_id": wrong_check[:-1] + "5"},
    ])
    assert response.status_code == 422
    body = response.json()
    assert any(error.get("row") == 2 and error.get("column") == "mother_id" for error in body["errors"]), body
    assert world.pull(citizen_id("11010120260302003")).status_code == 404  # nothing of it was stored


def test_only_the_owning_departments_services_deposit_and_with_consent(world):
    record = [{"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01"}]
    assert world.deposit(record, headers=world.registry).status_code == 403
    assert world.deposit(record, consent_ref="").status_code == 422


def test_the_citizen_sees_the_deposit_and_the_pull(world, app):
    world.deposit([{"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01"}])
    world.pull(BABY)
    app.state.ledger.flush()
    entries = world.http.get(f"/api/v1/citizens/{BABY}/access-log", headers=world.portal).json()["entries"]
    assert [(entry["kind"], entry["department"]) for entry in entries] == [("lookup", "CAB"), ("deposit", "HEALTH")]
    assert entries[0]["service_item"] == "household-registration-of-newborns"
