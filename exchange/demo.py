"""Demo approvals and exchange traffic for ``govshare serve --demo``.

Applications in every state (draft, submitted, awaiting the provider, approved with
grants for interfaces and extracts, rejected with reasons, returned, withdrawn, one
overdue and escalated; grants active, paused, expired and revoked; one asking for a delayed disclosure), made through the same service functions as the API, and a
month of ledger lines of past lookups of real demo citizens, so that every page and
endpoint has something to show.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

import duckdb
from sqlalchemy.orm import Session

from approvals import service as approvals
from directory import service as directory
from exchange.service import prebuild_keyed_stores
from exchange.models import AccessLogEntry, AccessLogKey
from govshare import storage
from govshare.db import utcnow
from govshare.settings import Settings

ACTOR = "demo"


def _period(today: date, days: int = 330) -> dict[str, str]:
    return {"start": today.isoformat(), "end": (today + timedelta(days=days)).isoformat()}


def _application(dataset: str, service_item: str, items: list[str], delivery: str, basis: str, purpose: str,
                 period: dict[str, str], **extra) -> dict:
    return {"dataset": dataset, "service_item": service_item, "basis": basis, "items": items, "delivery": delivery,
            "period": period, "purpose": purpose, **extra}


def seed_exchange(session: Session, *, settings: Settings) -> dict[str, int]:
    """File the demo applications, decide them, and write past ledger lines; returns counts by status."""
    now = utcnow()
    today = approvals.today(settings, now)
    period = _period(today)

    def file(department: str, document: dict, *, draft: bool = False, when=None):
        return approvals.file_application(session, department=department, actor=f"{ACTOR}:{department}", document=document,
                                          draft=draft, settings=settings, now=when or now)

    def decide(application, decision: str, **kwargs):
        return approvals.decide(session, application=application, actor=f"{ACTOR}:manager",
                                decision=approvals.Decision(decision, **kwargs), settings=settings)

    def sign_off(application, decision: str = "approve", **kwargs):
        return approvals.provider_decide(session, application=application, actor=f"{ACTOR}:provider",
                                         decision=approvals.Decision(decision, **kwargs), settings=settings)

    household_basis = "Household Registration Regulation art. 7"
    # The grant whose past month of lookups the demo shows: filed and decided before them.
    filed_at = now - timedelta(days=40)
    marriage = file("CAB", _application(
        "PSB-HOUSEHOLD", "marriage-registration", ["citizen_id", "name", "district", "household_no"], "interface",
        "Marriage Registration Regulation art. 5", "register marriages without asking for household booklets",
        _period(filed_at.date()), scenario="verify both parties' household registration",
        justifications={"name": "match the applicant"}, row_filter={"district": {"in": ["110101", "110102", "110105"]}}),
        when=filed_at)
    approvals.decide(session, application=marriage, actor=f"{ACTOR}:manager", settings=settings,
                     decision=approvals.Decision("approve", comment="basis checked"), now=filed_at + timedelta(days=3))
    approvals.provider_decide(session, application=marriage, actor=f"{ACTOR}:provider", settings=settings,
                              decision=approvals.Decision("approve"), now=filed_at + timedelta(days=4))

    pension = file("HRSS", _application(
        "PSB-HOUSEHOLD", "pension-eligibility", ["citizen_id", "birth_date", "district"], "extract",
        "Social Insurance Law art. 16", "find residents reaching pension age without asking them", period))
    decide(pension, "approve", masks={"birth_date": "year_only"})
    sign_off(pension)

    enrolment_check = file("EDU", _application(
        "HRSS-INSURANCE", "school-enrolment-subsidy", ["citizen_id", "insurance_type", "active"], "interface",
        "Compulsory Education Law art. 12", "check parents' insurance for the enrolment subsidy", period))
    decide(enrolment_check, "approve")

    file("HEALTH", _application(
        "CAB-MARRIAGE", "prenatal-care-registration", ["husband_id", "wife_id", "registered_on"], "interface",
        "Maternal and Infant Health Law art. 9", "register prenatal care for married couples", period))

    waiting_provider = file("EDU", _application(
        "PSB-HOUSEHOLD", "school-admission-by-residence", ["citizen_id", "district", "household_no"], "interface",
        household_basis, "admit pupils by registered residence", period))
    decide(waiting_provider, "approve")

    too_much = file("HRSS", _application(
        "EDU-ENROLMENT", "unemployment-benefit", ["citizen_id", "school", "grade", "enrolled_on"], "extract",
        "Employment Promotion Law art. 50", "check dependants", period))
    decide(too_much, "reject", reason_code="items_beyond_need", comment="school and grade are not needed for the benefit")

    not_shareable = file("CAB", _application(
        "HEALTH-BIRTH", "household-registration-of-newborns", ["certificate_no", "child_name", "mother_id"], "interface",
        household_basis, "register newborns", period, justifications={"child_name": "registered name"}))
    decide(not_shareable, "approve")
    sign_off(not_shareable, "reject", reason_code="data_not_shareable", comment="certificates are being re-issued this year")

    returned = file("CAB", _application(
        "HRSS-INSURANCE", "minimum-living-allowance", ["citizen_id", "monthly_base", "active"], "extract",
        "Social Assistance Regulation art. 11", "assess income for the allowance", period,
        justifications={"monthly_base": "income assessment needs the contribution base"}))
    decide(returned, "return", comment="limit the rows to applicants' districts with a row filter")

    withdrawn = file("HEALTH", _application(
        "PSB-HOUSEHOLD", "vaccination-reminders", ["citizen_id", "district"], "interface", household_basis,
        "remind parents of vaccinations", period))
    approvals.withdraw(session, application=withdrawn, actor=f"{ACTOR}:HEALTH")

    file("CAB", _application(
        "HEALTH-BIRTH", "adoption-registration", ["certificate_no", "birth_date"], "interface",
        "Adoption Registration Measures art. 4", "confirm the birth of the child to be adopted", period), draft=True)

    late_start = now - timedelta(days=21)
    overdue = file("EDU", _application(
        "CAB-MARRIAGE", "family-status-for-boarding", ["husband_id", "wife_id"], "extract",
        "Compulsory Education Law art. 12", "boarding allocation by family status",
        _period(late_start.date()), justifications={}), when=late_start)
    approvals.escalate_overdue(session, now=now)

    # A grant that ended by itself: filed, approved and used up months ago.
    long_ago = now - timedelta(days=150)
    expired = file("HEALTH", _application(
        "HRSS-INSURANCE", "maternity-allowance-campaign", ["citizen_id", "insurance_type", "active"], "interface",
        "Social Insurance Law art. 54", "check insurance for the winter maternity allowance campaign",
        _period(long_ago.date(), days=90)), when=long_ago)
    approvals.decide(session, application=expired, actor=f"{ACTOR}:manager", settings=settings,
                     decision=approvals.Decision("approve"), now=long_ago + timedelta(days=2))
    # And one a manager ended before its time.
    revoked = file("CAB", _application(
        "HRSS-INSURANCE", "funeral-grant", ["citizen_id", "active"], "interface",
        "Funeral Administration Regulation art. 8", "check the deceased's insurance for the funeral grant", period))
    decide(revoked, "approve")
    approvals.revoke_grant(session, grant=session.get(approvals.Grant, revoked.grant_id), actor=f"{ACTOR}:manager",
                           reason="the service system sent lookups outside the funeral grant's purpose")

    # One the providing department paused (deliveries answer 403 until resumed), whose accesses citizens
    # see only from a later day (a delayed disclosure, for an investigation).
    paused = file("EDU", _application(
        "HRSS-INSURANCE", "tuition-fee-waiver-review", ["citizen_id", "insurance_type", "active"], "interface",
        "Compulsory Education Law art. 12", "review tuition fee waivers granted on insurance status", period,
        disclosure={"delay_until": (today + timedelta(days=90)).isoformat(),
                    "basis": "Audit Law art. 31: fee waiver fraud investigation, case 2026-114"}))
    decide(paused, "approve")
    approvals.pause_grant(session, grant=session.get(approvals.Grant, paused.grant_id), actor=f"{ACTOR}:HRSS-provider",
                          reason="insurance status under correction after a data error; deliveries held until it is fixed",
                          today=today)

    _ledger(session, settings=settings, application=marriage)
    prebuild_keyed_stores(session, store=storage.for_settings(settings))
    counts: dict[str, int] = {}
    for application in (marriage, pension, enrolment_check, waiting_provider, too_much, not_shareable, returned, withdrawn, overdue,
                        expired, revoked, paused):
        counts[application.status] = counts.get(application.status, 0) + 1
    return counts


def _ledger(session: Session, *, settings: Settings, application) -> None:
    """A month of past lookups under the marriage-registration grant, for real demo citizens."""
    grant = session.get(approvals.Grant, application.grant_id)
    dataset = approvals.get_dataset(session, grant.dataset_code)
    version = directory.latest_version(session, dataset=dataset)
    if version is None:
        return
    snapshot = directory.snapshot_path(storage.for_settings(settings), version)
    keys = [row[0] for row in duckdb.connect().execute(
        "SELECT citizen_id FROM read_parquet(?) WHERE district IN ('110101', '110102') LIMIT 300", [str(snapshot)]).fetchall()]
    generator = random.Random(7)
    now = utcnow()
    for index, key in enumerate(keys):
        entry = AccessLogEntry(
            at=now - timedelta(minutes=generator.randrange(1, 30 * 24 * 60)), kind="lookup", client_id="demo-cab-service",
            department_code="CAB", dataset_code=dataset.code, grant_id=grant.id, application_id=application.id,
            service_item=application.service_item, basis=application.basis, purpose=application.purpose, rows=1, status=200,
            latency_ms=round(generator.uniform(0.6, 4.0), 2),
        )
        session.add(entry)
        session.flush()
        session.add(AccessLogKey(entry_id=entry.id, key=key))
        if index % 5 == 0:
            session.add(AccessLogEntry(
                at=entry.at + timedelta(seconds=30), kind="lookup", client_id="demo-cab-service", department_code="CAB",
                dataset_code=dataset.code, grant_id=grant.id, application_id=application.id,
                service_item=application.service_item, basis=application.basis, purpose=application.purpose, rows=0, status=404,
                latency_ms=0.9,
            ))
    session.flush()
