"""Who may decide and who may see: own-department decisions, drafts, and another department's objects."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from govshare import identities
from tests.approvals.test_api import World, application_body
from tests.approvals.test_views import HTML, PASSWORD, csrf_of, page_of, sign_in


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def _status(world: World, application_id: int) -> str:
    return world.get(application_id, headers=world.manager).json()["status"]


# --- nobody decides their own department's application ------------------------------------------------


def test_a_manager_of_the_applying_department_may_not_decide_it(world, factory):
    application = world.filed()
    cab_manager = factory.caller("CAB", "manager")
    refused = world.decide(application["id"], headers=cab_manager, decision="approve")
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith(":own-department-decision") and "CAB" in refused.json()["detail"]
    assert _status(world, application["id"]) == "submitted"
    # nor does holding the demander role as well change it; a manager of another department decides
    assert world.decide(application["id"], headers=factory.caller("CAB", "manager", "demander"), decision="reject",
                        reason_code="other").status_code == 403
    assert world.decide(application["id"], decision="approve").status_code == 200


def test_a_manager_of_the_applying_department_may_not_decide_it_on_the_pages(world, client, database):
    application = world.filed()
    with database.transaction() as session:
        identities.add_user(session, name="carla", roles=["manager"], password=PASSWORD, department_code="CAB")
    assert sign_in(client, "carla").status_code == 303
    path = f"/ui/applications/{application['id']}"
    shown = client.get(path, headers=HTML)
    assert shown.status_code == 200  # reading it is fine: managers see every filed application
    posted = client.post(f"{path}/decision", data={"csrf_token": csrf_of(shown), "decision": "approve"}, headers=HTML,
                         follow_redirects=False)
    assert posted.status_code == 403, posted.text[:500]
    assert "own department" in page_of(posted).text
    assert _status(world, application["id"]) == "submitted"


def test_a_department_applying_for_its_own_conditional_dataset_needs_no_sign_off_from_itself(world, factory):
    psb_demander = factory.caller("PSB", "demander")
    own = world.file(headers=psb_demander)
    assert own.status_code == 201, own.text
    approved = world.decide(own.json()["id"], decision="approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["grant_id"] is not None
    # the manager's approval is the independent decision; the provider's sign-off would be its own
    other = world.filed()
    assert world.decide(other["id"], decision="approve").json()["status"] == "awaiting_provider"


def test_the_provider_may_not_sign_off_its_own_departments_application(world, factory, database):
    psb_demander = factory.caller("PSB", "demander")
    own = world.file(headers=psb_demander).json()
    # An application waiting for a sign-off of its own department (as filed before that rule, say).
    with database.transaction() as session:
        session.execute(text("UPDATE applications SET status = 'awaiting_provider' WHERE id = :id"), {"id": own["id"]})
    refused = world.provider_decide(own["id"], decision="approve")
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"].endswith(":own-department-decision")
    assert _status(world, own["id"]) == "awaiting_provider"


# --- another department's application: the same 404 as one that does not exist -----------------------------


@pytest.mark.parametrize("method, suffix, body", [
    ("GET", "", None),
    ("PUT", "", application_body()),
    ("POST", "/submit", None),
    ("POST", "/withdraw", None),
    ("GET", "/history", None),
    ("POST", "/provider-decision", {"decision": "approve"}),
    ("GET", "/ratings", None),
    ("POST", "/ratings", {"application_quality": 4}),
])
def test_another_departments_application_answers_as_one_that_does_not_exist(world, factory, method, suffix, body):
    application = world.filed()
    edu = factory.caller("EDU", "demander", "provider")
    answers = []
    for application_id in (application["id"], 999_999):
        response = world.http.request(method, f"/api/v1/applications/{application_id}{suffix}", json=body, headers=edu)
        answers.append((response.status_code, response.json()["type"], response.json()["detail"].replace(str(application_id), "N")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 404 and answers[0][1].endswith(":application-not-found")
    assert _status(world, application["id"]) == "submitted"


# --- a draft is its author's alone ------------------------------------------------------------------------


def test_a_draft_is_its_authors_alone(world, factory, client, database):
    draft = world.file(draft=True).json()
    filed = world.filed()
    draft_id = draft["id"]
    cab_colleague = factory.caller("CAB", "demander")
    assert world.get(draft_id, headers=cab_colleague).status_code == 200
    not_found = world.get(999_999, headers=world.psb_provider).json()
    for reader in (world.psb_provider, world.manager, factory.caller("DATA", "admin"), world.stranger):
        answer = world.get(draft_id, headers=reader)
        assert answer.status_code == 404 and answer.json()["type"] == not_found["type"], answer.text
        assert world.http.get(f"/api/v1/applications/{draft_id}/history", headers=reader).status_code == 404
        listed = world.http.get("/api/v1/applications", headers=reader, params={"status": "draft"}).json()["items"]
        assert draft_id not in [item["id"] for item in listed]
        feed = world.http.get("/api/v1/events", headers=reader).json()["items"]
        assert draft_id not in [event["application_id"] for event in feed]
    # the submitted application is seen, but not as the draft it was
    provider_feed = world.http.get("/api/v1/events", headers=world.psb_provider).json()["items"]
    assert [event["kind"] for event in provider_feed if event["application_id"] == filed["id"]] == ["application.submitted"]
    # a manager cannot decide it, and learns no more than for an application that does not exist
    refused = world.decide(draft_id, decision="approve")
    assert refused.status_code == 404 and refused.json()["type"] == not_found["type"]
    # withdrawn unsubmitted, it stays the author's
    assert world.http.post(f"/api/v1/applications/{draft_id}/withdraw", headers=world.applicant).status_code == 200
    assert world.get(draft_id, headers=world.psb_provider).status_code == 404
    assert draft_id not in [event["application_id"] for event in world.http.get("/api/v1/events", headers=world.manager).json()["items"]]
    # the author's own feed has it all
    own_feed = world.http.get("/api/v1/events", headers=world.applicant).json()["items"]
    assert [event["kind"] for event in own_feed if event["application_id"] == draft_id] == ["application.drafted", "application.withdrawn"]

    # nor do the manager's pages show it
    with database.transaction() as session:
        identities.add_user(session, name="maria", roles=["manager"], password=PASSWORD, department_code="DATA")
    assert sign_in(client, "maria").status_code == 303
    assert client.get(f"/ui/applications/{draft_id}", headers=HTML).status_code == 404
    queue = client.get("/ui", params={"status": "withdrawn"}, headers=HTML)
    assert queue.status_code == 200 and f"/ui/applications/{draft_id}" not in queue.text
    assert client.get(f"/ui/dashboard/applications/{draft_id}", headers=HTML).status_code == 404


def test_a_draft_in_the_webhook_feed_reaches_only_its_department(world, database):
    from approvals import service

    draft = world.file(draft=True).json()
    with database.transaction(write=False) as session:
        psb = service.events_for(session, department="PSB", sees_all=False, since=0, limit=100)
        cab = service.events_for(session, department="CAB", sees_all=False, since=0, limit=100)
    assert draft["id"] not in [event.application_id for event in psb]
    assert draft["id"] in [event.application_id for event in cab]
