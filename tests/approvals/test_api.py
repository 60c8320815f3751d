"""Applications and approvals through the API: every transition and every refusal."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import text

from tests.factories import DirectoryFactory

SHARE_CONDITIONS = "Use only for civil registration services; No onward sharing"


def _period(start_in_days: int = 1, length_days: int = 180) -> dict:
    start = date.today() + timedelta(days=start_in_days)
    return {"start": start.isoformat(), "end": (start + timedelta(days=length_days)).isoformat()}


def application_body(**changes) -> dict:
    body = {
        "dataset": "PSB-HOUSEHOLD", "service_item": "marriage-registration",
        "scenario": "verify both parties' household registration when registering a marriage",
        "basis": "Marriage Registration Regulation art. 5", "items": ["citizen_id", "name", "district"],
        "row_filter": {"district": {"in": ["01", "02"]}}, "delivery": "interface", "period": _period(),
        "purpose": "register marriages without asking for household booklets",
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}  # None: leave the field out


class World:
    """Two providers' datasets, an applicant, a stranger, two managers."""

    def __init__(self, client, factory) -> None:
        self.http = client
        directory = DirectoryFactory(factory)
        directory.dataset("PSB-HOUSEHOLD", "PSB", share_conditions=SHARE_CONDITIONS)  # conditional
        directory.dataset(
            "HRSS-INSURANCE", "HRSS", share_type="unconditional", title="Social insurance", domain="social-insurance",
            delivery_modes=["extract"],
            items=[
                {"name": "citizen_id", "type": "string", "description": "national ID", "sensitivity": "personal", "required": True},
                {"name": "insured_since", "type": "date", "description": "first insured", "sensitivity": "internal"},
                {"name": "diagnosis", "type": "string", "description": "occupational illness", "sensitivity": "sensitive"},
            ],
        )
        directory.dataset("PSB-INTERNAL", "PSB", share_type="none", title="Internal case files")
        self.psb_provider = directory.provider("PSB")
        self.hrss_provider = directory.provider("HRSS")
        self.applicant = factory.caller("CAB", "demander")
        self.stranger = factory.caller("EDU", "demander")
        self.manager = factory.caller("DATA", "manager")
        self.second_manager = factory.caller("DATA", "manager")

    def file(self, headers=None, draft: bool = False, **changes):
        return self.http.post("/api/v1/applications", json=application_body(**changes), headers=headers or self.applicant,
                              params={"draft": "true"} if draft else None)

    def filed(self, **changes) -> dict:
        response = self.file(**changes)
        assert response.status_code == 201, response.text
        return response.json()

    def decide(self, application_id: int, headers=None, **body):
        return self.http.post(f"/api/v1/applications/{application_id}/decision", json=body, headers=headers or self.manager)

    def provider_decide(self, application_id: int, headers=None, **body):
        return self.http.post(f"/api/v1/applications/{application_id}/provider-decision", json=body, headers=headers or self.psb_provider)

    def get(self, application_id: int, headers=None):
        return self.http.get(f"/api/v1/applications/{application_id}", headers=headers or self.applicant)


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def _kinds(world: World, application_id: int) -> list[str]:
    response = world.http.get(f"/api/v1/applications/{application_id}/history", headers=world.manager)
    return [event["kind"] for event in response.json()["items"]]


def test_filing_submits_and_shows_the_inspection(world):
    application = world.filed()
    assert application["status"] == "submitted"
    assert application["department"] == "CAB"
    assert application["inspection"]["passed"] is True
    rules = {finding["rule"] for finding in application["inspection"]["findings"]}
    assert "provider-sign-off" in rules  # conditional dataset: a warning the manager sees
    assert "personal-explained" in rules
    assert application["decision_due"] > application["filed_at"]
    assert application["grant_id"] is None
    assert world.get(application["id"]).json()["status"] == "submitted"
    assert _kinds(world, application["id"]) == ["application.drafted", "application.submitted"]


