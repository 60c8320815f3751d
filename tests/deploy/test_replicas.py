"""The scaled-out deployment end to end: nginx over two ``govshare serve`` replicas with separate homes that
share only PostgreSQL, an S3 server and Redis. The whole flow runs through nginx; then one replica is killed
(SIGKILL) in the middle of an extract, and the other finishes it, serves it and keeps answering lookups.

Fails (never skips) when nginx, PostgreSQL, Redis or the S3 server is missing.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import date, timedelta
from pathlib import Path

import delta_sharing
import httpx
import pyarrow.csv as pacsv
import pytest
from sqlalchemy import create_engine, text

from tests.approvals.test_api import application_body
from tests.deploy.cluster import cluster, wait_for
from tests.exchange.test_interfaces import _citizens, _csv
from tests.factories import dataset_document

pytestmark = pytest.mark.slow

ROWS = 600


def _grant(http: httpx.Client, *, delivery: str, demander, manager, provider) -> int:
    period = {"start": date.today().isoformat(), "end": (date.today() + timedelta(days=60)).isoformat()}
    application = http.post("/api/v1/applications", json=application_body(delivery=delivery, period=period), headers=demander)
    assert application.status_code == 201, application.text
    application_id = application.json()["id"]
    assert http.post(f"/api/v1/applications/{application_id}/decision", json={"decision": "approve"}, headers=manager).status_code == 200
    approved = http.post(f"/api/v1/applications/{application_id}/provider-decision", json={"decision": "approve"}, headers=provider)
    assert approved.status_code == 200, approved.text
    return approved.json()["grant_id"]


def _extract(http: httpx.Client, grant_id: int, demander) -> str:
    requested = http.post(f"/api/v1/grants/{grant_id}/extracts", json={"format": "csv"}, headers=demander)
    assert requested.status_code == 202, requested.text
    return requested.json()["id"]


def _done(http: httpx.Client, extract_id: str, demander) -> dict:
    def finished():
        extract = http.get(f"/api/v1/extracts/{extract_id}", headers=demander).json()
        assert extract["status"] != "failed", extract
        return extract if extract["status"] == "done" else None

    return wait_for(f"extract {extract_id} is done", finished, timeout=180, every=0.2)


def _download(http: httpx.Client, extract: dict, demander) -> list[dict]:
    response = http.get(extract["download_url"], headers=demander)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == extract["manifest"]["sha256"]
    return pacsv.read_csv(io.BytesIO(response.content), convert_options=pacsv.ConvertOptions(
        column_types={"citizen_id": "string", "district": "string"})).to_pylist()


def test_two_replicas_behind_nginx_share_everything_and_losing_one_loses_nothing(tmp_path):
    rows = _citizens(ROWS)
    in_scope = sorted((r["citizen_id"], r["name"], r["district"]) for r in rows if r["district"] in ("01", "02"))
    with cluster(tmp_path) as deployment, httpx.Client(base_url=deployment.base, timeout=60) as http:
        provider = deployment.client("psb", "PSB", "provider")
        demander = deployment.client("cab", "CAB", "demander")
        service = deployment.client("cab-service", "CAB", "service")
        manager = deployment.client("data", "DATA", "manager")

        # Register and upload, through nginx.
        assert http.post("/api/v1/datasets", json=dataset_document(), headers=provider).status_code == 201
        uploaded = http.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("people.csv", _csv(rows))}, headers=provider)
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["rows"] == ROWS
        interface_grant = _grant(http, delivery="interface", demander=demander, manager=manager, provider=provider)
        extract_grant = _grant(http, delivery="extract", demander=demander, manager=manager, provider=provider)

        # Lookups: every one answered, whichever replica nginx picks.
        person = next(r for r in rows if r["district"] == "02")
        for _ in range(6):
            found = http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{person['citizen_id']}", headers=service)
            assert found.status_code == 200, found.text
            assert found.json()["records"] == [{"citizen_id": person["citizen_id"], "name": person["name"], "district": "02"}]
        outside = next(r for r in rows if r["district"] == "03")
        assert http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{outside['citizen_id']}", headers=service).status_code == 404

        # An extract, built by whichever replica claims it, downloaded through nginx.
        first = _done(http, _extract(http, extract_grant, demander), demander)
        assert sorted((r["citizen_id"], r["name"], r["district"]) for r in _download(http, first, demander)) == in_scope

        # A Delta Sharing read with the real client.
        profile = http.get(f"/api/v1/grants/{extract_grant}/sharing-profile", headers=demander)
        assert profile.status_code == 200, profile.text
        profile_path = tmp_path / "cab.share"
        profile_path.write_text(json.dumps(profile.json()))
        frame = delta_sharing.load_as_pandas(f"{profile_path}#grant-{extract_grant}.psb.psb-household")
        assert sorted(zip(frame["citizen_id"], frame["name"], frame["district"])) == in_scope

        # Both replicas took part.
        assert deployment.nginx.upstreams_used() >= {server.base.removeprefix("http://") for server in deployment.replicas}

        # SIGKILL the replica building an extract, at a known point: it has claimed it and waits on the pause file.
        (deployment.pause_dir / "pause").touch()
        second_id = _extract(http, extract_grant, demander)
        claimed = wait_for("a replica claimed the extract",
                           lambda: sorted(deployment.pause_dir.glob(f"claimed-{second_id}-*")), timeout=60)
        holder_pid = int(claimed[0].name.rsplit("-", 1)[1])
        holder = next(server for server in deployment.replicas if server.pid == holder_pid)
        survivor = next(server for server in deployment.replicas if server is not holder)
        holder.kill()
        (deployment.pause_dir / "pause").unlink()

        # The survivor keeps answering lookups while it takes the extract over.
        for _ in range(10):
            assert http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{person['citizen_id']}", headers=service).status_code == 200
        second = _done(http, second_id, demander)
        assert (deployment.pause_dir / f"claimed-{second_id}-{survivor.pid}").exists()  # taken over by the survivor
        assert sorted((r["citizen_id"], r["name"], r["district"]) for r in _download(http, second, demander)) == in_scope
        assert sorted(zip(*[delta_sharing.load_as_pandas(f"{profile_path}#grant-{extract_grant}.psb.psb-household")[c]
                            for c in ("citizen_id", "name", "district")])) == in_scope

        # Revocation reaches every replica at once.
        revoked = http.post(f"/api/v1/grants/{interface_grant}/revoke", json={"reason": "service ended"}, headers=manager)
        assert revoked.status_code == 200, revoked.text
        for _ in range(4):
            assert http.get(f"/api/v1/exchange/PSB-HOUSEHOLD/records/{person['citizen_id']}", headers=service).status_code == 403

        # Nothing lost, nothing done twice: each extract built once, both files in the store, the audit chain whole.
        engine = create_engine(deployment.database_url)
        try:
            with engine.connect() as connection:
                created = connection.execute(text(
                    "SELECT subject, count(*) FROM audit_entries WHERE action = 'extract.created' GROUP BY subject")).all()
                attempts = dict(connection.execute(text("SELECT id, attempts FROM extracts")).all())
        finally:
            engine.dispose()
        assert sorted(created) == sorted([(f"extract:{first['id']}", 1), (f"extract:{second_id}", 1)])
        assert attempts == {first["id"]: 1, second_id: 2}
        objects = deployment.objects()
        assert {f"extracts/{first['id']}.csv", f"extracts/{second_id}.csv", "datasets/PSB-HOUSEHOLD/v000001.parquet"} <= set(objects)
        assert not [key for key in objects if key.startswith("tmp/")]
        assert http.get("/api/v1/audit/verify", headers=manager).json()["ok"]

        # A replica's disk holds caches only: no data file anywhere in its home outside its cache folder.
        for home in deployment.homes:
            outside_cache = [path for path in home.rglob("*") if path.is_file() and not path.is_relative_to(home / "cache")]
            assert outside_cache == [], outside_cache
        assert any((deployment.homes[0] / "cache").rglob("*.parquet")) or any((deployment.homes[1] / "cache").rglob("*.parquet"))
