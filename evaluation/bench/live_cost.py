"""Benchmark: what one live call costs in the exchange's own process, and where (cProfile), against a real provider.

The provider (evaluation/bench/provider.py) runs under uvicorn in a child process; the
exchange's app is called in-process through httpx's ASGI transport, ``--at-once`` calls in
flight, so the CPU measured is the exchange's alone (every thread of this process).

    python -m evaluation.bench.live_cost [--calls N] [--at-once N] [--profile out.pstats]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from evaluation.bench import provider as bench_provider
from evaluation.bench import world as bench_world
from evaluation.bench.servers import ServerProcess
from govshare.settings import Settings

ISSUER = "http://127.0.0.1:8000"  # never listened on: the app is called in-process


async def _calls(app, paths: list[str], headers: dict[str, str], *, at_once: int, calls: int,
                 profile: cProfile.Profile | None) -> tuple[float, float]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER) as client:
        for path in paths[:50]:  # warm: the dataset's client, its connections, the grant's scope
            response = await client.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
        slots = asyncio.Semaphore(at_once)
        statuses: list[int] = []

        async def one(path: str) -> None:
            async with slots:
                statuses.append((await client.get(path, headers=headers)).status_code)

        if profile:
            profile.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(paths[index % len(paths)]) for index in range(calls)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profile:
            profile.disable()
        if set(statuses) != {200}:
            raise RuntimeError(f"not every call answered 200: {sorted(set(statuses))}")
        return cpu * 1000 / calls, wall * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--at-once", type=int, default=16)
    parser.add_argument("--profile", type=Path, help="write the calls' cProfile statistics here (and print the top)")
    args = parser.parse_args()
    os.environ["GOVSHARE_OUTBOUND_ALLOWLIST"] = '["127.0.0.1"]'
    with tempfile.TemporaryDirectory(prefix="govshare-bench-") as folder, \
            ServerProcess(["-m", "evaluation.bench.provider"]) as provider:
        home = Path(folder) / "home"
        clients = bench_world.prepare_store(home)
        settings = Settings(home=home, jobs_enabled=False, issuer=ISSUER, outbound_allowlist=["127.0.0.1"],
                            live_calls_per_grant=1000)
        app = bench_world.in_process_app(settings)
        keys = [f"1101011990{index:08d}" for index in range(2_000)]
        with TestClient(app, base_url=ISSUER) as client:  # runs the app's lifespan: the ledger writer
            world = bench_world.World(ISSUER, clients, http=client)
            document = {**bench_world.document(), "delivery_modes": ["live"],
                        "live": {"url": f"{provider.base}/residents/{{key}}", "timeout_seconds": 5,
                                 "auth": {"type": "header", "name": "X-Api-Key", "value": bench_provider.API_KEY}}}
            response = client.post("/api/v1/datasets", json=document, headers=world.headers("provider"))
            if response.status_code != 201:
                raise RuntimeError(f"register: {response.status_code} {response.text}")
            world.grant("live", bench_world.LOOKUP_COLUMNS)
            headers = world.headers("demander")
            paths = [f"/api/v1/exchange/{bench_world.CODE}/live/{key}" for key in keys]
            profile = cProfile.Profile() if args.profile else None
            cpu, wall = asyncio.run(_calls(app, paths, headers, at_once=args.at_once, calls=args.calls, profile=profile))
            app.state.ledger.flush()
        print(f"live call, {args.at_once} at once, {args.calls:,} calls: CPU {cpu:.2f} ms per call (this process, every thread), "
              f"wall {wall:.2f} ms per call")
        if profile:
            profile.dump_stats(args.profile)
            pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
