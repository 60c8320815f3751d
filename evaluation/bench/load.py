"""The load generator: wrk (a separate C process) with a Lua script that asks for random keys.

wrk keeps ``connections`` requests in flight over ``threads`` threads for ``seconds``
and reports the latency distribution of every request, so the client costs little next
to the server it measures. Install it with ``apt-get install wrk``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = r"""
local keys = {}
local prefix = ""
function init(args)
  for line in io.lines(args[1]) do keys[#keys + 1] = line end
  prefix = args[2]
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  return wrk.format("GET", prefix .. keys[math.random(#keys)])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\"requests\": %d, \"duration_us\": %d, \"non_2xx\": %d, \"socket_errors\": %d, \"p50_us\": %d, \"p99_us\": %d, \"mean_us\": %.1f}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(base: str, prefix: str, keys: list[str], *, seconds: float, connections: int = 32, threads: int = 2,
            token: str | None = None, headers: dict[str, str] | None = None) -> LoadResult:
    if not wrk_available():
        raise RuntimeError("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="govshare-load-") as folder:
        script, keys_file = Path(folder) / "keys.lua", Path(folder) / "keys.txt"
        script.write_text(SCRIPT)
        keys_file.write_text("\n".join(keys) + "\n")
        command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", "10s",
                   "-s", str(script)]
        if token:
            command += ["-H", f"Authorization: Bearer {token}"]
        for name, value in (headers or {}).items():
            command += ["-H", f"{name}: {value}"]
        command += [base, "--", str(keys_file), prefix]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    return LoadResult(requests=result["requests"], seconds=result["duration_us"] / 1e6, non_2xx=result["non_2xx"],
                      socket_errors=result["socket_errors"], p50_ms=result["p50_us"] / 1000, p99_ms=result["p99_us"] / 1000)
