"""``govshare serve --demo``: a new user's first minute, against a real server process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

GOVSHARE = str(Path(sys.executable).parent / "govshare")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_demo_fills_an_empty_store_and_answers_with_the_printed_credentials(settings, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GOVSHARE_HOME": str(tmp_path / "demo-home"), "GOVSHARE_DATABASE_URL": settings.resolved_database_url}
    env.pop("GOVSHARE_ISSUER", None)  # unset: the issuer must follow the port actually served
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen([GOVSHARE, "serve", "--demo", "--demo-citizens", "20000", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, Path(log.name).read_text()
            assert time.monotonic() < deadline, "server did not come up within 90 s"
            time.sleep(0.3)
        printed = Path(log.name).read_text()
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
        assert statuses == {"draft", "submitted", "awaiting_provider", "approved", "rejected", "returned", "withdrawn"}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
