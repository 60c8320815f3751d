"""Refused Range requests are problems, and no delivery: no ledger line, no audit entry (issue 21 item 12)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.exchange.test_extracts import Extracts


@pytest.fixture
def world(client, factory, tmp_path, database, settings) -> Extracts:
    return Extracts(client, factory, tmp_path, database, settings)


def _deliveries(world: Extracts, app, extract_id: str) -> tuple[list, list]:
    app.state.ledger.flush()
    with world.database.engine.connect() as connection:
        lines = connection.execute(text("SELECT kind, status FROM access_log WHERE extract_id = :e"), {"e": extract_id}).all()
        audited = connection.execute(
            text("SELECT details FROM audit_entries WHERE action = 'extract.downloaded' AND subject = :s ORDER BY seq"),
            {"s": f"extract:{extract_id}"}).scalars().all()
    return lines, [json.loads(details) for details in audited]


@pytest.mark.parametrize(("header", "status"), [
    ("bytes=5-2", 400),
    ("bytes=100000-", 416),
    ("items=0-5", 400),
])
def test_a_refused_range_is_a_problem_and_no_delivery(world, app, header, status):
    extract = world.done(format="csv")
    response = world.http.get(extract["download_url"], headers={**world.demander, "Range": header})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["detail"].startswith("Range:")
    assert len(problem["detail"]) < 300  # the header is not echoed
    if status == 416:
        assert response.headers["content-range"] == f"bytes */{extract['manifest']['bytes']}"
    assert _deliveries(world, app, extract["id"]) == ([], [])


def test_a_range_sent_is_recorded_as_the_bytes_sent_never_the_header_text(world, app):
    extract = world.done(format="csv")
    size = extract["manifest"]["bytes"]
    whole = world.http.get(extract["download_url"], headers=world.demander)
    part = world.http.get(extract["download_url"], headers={**world.demander, "Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    # Many small ranges (a 30 KB header) are served, but recorded bounded.
    many = "bytes=" + ",".join(f"{n * 10}-{n * 10 + 1}" for n in range(90))
    assert world.http.get(extract["download_url"], headers={**world.demander, "Range": many}).status_code == 206
    # A 30 KB header of more ranges than are served: the whole file is sent, and recorded as that.
    huge = "bytes=" + ",".join(f"{n}-{n}" for n in range(0, 40_000, 6))[:30_000].rstrip(",")
    assert len(huge) > 29_000
    assert world.http.get(extract["download_url"], headers={**world.demander, "Range": huge}).content == whole.content
    lines, audited = _deliveries(world, app, extract["id"])
    assert lines == [("extract", 200)] * 4
    assert [entry["bytes"] for entry in audited] == [size, 100, 180, size]
    assert audited[0]["range"] is None and audited[1]["range"] == "bytes=100-199" and audited[3]["range"] is None
    assert audited[2]["range"].endswith("(+80 more)") and len(audited[2]["range"]) < 200
    assert all(len(json.dumps(entry)) < 500 for entry in audited)

