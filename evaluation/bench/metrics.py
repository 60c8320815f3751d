"""Benchmark: GET /api/v1/metrics/summary over a year of history (1,000,000 ledger lines, 100,000 applications).

    .venv/bin/python evaluation/bench/metrics.py                  # SQLite, temp folder
    .venv/bin/python evaluation/bench/metrics.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

The history is inserted in bulk (SQLAlchemy core ``insert`` with many rows), not
through the services, and the ledger's daily rollups rebuilt from it: 40 departments, 400 datasets with versions, applications in
every state with grants for the approved ones, ledger lines under those grants,
ratings and correction requests. Then the summary is requested through the real
app (bearer token of a manager) several times; the times are printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
from starlette.testclient import TestClient

from approvals.models import Application, Grant
from directory.models import Dataset, DatasetVersion
from evaluation.bench.scratch import scratch_schema
from evaluation.models import Correction, Rating
from exchange import rollups
from exchange.models import AccessLogEntry
from govshare import identities
from govshare.app import create_app
from govshare.db import Database
from govshare.keys import KeyStore
from govshare.models import Department
from govshare.settings import Settings
from govshare.store import initialise

DEPARTMENTS = [f"D{n:02d}" for n in range(40)]
FREQUENCIES = ["daily", "weekly", "monthly", "quarterly", "yearly", "realtime", "irregular"]
REASONS = ["no_legal_basis", "items_beyond_need", "duplicate", "data_not_shareable", "other"]
SERVICE_ITEMS = [f"service-{n:03d}" for n in range(300)]
KINDS = ["lookup"] * 7 + ["query"] * 2 + ["stream", "extract"]
BATCH = 20_000


def _bulk(database: Database, table, rows: list[dict]) -> None:
    for start in range(0, len(rows), BATCH):
        with database.transaction() as session:
            session.execute(insert(table), rows[start:start + BATCH])


def populate(database: Database, *, applications: int, lines: int, now: datetime, seed: int = 5) -> None:
    rng = random.Random(seed)
    year_ago = now - timedelta(days=365)
    _bulk(database, Department, [{"code": code, "name": f"Department {code}", "created_at": year_ago} for code in DEPARTMENTS])
    datasets = []
    for number in range(400):
        code = f"{DEPARTMENTS[number % 40]}-DS{number:04d}"
        datasets.append({
            "id": number + 1, "code": code, "department_code": DEPARTMENTS[number % 40], "title": code, "domain": "bench",
            "share_type": rng.choice(["unconditional", "conditional"]), "open_type": "closed",
            "update_frequency": rng.choice(FREQUENCIES), "offers_extract": True, "offers_interface": True, "status": "active",
            "document": {"code": code}, "search_text": code.lower(), "revision": 1, "created_at": year_ago, "updated_at": year_ago,
        })
    _bulk(database, Dataset, datasets)
    _bulk(database, DatasetVersion, [
        {"dataset_id": dataset["id"], "number": version, "rows": 1000, "source_format": "csv", "path": "x", "size_bytes": 1,
         "sha256": "0" * 64, "items": [], "quality": {}, "actor": "bench",
         "created_at": now - timedelta(days=rng.uniform(0, 120))}
        for dataset in datasets for version in range(1, 4)
    ])
    rows, grants = [], []
    for number in range(1, applications + 1):
        dataset = rng.choice(datasets)
        department = rng.choice(DEPARTMENTS)
        filed = year_ago + timedelta(seconds=rng.uniform(0, 365 * 86400))
        roll = rng.random()
        status = "approved" if roll < 0.7 else "rejected" if roll < 0.9 else "submitted"
        decided = filed + timedelta(hours=rng.expovariate(1 / 80)) if status != "submitted" else None
        if decided and decided > now:
            decided, status = None, "submitted"
        rows.append({
            "id": number, "dataset_id": dataset["id"], "dataset_code": dataset["code"],
            "provider_department": dataset["department_code"], "department_code": department, "applicant": "bench",
            "service_item": rng.choice(SERVICE_ITEMS), "basis": "law", "purpose": "bench", "items": ["a"], "justifications": {},
            "delivery": "interface", "period_start": date(2026, 1, 1), "period_end": date(2027, 1, 1), "status": status,
            "inspection": {}, "created_at": filed, "updated_at": decided or filed, "filed_at": filed,
            "decision_due": filed + timedelta(days=14), "decided_at": decided,
            "reason_code": rng.choice(REASONS) if status == "rejected" else None, "conditions": [], "masks": {},
            "grant_id": len(grants) + 1 if status == "approved" else None, "lock_version": 1,
        })
        if status == "approved":
            grants.append({
                "id": len(grants) + 1, "application_id": number, "department_code": department, "dataset_id": dataset["id"],
                "dataset_code": dataset["code"], "columns": ["a"], "delivery": "interface", "conditions": [], "masks": {},
                "valid_from": date(2026, 1, 1), "valid_until": date(2027, 1, 1), "created_at": decided,
                "_service_item": rows[-1]["service_item"],
            })
    _bulk(database, Application, rows)
    _bulk(database, Grant, [{key: value for key, value in grant.items() if not key.startswith("_")} for grant in grants])
    ledger = []
    for _ in range(lines):
        grant = rng.choice(grants)
        started = grant["created_at"]
        moment = started + timedelta(seconds=rng.uniform(0, max(60.0, (now - started).total_seconds())))
        roll = rng.random()
        ledger.append({
            "at": min(moment, now), "kind": rng.choice(KINDS), "client_id": "bench", "department_code": grant["department_code"],
            "dataset_code": grant["dataset_code"], "grant_id": grant["id"], "application_id": grant["application_id"],
            "service_item": grant["_service_item"], "basis": None, "rows": rng.randint(0, 50),
            "status": 500 if roll < 0.002 else 404 if roll < 0.05 else 200, "latency_ms": rng.lognormvariate(2.5, 0.6),
        })
        if len(ledger) >= BATCH:
            _bulk(database, AccessLogEntry, ledger)
            ledger = []
    _bulk(database, AccessLogEntry, ledger)
    with database.transaction() as session:  # a bulk insert bypasses the ORM hook that keeps the rollups
        rollups.rebuild(session)
    sample = rng.sample(grants, min(len(grants), applications // 5))
    _bulk(database, Rating, [
        {"application_id": grant["application_id"], "party": "demander", "department_code": grant["department_code"],
         "applicant_department": grant["department_code"], "dataset_code": grant["dataset_code"],
         "service_item": grant["_service_item"], "review_speed": rng.randint(1, 5), "data_quality": rng.randint(1, 5),
         "stability": rng.randint(1, 5), "rated_by": "bench", "created_at": grant["created_at"] + timedelta(days=2),
         "updated_at": grant["created_at"] + timedelta(days=2)}
        for grant in sample
    ])
    _bulk(database, Correction, [
        {"dataset_id": grant["dataset_id"], "dataset_code": grant["dataset_code"],
         "provider_department": grant["dataset_code"].split("-")[0], "department_code": grant["department_code"],
         "grant_id": grant["id"], "item": "a", "key": "k", "description": "wrong", "status": rng.choice(["open", "corrected"]),
         "filed_by": "bench", "filed_at": grant["created_at"] + timedelta(days=3), "due_at": grant["created_at"] + timedelta(days=10)}
        for grant in sample[:2000]
    ])


def measure(database_url: str | None, folder: Path, *, applications: int, lines: int, repeat: int) -> tuple[list[float], dict]:
    """Fill a fresh store with a year of history, then time the summary ``repeat`` times; returns the times and the last body."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = Settings(home=folder, database_url=database_url, jobs_enabled=False, issuer="http://localhost")
    initialise(settings)
    database = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
    now = datetime.now(UTC)
    started = time.perf_counter()
    populate(database, applications=applications, lines=lines, now=now)
    with database.engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    print(f"{applications} applications, {lines} ledger lines on {database.dialect} "
          f"inserted in {time.perf_counter() - started:.1f} s")
    with database.transaction() as session:
        credentials = identities.add_client(session, department_code=DEPARTMENTS[0], roles=["manager"])
    database.dispose()
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                            auth=(credentials.client.client_id, credentials.client_secret)).json()["access_token"]
        params = {"from": (now - timedelta(days=365)).date().isoformat(), "to": now.date().isoformat()}
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            response = client.get("/api/v1/metrics/summary", params=params, headers={"Authorization": f"Bearer {token}"})
            times.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text
        return times, response.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applications", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    url, cleanup = scratch_schema(args.database_url, "metrics")
    try:
        with tempfile.TemporaryDirectory(prefix="govshare-bench-") as folder:
            times, body = measure(url, Path(folder), applications=args.applications, lines=args.lines, repeat=args.repeat)
    finally:
        if cleanup:
            cleanup()
    print(f"summary of a year: {body['applications_filed']} applications filed, {body['calls']} calls, "
          f"p90 review {body['review_seconds_p90'] / 3600:.1f} h, latency p99 {body['latency_ms_p99']:.1f} ms")
    print(f"GET /api/v1/metrics/summary: median {statistics.median(times):.2f} s, "
          f"best {min(times):.2f} s, worst {max(times):.2f} s over {len(times)} requests")


if __name__ == "__main__":
    main()
