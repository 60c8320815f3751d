"""Consent: a consent_required dataset serves a citizen's row only to a department holding their active consent,
checked on every delivery (lookups, batches, pages, Arrow), withdrawn with effect on the next call, named in the
citizen's access log."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa
import pytest
from sqlalchemy import text

from tests.approvals.test_api import application_body
from tests.exchange.test_interfaces import _citizens, _csv
from tests.factories import DirectoryFactory, citizen_id, dataset_document

ARROW = "application/vnd.apache.arrow.stream"


class ConsentWorld:
    """PSB's household data registered with consent_required; CAB holds an interface grant (districts 01 and 02)."""

    def __init__(self, client, factory, tmp_path, *, code: str = "PSB-HOUSEHOLD", **flags) -> None:
        self.http, self.code = client, code
        directory = DirectoryFactory(factory)
        directory.dataset(code, "PSB", **({"consent_required": True} | flags))
        self.rows = _citizens()
        assert directory.upload(code, _csv(self.rows)).status_code == 201
        self.provider = directory.provider("PSB")
        self.demander = factory.caller("CAB", "demander")
        self.manager = factory.caller("DATA", "manager")
        self.service = factory.caller("CAB", "service")
        self.other_service = factory.caller("EDU", "service")
        self.other_demander = factory.caller("EDU", "demander")
        self.portal = factory.caller("DATA", "citizen_portal")
        self.grant_id = self.grant(self.demander)
        # in the grant's rows (districts 01, 02): rows 0, 1, 4, 5, ...
        self.alice, self.bob, self.carol = (self.rows[i]["citizen_id"] for i in (0, 1, 4))
        self.outside = self.rows[2]["citizen_id"]  # district 03

    def grant(self, demander, masks: dict | None = None, **changes) -> int:
        period = {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=90)).isoformat()}
        application = self.http.post("/api/v1/applications", json=application_body(dataset=self.code, period=period, **changes),
                                     headers=demander).json()
        self.http.post(f"/api/v1/applications/{application['id']}/decision",
                       json={"decision": "approve", **({"masks": masks} if masks else {})}, headers=self.manager)
        signed = self.http.post(f"/api/v1/applications/{application['id']}/provider-decision", json={"decision": "approve"},
                                headers=self.provider).json()
        assert signed["grant_id"] is not None, signed
        return signed["grant_id"]

    def consent(self, citizen: str, department: str = "CAB", **changes):
        body = {"department": department, "dataset": self.code, "purpose": "marriage registration without paper proof",
                "until": (date.today() + timedelta(days=30)).isoformat()} | changes
        return self.http.post(f"/api/v1/citizens/{citizen}/consents", json=body, headers=self.portal)

    def withdraw(self, citizen: str, consent_id: int, headers=None):
        return self.http.post(f"/api/v1/citizens/{citizen}/consents/{consent_id}/withdraw",
                              headers=self.portal if headers is None else headers)

    def lookup(self, key: str, headers=None):
        return self.http.get(f"/api/v1/exchange/{self.code}/records/{key}", headers=self.service if headers is None else headers)

    def batch(self, keys: list[str]):
        return self.http.post(f"/api/v1/exchange/{self.code}/records:batch", json={"keys": keys}, headers=self.service)

    def page_keys(self, **params) -> list[str]:
        keys, cursor = [], None
        while True:
            query = dict(params, limit=7) | ({"cursor": cursor} if cursor else {})
            response = self.http.get(f"/api/v1/exchange/{self.code}/records", params=query, headers=self.service)
            assert response.status_code == 200, response.text
            keys += [record["citizen_id"] for record in response.json()["records"]]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return keys

    def arrow_keys(self) -> list[str]:
        response = self.http.get(f"/api/v1/exchange/{self.code}/records", headers={**self.service, "Accept": ARROW})
        assert response.status_code == 200, response.text
        table = pa.ipc.open_stream(response.content).read_all()
        assert "__govshare_key" not in table.column_names
        return table.column("citizen_id").to_pylist()


@pytest.fixture
def world(client, factory, tmp_path) -> ConsentWorld:
    return ConsentWorld(client, factory, tmp_path)


def test_a_lookup_serves_a_citizen_only_under_their_active_consent_and_a_withdrawal_holds_from_the_next_call(world):
    assert world.lookup(world.alice).status_code == 404  # no consent yet: as a key outside the grant
    given = world.consent(world.alice)
    assert given.status_code == 201, given.text
    assert given.json()["status"] == "active" and isinstance(given.json()["id"], int)
    served = world.lookup(world.alice)
    assert served.status_code == 200 and [r["citizen_id"] for r in served.json()["records"]] == [world.alice]
    assert world.lookup(world.bob).status_code == 404  # another citizen's consent is not Alice's
    withdrawn = world.withdraw(world.alice, given.json()["id"])
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    assert world.lookup(world.alice).status_code == 404  # the very next call


