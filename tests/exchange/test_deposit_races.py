"""Deposits sharing keys, sent at the same moment in opposite orders: both are stored, none deadlocks.

Upserting row by row in the order given, two such deposits lock the same rows in opposite
orders; on PostgreSQL one of them then died of a deadlock. Keys are taken in key order now.
"""

from __future__ import annotations

import threading

import httpx

from tests.exchange.test_intake import world  # noqa: F401  (the fixture)
from tests.factories import citizen_id

KEYS = [citizen_id(f"110101202603{day:02d}{index:03d}") for day in range(1, 4) for index in range(1, 11)]


def _records(name: str, keys: list[str]) -> list[dict]:
    return [{"citizen_id": key, "name": name, "birth_date": "2026-03-01"} for key in keys]


def test_deposits_of_the_same_keys_in_opposite_orders_both_succeed(world, live_server, factory):  # noqa: F811
    hospitals = [factory.caller("HEALTH", "service") for _ in range(2)]
    for round_ in range(4):
        barrier = threading.Barrier(2)
        answers: list[httpx.Response | None] = [None, None]
        orders = [KEYS, list(reversed(KEYS))]

        def deposit(index: int) -> None:
            body = {"consent_ref": f"consent-{round_}-{index}", "records": _records(f"name-{round_}-{index}", orders[index])}
            barrier.wait()
            answers[index] = httpx.post(f"{live_server}/api/v1/exchange/HEALTH-BIRTH-INTAKE/records", json=body,
                                        headers=hospitals[index], timeout=60)

        threads = [threading.Thread(target=deposit, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [answer.status_code for answer in answers] == [201, 201], [answer.text for answer in answers]
        assert [answer.json()["keys"] for answer in answers] == orders  # answered in the order sent
        # Each key holds one whole record from one of the two deposits, never a mix of fields.
        for key in KEYS:
            records = world.pull(key).json()["records"]
            assert len(records) == 1 and records[0]["name"] in (f"name-{round_}-0", f"name-{round_}-1")
