"""The benchmark's world: a provider's 10-column citizen dataset, and a demanding department
holding an extract grant and an interface grant on it, made through the real API.

Departments and clients are created in the store before the server starts (as
``govshare clients add`` would); everything else goes over HTTP, as users do it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import httpx

from directory.demo import DISTRICTS, citizens_sql
from govshare import identities
from govshare.db import Database, quote_path
from govshare.keys import KeyStore
from govshare.settings import Settings
from govshare.store import initialise

CODE = "BENCH-CITIZENS"
ITEMS = [
    ("citizen_id", "string", "national ID number"), ("name", "string", "full name"), ("gender", "string", "gender"),
    ("birth_date", "date", "date of birth"), ("district", "string", "district code"),
    ("household_no", "string", "household number"), ("income", "number", "declared yearly income"),
    ("members", "integer", "people in the household"), ("registered_on", "date", "registration date"),
    ("active", "boolean", "registration in force"),
]
EXTRACT_COLUMNS = ["citizen_id", "name", "birth_date", "district", "income", "members"]
LOOKUP_COLUMNS = ["citizen_id", "name", "district", "household_no"]
GRANTED_DISTRICTS = DISTRICTS[:3]  # 3 of 8 districts: the grant's row filter keeps 3/8 of the rows
GRANTED_MARKS = ", ".join("?" * len(GRANTED_DISTRICTS))  # their placeholders, for the bare engine's queries
GRANT_ROW_FILTER = {"district": {"in": GRANTED_DISTRICTS}}  # every bench grant's


def data_sql(rows: int) -> str:
    """``rows`` synthetic citizens with the dataset's ten columns, the same every time."""
    return f"""
        SELECT citizen_id, name, gender, birth_date, district, household_no,
               round((i * 37) % 100000 / 7.0, 2) AS income, CAST(1 + i % 6 AS INTEGER) AS members,
               DATE '2000-01-01' + CAST(i % 9000 AS INTEGER) AS registered_on, i % 7 <> 0 AS active
        FROM ({citizens_sql(rows)})
    """


def write_data(path: Path, rows: int) -> Path:
    fmt = "FORMAT parquet, COMPRESSION zstd" if path.suffix == ".parquet" else "FORMAT csv, HEADER true"
    duckdb.connect().execute(f"COPY ({data_sql(int(rows))}) TO {quote_path(path)} ({fmt})")
    return path


def document(code: str = CODE) -> dict:
    return {
        "code": code, "title": "Benchmark citizens", "department": "PRV", "summary": "synthetic citizens for the benchmarks",
        "domain": "household", "share_type": "unconditional", "open_type": "closed", "update_frequency": "daily",
        "lookup_key": "citizen_id", "delivery_modes": ["extract", "interface"],
        "items": [{"name": name, "type": type_, "description": text, "sensitivity": "internal",
                   **({"required": True, "pattern": "^[0-9]{17}[0-9X]$"} if name == "citizen_id" else {})}
                  for name, type_, text in ITEMS],
    }


def in_process_app(settings: Settings):
    """govshare's app for a benchmark that calls it in its own process, the clients' rate limit lifted (the limit is
    not what is measured)."""
    from exchange.ratelimit import RateLimiter
    from govshare.app import create_app

    app = create_app(settings)
    app.state.rate_limiter = RateLimiter(rate=1e12, burst=10**12)
    return app


@dataclass
class Credentials:
    client_id: str
    client_secret: str


def prepare_store(home: Path, database_url: str | None = None) -> dict[str, Credentials]:
    """A fresh store with a provider, a demanding department and a manager, one client each."""
    settings = Settings(home=home, database_url=database_url, jobs_enabled=False)
    initialise(settings)
    database = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
    clients = {}
    with database.transaction() as session:
        for code, name in [("PRV", "Providing bureau"), ("DEM", "Demanding bureau"), ("MGR", "Data management office")]:
            identities.add_department(session, code=code, name=name)
        for key, department, roles in [("provider", "PRV", ["provider"]), ("demander", "DEM", ["demander", "service"]),
                                       ("manager", "MGR", ["manager"])]:
            created = identities.add_client(session, department_code=department, roles=roles)
            clients[key] = Credentials(created.client.client_id, created.client_secret)
    database.dispose()
    return clients


