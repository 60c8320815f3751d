"""Benchmark: key lookups over a large snapshot, through the whole API, against the bare engine.

Builds a store with N synthetic citizens (default 10 million) via the demo generator,
a grant for a service client, and then measures, in the same run:
  - the bare engine: an indexed DuckDB point query on the keyed store, from Python;
  - the exchange: GET /api/v1/exchange/{code}/records/{key} over HTTP on loopback
    (real token, grant checks, ledger writes), sequentially from one client.
Prints p50/p99 latencies. Usage: python -m evaluation.bench.lookups [--citizens N] [--calls K]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx

from exchange.stores import keyed_store


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--citizens", type=int, default=10_000_000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="govshare-bench-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GOVSHARE_HOME": str(home), "GOVSHARE_ISSUER": base, "GOVSHARE_RATE_LIMIT_PER_SECOND": "100000",
           "GOVSHARE_RATE_LIMIT_BURST": "100000"}
    env.pop("GOVSHARE_DATABASE_URL", None)
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "govshare", "serve", "--demo", "--demo-citizens", str(args.citizens),
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
            if server.poll() is not None:
                raise SystemExit("server failed to start")
        print(f"store of {args.citizens:,} citizens ready in {time.perf_counter() - started:.1f} s")
        import json

        credentials = json.loads((home / "demo-credentials.json").read_text())
        cab = next(c for c in credentials["clients"] if c["department"] == "CAB")
        token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials", "scope": "service"},
                           auth=(cab["client_id"], cab["client_secret"])).json()["access_token"]
        store = next(home.rglob("*.keyed.duckdb"))  # in the server's cache folder
        connection = keyed_store.open_read(store)
        keys = [row[0] for row in connection.execute(
            "SELECT citizen_id FROM records WHERE district IN ('110101', '110102', '110105') USING SAMPLE 5000").fetchall()]
        generator = random.Random(1)
        bare = []
        for _ in range(args.calls):
            key = generator.choice(keys)
            began = time.perf_counter()
            connection.execute("SELECT citizen_id, name, district, household_no FROM records WHERE citizen_id = ?", [key]).fetchall()
            bare.append(time.perf_counter() - began)
        print(f"bare DuckDB indexed lookup:        {_percentiles(bare)}")
        served = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            for _ in range(args.calls):
                key = generator.choice(keys)
                began = time.perf_counter()
                response = client.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{key}")
                served.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
        print(f"exchange lookup over HTTP (1 client): {_percentiles(served)}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