def test_a_draft_can_be_edited_submitted_and_withdrawn(world):
    draft = world.file(draft=True, items=["citizen_id", "name"]).json()
    assert draft["status"] == "draft" and draft["filed_at"] is None
    edited = world.http.put(f"/api/v1/applications/{draft['id']}", json=application_body(items=["citizen_id", "district"]),
                            headers=world.applicant)
    assert edited.status_code == 200, edited.text
    assert edited.json()["items"] == ["citizen_id", "district"] and edited.json()["status"] == "draft"
    submitted = world.http.post(f"/api/v1/applications/{draft['id']}/submit", headers=world.applicant)
    assert submitted.json()["status"] == "submitted"
    withdrawn = world.http.post(f"/api/v1/applications/{draft['id']}/withdraw", headers=world.applicant)
    assert withdrawn.json()["status"] == "withdrawn"
    again = world.http.post(f"/api/v1/applications/{draft['id']}/withdraw", headers=world.applicant)
    assert again.status_code == 409 and again.json()["type"] == "urn:govshare:problem:wrong-state"
    assert world.decide(draft["id"], decision="approve").status_code == 409


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"items": ["citizen_id", "shoe_size"]}, "items-exist"),
        ({"dataset": "PSB-INTERNAL"}, "share-type"),
        ({"dataset": "HRSS-INSURANCE", "items": ["citizen_id"], "row_filter": None, "delivery": "interface"}, "delivery-offered"),
        ({"period": {"start": (date.today() - timedelta(days=3)).isoformat(), "end": (date.today() + timedelta(days=30)).isoformat()}}, "period-not-past"),
        ({"period": _period(1, 400)}, "period-maximum"),
        ({"period": {"start": (date.today() + timedelta(days=9)).isoformat(), "end": (date.today() + timedelta(days=2)).isoformat()}}, "period-order"),
        ({"basis": "   "}, "basis-present"),
        ({"dataset": "HRSS-INSURANCE", "items": ["citizen_id", "diagnosis"], "row_filter": None, "delivery": "extract"}, "sensitive-justified"),
        ({"row_filter": {"religion": {"eq": "x"}}}, "row-filter-valid"),
        ({"row_filter": {"birth_date": {"gt": "not a date"}}}, "row-filter-valid"),
    ],
)
def test_a_hard_inspection_failure_is_a_422_and_stores_nothing(world, changes, rule):
    response = world.file(**changes)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"] == "urn:govshare:problem:inspection-failed"
    assert rule in {finding["rule"] for finding in body["inspection"]["findings"] if finding["severity"] == "error"}
    assert world.http.get("/api/v1/applications", headers=world.applicant).json()["items"] == []


def test_a_body_outside_the_unified_format_is_a_422_naming_the_field(world):
    response = world.file(delivery="fax")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("delivery:")
    missing = world.http.post("/api/v1/applications", json={"dataset": "PSB-HOUSEHOLD"}, headers=world.applicant)
    assert missing.status_code == 422


def test_an_empty_row_filter_means_every_row_as_leaving_it_out_does(world):
    application = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id", "insured_since"], delivery="extract", row_filter={})
    assert application["status"] == "submitted", application
    assert "row_filter" not in world.get(application["id"]).json()  # stored as no filter, not as {}
    decided = world.decide(application["id"], decision="approve")
    grant = world.http.get(f"/api/v1/grants/{decided.json()['grant_id']}", headers=world.applicant).json()
    assert grant["row_filter"] is None
    # A filter with something in it is still checked, and its fault named.
    refused = world.file(dataset="HRSS-INSURANCE", items=["citizen_id"], delivery="extract", row_filter={"insured_since": {}})
    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("row_filter.insured_since:"), refused.json()


def test_a_sensitive_item_with_a_justification_passes(world):
    application = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id", "diagnosis"], row_filter=None, delivery="extract",
                              justifications={"diagnosis": "occupational injury benefit needs the diagnosis"})
    assert application["status"] == "submitted"


def test_approval_of_an_unconditional_dataset_creates_the_exact_grant(world):
    period = _period(0, 90)
    application = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id", "insured_since"], delivery="extract",
                              row_filter={"insured_since": {"ge": "2020-01-01"}}, period=period)
    decided = world.decide(application["id"], decision="approve", comment="basis checked")
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    grant = world.http.get(f"/api/v1/grants/{decided.json()['grant_id']}", headers=world.applicant).json()
    assert grant["department"] == "CAB" and grant["dataset"] == "HRSS-INSURANCE"
    assert grant["columns"] == ["citizen_id", "insured_since"]
    assert grant["row_filter"] == {"insured_since": {"ge": "2020-01-01"}}
    assert grant["delivery"] == "extract"
    assert (grant["valid_from"], grant["valid_until"]) == (period["start"], period["end"])
    assert grant["state"] == "active"
    assert _kinds(world, application["id"])[-1] == "application.approved"


