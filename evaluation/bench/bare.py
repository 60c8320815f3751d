"""The ceilings for the lookup benchmark, under uvicorn with the settings ``govshare serve``
uses (one process, loopback, log level info with access log):

- the bare endpoint: FastAPI returning a constant;
- with ``--store``, the engine's share: the same endpoint doing the exchange's own probe
  of that store (a lookup store's ``exchange.stores.lookup_store.lookup_many``, SQLite, what a
  lookup runs; or a keyed store's ``exchange.stores.keyed_store.lookup``, DuckDB) with the bench
  grant's columns and row filter, and nothing else: no token, grant state or ledger line.
  What it loses against the bare endpoint is what the engine alone costs a lookup.

    python -m evaluation.bench.bare --port 8001 [--store PATH --key citizen_id]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException

from approvals import masks, rowfilter
from evaluation.bench import world as bench_world
from exchange.stores import keyed_store, lookup_store

app = FastAPI()
RECORD = {"citizen_id": "110101194001010011", "name": "Wang Wei", "district": "110101", "household_no": "HH000000001"}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/api/v1/exchange/{code}/records/{key}")
def record(code: str, key: str) -> dict:
    return {"dataset": code, "records": [RECORD]}


def probing_app(store: Path, key: str) -> FastAPI:
    """The bare app whose lookup route runs the exchange's store probe, as a bench grant's lookup does: a lookup
    store's (SQLite, ``*.lookup.sqlite``) or a keyed store's (DuckDB)."""
    dialect = "sqlite" if store.name.endswith(".sqlite") else "duckdb"
    items = [{"name": name, "type": kind} for name, kind, _ in bench_world.ITEMS]
    projection = masks.projection(bench_world.LOOKUP_COLUMNS, None, hash_key="", dialect=dialect, items=items)
    scope = rowfilter.compile_filter(bench_world.GRANT_ROW_FILTER, items, dialect=dialect)
    decode = lookup_store.decoders(bench_world.LOOKUP_COLUMNS, (), items)
    probing = FastAPI()
    probing.add_api_route("/healthz", healthz)

    @probing.get("/api/v1/exchange/{code}/records/{value}")
    def probed(code: str, value: str) -> dict:
        if dialect == "sqlite":
            records = lookup_store.lookup_many(store, key=key, values=[value], projection=projection, scope=scope,
                                               names=bench_world.LOOKUP_COLUMNS, decode=decode).get(value, [])
        else:
            records = keyed_store.lookup(store, key=key, value=value, projection=projection, scope=scope)
        if not records:  # as the exchange answers: so its 0 non-2xx says every key was found
            raise HTTPException(404, f"no record with key {value}")
        return {"dataset": code, "key": value, "records": records}

    return probing


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", type=Path, help="a keyed store: serve the engine's share (its index probe) instead of a constant")
    parser.add_argument("--key", default="citizen_id", help="the store's lookup key (with --store)")
    arguments = parser.parse_args()
    served = probing_app(arguments.store, arguments.key) if arguments.store else app
    uvicorn.run(served, host="127.0.0.1", port=arguments.port, log_level="info")
