"""A new version that drops an item a live grant uses (issue 21 item 7d).

The grant can no longer be served as approved: every delivery under it answers a clear
409 naming the version, the item and the grant (not a DuckDB error and a 500), and the
provider is told at upload which live grants use what the version dropped.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tests.exchange.test_interfaces import _citizens
from tests.factories import DirectoryFactory, dataset_document

OUTDATED = "urn:govshare:problem:grant-outdated"


def _csv_without_name(rows: list[dict]) -> bytes:
    lines = ["citizen_id,district,birth_date"] + [f"{r['citizen_id']},{r['district']},{r['birth_date']}" for r in rows]
    return ("\n".join(lines) + "\n").encode()


def _csv(rows: list[dict]) -> bytes:
    lines = ["citizen_id,name,district,birth_date"] + [f"{r['citizen_id']},{r['name']},{r['district']},{r['birth_date']}" for r in rows]
    return ("\n".join(lines) + "\n").encode()


class World:
    """PSB's household data; CAB holds interface and extract grants using ``name``, and one that does not."""

    def __init__(self, client, factory) -> None:
        self.http = client
        self.directory = DirectoryFactory(factory)
        self.directory.dataset("PSB-HOUSEHOLD", "PSB", share_type="unconditional")
        self.rows = _citizens(12)
        assert self.directory.upload("PSB-HOUSEHOLD", _csv(self.rows)).status_code == 201
        self.demander, self.manager = factory.caller("CAB", "demander"), factory.caller("DATA", "manager")
        self.service = factory.caller("CAB", "service")
        self.other_service = factory.caller("EDU", "service")
        self.with_name = self.grant(self.demander, ["citizen_id", "name", "district"], "interface")
        self.extract = self.grant(self.demander, ["citizen_id", "name"], "extract")
        # EDU's grant leaves ``name`` out but filters on birth_date, which survives
        self.without_name = self.grant(factory.caller("EDU", "demander"), ["citizen_id", "district"], "interface",
                                       row_filter={"birth_date": {"ge": "1990-01-01"}})

    def grant(self, demander, items: list[str], delivery: str, **changes) -> int:
        body = {"dataset": "PSB-HOUSEHOLD", "service_item": "checks", "basis": "Regulation art. 1", "items": items,
                "delivery": delivery, "purpose": "checks",
                "period": {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=30)).isoformat()}, **changes}
        application = self.http.post("/api/v1/applications", json=body, headers=demander)
        assert application.status_code == 201, application.text
        decided = self.http.post(f"/api/v1/applications/{application.json()['id']}/decision", json={"decision": "approve"},
                                 headers=self.manager)
        assert decided.status_code == 200, decided.text
        return decided.json()["grant_id"]

    def drop_name(self):
        """The provider removes ``name`` from the description, then uploads data without it."""
        document = dataset_document("PSB-HOUSEHOLD", "PSB", share_type="unconditional")
        document["items"] = [item for item in document["items"] if item["name"] != "name"]
        replaced = self.http.put("/api/v1/datasets/PSB-HOUSEHOLD", json=document, headers=self.directory.provider("PSB"))
        assert replaced.status_code == 200, replaced.text
        return self.directory.upload("PSB-HOUSEHOLD", _csv_without_name(self.rows))


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def _outdated(response, grant_id: int) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == OUTDATED
    assert response.json()["detail"] == f"dataset version 2 no longer has item name granted by grant {grant_id}"


def test_the_upload_warns_of_live_grants_using_a_dropped_item(world):
    uploaded = world.drop_name()
    assert uploaded.status_code == 201, uploaded.text
    warnings = uploaded.json()["warnings"]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"grant {world.with_name} (department CAB) uses item name")
    assert warnings[1].startswith(f"grant {world.extract} (department CAB) uses item name")
    assert not any(f"grant {world.without_name} " in warning for warning in warnings)
    # revoked grants are no longer live: not warned about
    assert world.http.post(f"/api/v1/grants/{world.extract}/revoke", json={"reason": "ended"}, headers=world.manager).status_code == 200
    again = world.directory.upload("PSB-HOUSEHOLD", _csv_without_name(world.rows)).json()["warnings"]
    assert [warning.split(" uses")[0] for warning in again] == [f"grant {world.with_name} (department CAB)"]


def test_every_delivery_under_a_grant_using_a_dropped_item_is_a_409(world):
    person = world.rows[1]["citizen_id"]
    assert world.http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{person}", headers=world.service).status_code == 200
    first_page = world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"limit": 2}, headers=world.service).json()
    assert world.drop_name().status_code == 201
    _outdated(world.http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{person}", headers=world.service), world.with_name)
    _outdated(world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", headers=world.service), world.with_name)
    _outdated(world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records",
                             headers={**world.service, "Accept": "application/vnd.apache.arrow.stream"}), world.with_name)
    # a cursor of version 1 still reads version 1, which has the item
    older = world.http.get("/api/v1/exchange/PSB-HOUSEHOLD/records", params={"limit": 2, "cursor": first_page["next_cursor"]},
                           headers=world.service)
    assert older.status_code == 200 and all("name" in record for record in older.json()["records"])
    _outdated(world.http.post(f"/api/v1/grants/{world.extract}/extracts", json={"format": "csv"}, headers=world.demander),
              world.extract)
    # an extract of version 1 still may be had
    assert world.http.post(f"/api/v1/grants/{world.extract}/extracts", json={"format": "csv", "version": 1},
                           headers=world.demander).status_code == 202
    profile = world.http.get(f"/api/v1/grants/{world.extract}/sharing-profile", headers=world.demander).json()
    shared = world.http.post(f"/delta-sharing/shares/grant-{world.extract}/schemas/psb/tables/psb-household/query", json={},
                             headers={"Authorization": f"Bearer {profile['bearerToken']}"})
    assert shared.status_code == 409, shared.text
    assert f"dataset version 2 no longer has item name granted by grant {world.extract}" in shared.text


def test_a_grant_not_using_the_dropped_item_is_served_as_before(world):
    assert world.drop_name().status_code == 201
    person = world.rows[1]
    answer = world.http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{person['citizen_id']}", headers=world.other_service)
    assert answer.status_code == 200, answer.text
    assert answer.json()["records"] == [{"citizen_id": person["citizen_id"], "district": person["district"]}]


def test_a_dropped_item_named_by_the_row_filter_is_a_409_too(world):
    document = dataset_document("PSB-HOUSEHOLD", "PSB", share_type="unconditional")
    document["items"] = [item for item in document["items"] if item["name"] != "birth_date"]
    assert world.http.put("/api/v1/datasets/PSB-HOUSEHOLD", json=document, headers=world.directory.provider("PSB")).status_code == 200
    lines = ["citizen_id,name,district"] + [f"{r['citizen_id']},{r['name']},{r['district']}" for r in world.rows]
    uploaded = world.directory.upload("PSB-HOUSEHOLD", ("\n".join(lines) + "\n").encode())
    assert uploaded.status_code == 201, uploaded.text
    assert [warning.split(" uses")[0] for warning in uploaded.json()["warnings"]] == [f"grant {world.without_name} (department EDU)"]
    refused = world.http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{world.rows[1]['citizen_id']}", headers=world.other_service)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == f"dataset version 2 no longer has item birth_date granted by grant {world.without_name}"
