"""A provider department's own residents API, for the live services benchmark: the ceiling the pass-through is measured against.

Each key's record is computed from the key (no store to read), so the measure is the HTTP
round trip and the exchange's own work; the record's district is always one of the bench
grant's, so every call is answered within the grant. Checks a static API key, as a live
dataset's provider would.

    python -m evaluation.bench.provider --port 8002
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Header, HTTPException

from evaluation.bench import world as bench_world

API_KEY = "bench-provider-key"
app = FastAPI()


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/residents/{key}")
def resident(key: str, x_api_key: str | None = Header(default=None)) -> dict:
    if x_api_key != API_KEY:
        raise HTTPException(401, "unknown API key")
    return {"citizen_id": key, "name": "Wang Wei", "district": bench_world.GRANTED_DISTRICTS[ord(key[-1]) % len(bench_world.GRANTED_DISTRICTS)],
            "household_no": "HH000000001", "gender": "F", "birth_date": "1990-01-01", "income": 1234.5, "members": 3,
            "registered_on": "2010-05-01", "active": True}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="info")
