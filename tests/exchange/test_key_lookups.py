"""Access by key needs the key itself, granted in the clear (issue 21 item 1).

A grant of ``[name, district]`` ("no identities") must not read a citizen's row by their
ID, and a grant of the ID under a keyed hash must not confirm which clear ID a hash
stands for. Every access by key answers 403 then: a lookup, a page filtered by the key.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text

from exchange.sharing import service as sharing
from tests.exchange.test_interfaces import _citizens, _csv
from tests.factories import DirectoryFactory

REFUSED = "urn:govshare:problem:key-lookup-not-granted"


class World:
    """PSB's household data (unconditional); CAB files interface applications for the items and masks given."""

    def __init__(self, client, factory) -> None:
        self.http = client
        directory = DirectoryFactory(factory)
        directory.dataset("PSB-HOUSEHOLD", "PSB", share_type="unconditional")
        self.rows = _citizens(12)
        assert directory.upload("PSB-HOUSEHOLD", _csv(self.rows)).status_code == 201
        self.demander, self.manager = factory.caller("CAB", "demander"), factory.caller("DATA", "manager")
        self.service = factory.caller("CAB", "service")

    def grant(self, items: list[str], masks: dict | None = None) -> dict:
        """An approved interface application (as the manager then reads it) for ``items`` under ``masks``."""
        body = {"dataset": "PSB-HOUSEHOLD", "service_item": "statistics", "basis": "Statistics Law art. 7",
                "items": items, "delivery": "interface", "purpose": "aggregate statistics, no identities",
                "period": {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=30)).isoformat()}}
        application = self.http.post("/api/v1/applications", json=body, headers=self.demander)
        assert application.status_code == 201, application.text
        decision = {"decision": "approve", **({"masks": masks} if masks else {})}
        decided = self.http.post(f"/api/v1/applications/{application.json()['id']}/decision", json=decision, headers=self.manager)
        assert decided.status_code == 200, decided.text
        return self.http.get(f"/api/v1/applications/{application.json()['id']}", headers=self.manager).json()

    def lookup(self, key: str):
        return self.http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{key}", headers=self.service)


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def _refused(response, grant_id: int) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == REFUSED
    assert body["detail"] == (f"grant {grant_id} does not include the lookup key citizen_id unmasked; "
                              "lookups by key are not allowed")
    assert "Citizen" not in response.text and "district\":" not in response.text


def test_a_grant_without_the_key_cannot_look_up_by_key(world):
    application = world.grant(["name", "district"])
    person = world.rows[1]
    _refused(world.lookup(person["citizen_id"]), application["grant_id"])
    # a key that does not exist is refused the same way: the refusal says nothing about the data
    _refused(world.lookup("110101199001019999"), application["grant_id"])
    # what the grant does give still flows: a page without a key filter
    page = world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"limit": 100}, headers=world.service)
    assert page.status_code == 200
    assert sorted(record["name"] for record in page.json()["records"]) == sorted(row["name"] for row in world.rows)
    assert all(set(record) == {"name", "district"} for record in page.json()["records"])


def test_a_grant_with_the_key_under_a_keyed_hash_cannot_look_up_by_key(world):
    application = world.grant(["citizen_id", "district"], masks={"citizen_id": "keyed_hash"})
    _refused(world.lookup(world.rows[1]["citizen_id"]), application["grant_id"])


def test_a_page_filtered_by_a_key_not_granted_in_the_clear_is_refused(world):
    application = world.grant(["citizen_id", "district"], masks={"citizen_id": {"keep_last": 4}})
    response = world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"citizen_id": world.rows[1]["citizen_id"]},
                              headers=world.service)
    _refused(response, application["grant_id"])


def test_a_page_filtered_by_a_key_not_granted_is_refused(world):
    application = world.grant(["name", "district"])
    response = world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"citizen_id": world.rows[1]["citizen_id"]},
                              headers=world.service)
    _refused(response, application["grant_id"])


def test_a_refused_lookup_is_on_the_ledger(world, app, database):
    application = world.grant(["name", "district"])
    world.lookup(world.rows[1]["citizen_id"])
    app.state.ledger.flush()
    with database.engine.connect() as connection:
        lines = connection.execute(text("SELECT kind, rows, status, grant_id FROM access_log ORDER BY id")).all()
    assert [tuple(line) for line in lines] == [("lookup", 0, 403, application["grant_id"])]


def test_the_key_granted_in_the_clear_still_looks_up(world):
    world.grant(["citizen_id", "district"], masks={"district": "keyed_hash"})
    person = world.rows[1]
    response = world.lookup(person["citizen_id"])
    assert response.status_code == 200, response.text
    assert response.json()["records"][0]["citizen_id"] == person["citizen_id"]


def test_the_inspection_flags_interface_applications_without_the_key_in_the_clear(world):
    findings = world.grant(["name", "district"])["inspection"]["findings"]
    assert [finding["rule"] for finding in findings if "citizen_id" in finding["message"]] == ["lookup-key"]
    masked = world.grant(["citizen_id", "district"], masks={"citizen_id": "keyed_hash"})["inspection"]["findings"]
    assert any(finding["rule"] == "lookup-key" and "masked" in finding["message"] for finding in masked)
    clear = world.grant(["citizen_id", "district"])["inspection"]["findings"]
    assert not any(finding["rule"] == "lookup-key" for finding in clear)


def test_delta_sharing_hints_on_a_masked_column_never_drop_a_file():
    # The file's statistics of a masked key are of masked values: a clear ID tested against them
    # (a file dropped or kept) would probe clear IDs against what the grant disguises.
    stats = {"numRecords": 3, "nullCount": {"citizen_id": 0}, "minValues": {"citizen_id": "aaaa"},
             "maxValues": {"citizen_id": "ffff"}}
    hint = {"op": "equal", "children": [{"op": "column", "name": "citizen_id", "valueType": "string"},
                                        {"op": "literal", "value": "110101199001010011", "valueType": "string"}]}
    assert sharing.may_match(hint, stats) is False  # the statistics alone would drop it
    assert sharing.may_match(hint, stats, hidden={"citizen_id"}) is True
    assert sharing.may_match({"op": "and", "children": [hint]}, stats, hidden={"citizen_id"}) is True
