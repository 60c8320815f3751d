"""A scripted history with explicit timestamps, written straight into the records evaluation reads.

October 2026 is the period under test. The right answers are worked out by hand
in the tests next to each assertion.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from approvals.models import Application, Grant
from directory.models import Dataset, DatasetVersion
from evaluation.models import Correction, Rating
from exchange.models import AccessLogEntry
from govshare.models import Department

PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def at(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


DATASETS = {  # code: (department, update frequency)
    "PSB-HOUSEHOLD": ("PSB", "daily"),
    "HRSS-INSURANCE": ("HRSS", "monthly"),
    "EDU-SCHOOLS": ("EDU", "realtime"),
    "PSB-OLD": ("PSB", "weekly"),
}

# number: (dataset, applying department, service item, filed_at, decided_at, status, reason)
APPLICATIONS = {
    1: ("PSB-HOUSEHOLD", "CAB", "marriage", at(10, 1), at(10, 2), "approved", None),
    2: ("PSB-HOUSEHOLD", "CAB", "marriage", at(10, 3), at(10, 6), "approved", None),
    3: ("PSB-HOUSEHOLD", "CIV", "birth", at(10, 5), at(10, 7), "rejected", "data_not_shareable"),
    4: ("PSB-HOUSEHOLD", "CIV", "birth", at(10, 10), at(10, 20), "approved", None),
    5: ("HRSS-INSURANCE", "CAB", "marriage", at(10, 12), at(10, 13, 12), "rejected", "no_legal_basis"),
    6: ("HRSS-INSURANCE", "CAB", "pension", at(10, 15), None, "submitted", None),
    7: ("PSB-HOUSEHOLD", "CAB", "marriage", at(9, 25), at(10, 1, 12), "approved", None),
    8: ("EDU-SCHOOLS", "CIV", "school", at(10, 30), at(11, 2), "approved", None),
    9: ("PSB-HOUSEHOLD", "CAB", "marriage", None, None, "draft", None),
    10: ("EDU-SCHOOLS", "CIV", "school", at(10, 20), at(10, 21), "approved", None),
    11: ("EDU-SCHOOLS", "CIV", "school", at(10, 21), at(10, 22), "approved", None),
    12: ("EDU-SCHOOLS", "CIV", "school", at(10, 22), at(10, 23), "approved", None),
}
GRANTED = (1, 2, 4, 7, 8)  # these approvals got a grant (created at the decision)

# (at, kind, department, dataset, application, rows, status, latency_ms)
LEDGER = [
    (at(10, 2, 6), "lookup", "CAB", "PSB-HOUSEHOLD", 1, 1, 200, 10.0),
    (at(10, 2, 7), "lookup", "CAB", "PSB-HOUSEHOLD", 1, 0, 404, 20.0),
    (at(10, 3), "query", "CAB", "PSB-HOUSEHOLD", 1, 50, 200, 30.0),
    (at(10, 4), "query", "CAB", "PSB-HOUSEHOLD", 1, 0, 500, 40.0),
    (at(10, 8), "extract", "CAB", "PSB-HOUSEHOLD", 2, 1000, 200, 500.0),
    (at(10, 21), "stream", "CIV", "PSB-HOUSEHOLD", 4, 200, 200, 50.0),
    (at(10, 22), "lookup", "CIV", "PSB-HOUSEHOLD", 4, 1, 429, 5.0),
    (at(10, 1, 18), "lookup", "CAB", "PSB-HOUSEHOLD", 7, 1, 200, 60.0),
    (at(11, 3), "lookup", "CIV", "EDU-SCHOOLS", 8, 1, 200, 1.0),
    (at(10, 15), "deposit", "CAB", "HRSS-INSURANCE", None, 3, 200, 2.0),
]

# (application, party, department, scores, created_at)
RATINGS = [
    (1, "demander", "CAB", {"review_speed": 4, "data_quality": 2, "stability": 3}, at(10, 10)),
    (1, "provider", "PSB", {"application_quality": 5}, at(10, 11)),
    (4, "demander", "CIV", {"review_speed": 2, "data_quality": 1, "stability": 5}, at(10, 25)),
    (2, "demander", "CAB", {"review_speed": 5, "data_quality": 5, "stability": 5}, at(11, 5)),
]

# (dataset, reporting department, filed_at, due_at, answered_at)
CORRECTIONS = [
    ("PSB-HOUSEHOLD", "CAB", at(10, 5), at(10, 12), None),
    ("PSB-HOUSEHOLD", "CIV", at(10, 25), at(10, 31), at(10, 28)),
    ("HRSS-INSURANCE", "CAB", at(9, 15), at(9, 22), None),
    ("HRSS-INSURANCE", "CAB", at(11, 20), at(11, 27), None),
]

# dataset: version times
VERSIONS = {
    "PSB-HOUSEHOLD": [at(10, 31, 12), at(11, 5)],
    "HRSS-INSURANCE": [at(9, 20)],
    "EDU-SCHOOLS": [at(9, 1)],
}


def write_history(database) -> dict[int, int]:
    """Write the history; returns application number -> application id."""
    ids: dict[int, int] = {}
    with database.transaction() as session:
        for code in ("PSB", "HRSS", "EDU", "CAB", "CIV"):
            if session.get(Department, code) is None:
                session.add(Department(code=code, name=f"{code} department", created_at=at(1, 1)))
        session.flush()
        datasets = {}
        for code, (department, frequency) in DATASETS.items():
            dataset = Dataset(
                code=code, department_code=department, title=code, domain="test", share_type="unconditional",
                open_type="closed", update_frequency=frequency, offers_extract=True, offers_interface=True, status="active",
                document={"code": code, "items": [{"name": "citizen_id", "type": "string"}, {"name": "name", "type": "string"}]},
                search_text=code.lower(), revision=1, created_at=at(1, 1), updated_at=at(1, 1),
            )
            session.add(dataset)
            session.flush()
            datasets[code] = dataset
            for number, created in enumerate(VERSIONS.get(code, []), start=1):
                session.add(DatasetVersion(
                    dataset_id=dataset.id, number=number, rows=10, source_format="csv", path=f"{code}/{number}",
                    size_bytes=100, sha256="0" * 64, items=[], quality={}, actor="test", created_at=created,
                ))
        grants: dict[int, int] = {}
        for number, (code, department, item, filed, decided, status, reason) in APPLICATIONS.items():
            dataset = datasets[code]
            application = Application(
                dataset_id=dataset.id, dataset_code=code, provider_department=dataset.department_code,
                department_code=department, applicant=f"client:{department}", service_item=item, basis="law",
                purpose="test", items=["citizen_id", "name"], justifications={}, delivery="interface",
                period_start=date(2026, 10, 1), period_end=date(2027, 9, 30), status=status, inspection={},
                created_at=filed or at(10, 1), updated_at=decided or filed or at(10, 1), filed_at=filed,
                decision_due=at(10, 29) if status == "submitted" else None, decided_at=decided, reason_code=reason,
                conditions=[], masks={},
            )
            session.add(application)
            session.flush()
            ids[number] = application.id
            if number in GRANTED:
                grant = Grant(
                    application_id=application.id, department_code=department, dataset_id=dataset.id, dataset_code=code,
                    columns=["citizen_id", "name"], delivery="interface", conditions=[], masks={},
                    valid_from=date(2026, 10, 1), valid_until=date(2027, 9, 30), created_at=decided,
                )
                session.add(grant)
                session.flush()
                application.grant_id = grant.id
                grants[number] = grant.id
        for moment, kind, department, code, number, rows, status, latency in LEDGER:
            application = None if number is None else ids[number]
            session.add(AccessLogEntry(
                at=moment, kind=kind, client_id=f"client-{department}", department_code=department, dataset_code=code,
                grant_id=None if number is None else grants[number], application_id=application,
                service_item=None if number is None else APPLICATIONS[number][2], rows=rows, status=status, latency_ms=latency,
            ))
        for number, party, department, scores, created in RATINGS:
            code, applicant, item = APPLICATIONS[number][:3]
            session.add(Rating(
                application_id=ids[number], party=party, department_code=department, applicant_department=applicant,
                dataset_code=code, service_item=item, rated_by=f"client:{department}", created_at=created,
                updated_at=created, **scores,
            ))
        for code, department, filed, due, answered in CORRECTIONS:
            dataset = datasets[code]
            session.add(Correction(
                dataset_id=dataset.id, dataset_code=code, provider_department=dataset.department_code,
                department_code=department, item="name", key="110101199001011237", description="wrong name",
                status="corrected" if answered else "open", filed_by=f"client:{department}", filed_at=filed, due_at=due,
                answered_at=answered, answered_by="client:provider" if answered else None, answer="fixed" if answered else None,
            ))
    return ids
