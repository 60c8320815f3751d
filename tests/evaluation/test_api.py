"""Ratings, correction requests and metrics through the API: who may, when, and the exported shapes."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from approvals.calendar import WorkingCalendar
from exchange.models import AccessLogEntry
from govshare.db import utcnow
from tests.approvals.test_api import World
from tests.evaluation.history import write_history

EXTRACT_APPLICATION = {"dataset": "HRSS-INSURANCE", "items": ["citizen_id", "insured_since"], "delivery": "extract",
                       "row_filter": None, "justifications": {"citizen_id": "to find the person"}}


@pytest.fixture
def world(client, factory) -> World:
    return World(client, factory)


def _approved(world: World) -> dict:
    application = world.filed(**EXTRACT_APPLICATION)
    decided = world.decide(application["id"], decision="approve")
    assert decided.status_code == 200, decided.text
    return decided.json()


def _deliver(database, application: dict) -> None:
    with database.transaction() as session:
        session.add(AccessLogEntry(
            kind="extract", client_id="test", department_code=application["department"], dataset_code=application["dataset"],
            grant_id=application["grant_id"], application_id=application["id"], service_item=application["service_item"],
            rows=10, status=200, latency_ms=12.0,
        ))


def _rate(world: World, application_id: int, headers, **body):
    return world.http.post(f"/api/v1/applications/{application_id}/ratings", json=body, headers=headers)


def _stored(database, moment):  # SQLite keeps naive UTC; PostgreSQL an aware timestamp
    return moment if database.dialect == "postgresql" else moment.replace(tzinfo=None)


# --- ratings --------------------------------------------------------------------------------------------


def test_ratings_come_after_delivery_one_per_party(world, database):
    application = _approved(world)
    early = _rate(world, application["id"], world.applicant, review_speed=4)
    assert early.status_code == 409 and early.json()["type"] == "urn:govshare:problem:not-delivered"
    pending = world.filed()
    assert _rate(world, pending["id"], world.applicant, review_speed=4).status_code == 409

    _deliver(database, application)
    first = _rate(world, application["id"], world.applicant, review_speed=4, data_quality=2, stability=5, comment="slow-ish")
    assert first.status_code == 201, first.text
    assert first.json() | {"id": 0, "created_at": "", "updated_at": "", "editable_until": "", "rated_by": ""} == {
        "id": 0, "application_id": application["id"], "party": "demander", "department": "CAB", "review_speed": 4,
        "data_quality": 2, "stability": 5, "comment": "slow-ish", "created_at": "", "updated_at": "", "editable_until": "",
        "rated_by": "",
    }
    changed = _rate(world, application["id"], world.applicant, data_quality=3)
    assert changed.status_code == 200 and changed.json()["id"] == first.json()["id"]
    assert (changed.json()["review_speed"], changed.json()["data_quality"]) == (4, 3)

    provider = _rate(world, application["id"], world.hrss_provider, application_quality=5)
    assert provider.status_code == 201 and provider.json()["party"] == "provider"
    listed = world.http.get(f"/api/v1/applications/{application['id']}/ratings", headers=world.manager).json()["items"]
    assert [(rating["party"], rating.get("application_quality")) for rating in listed] == [("demander", None), ("provider", 5)]


def test_a_rating_holds_only_the_party_s_own_scores_in_range(world, database):
    application = _approved(world)
    _deliver(database, application)
    wrong_side = _rate(world, application["id"], world.applicant, application_quality=5)
    assert wrong_side.status_code == 422 and wrong_side.json()["type"] == "urn:govshare:problem:invalid-rating"
    assert _rate(world, application["id"], world.hrss_provider, stability=5).status_code == 422
    out_of_range = _rate(world, application["id"], world.applicant, review_speed=6)
    assert out_of_range.status_code == 422 and out_of_range.json()["type"] == "urn:govshare:problem:schema-violation"
    assert _rate(world, application["id"], world.applicant, comment="no score").status_code == 422
    assert _rate(world, application["id"], world.applicant, unknown=1).status_code == 422


def test_only_the_two_parties_rate(world, database):
    application = _approved(world)
    _deliver(database, application)
    assert _rate(world, application["id"], world.stranger, review_speed=3).status_code == 404
    assert _rate(world, application["id"], world.psb_provider, application_quality=3).status_code == 404
    assert _rate(world, application["id"], world.manager, review_speed=3).status_code == 403


def test_a_rating_can_be_changed_for_30_days(world, database):
    application = _approved(world)
    _deliver(database, application)
    assert _rate(world, application["id"], world.applicant, review_speed=2).status_code == 201
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE ratings SET created_at = :at"), {"at": _stored(database, utcnow() - timedelta(days=29))})
    assert _rate(world, application["id"], world.applicant, review_speed=3).status_code == 200
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE ratings SET created_at = :at"), {"at": _stored(database, utcnow() - timedelta(days=31))})
    closed = _rate(world, application["id"], world.applicant, review_speed=4)
    assert closed.status_code == 409 and closed.json()["type"] == "urn:govshare:problem:rating-closed"


# --- corrections -----------------------------------------------------------------------------------------


def _report(world: World, headers, dataset: str = "HRSS-INSURANCE", **changes):
    body = {"item": "insured_since", "key": "110101199001011237", "description": "insured since 2001, not 2011", **changes}
    return world.http.post(f"/api/v1/datasets/{dataset}/corrections", json=body, headers=headers)


def test_a_demander_with_a_grant_reports_wrong_data_and_the_provider_answers(world, settings):
    application = _approved(world)
    filed = _report(world, world.applicant)
    assert filed.status_code == 201, filed.text
    correction = filed.json()
    assert (correction["status"], correction["department"], correction["provider_department"]) == ("open", "CAB", "HRSS")
    assert correction["grant_id"] == application["grant_id"] and correction["overdue"] is False
    expected_due = WorkingCalendar().due(datetime.fromisoformat(correction["filed_at"]), settings.correction_working_days)
    assert correction["due_at"] == expected_due.isoformat()

    assert world.http.get("/api/v1/corrections", headers=world.stranger).json()["items"] == []
    for headers in (world.applicant, world.hrss_provider, world.manager):
        listed = world.http.get("/api/v1/corrections", params={"status": "open"}, headers=headers).json()["items"]
        assert [item["id"] for item in listed] == [correction["id"]]

    url = f"/api/v1/corrections/{correction['id']}/answer"
    assert world.http.post(url, json={"outcome": "corrected", "answer": "x"}, headers=world.psb_provider).status_code == 404
    assert world.http.post(url, json={"outcome": "maybe", "answer": "x"}, headers=world.hrss_provider).status_code == 422
    answered = world.http.post(url, json={"outcome": "corrected", "answer": "fixed at the source"}, headers=world.hrss_provider)
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "corrected" and answered.json()["answer"] == "fixed at the source"
    again = world.http.post(url, json={"outcome": "rejected", "answer": "no"}, headers=world.hrss_provider)
    assert again.status_code == 409 and again.json()["type"] == "urn:govshare:problem:correction-answered"
    assert world.http.get("/api/v1/corrections", params={"status": "open"}, headers=world.manager).json()["items"] == []


def test_a_correction_request_is_read_by_its_two_departments_and_managers(world, client, factory):
    _approved(world)
    correction = _report(world, world.applicant).json()
    url = f"/api/v1/corrections/{correction['id']}"
    for headers in (world.applicant, world.hrss_provider, world.manager, factory.caller("DATA", "admin")):
        read = world.http.get(url, headers=headers)
        assert read.status_code == 200, read.text
        assert read.json() == correction
    # Another demander or provider learns nothing, not even that it exists; other roles are refused.
    for headers in (world.stranger, world.psb_provider):
        hidden = world.http.get(url, headers=headers)
        assert hidden.status_code == 404 and hidden.headers["content-type"].startswith("application/problem+json")
    assert world.http.get(url, headers=factory.caller("CAB", "service")).status_code == 403
    assert world.http.get(url).status_code == 401
    missing = world.http.get("/api/v1/corrections/999999", headers=world.manager)
    assert missing.status_code == 404 and missing.json()["type"] == "urn:govshare:problem:correction-not-found"
    assert world.http.get("/api/v1/corrections/abc", headers=world.manager).status_code == 422

    world.http.post(f"{url}/answer", json={"outcome": "rejected", "answer": "the register says 2011"}, headers=world.hrss_provider)
    answered = world.http.get(url, headers=world.applicant).json()
    assert (answered["status"], answered["answer"], answered["answered_by"] is not None) == ("rejected", "the register says 2011", True)


def test_only_what_was_received_can_be_reported(world):
    _approved(world)
    no_grant = _report(world, world.stranger)
    assert no_grant.status_code == 403 and no_grant.json()["type"] == "urn:govshare:problem:no-grant-on-dataset"
    not_granted = _report(world, world.applicant, item="diagnosis")
    assert not_granted.status_code == 422 and not_granted.json()["type"] == "urn:govshare:problem:invalid-correction"
    assert _report(world, world.applicant, dataset="NO-SUCH").status_code == 404
    assert _report(world, world.hrss_provider).status_code == 403  # providers do not file


def test_an_unanswered_correction_becomes_overdue(world, database):
    _approved(world)
    correction = _report(world, world.applicant).json()
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE corrections SET due_at = :at"), {"at": _stored(database, utcnow() - timedelta(hours=1))})
    overdue = world.http.get("/api/v1/corrections", params={"status": "overdue"}, headers=world.manager).json()["items"]
    assert [(item["id"], item["overdue"]) for item in overdue] == [(correction["id"], True)]


# --- metrics -----------------------------------------------------------------------------------------------


def test_metrics_are_for_managers_and_admins(client, factory):
    for roles, status in ((("manager",), 200), (("admin",), 200), (("demander",), 403), (("provider",), 403)):
        response = client.get("/api/v1/metrics/summary", headers=factory.caller("DATA", *roles))
        assert response.status_code == status, (roles, response.text)
    assert client.get("/api/v1/metrics/summary").status_code == 401


@pytest.mark.parametrize("params", [{"from": "2026-13-01"}, {"from": "2026-10-31", "to": "2026-10-01"}, {"format": "xml"}])
def test_a_wrong_period_or_format_is_a_422(client, factory, params):
    response = client.get("/api/v1/metrics/summary", params=params, headers=factory.caller("DATA", "manager"))
    assert response.status_code == 422


def test_metrics_over_http_as_json_and_csv(client, factory, database):
    write_history(database)
    manager = factory.caller("DATA", "manager")
    october = {"from": "2026-10-01", "to": "2026-10-31"}
    summary = client.get("/api/v1/metrics/summary", params=october, headers=manager).json()
    assert (summary["from"], summary["to"]) == ("2026-10-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00")
    assert (summary["applications_filed"], summary["approved"], summary["rejected"], summary["calls"]) == (10, 7, 2, 9)
    assert summary["latency_ms_p50"] == 30.0
    assert [item["dataset"] for item in summary["supply_problems"]] == ["PSB-HOUSEHOLD", "HRSS-INSURANCE", "PSB-OLD"]

    exported = client.get("/api/v1/metrics/summary", params={**october, "format": "csv"}, headers=manager)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = dict(csv.reader(io.StringIO(exported.text)))
    assert rows["metric"] == "value"
    assert (rows["applications_filed"], rows["rejections_data_not_shareable"], rows["latency_ms_p90"]) == ("10", "1", "60.0")

    datasets = client.get("/api/v1/metrics/datasets", params=october, headers=manager).json()["items"]
    assert {entry["dataset"]: entry["applications_filed"] for entry in datasets} == {
        "EDU-SCHOOLS": 4, "HRSS-INSURANCE": 2, "PSB-HOUSEHOLD": 4, "PSB-OLD": 0,
    }
    table = list(csv.DictReader(io.StringIO(
        client.get("/api/v1/metrics/datasets", params={**october, "format": "csv"}, headers=manager).text)))
    household = next(row for row in table if row["dataset"] == "PSB-HOUSEHOLD")
    assert (household["approved"], household["rejections_data_not_shareable"], household["fresh"]) == ("4", "1", "True")
    departments = client.get("/api/v1/metrics/departments", params=october, headers=manager).json()["items"]
    assert {entry["department"]: entry["applications_filed"] for entry in departments} == {"CAB": 4, "CIV": 6}
    items = client.get("/api/v1/metrics/service-items", params=october, headers=manager).json()["items"]
    assert {entry["service_item"]: entry["calls"] for entry in items}["marriage"] == 6
    providers = client.get("/api/v1/metrics/providers", params=october, headers=manager).json()["items"]
    assert {entry["provider"]: (entry["applications_filed"], entry["calls"]) for entry in providers} == {
        "EDU": (4, 0), "HRSS": (2, 1), "PSB": (4, 8),
    }
    exported = client.get("/api/v1/metrics/providers", params={**october, "format": "csv"}, headers=manager)
    table = {row["provider"]: row for row in csv.DictReader(io.StringIO(exported.text))}
    assert (table["PSB"]["approved"], table["PSB"]["rejections_data_not_shareable"], table["PSB"]["datasets_stale"]) == ("4", "1", "1")
    assert client.get("/api/v1/metrics/providers", headers=factory.caller("PSB", "provider")).status_code == 403