def test_a_lookup_without_consent_says_no_more_than_a_key_that_does_not_exist(world):
    nowhere = citizen_id("99999919990101999")
    answers = [world.lookup(key) for key in (world.alice, nowhere)]
    assert [answer.status_code for answer in answers] == [404, 404]
    first, second = (answer.json() for answer in answers)
    assert first["type"] == second["type"] == "urn:govshare:problem:record-not-found"
    assert first["detail"].replace(world.alice, "K") == second["detail"].replace(nowhere, "K")


def test_a_consent_is_for_one_department_and_one_dataset(world, client, factory, tmp_path):
    assert world.consent(world.alice, department="EDU").status_code == 201
    assert world.lookup(world.alice).status_code == 404  # EDU's consent does not serve CAB
    ConsentWorld(client, factory, tmp_path, code="PSB-OTHER")  # another consent dataset, CAB granted on it too
    other = world.http.post(f"/api/v1/citizens/{world.alice}/consents", headers=world.portal, json={
        "department": "CAB", "dataset": "PSB-OTHER", "purpose": "p", "until": (date.today() + timedelta(days=3)).isoformat()})
    assert other.status_code == 201
    assert world.lookup(world.alice).status_code == 404  # a consent on PSB-OTHER does not serve PSB-HOUSEHOLD
    assert world.http.get(f"/api/v1/exchange/PSB-OTHER/records/{world.alice}", headers=world.service).status_code == 200


def test_a_consent_past_its_last_day_no_longer_serves(world, database):
    consent_id = world.consent(world.alice).json()["id"]
    assert world.lookup(world.alice).status_code == 200
    with database.transaction() as session:  # its last day was yesterday
        session.execute(text("UPDATE consents SET valid_until = :day WHERE id = :id"),
                        {"day": date.today() - timedelta(days=1), "id": consent_id})
    assert world.lookup(world.alice).status_code == 404
    listed = world.http.get(f"/api/v1/citizens/{world.alice}/consents", headers=world.portal).json()["items"]
    assert [(item["id"], item["status"]) for item in listed] == [(consent_id, "expired")]


def test_a_batch_lists_keys_without_consent_as_missing(world):
    world.consent(world.alice)
    world.consent(world.bob)
    world.withdraw(world.bob, world.consent(world.bob).json()["id"])  # Bob's first consent still stands
    answer = world.batch([world.alice, world.bob, world.carol, world.outside])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert sorted(body["records"]) == sorted([world.alice, world.bob])
    assert sorted(body["missing"]) == sorted([world.carol, world.outside])


def test_pages_and_arrow_streams_leave_out_the_rows_of_citizens_without_consent(world):
    assert world.page_keys() == [] and world.arrow_keys() == []
    consented = [world.rows[i]["citizen_id"] for i in (0, 1, 4, 5, 9, 13, 16, 17, 20, 21)]  # districts 01 and 02
    ids = {key: world.consent(key).json()["id"] for key in consented}
    world.consent(world.outside)  # consented, but outside the grant's rows: still left out
    assert world.page_keys() == consented
    assert world.arrow_keys() == consented
    assert world.page_keys(citizen_id=world.alice) == [world.alice]  # a page of one key
    world.withdraw(world.alice, ids[world.alice])
    assert world.page_keys() == consented[1:] and world.arrow_keys() == consented[1:]
    assert world.page_keys(citizen_id=world.alice) == []
    assert world.page_keys(district="02") == [key for key in consented[1:] if key in {r["citizen_id"] for r in world.rows
                                                                                      if r["district"] == "02"}]


def test_a_key_cannot_be_smuggled_into_the_query_through_the_consented_keys(world):
    """The consented keys are data joined in DuckDB, never text in the SQL: a citizen ID full of SQL changes nothing."""
    hostile = "1' OR '1'='1"
    assert world.consent(hostile).status_code == 201
    assert world.page_keys() == [] and world.arrow_keys() == []


def test_datasets_without_consent_required_are_served_as_before(client, factory, tmp_path):
    plain = ConsentWorld(client, factory, tmp_path, consent_required=False)
    assert plain.lookup(plain.alice).status_code == 200
    refused = plain.consent(plain.alice)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("dataset:")


