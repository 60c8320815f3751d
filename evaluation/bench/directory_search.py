"""Benchmark: directory search over 100,000 registered datasets; prints p50/p99 per query kind.

    .venv/bin/python evaluation/bench/directory_search.py                  # SQLite, temp folder
    .venv/bin/python evaluation/bench/directory_search.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Datasets are inserted in bulk with the same column values and search terms the
service writes (``service.row_values``, ``search.index_terms``), skipping the
per-dataset audit entry and revision row (search reads the filter columns whole
when it finds datasets that have no revision). Queries go
through ``directory.search.search``, the function behind GET /api/v1/datasets.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import bindparam, insert, text

from directory import search, service
from directory.models import Dataset, DatasetTerm
from evaluation.bench.scratch import scratch_schema
from govshare.db import Database, utcnow
from govshare.models import Department
from govshare.store import upgrade_schema

DEPARTMENTS = [f"D{n:02d}" for n in range(40)]
DOMAINS = ["household", "health", "civil-affairs", "education", "social-insurance", "tax", "traffic", "housing",
           "land", "environment", "agriculture", "commerce", "justice", "statistics", "water", "energy"]
SHARE_TYPES = ["unconditional", "conditional", "none"]
COMMON = ["registration", "records", "citizens", "enterprise", "licence", "permit", "certificate", "payment",
          "inspection", "subsidy", "application", "statistics", "address", "district", "status", "date"]


def _words(rng: random.Random, vocabulary: list[str], count: int) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(count))


def make_document(number: int, rng: random.Random, vocabulary: list[str]) -> dict:
    department = DEPARTMENTS[number % len(DEPARTMENTS)]
    items = [
        {"name": f"item_{rng.choice(vocabulary)}_{index}", "type": rng.choice(["string", "integer", "date"]),
         "description": _words(rng, vocabulary, 4), "sensitivity": "internal"}
        for index in range(rng.randint(4, 12))
    ]
    return {
        "code": f"{department}-{number:06d}", "title": f"{rng.choice(COMMON).title()} {_words(rng, vocabulary, 3)}",
        "department": department, "summary": f"{rng.choice(COMMON)} {_words(rng, vocabulary, 14)}",
        "domain": rng.choice(DOMAINS), "share_type": rng.choice(SHARE_TYPES), "open_type": "closed",
        "update_frequency": "daily", "delivery_modes": rng.choice([["extract"], ["interface"], ["extract", "interface"]]),
        "keywords": [rng.choice(vocabulary) for _ in range(3)], "items": items,
    }


def populate(database: Database, count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    vocabulary = [f"{rng.choice(['ka', 'lo', 'mi', 'shu', 'tan', 'zhe', 'ren', 'guo'])}{n}" for n in range(5000)] + COMMON
    with database.transaction() as session:
        session.execute(insert(Department), [{"code": code, "name": f"Department {code}", "created_at": utcnow()} for code in DEPARTMENTS])
    now, batch_size = utcnow(), 2000
    for start in range(0, count, batch_size):
        documents = [make_document(number, rng, vocabulary) for number in range(start, min(count, start + batch_size))]
        with database.transaction() as session:
            rows = [{**service.row_values(d), "status": "active", "revision": 1, "created_at": now, "updated_at": now} for d in documents]
            session.execute(insert(Dataset), rows)
            by_code = text("SELECT code, id FROM datasets WHERE code IN :codes").bindparams(bindparam("codes", expanding=True))
            ids = dict(session.execute(by_code, {"codes": [d["code"] for d in documents]}).all())
            terms = [{"term": term, "dataset_id": ids[row["code"]]} for row in rows for term in search.index_terms(row["search_text"])]
            session.execute(insert(DatasetTerm), terms)
            search.directory_changed(session)
    return vocabulary


def analyse(database: Database) -> None:
    if database.dialect == "postgresql":
        # What autovacuum does soon after a bulk load: statistics, and the visibility
        # map that lets the covering indexes answer without reading table rows.
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE datasets"))
            connection.execute(text("VACUUM ANALYZE dataset_terms"))
    else:
        with database.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")


def queries(rng: random.Random, vocabulary: list[str]) -> dict[str, list[dict]]:
    return {
        "browse (no filter, facets over all)": [{"page": rng.randint(1, 50)} for _ in range(40)],
        "q one common word": [{"q": rng.choice(COMMON)} for _ in range(60)],
        "q one rare word": [{"q": rng.choice(vocabulary[:5000])} for _ in range(60)],
        "q two words": [{"q": f"{rng.choice(COMMON)} {rng.choice(vocabulary[:5000])}"} for _ in range(60)],
        "q prefix (3 letters)": [{"q": rng.choice(COMMON)[:3]} for _ in range(40)],
        "department filter": [{"department": rng.choice(DEPARTMENTS)} for _ in range(60)],
        "domain + share_type + delivery": [
            {"domain": rng.choice(DOMAINS), "share_type": rng.choice(SHARE_TYPES), "delivery": "interface"} for _ in range(60)
        ],
        "q + department": [{"q": rng.choice(COMMON), "department": rng.choice(DEPARTMENTS)} for _ in range(60)],
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="govshare-bench-") as folder:
        url, cleanup = scratch_schema(args.database_url, "directory")

        url = url or f"sqlite:///{Path(folder) / 'bench.db'}"
        database = Database(url)
        try:
            upgrade_schema(database.engine)
            started = time.perf_counter()
            vocabulary = populate(database, args.count)
            analyse(database)
            print(f"{args.count} datasets registered on {database.dialect} in {time.perf_counter() - started:.1f} s")
            with database.transaction(write=False) as session:
                began = time.perf_counter()
                search.filter_columns(session)
                print(f"filter columns read whole (once per server process, at its start) in {(time.perf_counter() - began) * 1000:.1f} ms")
            all_times: list[float] = []
            rng = random.Random(11)
            print(f"{'query':40} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'avg hits':>9}")
            for name, params_list in queries(rng, vocabulary).items():
                times, hits = [], []
                for params in params_list:
                    with database.transaction(write=False) as session:
                        began = time.perf_counter()
                        result = search.search(session, page_size=20, **params)
                        times.append((time.perf_counter() - began) * 1000)
                        hits.append(result.total)
                all_times += times
                print(f"{name:40} {len(times):>4} {percentile(times, 0.5):>8.1f} {percentile(times, 0.99):>8.1f} {statistics.mean(hits):>9.0f}")
            print(f"{'all queries':40} {len(all_times):>4} {percentile(all_times, 0.5):>8.1f} {percentile(all_times, 0.99):>8.1f}")
        finally:
            database.dispose()
            if cleanup:
                cleanup()


if __name__ == "__main__":
    main()
