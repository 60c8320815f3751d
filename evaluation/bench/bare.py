"""The ceiling for the lookup benchmark: FastAPI returning a constant, under uvicorn with the
settings ``govshare serve`` uses (one process, loopback, log level info with access log).

    python -m evaluation.bench.bare --port 8001
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

app = FastAPI()
RECORD = {"citizen_id": "110101194001010011", "name": "Wang Wei", "district": "110101", "household_no": "HH000000001"}


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/api/v1/exchange/{code}/records/{key}")
def record(code: str, key: str) -> dict:
    return {"dataset": code, "records": [RECORD]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="info")
