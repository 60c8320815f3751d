"""Races over a real server: simultaneous decisions, withdrawals and revocations end in one clear outcome.

(Two managers deciding one application at once is in test_api.py.) Each race is started
from threads behind a barrier against the app served by uvicorn, so the requests
really overlap; on PostgreSQL the row locks decide, on SQLite the write lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.approvals.test_api import _kinds, _period, world  # noqa: F401  (world is the fixture)


def _race(live_server: str, *calls: tuple[str, dict, dict]) -> list[httpx.Response]:
    """POST every (path, body, headers) at the same moment; the answers in the order given."""
    barrier = threading.Barrier(len(calls))
    answers: list[httpx.Response | None] = [None] * len(calls)

    def call(index: int, path: str, body: dict, headers: dict) -> None:
        barrier.wait()
        answers[index] = httpx.post(f"{live_server}{path}", json=body, headers=headers, timeout=60)

    threads = [threading.Thread(target=call, args=(index, *arguments)) for index, arguments in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _extract_application(world) -> dict:  # noqa: F811
    return world.filed(dataset="HRSS-INSURANCE", items=["citizen_id"], delivery="extract", row_filter=None, period=_period(0, 30))


def test_two_revocations_at_once_one_wins_and_the_other_finds_it_revoked(world, live_server):  # noqa: F811
    application = _extract_application(world)
    grant_id = world.decide(application["id"], decision="approve").json()["grant_id"]
    path = f"/api/v1/grants/{grant_id}/revoke"
    first, second = _race(live_server, (path, {"reason": "misuse reported"}, world.manager),
                          (path, {"reason": "duplicate grant"}, world.second_manager))
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    winner = first if first.status_code == 200 else second
    loser = second if winner is first else first
    assert loser.json()["type"] == "urn:govshare:problem:wrong-state"
    grant = world.http.get(f"/api/v1/grants/{grant_id}", headers=world.manager).json()
    assert grant["state"] == "revoked" and grant["revoke_reason"] == winner.json()["revoke_reason"]
    assert _kinds(world, application["id"]).count("grant.revoked") == 1


def test_a_withdrawal_racing_an_approval_leaves_one_consistent_outcome(world, live_server):  # noqa: F811
    for _ in range(3):
        application = _extract_application(world)
        base = f"/api/v1/applications/{application['id']}"
        withdrawn, decided = _race(live_server, (f"{base}/withdraw", {}, world.applicant),
                                   (f"{base}/decision", {"decision": "approve"}, world.manager))
        assert sorted([withdrawn.status_code, decided.status_code]) == [200, 409], (withdrawn.text, decided.text)
        final = world.get(application["id"]).json()
        kinds = _kinds(world, application["id"])
        if decided.status_code == 200:
            assert final["status"] == "approved" and final["grant_id"] is not None
            assert "application.withdrawn" not in kinds
        else:
            assert final["status"] == "withdrawn" and final["grant_id"] is None
            assert "application.approved" not in kinds


def test_a_burst_of_decisions_by_two_managers_decides_each_application_once(world, live_server):  # noqa: F811
    applications = [_extract_application(world)["id"] for _ in range(12)]
    attempts = [(application_id, headers, body) for application_id in applications
                for headers, body in ((world.manager, {"decision": "approve"}),
                                      (world.second_manager, {"decision": "reject", "reason_code": "duplicate"}))]

    def decide(attempt):
        application_id, headers, body = attempt
        response = httpx.post(f"{live_server}/api/v1/applications/{application_id}/decision", json=body, headers=headers, timeout=60)
        return application_id, response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(decide, attempts))
    assert Counter(status for _, status in outcomes) == {200: 12, 409: 12}
    assert all(Counter(status for app_id, status in outcomes if app_id == application_id) == {200: 1, 409: 1}
               for application_id in applications)
    states = [world.get(application_id).json() for application_id in applications]
    approved = [state for state in states if state["status"] == "approved"]
    assert len(approved) + sum(state["status"] == "rejected" for state in states) == 12
    assert len({state["grant_id"] for state in approved}) == len(approved)  # one grant per approval
    for application_id in applications:
        kinds = _kinds(world, application_id)
        assert kinds.count("application.approved") + kinds.count("application.rejected") == 1
    verified = world.http.get("/api/v1/audit/verify", headers=world.manager).json()
    assert verified["ok"] is True and verified["first_broken"] is None  # concurrent appends did not fork the chain
