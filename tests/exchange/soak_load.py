"""Load for the soak test, run as its own process: N concurrent clients calling a server's interfaces.

Reads a JSON plan on standard input: ``{"base", "token", "inside", "outside", "seconds", "clients"}``
(keys within the grant answer 200, keys outside it 404); writes JSON figures on standard
output: requests, errors (any other answer, or no answer), answers by status, exchange
calls (each one a ledger line), requests sent again after a connection reset, rps and
latency percentiles in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter

import httpx

# (share of calls, what is called, the answer that is not an error)
MIX = [(70, "lookup-inside", 200), (10, "lookup-outside", 404), (15, "query", 200), (5, "healthz", 200)]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def _client(plan: dict, deadline: float, http: httpx.AsyncClient, seed: int, figures: dict) -> None:
    chooser = random.Random(seed)
    kinds, weights = [kind for _, kind, _ in MIX], [weight for weight, _, _ in MIX]
    expected = {kind: status for _, kind, status in MIX}
    headers = {"Authorization": f"Bearer {plan['token']}"}
    while time.monotonic() < deadline:
        kind = chooser.choices(kinds, weights)[0]
        if kind == "lookup-inside":
            path = f"/api/v1/exchange/{plan['dataset']}/records/{chooser.choice(plan['inside'])}"
        elif kind == "lookup-outside":
            path = f"/api/v1/exchange/{plan['dataset']}/records/{chooser.choice(plan['outside'])}"
        elif kind == "query":
            path = f"/api/v1/exchange/{plan['dataset']}/records?limit={chooser.choice([10, 50, 100])}"
        else:
            path = "/healthz"
        started = time.perf_counter()
        try:
            try:
                response = await http.get(path, headers=headers)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # A kept-alive connection the server closed as idle (after 5 s) just as it was reused:
                # the request never reached the server, so it is sent again, once, as browsers do.
                figures["resent"] += 1
                response = await http.get(path, headers=headers)
            status = response.status_code
        except httpx.HTTPError as problem:
            status = f"no answer: {type(problem).__name__}"
        figures["latencies"].append((time.perf_counter() - started) * 1000)
        figures["statuses"][str(status)] += 1
        if status != expected[kind]:
            figures["errors"] += 1
            if len(figures["examples"]) < 5:
                figures["examples"].append(f"{path}: {status}")
        if kind != "healthz" and isinstance(status, int):
            figures["exchange_calls"] += 1


async def run(plan: dict) -> dict:
    figures = {"latencies": [], "statuses": Counter(), "errors": 0, "exchange_calls": 0, "examples": [], "resent": 0}
    # Idle connections are dropped by the client well before the server's 5 s keep-alive timeout, as a
    # careful client does: at the same 5 s, a connection left idle under a slow spell was closed by the
    # server just as it was reused (3 of 2,503 requests on a machine at load 10).
    limits = httpx.Limits(max_connections=plan["clients"], max_keepalive_connections=plan["clients"], keepalive_expiry=2.5)
    async with httpx.AsyncClient(base_url=plan["base"], limits=limits, timeout=30) as http:
        started = time.monotonic()
        deadline = started + plan["seconds"]
        await asyncio.gather(*(_client(plan, deadline, http, seed, figures) for seed in range(plan["clients"])))
        elapsed = time.monotonic() - started
    latencies = figures["latencies"]
    return {
        "requests": len(latencies), "errors": figures["errors"], "error_examples": figures["examples"],
        "statuses": dict(figures["statuses"]), "exchange_calls": figures["exchange_calls"], "resent": figures["resent"],
        "seconds": round(elapsed, 1), "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_percentile(latencies, 0.50), 2), "p99_ms": round(_percentile(latencies, 0.99), 2),
    }


if __name__ == "__main__":
    json.dump(asyncio.run(run(json.load(sys.stdin))), sys.stdout)
