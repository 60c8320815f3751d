"""Demo directory for ``govshare serve --demo``: five datasets of synthetic citizens, loaded as version 1.

Citizens are generated deterministically in DuckDB (vectorised SQL, no Python
loop per row) with valid GB 11643 citizen IDs: a district code, a birth date and
a sequence number, then the check character computed from the 17 digits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.orm import Session

from directory import service
from directory.loading import CITIZEN_ID_CHECK, CITIZEN_ID_WEIGHTS
from govshare.db import quote_path
from govshare.storage import Store

DEMO_ACTOR = "demo"
DISTRICTS = ["110101", "110102", "110105", "110106", "110107", "110108", "110109", "110111"]
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma", "Zhu", "Hu", "Guo"]
GIVEN = ["Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong", "Yan", "Jie", "Tao", "Ming", "Chao", "Xiu", "Hua", "Ping", "Gang"]
BIRTH_DAYS = 29_200  # birth dates spread over 80 years from 1940-01-01


def _check_char_sql(first17: str) -> str:
    total = " + ".join(
        f"CAST(substr({first17}, {position + 1}, 1) AS INTEGER) * {weight}"
        for position, weight in enumerate(CITIZEN_ID_WEIGHTS)
    )
    return f"substr('{CITIZEN_ID_CHECK}', (({total}) % 11) + 1, 1)"


def citizens_sql(rows: int) -> str:
    """A DuckDB query of ``rows`` synthetic citizens (unique, valid IDs), the same every time."""
    districts = ", ".join(f"'{d}'" for d in DISTRICTS)
    surnames = ", ".join(f"'{s}'" for s in SURNAMES)
    given = ", ".join(f"'{g}'" for g in GIVEN)
    # (i * 7919) mod BIRTH_DAYS is a bijection within each block of BIRTH_DAYS rows, and
    # the block number is the sequence: (birth date, sequence) is unique per citizen.
    return f"""
        WITH base AS (
            SELECT i,
                   [{districts}][1 + CAST(i % {len(DISTRICTS)} AS INTEGER)] AS district,
                   DATE '1940-01-01' + CAST((i * 7919) % {BIRTH_DAYS} AS INTEGER) AS birth_date,
                   lpad(CAST(i // {BIRTH_DAYS} AS VARCHAR), 3, '0') AS sequence
            FROM range({int(rows)}) AS t(i)
        ), ids AS (
            SELECT *, district || strftime(birth_date, '%Y%m%d') || sequence AS first17 FROM base
        )
        SELECT first17 || {_check_char_sql("first17")} AS citizen_id,
               [{surnames}][1 + CAST(i % {len(SURNAMES)} AS INTEGER)] || ' ' ||
               [{given}][1 + CAST((i // {len(SURNAMES)}) % {len(GIVEN)} AS INTEGER)] AS name,
               CASE WHEN CAST(substr(sequence, 3, 1) AS INTEGER) % 2 = 1 THEN 'male' ELSE 'female' END AS gender,
               birth_date,
               district,
               'HH' || lpad(CAST(i // 3 AS VARCHAR), 9, '0') AS household_no,
               i
        FROM ids
    """


def _item(name: str, type_: str, description: str, sensitivity: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "description": description, "sensitivity": sensitivity, **extra}


def _dataset(code: str, department: str, title: str, summary: str, domain: str, share_type: str, items: list, **extra: Any) -> dict[str, Any]:
    return {
        "code": code, "title": title, "department": department, "summary": summary, "domain": domain,
        "share_type": share_type, "open_type": "closed", "update_frequency": "daily",
        "delivery_modes": ["extract", "interface"], "items": items, **extra,
    }


CITIZEN = _item("citizen_id", "string", "citizen ID number (GB 11643)", "personal", required=True, is_key=True, format="citizen_id")

DEMO_DATASETS: list[tuple[dict[str, Any], str]] = [
    (
        _dataset(
            "PSB-HOUSEHOLD", "PSB", "Household registration", "Registered residents and their households",
            "household", "conditional",
            [CITIZEN, _item("name", "string", "full name", "personal", required=True),
             _item("gender", "string", "gender", "personal", pattern="^(male|female)$"),
             _item("birth_date", "date", "date of birth", "personal", required=True),
             _item("district", "string", "district code of residence", "internal", pattern="^[0-9]{6}$"),
             _item("household_no", "string", "household registration number", "internal")],
            lookup_key="citizen_id", keywords=["hukou", "residents", "population"],
            legal_basis="Household Registration Regulation", restriction_basis="Personal data: shared for a statutory public service only",
            share_conditions="An application naming the service item and its legal basis", category="basic",
            contact={"name": "PSB data office", "email": "data@psb.example.gov"},
        ),
        "SELECT citizen_id, name, gender, birth_date, district, household_no FROM citizens",
    ),
    (
        _dataset(
            "HEALTH-BIRTH", "HEALTH", "Birth medical certificates", "Births certified by hospitals, with the parents' IDs",
            "health", "conditional",
            [_item("certificate_no", "string", "birth medical certificate number", "internal", required=True, is_key=True),
             _item("child_name", "string", "the newborn's name", "personal"),
             _item("birth_date", "date", "date of birth", "personal", required=True),
             _item("mother_id", "string", "mother's citizen ID", "personal", required=True, format="citizen_id"),
             _item("hospital", "string", "certifying hospital", "internal")],
            lookup_key="mother_id", keywords=["birth", "newborn", "certificate"], related=["PSB-HOUSEHOLD"],
            legal_basis="Maternal and Infant Health Care Law", category="theme",
        ),
        "SELECT 'BC' || lpad(CAST(i AS VARCHAR), 10, '0') AS certificate_no, name AS child_name, "
        "DATE '2020-01-01' + CAST(i % 1800 AS INTEGER) AS birth_date, citizen_id AS mother_id, "
        "['City Hospital', 'Maternity Hospital', 'District Hospital'][1 + CAST(i % 3 AS INTEGER)] AS hospital "
        "FROM citizens WHERE gender = 'female' AND i % 10 = 0",
    ),
    (
        _dataset(
            "CAB-MARRIAGE", "CAB", "Marriage registrations", "Marriages registered with the civil affairs bureau",
            "civil-affairs", "conditional",
            [_item("certificate_no", "string", "marriage certificate number", "internal", required=True, is_key=True),
             _item("husband_id", "string", "husband's citizen ID", "personal", required=True, format="citizen_id"),
             _item("wife_id", "string", "wife's citizen ID", "personal", required=True, format="citizen_id"),
             _item("registered_on", "date", "date of registration", "personal", required=True)],
            lookup_key="husband_id", keywords=["marriage", "family"], legal_basis="Marriage Registration Regulation",
        ),
        "SELECT 'MC' || lpad(CAST(h.i AS VARCHAR), 10, '0') AS certificate_no, h.citizen_id AS husband_id, "
        "w.citizen_id AS wife_id, DATE '2000-01-01' + CAST(h.i % 9000 AS INTEGER) AS registered_on "
        "FROM citizens h JOIN citizens w ON w.i = h.i + 1 WHERE h.i % 8 = 0",
    ),
    (
        _dataset(
            "HRSS-INSURANCE", "HRSS", "Social insurance enrolment", "Citizens enrolled in pension and medical insurance",
            "social-insurance", "unconditional",
            [CITIZEN, _item("insurance_type", "string", "pension or medical", "internal", pattern="^(pension|medical)$"),
             _item("monthly_base", "number", "monthly contribution base (CNY)", "sensitive"),
             _item("insured_since", "date", "first day insured", "personal"),
             _item("active", "boolean", "currently contributing", "internal")],
            lookup_key="citizen_id", keywords=["pension", "medical insurance", "social security"], category="theme",
        ),
        "SELECT citizen_id, CASE WHEN i % 2 = 0 THEN 'pension' ELSE 'medical' END AS insurance_type, "
        "3000 + (i % 200) * 50.5 AS monthly_base, DATE '2005-01-01' + CAST(i % 7000 AS INTEGER) AS insured_since, "
        "i % 7 <> 0 AS active FROM citizens WHERE i % 2 = 0",
    ),
    (
        _dataset(
            "EDU-ENROLMENT", "EDU", "School enrolment", "Pupils enrolled in primary and secondary schools",
            "education", "conditional",
            [CITIZEN, _item("school", "string", "school name", "internal"),
             _item("grade", "integer", "grade 1-12", "internal"),
             _item("enrolled_on", "date", "date of enrolment", "personal")],
            lookup_key="citizen_id", keywords=["school", "pupils", "enrolment"], related=["PSB-HOUSEHOLD"],
        ),
        "SELECT citizen_id, 'School No. ' || CAST(1 + i % 40 AS VARCHAR) AS school, CAST(1 + i % 12 AS INTEGER) AS grade, "
        "DATE '2015-09-01' + CAST(365 * (i % 10) AS INTEGER) AS enrolled_on FROM citizens WHERE i % 5 = 0",
    ),
]


def seed_directory(session: Session, *, store: Store, rows: int = 200_000, actor: str = DEMO_ACTOR) -> list[str]:
    """Register the demo datasets and load each one's first version from ``rows`` synthetic citizens."""
    codes = []
    with tempfile.TemporaryDirectory(prefix="govshare-demo-") as folder:
        connection = duckdb.connect(config={"threads": 2, "memory_limit": "512MB"})
        try:
            connection.execute(f"CREATE TEMP TABLE citizens AS {citizens_sql(rows)}")
            for document, query in DEMO_DATASETS:
                dataset = service.register_dataset(session, document=document, department=document["department"], actor=actor)
                path = Path(folder) / f"{dataset.code}.parquet"
                connection.execute(f"COPY ({query}) TO {quote_path(path)} (FORMAT parquet)")
                with path.open("rb") as source:
                    service.add_version(session, dataset=dataset, source=source, filename=path.name, store=store, actor=actor)
                codes.append(dataset.code)
        finally:
            connection.close()
    return codes
