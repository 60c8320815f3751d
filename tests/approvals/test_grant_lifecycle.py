"""Grant pause and resume through the API (DESIGN.md, "Grant lifecycle"): who may, the states, events, webhooks, audit."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select, text

from approvals import webhooks
from govshare.models import AuditEntry
from tests.approvals.test_api import World, _period
from tests.approvals.test_service import receiver  # noqa: F401 (fixture)

PROBLEM = "urn:govshare:problem:"


class Lifecycle(World):
    """The approvals world, with CAB holding an interface grant on PSB's conditional PSB-HOUSEHOLD (PSB signed it off)."""

    def __init__(self, client, factory) -> None:
        super().__init__(client, factory)
        self.cab_provider = factory.caller("CAB", "provider")  # the applying department's own provider
        self.admin = factory.caller("DATA", "admin")
        application = self.filed(period=_period(0, 60))
        assert self.decide(application["id"], decision="approve").status_code == 200
        self.grant_id = self.provider_decide(application["id"], decision="approve").json()["grant_id"]
        self.application_id = application["id"]

    def pause(self, headers=None, grant_id: int | None = None, **body):
        body = body if body else {"reason": "the provider found an error in the district codes"}
        return self.http.post(f"/api/v1/grants/{grant_id or self.grant_id}/pause", json=body,
                              headers=self.manager if headers is None else headers)

    def resume(self, headers=None, grant_id: int | None = None, **body):
        return self.http.post(f"/api/v1/grants/{grant_id or self.grant_id}/resume", json=body or None,
                              headers=headers or self.manager)

    def grant(self, headers=None) -> dict:
        response = self.http.get(f"/api/v1/grants/{self.grant_id}", headers=headers or self.manager)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def world(client, factory) -> Lifecycle:
    return Lifecycle(client, factory)


def _problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEM + kind, response.json()
    return response.json()


def test_the_manager_pauses_and_resumes_a_grant_and_get_shows_its_status_and_the_pause(world):
    assert world.grant()["status"] == "active"
    paused = world.pause(reason="  records under correction  ")
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert body["status"] == "paused" and body["state"] == "paused"
    assert body["pause_reason"] == "records under correction" and body["paused_by"].startswith("client:")
    assert body["paused_at"] is not None
    # Everyone who reads the grant sees it paused, with why, who and when.
    for reader in (world.applicant, world.psb_provider, world.manager):
        shown = world.grant(reader)
        assert (shown["status"], shown["pause_reason"], shown["paused_by"]) == ("paused", body["pause_reason"], body["paused_by"])
    listed = world.http.get("/api/v1/grants", headers=world.applicant).json()["items"]
    assert [(grant["id"], grant["status"]) for grant in listed] == [(world.grant_id, "paused")]

    resumed = world.resume(reason="corrected")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active" and resumed.json()["paused_at"] is None and resumed.json()["pause_reason"] is None
    assert world.resume(world.psb_provider).status_code == 409  # resuming an active grant; a body is optional


def test_the_providing_department_may_pause_and_resume(world):
    assert world.pause(world.psb_provider).status_code == 200
    assert world.grant()["paused_by"].startswith("client:")
    assert world.resume(world.psb_provider).json()["status"] == "active"


def test_pausing_a_paused_grant_or_resuming_an_active_one_is_a_409(world):
    _problem(world.resume(), 409, "wrong-state")
    assert world.pause().status_code == 200
    before = world.grant()
    again = _problem(world.pause(reason="another reason"), 409, "wrong-state")
    assert "paused already" in again["detail"]
    assert world.grant()["pause_reason"] == before["pause_reason"]  # the first pause stands unchanged


def test_a_revoked_or_expired_grant_can_be_neither_paused_nor_resumed(world, database):
    assert world.pause().status_code == 200
    with database.engine.begin() as connection:  # the period ended yesterday, while it was paused
        connection.execute(text("UPDATE grants SET valid_until = :day WHERE id = :id"),
                           {"day": date.today() - timedelta(days=1), "id": world.grant_id})
    assert world.grant()["status"] == "expired"
    _problem(world.resume(), 409, "wrong-state")
    _problem(world.pause(), 409, "wrong-state")
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE grants SET valid_until = :day WHERE id = :id"),
                           {"day": date.today() + timedelta(days=30), "id": world.grant_id})
    assert world.resume().status_code == 200
    assert world.http.post(f"/api/v1/grants/{world.grant_id}/revoke", json={"reason": "ended"}, headers=world.manager).status_code == 200
    _problem(world.pause(), 409, "wrong-state")
    _problem(world.resume(), 409, "wrong-state")
    assert world.grant()["status"] == "revoked"


