"""Server processes for the benchmarks: the real ``govshare serve`` and the bare FastAPI ceiling.

Both run as child processes under uvicorn with the same settings, so the load
generator (another process) sees the same server stack on both sides. Memory is read
from /proc: ``peak_rss_mib`` is the process's high-water mark since the last
``reset_peak`` (writing 5 to clear_refs resets VmHWM; Linux 4.0 and newer).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """A child process serving HTTP on a loopback port; stopped on exit of the ``with`` block."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._args, self._env, self._log = [*args, "--port", str(self.port)], env, log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "ServerProcess":
        env = {**os.environ, **(self._env or {}), "GOVSHARE_ISSUER": self.base}
        output = open(self._log, "ab") if self._log else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, *self._args], env=env, stdout=output, stderr=output)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server {' '.join(self._args)} exited with {self.process.returncode}"
                                   + (f"; see {self._log}" if self._log else ""))
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not answer /healthz within 300 s")

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _status(self, field: str) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"{field} not in /proc status")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process has used so far, every thread."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        return self._status("VmRSS")

    def peak_rss_mib(self) -> float:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


def govshare_server(home: Path, *, log: Path | None = None, database_url: str | None = None,
                    env: dict[str, str] | None = None) -> ServerProcess:
    env = {**(env or {}),
        "GOVSHARE_HOME": str(home),
        # The load generator is one client: the per-client limit would measure itself, not the exchange.
        "GOVSHARE_RATE_LIMIT_PER_SECOND": "1000000", "GOVSHARE_RATE_LIMIT_BURST": "1000000",
        "GOVSHARE_MAX_REQUEST_BYTES": str(64 * 1024 ** 3),
    }
    if database_url:
        env["GOVSHARE_DATABASE_URL"] = database_url
    else:
        os.environ.pop("GOVSHARE_DATABASE_URL", None)
    return ServerProcess(["-m", "govshare", "serve"], env=env, log=log)


def bare_server(log: Path | None = None, *, store: Path | None = None) -> ServerProcess:
    """The bare endpoint; with ``store``, the engine's share (its index probe on that keyed store)."""
    return ServerProcess(["-m", "evaluation.bench.bare", *(["--store", str(store)] if store else [])], log=log)