class World:
    """HTTP calls of the three parties against one running server."""

    def __init__(self, base: str, clients: dict[str, Credentials], *, http: httpx.Client | None = None) -> None:
        self.http = http or httpx.Client(base_url=base, timeout=3600)  # or a client of the app in-process
        self.tokens = {name: self._token(credentials) for name, credentials in clients.items()}

    def _token(self, credentials: Credentials) -> str:
        response = self.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                  auth=(credentials.client_id, credentials.client_secret))
        response.raise_for_status()
        return response.json()["access_token"]

    def headers(self, party: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[party]}"}

    def register(self, code: str = CODE) -> None:
        response = self.http.post("/api/v1/datasets", json=document(code), headers=self.headers("provider"))
        if response.status_code != 201:
            raise RuntimeError(f"register {code}: {response.status_code} {response.text}")

    def upload(self, path: Path, code: str = CODE) -> dict:
        media = "application/vnd.apache.parquet" if path.suffix == ".parquet" else "text/csv"
        with path.open("rb") as handle:
            response = self.http.post(f"/api/v1/datasets/{code}/versions", files={"file": (path.name, handle, media)},
                                      headers=self.headers("provider"))
        if response.status_code != 201:
            raise RuntimeError(f"upload {path.name}: {response.status_code} {response.text[:500]}")
        return response.json()

    def lookups_granted(self, source: Path) -> int:
        """The bench dataset registered, ``source`` uploaded, and the demander's interface grant of LOOKUP_COLUMNS (its id)."""
        self.register()
        self.upload(source)
        return self.grant("interface", LOOKUP_COLUMNS)

    def grant(self, delivery: str, columns: list[str], code: str = CODE) -> int:
        today = date.today()
        body = {
            "dataset": code, "service_item": f"bench-{delivery}", "scenario": "benchmark of the exchange",
            "basis": "Benchmark Regulation art. 1", "items": columns,
            "row_filter": GRANT_ROW_FILTER, "delivery": delivery,
            "period": {"start": today.isoformat(), "end": (today + timedelta(days=300)).isoformat()},
            "purpose": "measure the exchange against its engine",
        }
        application = self.http.post("/api/v1/applications", json=body, headers=self.headers("demander"))
        if application.status_code != 201:
            raise RuntimeError(f"application: {application.status_code} {application.text}")
        decision = self.http.post(f"/api/v1/applications/{application.json()['id']}/decision", json={"decision": "approve"},
                                  headers=self.headers("manager"))
        if decision.status_code != 200 or not decision.json().get("grant_id"):
            raise RuntimeError(f"decision: {decision.status_code} {decision.text}")
        return decision.json()["grant_id"]

    def extract(self, grant_id: int, fmt: str, target: Path) -> tuple[dict, float]:
        """Request an extract, wait until it is downloadable, then download it.

        Returns its manifest and the seconds from request to downloadable file (the download
        itself is not timed: it measures the network, not the exchange).
        """
        began = time.perf_counter()
        requested = self.http.post(f"/api/v1/grants/{grant_id}/extracts", json={"format": fmt}, headers=self.headers("demander"))
        if requested.status_code != 202:
            raise RuntimeError(f"extract request: {requested.status_code} {requested.text}")
        location = f"/api/v1/extracts/{requested.json()['id']}"
        while True:
            state = self.http.get(location, headers=self.headers("demander")).json()
            if state["status"] == "done":
                break
            if state["status"] == "failed":
                raise RuntimeError(f"extract failed: {state.get('error')}")
            time.sleep(0.05)
        seconds = time.perf_counter() - began
        with self.http.stream("GET", state["download_url"], headers=self.headers("demander")) as response:
            response.raise_for_status()
            with target.open("wb") as sink:
                for chunk in response.iter_bytes(1 << 20):
                    sink.write(chunk)
        return state["manifest"], seconds

    def close(self) -> None:
        self.http.close()
