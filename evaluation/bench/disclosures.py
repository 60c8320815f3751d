"""Benchmark: the metrics summary's delayed-disclosure counts (``evaluation.disclosures``) over the metrics bench's history.

    .venv/bin/python -m evaluation.bench.disclosures --applications 30000 --lines 300000   # SQLite, temp folder

The history is ``evaluation.bench.metrics.populate``'s; one approved application in a
hundred then asks for a disclosure delayed 60 days. Prints the counts' time and the
whole summary's (``evaluation.metrics.summary``) beside it, five times each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from evaluation import disclosures, metrics
from evaluation.bench.metrics import populate
from evaluation.period import Period
from govshare.db import Database
from govshare.keys import KeyStore
from govshare.settings import Settings
from govshare.store import initialise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applications", type=int, default=30_000)
    parser.add_argument("--lines", type=int, default=300_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="govshare-bench-") as folder:
        settings = Settings(home=Path(folder), jobs_enabled=False, issuer="http://localhost")
        initialise(settings)
        database = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
        now = datetime.now(UTC)
        populate(database, applications=args.applications, lines=args.lines, now=now)
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE applications SET disclosure_delay_until = :day, disclosure_basis = 'bench' "
                                    "WHERE grant_id IS NOT NULL AND id % 100 = 0"), {"day": (now + timedelta(days=60)).date()})
            connection.exec_driver_sql("ANALYZE")
        period = Period(now - timedelta(days=365), now)
        for name, run in (("delayed-disclosure counts", lambda session: disclosures.summary(session, period=period, today=now.date())),
                          ("whole summary", lambda session: metrics.summary(session, period=period, now=now))):
            times = []
            for _ in range(5):
                with database.transaction(write=False) as session:
                    began = time.perf_counter()
                    result = run(session)
                    times.append(time.perf_counter() - began)
            print(f"{name}: median {statistics.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms over 5 "
                  f"({result['delayed_disclosures']} lines withheld, {result['delayed_disclosure_grants']} grants delayed)")
        database.dispose()


if __name__ == "__main__":
    main()
