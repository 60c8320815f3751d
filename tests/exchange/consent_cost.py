"""What consent costs a delivery: lookups and pages of a consent_required dataset against the same data without it.

Run: ``.venv/bin/python -m tests.exchange.consent_cost [ROWS] [CONSENTS]`` (defaults 20000 and 5000). It builds a
store in a temporary folder (SQLite, or ``GOVSHARE_TEST_DATABASE_URL``'s PostgreSQL is not used: the figures are for
the embedded default), registers the same rows twice (``PLAIN`` and ``CONSENT``), grants CAB an interface grant on
both, records ``CONSENTS`` consents, and prints JSON: milliseconds per lookup, per 1,000-row page and per Arrow
stream of the whole grant, for each dataset. In-process (httpx over ASGI), one caller, so the figures are the call
path's own cost, not a server's throughput.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from starlette.testclient import TestClient

from sqlalchemy import select

from directory.models import Dataset
from exchange.models import Consent
from govshare.app import create_app
from govshare.db import Database, create_db_engine, utcnow
from govshare.keys import KeyStore
from govshare.settings import Settings, get_settings
from govshare.store import upgrade_schema
from tests.approvals.test_api import application_body
from tests.factories import DirectoryFactory, Factory, citizen_id


def _key(index: int) -> str:
    born = date(1950, 1, 1) + timedelta(days=index // 1000)
    return citizen_id(f"110101{born:%Y%m%d}{index % 1000:03d}")


def _rows(count: int) -> bytes:
    lines = ["citizen_id,name,district,birth_date"]
    for index in range(count):
        lines.append(f"{_key(index)},Citizen {index},{('01', '02')[index % 2]},1990-01-01")
    return ("\n".join(lines) + "\n").encode()


def _timed(call, times: int) -> float:
    started = time.perf_counter()
    for index in range(times):
        call(index)
    return (time.perf_counter() - started) * 1000 / times


def main(rows: int = 20_000, consents: int = 5_000) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="consent-cost-"))
    url = f"sqlite:///{folder / 'govshare.db'}"
    engine = create_db_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    for key, value in {"HOME": str(folder / "home"), "DATABASE_URL": url, "ISSUER": "http://127.0.0.1",
                       "JOBS_ENABLED": "false", "RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000"}.items():
        os.environ[f"GOVSHARE_{key}"] = value
    get_settings.cache_clear()
    settings = Settings()
    KeyStore(settings.resolved_keys_dir).ensure()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as http:
        factory = Factory(database, http)
        directory = DirectoryFactory(factory)
        content = _rows(rows)
        keys = [_key(index) for index in range(rows)]
        demander, manager = factory.caller("CAB", "demander"), factory.caller("DATA", "manager")
        service = factory.caller("CAB", "service")
        period = {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=30)).isoformat()}
        for code, flags in (("PLAIN", {}), ("CONSENT", {"consent_required": True})):
            directory.dataset(code, "PSB", **flags)
            uploaded = directory.upload(code, content)
            assert uploaded.status_code == 201, uploaded.text
            application = http.post("/api/v1/applications", headers=demander,
                                    json=application_body(dataset=code, period=period, row_filter=None)).json()
            http.post(f"/api/v1/applications/{application['id']}/decision", json={"decision": "approve"}, headers=manager)
            http.post(f"/api/v1/applications/{application['id']}/provider-decision", json={"decision": "approve"},
                      headers=directory.provider("PSB"))
        with database.transaction() as session:  # every other citizen of the first 2 x CONSENTS consents
            dataset_ids = dict(session.execute(select(Dataset.code, Dataset.id)).all())
            session.add_all(Consent(citizen_id=keys[2 * index], department_code="CAB", dataset_id=dataset_ids["CONSENT"],
                                    dataset_code="CONSENT", purpose="cost", valid_until=date.today() + timedelta(days=5),
                                    status="active", given_at=utcnow(), given_by="cost")
                            for index in range(min(consents, rows // 2)))
        figures: dict = {"rows": rows, "consents": consents}
        for code in ("PLAIN", "CONSENT"):
            def lookup(index: int, code: str = code) -> None:
                answer = http.get(f"/api/v1/exchange/{code}/records/{keys[2 * (index % consents)]}", headers=service)
                assert answer.status_code == 200, answer.text

            def page(index: int, code: str = code) -> None:
                answer = http.get(f"/api/v1/exchange/{code}/records", params={"limit": 1000}, headers=service)
                assert answer.status_code == 200 and len(answer.json()["records"]) == 1000, answer.text

            def stream(index: int, code: str = code) -> None:
                answer = http.get(f"/api/v1/exchange/{code}/records", headers={**service, "Accept": "application/vnd.apache.arrow.stream"})
                assert answer.status_code == 200

            lookup(0), page(0), stream(0)  # stores built, scope cached
            figures[code] = {"lookup_ms": round(_timed(lookup, 300), 2), "page_1000_ms": round(_timed(page, 20), 1),
                             "stream_ms": round(_timed(stream, 5), 1)}
        http.app.state.ledger.flush()
    database.dispose()
    return figures


if __name__ == "__main__":
    arguments = [int(value) for value in sys.argv[1:3]]
    print(json.dumps(main(*arguments), indent=1))
