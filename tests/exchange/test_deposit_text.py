"""A deposit holding text no record store can keep is refused by field, changing nothing (issue 21 item 7)."""

from __future__ import annotations

import json

from tests.exchange.test_intake import BABY, world  # noqa: F401 (the fixture)


def _raw_deposit(world, body: str):
    # JSON's \ud800 escape: a lone surrogate, which no UTF-8 encoder (httpx's included) can send as text.
    return world.http.post("/api/v1/exchange/HEALTH-BIRTH-INTAKE/records", content=body.encode(),
                           headers={**world.hospital, "Content-Type": "application/json"})


def test_a_lone_surrogate_in_a_record_is_refused_naming_row_and_item(world):  # noqa: F811
    first = {"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01"}
    body = json.dumps({"consent_ref": "consent-1", "records": [first, {**first, "name": "@@"}]}).replace("@@", "Li \\ud800")
    response = _raw_deposit(world, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["field"] == "records[1].name"
    assert "records[1].name" in problem["detail"] and "surrogate" in problem["detail"]
    assert world.pull(BABY).status_code == 404  # nothing was stored


def test_a_lone_surrogate_in_the_consent_or_an_item_name_is_refused(world):  # noqa: F811
    record = {"citizen_id": BABY, "name": "Li Xiaoming", "birth_date": "2026-03-01"}
    in_consent = json.dumps({"consent_ref": "@@", "records": [record]}).replace("@@", "consent \\udfff")
    refused = _raw_deposit(world, in_consent)
    assert refused.status_code == 422, refused.text
    assert "consent_ref" in refused.json()["detail"], refused.text
    in_name = json.dumps({"consent_ref": "c", "records": [{**record, "@@": 1}]}).replace("@@", "\\ud83d")
    refused = _raw_deposit(world, in_name)
    assert refused.status_code == 422, refused.text
    assert world.pull(BABY).status_code == 404
