"""A Delta Sharing file URL answers a refused Range with problem+json, like extract downloads (issue 21 item 12)."""

from __future__ import annotations

import httpx

from tests.exchange.test_delta_sharing import _lines, app, port, server, world  # noqa: F401 (fixtures)


def test_a_refused_range_on_a_sharing_file_is_a_problem(world, server):  # noqa: F811
    url = next(line["file"]["url"] for line in _lines(world.query(world.profile(), {})) if "file" in line)
    unsatisfiable = httpx.get(url, headers={"Range": "bytes=100000000-"})
    assert unsatisfiable.status_code == 416, unsatisfiable.text
    assert unsatisfiable.headers["content-type"] == "application/problem+json"
    malformed = httpx.get(url, headers={"Range": "items=0-5"})
    assert malformed.status_code == 400 and malformed.headers["content-type"] == "application/problem+json"
    assert httpx.get(url, headers={"Range": "bytes=0-3"}).content == b"PAR1"
