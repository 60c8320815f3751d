"""A row filter's size is capped, and checked before the filing opens a transaction (issue 21 item 3).

The reproduction of the probe: 200 ``or`` branches of 1,000 values each (1.38 MB), filed as
an application, kept every other writer waiting while it was validated inside the filing's
write transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event

import schemas
from tests.approvals.test_api import World, application_body


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


@pytest.fixture
def transactions_begun(app) -> Iterator[list[bool]]:
    """Every transaction the app's record store begins from now on (True for a write transaction)."""
    begun: list[bool] = []

    def on_begin(connection) -> None:
        begun.append(bool(connection.get_execution_options().get("govshare_write")))

    engine = app.state.database.engine
    event.listen(engine, "begin", on_begin)
    yield begun
    event.remove(engine, "begin", on_begin)


def _huge_filter() -> dict:
    return {"or": [{"district": {"in": [f"{value:03d}" for value in range(1000)]}} for branch in range(200)]}


def _nested(depth: int) -> dict:
    node: dict = {"district": {"eq": "01"}}
    for _ in range(depth - 1):
        node = {"and": [node, {"district": {"ne": "99"}}]}
    return node


def _assert_refused(response, rule: str) -> dict:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["rule"] == rule
    assert problem["errors"][0]["field"] == "row_filter"
    return problem


def test_the_probe_s_huge_filter_is_refused_naming_the_limit_before_any_transaction(world, transactions_begun):
    response = world.file(row_filter=_huge_filter())
    problem = _assert_refused(response, "maxFilterValues")
    assert f"{schemas.ROW_FILTER_MAX_VALUES:,}" in problem["detail"]
    assert transactions_begun == []  # refused before the caller was even looked up: no lock taken, none waited for
    assert world.http.get("/api/v1/applications", headers=world.applicant).json()["items"] == []


def test_a_filter_nested_past_the_limit_is_refused_before_any_transaction(world, transactions_begun):
    response = world.file(row_filter=_nested(schemas.ROW_FILTER_MAX_DEPTH + 1))
    problem = _assert_refused(response, "maxFilterDepth")
    assert f"{schemas.ROW_FILTER_MAX_DEPTH}" in problem["detail"]
    assert transactions_begun == []


def test_filters_at_the_limits_are_filed(world):
    at_limit = {"or": [{"district": {"in": [f"{branch:02d}{value:03d}" for value in range(1000)]}} for branch in range(10)]}
    assert world.file(row_filter=at_limit).status_code == 201
    assert world.file(row_filter=_nested(schemas.ROW_FILTER_MAX_DEPTH)).status_code == 201


def test_editing_an_application_is_held_to_the_same_limits(world, transactions_begun):
    draft = world.file(draft=True)
    assert draft.status_code == 201, draft.text
    transactions_begun.clear()
    edited = world.http.put(f"/api/v1/applications/{draft.json()['id']}", json=application_body(row_filter=_huge_filter()),
                            headers=world.applicant)
    _assert_refused(edited, "maxFilterValues")
    assert transactions_begun == []
    assert world.get(draft.json()["id"]).json()["row_filter"] == application_body()["row_filter"]
