"""A CSV whose header is not UTF-8 is refused with a 422 saying where, storing nothing (issue 21 item 7)."""

from __future__ import annotations

import pytest

from tests.factories import citizen_id

CODE = "PSB-HOUSEHOLD"
ROW = f"{citizen_id('11010119900307001')},person 1,01,1990-03-07\n".encode()


@pytest.mark.parametrize(("header", "column"), [
    (b"citizen_id,na\xffme,district,birth_date\n", 2),
    (b"\xc3(citizen_id,name,district,birth_date\n", 1),
    (b"citizen_id,name,district,birth_date\xe2\x82\n", 4),
])
def test_a_header_that_is_not_utf8_is_refused_saying_where(client, directory, header, column):
    directory.dataset()
    response = directory.upload(CODE, header + ROW)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert "UTF-8" in problem["detail"] and "row 1" in problem["detail"] and f"column {column}" in problem["detail"]
    assert client.get(f"/api/v1/datasets/{CODE}/versions", headers=directory.provider("PSB")).json()["versions"] == []


def test_a_value_that_is_not_utf8_is_refused_too(client, directory):
    directory.dataset()
    response = directory.upload(CODE, b"citizen_id,name,district,birth_date\n" + ROW.replace(b"person", b"pers\xffon"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