def test_a_conditional_dataset_needs_the_providers_sign_off(world):
    application = world.filed()
    after_manager = world.decide(application["id"], decision="approve", conditions=["No onward sharing"]).json()
    assert after_manager["status"] == "awaiting_provider" and after_manager["grant_id"] is None
    wrong_provider = world.provider_decide(application["id"], headers=world.hrss_provider, decision="approve")
    assert wrong_provider.status_code == 404  # another provider may not even read it
    signed = world.provider_decide(application["id"], decision="approve")
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "approved"
    grant = world.http.get(f"/api/v1/grants/{signed.json()['grant_id']}", headers=world.psb_provider).json()
    assert grant["conditions"] == ["No onward sharing"]
    assert _kinds(world, application["id"])[-2:] == ["application.awaiting_provider", "application.provider_approved"]


def test_the_provider_may_refuse_with_a_reason(world):
    application = world.filed()
    world.decide(application["id"], decision="approve")
    refused = world.provider_decide(application["id"], decision="reject", reason_code="data_not_shareable", comment="under review")
    assert refused.json()["status"] == "rejected" and refused.json()["reason_code"] == "data_not_shareable"


def test_a_rejection_always_carries_a_reason_from_the_list(world):
    application = world.filed()
    no_reason = world.decide(application["id"], decision="reject")
    assert no_reason.status_code == 422 and "reason_code" in no_reason.json()["detail"]
    unknown = world.decide(application["id"], decision="reject", reason_code="dislike")
    assert unknown.status_code == 422
    other_without_comment = world.decide(application["id"], decision="reject", reason_code="other")
    assert other_without_comment.status_code == 422
    assert world.get(application["id"]).json()["status"] == "submitted"
    rejected = world.decide(application["id"], decision="reject", reason_code="items_beyond_need", comment="name is not needed")
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["reason_code"] == "items_beyond_need"
    assert rejected.json()["comment"] == "name is not needed"


def test_a_decision_may_not_add_conditions_the_dataset_does_not_name(world):
    application = world.filed()
    response = world.decide(application["id"], decision="approve", conditions=["Delete after 7 days"])
    assert response.status_code == 422 and "Delete after 7 days" in response.json()["detail"]
    assert world.get(application["id"]).json()["status"] == "submitted"


def test_returned_for_changes_then_edited_and_resubmitted(world):
    application = world.filed()
    no_comment = world.decide(application["id"], decision="return")
    assert no_comment.status_code == 422
    returned = world.decide(application["id"], decision="return", comment="narrow the districts").json()
    assert returned["status"] == "returned"
    edited = world.http.put(f"/api/v1/applications/{application['id']}", json=application_body(row_filter={"district": {"eq": "01"}}),
                            headers=world.applicant)
    assert edited.json()["status"] == "returned"
    resubmitted = world.http.post(f"/api/v1/applications/{application['id']}/submit", headers=world.applicant).json()
    assert resubmitted["status"] == "submitted" and resubmitted["row_filter"] == {"district": {"eq": "01"}}


def test_roles_and_departments_are_enforced(world, factory):
    application = world.filed()
    app_id = application["id"]
    # only demanders file, only managers decide, only providers sign off
    assert world.file(headers=world.manager).status_code == 403
    assert world.decide(app_id, headers=world.applicant, decision="approve").status_code == 403
    assert world.decide(app_id, headers=world.psb_provider, decision="approve").status_code == 403
    assert world.provider_decide(app_id, headers=world.manager, decision="approve").status_code == 403
    # another department sees nothing and changes nothing
    assert world.get(app_id, headers=world.stranger).status_code == 404
    assert world.http.post(f"/api/v1/applications/{app_id}/withdraw", headers=world.stranger).status_code == 404
    assert world.http.put(f"/api/v1/applications/{app_id}", json=application_body(), headers=world.stranger).status_code == 404
    assert world.http.get("/api/v1/applications", headers=world.stranger).json()["items"] == []
    # the provider sees applications for its datasets; a service client sees none of them
    assert world.get(app_id, headers=world.psb_provider).status_code == 200
    assert world.get(app_id, headers=factory.caller("CAB", "service")).status_code == 403
    # a provider signing off before the manager decided: wrong state
    assert world.provider_decide(app_id, decision="approve").status_code == 409
    assert world.get(app_id).json()["status"] == "submitted"
    assert world.http.get(f"/api/v1/applications/{app_id}").status_code == 401


