"""A scaled-out deployment on this machine, every part real: an S3 server (moto's server mode), a PostgreSQL
schema, Redis, nginx from Debian as the load balancer, and N ``govshare serve`` replicas with separate homes.

Each part is a child process on a free loopback port. A missing part fails the test
that asked for it (never a skip): the deployment is the point.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pyarrow.fs as pafs
from sqlalchemy import create_engine, make_url, text

from evaluation.bench.servers import free_port
from tests.servers import GOVSHARE, GovshareServer

NGINX = "/usr/sbin/nginx"
POSTGRES_URL = os.environ.get("GOVSHARE_TEST_DATABASE_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def wait_for(what: str, found, timeout: float = 120, every: float = 0.1):
    """Poll ``found`` until it gives something true; fail saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline, f"no evidence within {timeout:g} s that {what}"
        time.sleep(every)
    return result


@contextmanager
def s3_server(log: Path) -> Iterator[str]:
    """moto's S3 server in its own process; yields its endpoint URL."""
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=output, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                return httpx.get(endpoint, timeout=2).status_code < 500
            except httpx.TransportError:
                return False

        wait_for("the S3 server answers", up, timeout=60)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A private schema of the test PostgreSQL database; yields a URL whose search_path is that schema."""
    schema = f"govshare_deploy_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:  # fails loudly when PostgreSQL is down
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Nginx:
    """Debian's nginx in the foreground with a configuration of its own: one upstream of the replicas."""

    def __init__(self, folder: Path, upstreams: list[int]) -> None:
        assert Path(NGINX).exists(), f"{NGINX} is missing: apt-get install nginx-light"
        self.folder, self.port = folder, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.access_log = folder / "access.log"
        servers = "\n".join(f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=60s;" for port in upstreams)
        temp = "\n".join(f"  {name}_temp_path {folder / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'error.log'} warn;
events {{ worker_connections 512; }}
http {{
  log_format upstream '$request_method $uri $status $upstream_addr';
  access_log {self.access_log} upstream;
{temp}
  client_max_body_size 200m;
  upstream govshare {{
{servers}
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://govshare;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_next_upstream error timeout;
      proxy_read_timeout 300s;
    }}
  }}
}}
""")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Nginx:
        with (self.folder / "stderr.log").open("ab") as output:
            self.process = subprocess.Popen([NGINX, "-p", str(self.folder), "-c", str(self.folder / "nginx.conf")],
                                            stdout=output, stderr=subprocess.STDOUT)

        def up() -> bool:
            assert self.process.poll() is None, (self.folder / "stderr.log").read_text() + (self.folder / "error.log").read_text()
            try:
                httpx.get(f"{self.base}/healthz", timeout=2)
                return True
            except httpx.TransportError:
                return False

        wait_for("nginx answers", up, timeout=30)
        return self

    def upstreams_used(self) -> set[str]:
        return {line.split()[-1] for line in self.access_log.read_text().splitlines() if line.strip()}

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Cluster:
    """The deployment: replicas behind nginx, sharing only PostgreSQL, the S3 store and Redis."""

    base: str
    database_url: str
    replicas: list[GovshareServer]
    homes: list[Path]
    nginx: Nginx
    env: dict[str, str]
    pause_dir: Path
    bucket_fs: pafs.S3FileSystem
    root: str
    credentials: dict[str, dict] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        done = subprocess.run([GOVSHARE, *args], env={**os.environ, **self.env, "GOVSHARE_HOME": str(self.homes[0])},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def client(self, name: str, department: str, roles: str) -> dict[str, str]:
        """Bearer headers of a new client (made with the CLI, its token asked through nginx)."""
        self.cli("departments", "add", department, "--name", f"{department} department") if department not in {
            c["department"] for c in self.credentials.values()} else None
        created = json.loads(self.cli("clients", "add", "--department", department, "--roles", roles, "--json"))
        self.credentials[name] = {**created, "department": department}
        token = httpx.post(f"{self.base}/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(created["client_id"], created["client_secret"]), timeout=30)
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def objects(self) -> list[str]:
        infos = self.bucket_fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        return sorted(info.path.removeprefix(self.root + "/") for info in infos if info.type == pafs.FileType.File)


@contextmanager
def cluster(tmp: Path, *, replicas: int = 2, extra_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """S3 server, PostgreSQL schema, nginx and ``replicas`` govshare replicas with separate homes."""
    with ExitStack() as stack:
        endpoint = stack.enter_context(s3_server(tmp / "s3.log"))
        database_url = stack.enter_context(postgres_schema())
        access_key, secret_key = f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
        bucket = f"govshare-{secrets.token_hex(4)}"
        bucket_fs = pafs.S3FileSystem(access_key=access_key, secret_key=secret_key, region="eu-west-1",
                                      endpoint_override=endpoint, allow_bucket_creation=True)
        bucket_fs.create_dir(bucket)
        ports = [free_port() for _ in range(replicas)]
        lb = Nginx(tmp / "nginx", ports)
        pause_dir = tmp / "pause"
        pause_dir.mkdir()
        env = {
            "GOVSHARE_DATABASE_URL": database_url, "GOVSHARE_ISSUER": lb.base,
            "GOVSHARE_DATA_URL": f"s3://{bucket}/exchange", "GOVSHARE_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_REGION": "eu-west-1",
            "GOVSHARE_REDIS_URL": REDIS_URL, "GOVSHARE_REDIS_KEY_PREFIX": f"govshare-deploy:{uuid.uuid4().hex}:",
            # The signing keys are a secret every replica is given (as a mounted secret would be), not data.
            "GOVSHARE_KEYS_DIR": str(tmp / "secrets" / "keys"),
            "GOVSHARE_JOBS_ENABLED": "true", "GOVSHARE_JOB_LEASE_SECONDS": "3", "GOVSHARE_TEST_PAUSE_DIR": str(pause_dir),
            **(extra_env or {}),
        }
        homes = [tmp / f"replica-{chr(ord('a') + index)}" for index in range(replicas)]
        servers = []
        for home, port in zip(homes, ports):
            server = GovshareServer({**env, "GOVSHARE_HOME": str(home)}, tmp / f"{home.name}.log")
            server.port, server.base = port, f"http://127.0.0.1:{port}"
            server.args = [arg for arg in server.args[:-2]] + ["--port", str(port)]
            servers.append(server)
        made = Cluster(lb.base, database_url, servers, homes, lb, env, pause_dir, bucket_fs, f"{bucket}/exchange")
        made.cli("init")
        for server in servers:
            stack.callback(server.stop)
            server.start()
        stack.enter_context(lb)
        yield made
