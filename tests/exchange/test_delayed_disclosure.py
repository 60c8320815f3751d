"""Delayed disclosure (DESIGN.md, "Delayed disclosure"): the application asks, the inspection checks the basis and the cap,
the citizen's access log leaves the grant's lines out until the day, a manager sees them early, the metrics count them.

The date is injected (``approvals.service.utcnow``, from which the configured zone's day is counted); nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from approvals import service as approvals_service
from exchange import service as exchange_service
from exchange.models import AccessLogEntry
from govshare import storage
from tests.approvals.test_api import application_body
from tests.exchange.test_interfaces import Exchange

BASIS = "Criminal Procedure Law art. 152: investigation 2026-77"


def _period() -> dict:
    return {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=90)).isoformat()}


def disclosure_body(delay_until, basis: str | None = BASIS, **changes) -> dict:
    disclosure = {"delay_until": delay_until.isoformat() if isinstance(delay_until, date) else delay_until}
    if basis is not None:
        disclosure["basis"] = basis
    return application_body(period=_period(), service_item="fraud-investigation", purpose="investigate benefit fraud",
                            disclosure=disclosure, **changes)


class Delayed(Exchange):
    """CAB's plain interface grant (from ``Exchange``), and EDU's on the same data with a delayed disclosure."""

    def __init__(self, client, factory, tmp_path) -> None:
        super().__init__(client, factory, tmp_path)
        self.delay_until = date.today() + timedelta(days=30)
        self.edu_demander = factory.caller("EDU", "demander")
        self.edu_service = factory.caller("EDU", "service")
        filed = client.post("/api/v1/applications", json=disclosure_body(self.delay_until), headers=self.edu_demander)
        assert filed.status_code == 201, filed.text
        self.delayed_application = filed.json()
        assert client.post(f"/api/v1/applications/{filed.json()['id']}/decision", json={"decision": "approve"},
                           headers=self.manager).status_code == 200
        signed = client.post(f"/api/v1/applications/{filed.json()['id']}/provider-decision", json={"decision": "approve"},
                             headers=self.provider)
        self.delayed_grant = signed.json()["grant_id"]
        self.person = self.rows[1]["citizen_id"]  # district 02: within both grants

    def log(self, headers=None, **params):
        return self.http.get(f"/api/v1/citizens/{self.person}/access-log", params=params, headers=headers or self.portal)


@pytest.fixture
def world(client, factory, tmp_path, app) -> Delayed:
    world = Delayed(client, factory, tmp_path)
    assert world.lookup(world.person).status_code == 200  # CAB: disclosed at once
    assert world.lookup(world.person, headers=world.edu_service).status_code == 200  # EDU: delayed
    assert world.http.post("/api/v1/exchange/PSB-HOUSEHOLD/records:batch", json={"keys": [world.person]},
                           headers=world.edu_service).status_code == 200
    app.state.ledger.flush()
    return world


def on_day(monkeypatch, day: date) -> None:
    """Make ``day`` today, as grants and disclosures count it."""
    moment = datetime(day.year, day.month, day.day, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(approvals_service, "utcnow", lambda: moment)


# --- filing and the inspection -------------------------------------------------------------------------------------------


def test_the_application_carries_the_disclosure_and_the_manager_sees_it_with_a_warning(world):
    shown = world.http.get(f"/api/v1/applications/{world.delayed_application['id']}", headers=world.manager).json()
    assert shown["disclosure"] == {"delay_until": world.delay_until.isoformat(), "basis": BASIS}
    findings = {finding["rule"]: finding for finding in shown["inspection"]["findings"]}
    assert findings["disclosure-delayed"]["severity"] == "warning" and BASIS in findings["disclosure-delayed"]["message"]
    plain = world.http.get(f"/api/v1/applications/{world.application_id}", headers=world.manager).json()
    assert "disclosure" not in plain


@pytest.mark.parametrize(("delay", "basis", "rule", "field"), [
    (30, None, "disclosure-basis", "disclosure.basis"),
    (30, "   ", "disclosure-basis", "disclosure.basis"),
    (0, BASIS, "disclosure-delay-past", "disclosure.delay_until"),
    (-3, BASIS, "disclosure-delay-past", "disclosure.delay_until"),
    (181, BASIS, "disclosure-delay-maximum", "disclosure.delay_until"),
])
def test_filing_without_a_basis_in_the_past_or_past_the_cap_is_a_422_naming_the_field(client, factory, delay, basis, rule, field):
    from tests.factories import DirectoryFactory

    DirectoryFactory(factory).dataset("PSB-HOUSEHOLD", "PSB")
    demander = factory.caller("CAB", "demander")
    response = client.post("/api/v1/applications", json=disclosure_body(date.today() + timedelta(days=delay), basis),
                           headers=demander)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"] == "urn:govshare:problem:inspection-failed" and field in problem["detail"]
    assert rule in {finding["rule"] for finding in problem["inspection"]["findings"] if finding["severity"] == "error"}
    # Nothing was stored; as a draft it is kept, flagged, and cannot be submitted.
    assert client.get("/api/v1/applications", headers=demander).json()["items"] == []
    draft = client.post("/api/v1/applications", params={"draft": "true"},
                        json=disclosure_body(date.today() + timedelta(days=delay), basis), headers=demander).json()
    assert draft["inspection"]["passed"] is False
    assert client.post(f"/api/v1/applications/{draft['id']}/submit", headers=demander).status_code == 422


def test_the_cap_is_the_setting_and_a_delay_at_the_cap_is_accepted(client, factory, app):
    from tests.factories import DirectoryFactory

    DirectoryFactory(factory).dataset("PSB-HOUSEHOLD", "PSB")
    demander = factory.caller("CAB", "demander")
    at_default_cap = client.post("/api/v1/applications", json=disclosure_body(date.today() + timedelta(days=180)), headers=demander)
    assert at_default_cap.status_code == 201, at_default_cap.text
    app.state.settings = app.state.settings.model_copy(update={"disclosure_max_delay_days": 20})
    over = client.post("/api/v1/applications", json=disclosure_body(date.today() + timedelta(days=21)), headers=demander)
    assert over.status_code == 422 and "at most 20 days" in over.json()["detail"]
    assert client.post("/api/v1/applications", json=disclosure_body(date.today() + timedelta(days=20)),
                       headers=demander).status_code == 201


@pytest.mark.parametrize("disclosure", [
    {"delay_until": "2027-02-30", "basis": BASIS}, {"delay_until": "soon", "basis": BASIS}, {"basis": BASIS},
    {"delay_until": "2027-01-10", "basis": "x" * 2001}, {"delay_until": "2027-01-10", "basis": BASIS, "extra": 1},
    "2027-01-10", {"delay_until": 20270110, "basis": BASIS},
])
def test_a_malformed_disclosure_is_a_422_naming_the_field_and_stores_nothing(client, factory, disclosure):
    from tests.factories import DirectoryFactory

    DirectoryFactory(factory).dataset("PSB-HOUSEHOLD", "PSB")
    demander = factory.caller("CAB", "demander")
    body = application_body(period=_period(), disclosure=disclosure)
    response = client.post("/api/v1/applications", json=body, headers=demander)
    assert response.status_code == 422, response.text
    assert "disclosure" in response.text
    assert client.get("/api/v1/applications", headers=demander).json()["items"] == []


# --- the citizen's access log, before and after the day ------------------------------------------------------------------


def test_before_the_day_the_citizen_sees_only_the_undelayed_lines(world, monkeypatch):
    on_day(monkeypatch, world.delay_until - timedelta(days=1))
    entries = world.log().json()["entries"]
    assert [(entry["department"], entry["delayed_until"]) for entry in entries] == [("CAB", None)]


def test_from_the_day_on_the_lines_show_marked_as_delayed_with_the_basis(world, monkeypatch):
    on_day(monkeypatch, world.delay_until)
    entries = world.log().json()["entries"]
    delayed = [entry for entry in entries if entry["department"] == "EDU"]
    assert len(delayed) == 2 and len(entries) == 3
    assert {(entry["delayed_until"], entry["delay_basis"], entry["purpose"]) for entry in delayed} == {
        (world.delay_until.isoformat(), BASIS, "investigate benefit fraud")}
    cab = next(entry for entry in entries if entry["department"] == "CAB")
    assert cab["delayed_until"] is None and cab["delay_basis"] is None


def test_a_manager_sees_the_delayed_lines_before_the_day_and_the_portal_may_not_ask(world, monkeypatch):
    on_day(monkeypatch, world.delay_until - timedelta(days=1))
    early = world.log(world.manager, include_delayed="true").json()["entries"]
    assert sorted(entry["department"] for entry in early) == ["CAB", "EDU", "EDU"]
    assert {entry["delayed_until"] for entry in early if entry["department"] == "EDU"} == {world.delay_until.isoformat()}
    assert [entry["department"] for entry in world.log(world.manager).json()["entries"]] == ["CAB"]  # without asking: as the citizen
    denied = world.log(include_delayed="true")
    assert denied.status_code == 403 and denied.headers["content-type"].startswith("application/problem+json")
    assert "EDU" not in denied.text
    for other in (world.edu_service, world.edu_demander, world.service, world.provider):
        assert world.log(other, include_delayed="true").status_code == 403
    assert world.log(world.manager, include_delayed="maybe").status_code == 422


def test_the_service_counts_lines_by_the_injected_day(world, database, settings):
    store = storage.for_settings(settings)
    with database.transaction(write=False) as session:
        def departments(day: date, **options) -> list[str]:
            lines = exchange_service.citizen_access_log(session, citizen_id=world.person, store=store, today=day, **options)
            return sorted(line.entry.department_code for line in lines)

        assert departments(world.delay_until - timedelta(days=1)) == ["CAB"]
        assert departments(world.delay_until) == ["CAB", "EDU", "EDU"]
        assert departments(world.delay_until - timedelta(days=29), include_delayed=True) == ["CAB", "EDU", "EDU"]


# --- the metrics -----------------------------------------------------------------------------------------------------------


def test_the_metrics_count_delayed_lines_until_the_day(world, monkeypatch, database):
    with database.transaction(write=False) as session:
        edu_lines = len(session.execute(select(AccessLogEntry).where(AccessLogEntry.grant_id == world.delayed_grant)).all())
    assert edu_lines == 2
    summary = world.http.get("/api/v1/metrics/summary", headers=world.manager).json()
    assert (summary["delayed_disclosures"], summary["delayed_disclosures_released"], summary["delayed_disclosure_grants"]) == (2, 0, 1)
    on_day(monkeypatch, world.delay_until)
    later = world.http.get("/api/v1/metrics/summary", headers=world.manager).json()
    assert (later["delayed_disclosures"], later["delayed_disclosures_released"], later["delayed_disclosure_grants"]) == (0, 2, 0)
    csv = world.http.get("/api/v1/metrics/summary", params={"format": "csv"}, headers=world.manager).text
    assert "delayed_disclosures," in csv