def test_two_managers_deciding_at_once_one_wins_the_other_gets_409(world, live_server):
    application = world.filed()
    results: list[httpx.Response] = []
    barrier = threading.Barrier(2)

    def decide(headers, body):
        barrier.wait()
        results.append(httpx.post(f"{live_server}/api/v1/applications/{application['id']}/decision", json=body, headers=headers, timeout=30))

    threads = [
        threading.Thread(target=decide, args=(world.manager, {"decision": "approve"})),
        threading.Thread(target=decide, args=(world.second_manager, {"decision": "reject", "reason_code": "duplicate"})),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(response.status_code for response in results) == [200, 409]
    winner = next(response for response in results if response.status_code == 200).json()
    final = world.get(application["id"]).json()
    assert final["status"] == winner["status"]
    decisions = [kind for kind in _kinds(world, application["id"]) if kind in ("application.awaiting_provider", "application.rejected")]
    assert len(decisions) == 1


def _approved_grant(world) -> dict:
    application = world.filed(dataset="HRSS-INSURANCE", items=["citizen_id"], delivery="extract", row_filter=None, period=_period(0, 30))
    return world.http.get(f"/api/v1/grants/{world.decide(application['id'], decision='approve').json()['grant_id']}",
                          headers=world.manager).json()


def test_a_grant_ends_by_itself_at_the_period_end(world, database):
    grant = _approved_grant(world)
    assert grant["state"] == "active"
    with database.engine.begin() as connection:  # time passes: the period ended yesterday
        connection.execute(text("UPDATE grants SET valid_until = :day WHERE id = :id"),
                           {"day": date.today() - timedelta(days=1), "id": grant["id"]})
    assert world.http.get(f"/api/v1/grants/{grant['id']}", headers=world.applicant).json()["state"] == "expired"


def test_a_grant_is_revoked_with_a_reason_by_a_manager_only(world):
    grant = _approved_grant(world)
    path = f"/api/v1/grants/{grant['id']}/revoke"
    assert world.http.post(path, json={"reason": "misuse"}, headers=world.applicant).status_code == 403
    assert world.http.post(path, json={"reason": ""}, headers=world.manager).status_code == 422
    revoked = world.http.post(path, json={"reason": "data used outside the service"}, headers=world.manager)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert revoked.json()["revoke_reason"] == "data used outside the service"
    assert world.http.post(path, json={"reason": "again"}, headers=world.manager).status_code == 409
    assert world.http.get(f"/api/v1/grants/{grant['id']}", headers=world.stranger).status_code == 404


def test_events_reach_the_parties_after_a_cursor(world):
    application = world.filed()
    world.decide(application["id"], decision="approve")
    applicant_events = world.http.get("/api/v1/events", headers=world.applicant).json()
    kinds = [event["kind"] for event in applicant_events["items"]]
    assert kinds == ["application.drafted", "application.submitted", "application.awaiting_provider"]
    cursor = applicant_events["next_cursor"]
    assert world.http.get("/api/v1/events", params={"since": cursor}, headers=world.applicant).json()["items"] == []
    world.provider_decide(application["id"], decision="approve")
    later = world.http.get("/api/v1/events", params={"since": cursor}, headers=world.applicant).json()["items"]
    assert [event["kind"] for event in later] == ["application.provider_approved"]
    provider_kinds = [event["kind"] for event in world.http.get("/api/v1/events", headers=world.psb_provider).json()["items"]]
    assert "application.provider_approved" in provider_kinds
    assert world.http.get("/api/v1/events", headers=world.stranger).json()["items"] == []


def test_every_step_is_audited_with_who(world, client):
    application = world.filed()
    world.decide(application["id"], decision="reject", reason_code="no_legal_basis")
    verification = client.get("/api/v1/audit/verify", headers=world.manager).json()
    assert verification["ok"] is True
