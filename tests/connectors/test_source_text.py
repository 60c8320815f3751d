"""A source configuration holding a NUL or a lone surrogate is refused by field, binding nothing (issue 21 item 7)."""

from __future__ import annotations

import json

import pytest

CODE = "PSB-HOUSEHOLD"


def _bind_raw(client, directory, body: str):
    # Sent as raw JSON, so the escapes (\u0000, \udc80) reach the server as they are.
    return client.put(f"/api/v1/datasets/{CODE}/source", content=body.encode(),
                      headers={**directory.provider("PSB"), "Content-Type": "application/json"})


@pytest.mark.parametrize(("config", "field", "fault"), [
    ({"path": "household/data@@.parquet"}, "config.path", "NUL"),
    ({"path": "household/data@@.parquet", "format": "csv"}, "config.path", "NUL"),
    ({"url": "sqlite:///people@@.db", "table": "people"}, "config.url", "NUL"),
])
def test_a_nul_in_a_source_path_is_refused_naming_the_field(client, directory, config, field, fault):
    directory.dataset()
    kind = "sql" if "url" in config else "files"
    response = _bind_raw(client, directory, json.dumps({"kind": kind, "config": config}).replace("@@", "\\u0000"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["detail"].startswith(f"{field}:") and fault in problem["detail"]
    assert client.get(f"/api/v1/datasets/{CODE}/source", headers=directory.provider("PSB")).status_code == 404


def test_a_lone_surrogate_in_a_source_path_is_refused(client, directory):
    directory.dataset()
    response = _bind_raw(client, directory, json.dumps({"kind": "files", "config": {"path": "@@.parquet"}}).replace("@@", "\\udc80"))
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("config.path:")
