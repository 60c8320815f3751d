"""``govshare serve --demo``: a new user's first minute, against a real server process."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.servers import GOVSHARE, GovshareServer

# What the app loads and a command line must not wait for: the web framework, the record
# store's toolkit, the data engines.
HEAVY = {"fastapi", "starlette", "sqlalchemy", "duckdb", "pyarrow", "pandas", "numpy", "authlib"}


def test_serve_demo_fills_an_empty_store_and_answers_with_the_printed_credentials(settings, tmp_path):
    # GOVSHARE_ISSUER unset: the issuer must follow the port actually served
    env = {"GOVSHARE_HOME": str(tmp_path / "demo-home"), "GOVSHARE_DATABASE_URL": settings.resolved_database_url, "GOVSHARE_ISSUER": None}
    with GovshareServer(env, tmp_path / "serve.log", args=("--demo", "--demo-citizens", "20000"), up_within=90) as server:
        base = server.base
        printed = server.log.read_text()
        assert "govshare demo is ready." in printed
        assert f"{base}/ui" in printed
        credentials = json.loads((tmp_path / "demo-home" / "demo-credentials.json").read_text())
        manager = next(c for c in credentials["clients"] if c["roles"] == ["manager"])
        assert manager["client_secret"] in printed  # the printed secret is the one that works
        token = httpx.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(manager["client_id"], manager["client_secret"])).json()["access_token"]
        verified = httpx.get(f"{base}/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"})
        assert verified.status_code == 200
        assert verified.json()["ok"] is True
        assert verified.json()["entries"] > 10
        statuses = {item["status"] for item in httpx.get(f"{base}/api/v1/applications", params={"limit": 100},
                                                          headers={"Authorization": f"Bearer {token}"}).json()["items"]}
        # Every state but the draft, which is its author's alone (the demo has one: CAB's).
        assert statuses == {"submitted", "awaiting_provider", "approved", "rejected", "returned", "withdrawn"}


def test_a_served_worker_can_answer_its_supervisor_before_it_loads_the_app():
    # multiprocessing starts each worker of `serve --workers N` by running the govshare script
    # again (as __mp_main__), and only then uvicorn's thread that answers the supervisor's
    # health check (5 s). When the script imported the whole app (seconds on a loaded
    # machine), workers were judged dead at start ("Child process [N] died") and replaced.
    probe = "import json, runpy, sys; runpy.run_path(sys.argv[1], run_name='__mp_main__'); print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe, GOVSHARE], capture_output=True, text=True, check=True).stdout)
    assert not [name for name in loaded if name.split(".")[0] in HEAVY], loaded