def test_the_citizens_access_log_names_the_consent_each_delivery_was_made_under(world, app):
    alice_consent = world.consent(world.alice).json()["id"]
    bob_consent = world.consent(world.bob).json()["id"]
    assert world.lookup(world.alice).status_code == 200
    assert world.batch([world.bob]).status_code == 200
    world.page_keys()
    world.arrow_keys()
    app.state.ledger.flush()
    for citizen, consent_id in ((world.alice, alice_consent), (world.bob, bob_consent)):
        log = world.http.get(f"/api/v1/citizens/{citizen}/access-log", headers=world.portal).json()["entries"]
        assert sorted(entry["kind"] for entry in log) == ["lookup", "query", "stream"]
        assert {entry["consent_id"] for entry in log} == {consent_id}


def test_consents_are_listed_newest_first_for_that_citizen_only(world):
    first = world.consent(world.alice).json()["id"]
    second = world.consent(world.alice, department="EDU").json()["id"]
    world.consent(world.bob)
    listed = world.http.get(f"/api/v1/citizens/{world.alice}/consents", headers=world.portal)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [item["id"] for item in items] == [second, first]
    assert {item["citizen_id"] for item in items} == {world.alice}
    assert set(items[0]) >= {"id", "department", "dataset", "purpose", "until", "status"}


# --- misuse ---


@pytest.mark.parametrize("changes, field", [
    ({"department": "NOPE"}, "department"),
    ({"dataset": "NO-SUCH-DATASET"}, "dataset"),
    ({"until": (date.today() - timedelta(days=1)).isoformat()}, "until"),
    ({"until": "tomorrow"}, "until"),
    ({"purpose": ""}, "purpose"),
    ({"purpose": "x" * 2001}, "purpose"),
    ({"department": "C" * 33}, "department"),
    ({"dataset": "D" * 65}, "dataset"),
    ({"extra": "field"}, "extra"),
])
def test_a_consent_with_bad_input_is_a_422_naming_the_field_and_records_nothing(world, changes, field):
    answer = world.consent(world.alice, **changes)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["detail"]
    assert world.http.get(f"/api/v1/citizens/{world.alice}/consents", headers=world.portal).json()["items"] == []


def test_a_consent_whose_body_names_another_citizen_than_the_path_is_refused(world):
    answer = world.consent(world.alice, citizen_id=world.bob)
    assert answer.status_code == 422 and answer.json()["detail"].startswith("citizen_id:")
    assert world.consent(world.alice, citizen_id=world.alice).status_code == 201
    assert world.http.get(f"/api/v1/citizens/{world.bob}/consents", headers=world.portal).json()["items"] == []


def test_an_oversized_citizen_id_in_the_path_is_a_422(world):
    assert world.consent("1" * 65).status_code == 422
    assert world.http.get(f"/api/v1/citizens/{'1' * 65}/consents", headers=world.portal).status_code == 422


def test_withdrawing_another_citizens_consent_is_a_404_and_changes_nothing(world):
    consent_id = world.consent(world.alice).json()["id"]
    assert world.withdraw(world.bob, consent_id).status_code == 404
    assert world.withdraw(world.bob, 999999).status_code == 404
    assert world.lookup(world.alice).status_code == 200
    again = [world.withdraw(world.alice, consent_id) for _ in range(2)]  # withdrawing twice changes nothing more
    assert [answer.json()["status"] for answer in again] == ["withdrawn", "withdrawn"]
    assert again[0].json()["withdrawn_at"] == again[1].json()["withdrawn_at"]


@pytest.mark.parametrize("role", ["service", "demander", "provider", "manager", "admin"])
def test_only_the_citizen_portal_records_lists_or_withdraws_consents(world, factory, role):
    consent_id = world.consent(world.alice).json()["id"]
    headers = factory.caller("CAB", role)
    body = {"department": "CAB", "dataset": world.code, "purpose": "p", "until": date.today().isoformat()}
    assert world.http.post(f"/api/v1/citizens/{world.alice}/consents", json=body, headers=headers).status_code == 403
    assert world.http.get(f"/api/v1/citizens/{world.alice}/consents", headers=headers).status_code == 403
    assert world.withdraw(world.alice, consent_id, headers=headers).status_code == 403
    assert world.lookup(world.alice).status_code == 200


def test_a_consent_dataset_needs_a_lookup_key(client, factory):
    directory = DirectoryFactory(factory)
    for flag in ("consent_required", "explicit_request"):
        document = dataset_document("PSB-NOKEY", "PSB", **{flag: True})
        del document["lookup_key"]
        answer = client.post("/api/v1/datasets", headers=directory.provider("PSB"), json=document)
        assert answer.status_code == 422 and answer.json()["detail"].startswith("lookup_key:"), answer.text
