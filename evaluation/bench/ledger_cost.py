"""Benchmark: the lines per second the access ledger's writer sustains, alone and beside batch lookups.

Two measures, in one process, on SQLite (a fresh store in a temporary folder) or PostgreSQL (a private
schema, dropped at the end):

- **alone**: ``--lines`` lines queued as batch lookups hand them over (1,000 a call: one ``KeyLines``, or
  ``--form lines``: a thousand ``LedgerLine``, the hand-over before KeyLines), then the writer started and
  timed until all are committed (``flush``); and the writer thread's CPU per 1,000 lines.
- **beside calls**: the app in-process (its lifespan runs the writer), ``--threads`` threads posting
  1,000-key batches (``POST /api/v1/exchange/{code}/records:batch``) for ``--seconds``: keys delivered per
  second over the whole run, lines the writer committed per second, its backlog (sampled every 0.1 s), calls
  waiting for the writer (above the high-water mark, backpressure) and refusals (503 ``ledger-unavailable``;
  a thread counts a refusal and goes on, so the rate is the sustained one).

    python -m evaluation.bench.ledger_cost [--database-url URL] [--lines N] [--threads 0,4] [--seconds S]

``--form lines`` also runs on code before KeyLines (the hand-over was a list of LedgerLine), for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
import uuid
from datetime import date
from pathlib import Path

import duckdb
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from evaluation.bench import world as bench_world
from exchange import ledger
from govshare.db import Database, utcnow
from govshare.keys import KeyStore
from govshare.settings import Settings

ISSUER = "http://127.0.0.1:8000"  # never listened on: the app is called in-process
CALL_KEYS = 1000


def _thread_cpu(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def _call_items(form: str, call: int) -> list:
    """What one 1,000-key batch lookup hands the writer."""
    line = ledger.LedgerLine(kind="lookup", client_id="bench-client", department="DEM", dataset=bench_world.CODE,
                             grant_id=1, application_id=1, service_item="bench service", basis="bench basis",
                             purpose="bench purpose", rows=0, status=200, latency_ms=40.0 + call % 50, at=utcnow())
    keys = [f"{call:06d}-{index:04d}" for index in range(CALL_KEYS)]
    if form == "keylines":
        return [ledger.KeyLines(line, keys=keys, rows=[1] * CALL_KEYS)]
    fields = {name: getattr(line, name) for name in ("kind", "client_id", "department", "dataset", "grant_id",
                                                      "application_id", "service_item", "basis", "purpose", "status",
                                                      "latency_ms", "at")}
    return [ledger.LedgerLine(rows=1, keys=[key], **fields) for key in keys]


def writer_alone(database_url: str, home: Path, *, lines: int, form: str) -> None:
    database = Database(database_url, keystore=KeyStore(home / "keys"))
    writer = ledger.LedgerWriter(database, backlog_limit=10**9)
    calls = lines // CALL_KEYS
    for call in range(calls):
        writer.record_many(_call_items(form, call), admitted=True)
    began = time.perf_counter()
    writer.start()
    writer.flush()
    wall = time.perf_counter() - began
    cpu = _thread_cpu(writer._thread)
    writer.stop()
    database.dispose()
    print(f"alone     form={form:8} {calls * CALL_KEYS:>9,} lines in {wall:6.2f} s: {calls * CALL_KEYS / wall:>9,.0f} lines/s; "
          f"writer thread CPU {cpu * 1000 / calls:6.1f} ms per 1,000 lines")


def beside_calls(database_url: str | None, home: Path, clients: dict, source: Path, keys: list[str], *, threads: int,
                 seconds: float) -> None:
    settings = Settings(home=home, database_url=database_url, jobs_enabled=False, issuer=ISSUER)
    app = bench_world.in_process_app(settings)
    url = f"/api/v1/exchange/{bench_world.CODE}/records:batch"
    with TestClient(app, base_url=ISSUER) as client:  # runs the app's lifespan: the ledger writer
        world = bench_world.World(ISSUER, clients, http=client)
        world.lookups_granted(source)
        headers = world.headers("demander")
        warm = client.post(url, json={"keys": keys[:CALL_KEYS]}, headers=headers)
        if warm.status_code != 200:
            raise RuntimeError(f"batch: {warm.status_code} {warm.text[:300]}")
        writer = app.state.ledger
        writer.flush()
        delivered, lines, refusals = [0] * threads, [0] * threads, []

        def call(index: int) -> None:
            generator = random.Random(index)
            while time.perf_counter() < deadline:
                answer = client.post(url, json={"keys": generator.sample(keys, CALL_KEYS)}, headers=headers)
                if answer.status_code != 200:
                    refusals.append(f"{answer.status_code} {answer.json().get('type', '')}")
                    continue
                body = answer.json()
                delivered[index] += len(body["records"])
                lines[index] += len(body["records"]) + (1 if body["missing"] else 0)

        backlogs, waiting = [], []
        cpu_before, backlog_before = _thread_cpu(writer._thread), writer.backlog
        began = time.perf_counter()
        deadline = began + seconds
        workers = [threading.Thread(target=call, args=(index,)) for index in range(threads)]
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            backlogs.append(writer.backlog)
            waiting.append(getattr(writer, "waiting", 0))  # 0 on code before backpressure
            time.sleep(0.1)
        wall = time.perf_counter() - began
        backlog_after = writer.backlog
        written = backlog_before + sum(lines) - backlog_after
        cpu = _thread_cpu(writer._thread) - cpu_before
        writer.flush()
    print(f"beside    threads={threads} for {wall:5.1f} s: calls delivered {sum(delivered) / wall:>9,.0f} keys/s; "
          f"writer committed {written / wall:>9,.0f} lines/s ({cpu * 1000 / max(written, 1) * 1000:5.1f} ms CPU per 1,000); "
          f"backlog max {max(backlogs, default=0):,}, at the end {backlog_after:,}; calls waiting for the writer: "
          f"max {max(waiting, default=0)}, in {sum(1 for count in waiting if count) / max(len(waiting), 1):.0%} of samples; "
          f"refusals {len(refusals)} {sorted(set(refusals)) or ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL (a private schema is made in it and dropped); default SQLite")
    parser.add_argument("--lines", type=int, default=100_000, help="lines the writer writes alone")
    parser.add_argument("--form", choices=["keylines", "lines", "both"], default="both")
    parser.add_argument("--threads", default="4", help="comma-separated counts of calling threads ('' for none)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the dataset the batches look up")
    args = parser.parse_args()
    schemas: list[str] = []
    with tempfile.TemporaryDirectory(prefix="govshare-ledger-bench-") as folder:

        def fresh_store(name: str) -> tuple[Path, str | None, dict]:
            """A new home and store (on PostgreSQL a new private schema), with the bench's departments and clients."""
            database_url = args.database_url
            if database_url:
                schemas.append(f"govshare_ledger_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}")
                admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
                with admin.connect() as connection:
                    connection.execute(text(f'CREATE SCHEMA "{schemas[-1]}"'))
                admin.dispose()
                database_url = make_url(database_url).update_query_dict(
                    {"options": f"-csearch_path={schemas[-1]}"}).render_as_string(hide_password=False)
            home = Path(folder) / name
            return home, database_url, bench_world.prepare_store(home, database_url)

        try:
            print(f"store: {'PostgreSQL' if args.database_url else 'SQLite'}; {date.today()}; "
                  f"load {os.getloadavg()[0]:.1f}; CPUs {os.cpu_count()}")
            for form in (["keylines", "lines"] if args.form == "both" else [args.form]):
                if args.lines:
                    home, database_url, _ = fresh_store(f"alone-{form}")
                    writer_alone(database_url or Settings(home=home).resolved_database_url, home, lines=args.lines, form=form)
            counts = [int(count) for count in args.threads.split(",") if count.strip()]
            if counts:
                source = bench_world.write_data(Path(folder) / "source.parquet", args.rows)
                keys = [row[0] for row in duckdb.connect().execute(
                    f"SELECT citizen_id FROM read_parquet(?) WHERE district IN ({bench_world.GRANTED_MARKS}) USING SAMPLE 20000",
                    [str(source), *bench_world.GRANTED_DISTRICTS]).fetchall()]
                for threads in counts:
                    home, database_url, clients = fresh_store(f"beside-{threads}")
                    beside_calls(database_url, home, clients, source, keys, threads=threads, seconds=args.seconds)
                    print(f"          load {os.getloadavg()[0]:.1f}")
        finally:
            for schema in schemas:
                admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
                with admin.connect() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


if __name__ == "__main__":
    main()
