"""Benchmark: the CPU one lookup costs, part by part, in one process (no HTTP, no load generator).

Where ``govshare bench --only lookup`` measures requests a second over loopback, this
says what a call costs and where: through the whole ASGI app (httpx's ASGI transport,
1 and 16 calls at a time) for the bare FastAPI endpoint, for a constant route added to
govshare's own app (its middleware, routing and error handling, no work), and for the
lookup; then the lookup's body alone in the calling thread, and DuckDB's own cost for
a statement from Python. CPU is the process's (every thread: the ledger writer's too).

    python -m evaluation.bench.call_cost [--rows N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import httpx
from fastapi.testclient import TestClient
from starlette.requests import Request

from evaluation.bench import bare
from evaluation.bench import world as bench_world
from exchange.interfaces import api
from exchange.stores import keyed_store
from govshare.settings import Settings

ISSUER = "http://127.0.0.1:8000"  # never listened on: the app is called in-process


def _cpu_per_call(app, paths: list[str], headers: dict[str, str], *, at_once: int, calls: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of GET ``paths`` (in turn) through ``app``, ``at_once`` calls in flight."""

    async def measure() -> tuple[float, float]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as client:
            for path in paths[:100]:  # warm
                response = await client.get(path, headers=headers)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
            slots = asyncio.Semaphore(at_once)
            statuses: list[int] = []

            async def one(path: str) -> None:
                async with slots:
                    statuses.append((await client.get(path, headers=headers)).status_code)

            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(paths[index % len(paths)]) for index in range(calls)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if set(statuses) != {200}:
                raise RuntimeError(f"not every call answered 200: {sorted(set(statuses))}")
            return cpu * 1000 / calls, wall * 1000 / calls

    return asyncio.run(measure())


def _writer_cpu(app) -> float:
    """CPU seconds the ledger writer's thread has used."""
    return time.clock_gettime(time.pthread_getcpuclockid(app.state.ledger._thread.ident))


def _thread_cpu_per_call(call, calls: int) -> float:
    for _ in range(100):
        call()
    began = time.thread_time()
    for _ in range(calls):
        call()
    return (time.thread_time() - began) * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="govshare-bench-") as folder:
        home = Path(folder) / "home"
        source = bench_world.write_data(Path(folder) / "source.parquet", args.rows)
        clients = bench_world.prepare_store(home)
        keys = [row[0] for row in duckdb.connect().execute(
            f"SELECT citizen_id FROM read_parquet(?) WHERE district IN ({bench_world.GRANTED_MARKS}) USING SAMPLE 2000",
            [str(source), *bench_world.GRANTED_DISTRICTS]).fetchall()]
        settings = Settings(home=home, jobs_enabled=False, issuer=ISSUER)
        app = bench_world.in_process_app(settings)
        app.add_api_route("/api/v1/constant", lambda: {"dataset": "X", "records": [bare.RECORD]})
        app.router.routes.insert(0, app.router.routes.pop())  # matched first, as the exchange's routes are
        with TestClient(app, base_url=ISSUER) as client:  # runs the app's lifespan: the ledger writer
            world = bench_world.World(ISSUER, clients, http=client)
            world.lookups_granted(source)
            headers = world.headers("demander")
            lookups = [f"/api/v1/exchange/{bench_world.CODE}/records/{key}" for key in keys]
            print(f"{args.rows:,} rows; CPU (all threads) and wall time per call, {args.calls:,} calls each")
            print(f"{'what':58} {'at once':>7} {'CPU ms':>7} {'wall ms':>8}")
            for at_once in (1, 16):
                for label, target, paths, auth in [
                    ("bare FastAPI endpoint (the benchmark's ceiling)", bare.app, lookups, {}),
                    ("constant route in govshare's app (middleware, routing)", app, ["/api/v1/constant"], headers),
                    ("lookup (token, grant, store, ledger line)", app, lookups, headers),
                ]:
                    writer = _writer_cpu(app)
                    cpu, wall = _cpu_per_call(target, paths, auth, at_once=at_once, calls=args.calls)
                    app.state.ledger.flush()
                    print(f"{label:58} {at_once:>7} {cpu:>7.2f} {wall:>8.2f}")
                    if target is app and paths is lookups:
                        writer = (_writer_cpu(app) - writer) * 1000 / (args.calls + 100)
                        print(f"{'  of which the ledger writer (its thread)':58} {at_once:>7} {writer:>7.2f}")
            app.state.ledger.flush()

            scope = {"type": "http", "method": "GET", "path": lookups[0], "query_string": b"", "app": app,
                     "headers": [(b"authorization", headers["Authorization"].encode())]}
            body = _thread_cpu_per_call(lambda: api._lookup(bench_world.CODE, keys[0], Request(scope)), args.calls)
            print(f"{'the lookup body alone (calling thread only)':58} {1:>7} {body:>7.2f}")
            store = next(home.rglob("*.keyed.duckdb"), None) or keyed_store.ensure_store(next(home.rglob("v*.parquet")), "citizen_id")
            cursor = keyed_store.open_read(store)
            for label, sql in [("DuckDB from Python: SELECT ? (its floor)", "SELECT ?"),
                               ("DuckDB: the key's row by its index", "SELECT * FROM records WHERE citizen_id = ?")]:
                cost = _thread_cpu_per_call(lambda sql=sql: cursor.execute(sql, [keys[1]]).fetchall(), args.calls)
                print(f"{label:58} {1:>7} {cost:>7.2f}")
            cursor.close()
        print(f"(measured {date.today()}; the ledger writer's share is in the 'all threads' CPU of the lookup rows)")


if __name__ == "__main__":
    main()