def test_a_pending_grant_can_be_paused_and_resumes_to_pending(world):
    application = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id"], delivery="extract", row_filter=None,
                              period=_period(5, 30))
    grant_id = world.decide(application["id"], decision="approve").json()["grant_id"]
    assert world.pause(grant_id=grant_id).json()["status"] == "paused"
    assert world.resume(grant_id=grant_id).json()["status"] == "pending"


def test_the_applying_department_may_not_pause_and_nobody_else_learns_the_grant_exists(world):
    # The applying department reads its grant but may not pause it: its demander by role, its own provider by department.
    _problem(world.pause(world.applicant), 403, "forbidden")
    _problem(world.pause(world.cab_provider), 403, "not-your-grant")
    _problem(world.resume(world.cab_provider), 403, "not-your-grant")
    # Another department, even a provider: the grant answers as one that does not exist.
    unknown = _problem(world.pause(world.hrss_provider, grant_id=999_999), 404, "grant-not-found")
    other = _problem(world.pause(world.hrss_provider), 404, "grant-not-found")
    assert other["detail"].replace(str(world.grant_id), "N") == unknown["detail"].replace("999999", "N")
    _problem(world.resume(world.hrss_provider), 404, "grant-not-found")
    _problem(world.pause(world.stranger), 403, "forbidden")  # a demander: refused by role before anything is looked up
    assert world.http.post(f"/api/v1/grants/{world.grant_id}/pause", json={"reason": "x"}).status_code == 401
    assert world.grant()["status"] == "active"  # nothing changed
    assert world.pause(world.admin).status_code == 200  # an admin oversees the exchange, as with revoking


@pytest.mark.parametrize("body", [
    {"reason": ""}, {"reason": "   "}, {"reason": "x" * 2001}, {}, {"reason": 7}, {"reason": None},
    {"reason": "fine", "extra": "no"}, {"reason": "nul\x00byte"},
])
def test_bad_reasons_are_refused_and_change_nothing(world, body):
    response = world.http.post(f"/api/v1/grants/{world.grant_id}/pause", json=body, headers=world.manager)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert world.grant()["status"] == "active"


def test_an_oversized_body_and_a_bad_resume_reason_are_refused(world):
    huge = world.http.post(f"/api/v1/grants/{world.grant_id}/pause", content=json.dumps({"reason": "x" * 3_000_000}),
                           headers={**world.manager, "Content-Type": "application/json"})
    assert huge.status_code in (413, 422), huge.text
    assert world.pause().status_code == 200
    assert world.resume(reason="y" * 2001).status_code == 422
    assert world.grant()["status"] == "paused"
    assert world.http.post("/api/v1/grants/not-a-number/pause", json={"reason": "x"}, headers=world.manager).status_code == 422


def test_both_departments_get_the_events_and_the_audit_chain_records_them(world, database):
    world.pause(world.psb_provider, reason="district codes under correction")
    world.resume(reason="corrected")
    for department in (world.applicant, world.psb_provider):
        events = world.http.get("/api/v1/events", headers=department).json()["items"]
        lifecycle = [(event["kind"], event["grant_id"], event["comment"]) for event in events if event["kind"].startswith("grant.")]
        assert lifecycle == [("grant.paused", world.grant_id, "district codes under correction"),
                             ("grant.resumed", world.grant_id, "corrected")]
    strangers = world.http.get("/api/v1/events", headers=world.hrss_provider).json()["items"]
    assert not [event for event in strangers if event["kind"].startswith("grant.")]
    history = world.http.get(f"/api/v1/applications/{world.application_id}/history", headers=world.manager).json()["items"]
    assert [event["kind"] for event in history][-2:] == ["grant.paused", "grant.resumed"]
    with database.transaction(write=False) as session:
        actions = session.execute(select(AuditEntry.action, AuditEntry.details).where(
            AuditEntry.action.in_(["grant.paused", "grant.resumed"])).order_by(AuditEntry.seq)).all()
    assert [action for action, _ in actions] == ["grant.paused", "grant.resumed"]
    assert all(json.loads(details)["grant_id"] == world.grant_id for _, details in actions)
    assert world.http.get("/api/v1/audit/verify", headers=world.manager).json()["ok"] is True


def test_both_departments_webhooks_receive_the_pause_and_the_resume(world, database, client, receiver):
    for department in (world.applicant, world.psb_provider):
        assert client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=department).status_code == 201
    webhooks.deliver_once(database)  # what happened before: the filing and decisions
    receiver.received.clear()
    world.pause(reason="suspected misuse")
    assert webhooks.deliver_once(database) == 2  # one event, to each department's endpoint
    kinds = [[event["kind"] for event in json.loads(body)["events"]] for _, body in receiver.received]
    assert kinds == [["grant.paused"], ["grant.paused"]]
    world.resume()
    assert webhooks.deliver_once(database) == 2
    assert [json.loads(body)["events"][0]["kind"] for _, body in receiver.received[2:]] == ["grant.resumed"] * 2
