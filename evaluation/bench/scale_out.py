"""Scale-out benchmark: extracts from an S3 store against DuckDB's COPY of a local file, and lookups through
nginx over one and two replicas (CPU per call).

    .venv/bin/python -m evaluation.bench.scale_out [--rows 2000000] [--seconds 15]

The S3 store is moto's server mode (a Python process: it, not govshare, bounds the
transfer rate); the deployment parts come from tests/deploy/cluster.py (PostgreSQL, Redis
and /usr/sbin/nginx must be there). Prints a Markdown section for REPORT.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from directory.demo import citizens_sql
from govshare import storage
from govshare.db import quote_path

SELECT = "SELECT citizen_id, name, district FROM {source} WHERE district IN ('110101', '110102')"


def _best(runs: int, measure) -> tuple[float, int]:
    """The fastest of ``runs`` runs of ``measure`` (seconds, rows written)."""
    return min(measure() for _ in range(runs))


def extract_throughput(rows: int, folder: Path) -> list[str]:
    from tests.deploy.cluster import s3_server

    snapshot = folder / "snapshot.parquet"
    duckdb.connect().execute(f"COPY ({citizens_sql(rows)}) TO {quote_path(snapshot)} (FORMAT parquet, COMPRESSION zstd)")
    lines = []
    with s3_server(folder / "s3.log") as endpoint:
        environ = {"AWS_ACCESS_KEY_ID": "AKIABENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"}
        pafs.S3FileSystem(access_key="AKIABENCH", secret_key="bench-secret", endpoint_override=endpoint, region="us-east-1",
                          allow_bucket_creation=True).create_dir("bench")
        writer = storage.open_store("s3://bench/data", cache_dir=folder / "writer", cache_budget_bytes=1 << 40,
                                    endpoint_url=endpoint, environ=environ)
        staged = writer.staging_path("datasets/B/v000001.parquet", "bench")
        staged.write_bytes(snapshot.read_bytes())
        started = time.perf_counter()
        writer.publish(staged, "datasets/B/v000001.parquet")
        upload = time.perf_counter() - started

        def ceiling() -> tuple[float, int]:
            target = folder / "ceiling.csv"
            started = time.perf_counter()
            written = duckdb.connect().execute(
                f"COPY ({SELECT.format(source='read_parquet(?)')}) TO {quote_path(target)} (FORMAT csv, HEADER true)",
                [str(snapshot)]).fetchone()[0]
            return time.perf_counter() - started, written

        def through_cache(cold: bool) -> tuple[float, int]:
            reader = storage.open_store("s3://bench/data", cache_dir=folder / ("cold" if cold else "warm"),
                                        cache_budget_bytes=1 << 40, endpoint_url=endpoint, environ=environ)
            if cold:
                (folder / "cold" / "objects" / "datasets" / "B" / "v000001.parquet").unlink(missing_ok=True)
            else:
                reader.local_path("datasets/B/v000001.parquet")
            started = time.perf_counter()
            local = reader.local_path("datasets/B/v000001.parquet")
            fetched = time.perf_counter()
            target = reader.staging_path("extracts/e.csv", "bench")
            written = duckdb.connect().execute(
                f"COPY ({SELECT.format(source='read_parquet(?)')}) TO {quote_path(target)} (FORMAT csv, HEADER true)",
                [str(local)]).fetchone()[0]
            copied = time.perf_counter()
            size = target.stat().st_size
            reader.publish(target, "extracts/e.csv")
            ended = time.perf_counter()
            phases[cold] = (fetched - started, copied - fetched, ended - copied, size)
            return ended - started, written

        def direct_put() -> float:
            """The extract file PUT straight to its key (no tmp/ key, no server-side copy), for the publish's share."""
            source = folder / "ceiling.csv"
            started = time.perf_counter()
            with source.open("rb") as data, writer.filesystem.open_output_stream(f"{writer.root}/extracts/direct.csv") as sink:
                while chunk := data.read(8 << 20):
                    sink.write(chunk)
            return time.perf_counter() - started

        def arrow_dataset() -> tuple[float, int]:
            reader = storage.open_store("s3://bench/data", cache_dir=folder / "dataset", cache_budget_bytes=1 << 40,
                                        endpoint_url=endpoint, environ=environ)
            started = time.perf_counter()
            snap = pads.dataset(f"{reader.root}/datasets/B/v000001.parquet", filesystem=reader.filesystem, format="parquet")
            connection = duckdb.connect()
            connection.register("snap", snap)
            target = reader.staging_path("extracts/d.csv", "bench")
            written = connection.execute(
                f"COPY ({SELECT.format(source='snap')}) TO {quote_path(target)} (FORMAT csv, HEADER true)").fetchone()[0]
            reader.publish(target, "extracts/d.csv")
            return time.perf_counter() - started, written

        phases: dict[bool, tuple] = {}
        measured = {"ceiling": _best(2, ceiling), "cold": _best(2, lambda: through_cache(True)),
                    "warm": _best(2, lambda: through_cache(False)), "dataset": _best(2, arrow_dataset)}
        put = min(direct_put() for _ in range(2))
    top_seconds, top_rows = measured["ceiling"]
    size_mib = snapshot.stat().st_size / 2**20
    lines += [
        f"snapshot: {rows:,} rows, {size_mib:.0f} MiB Parquet (zstd); the extract: 3 columns, {top_rows:,} rows, CSV; "
        f"publishing the snapshot to the S3 server took {upload:.2f} s ({size_mib / upload:.0f} MiB/s)",
        "",
        "| path | seconds | rows/s | of DuckDB COPY |",
        "|---|---|---|---|",
        f"| DuckDB COPY, local snapshot to local file (ceiling) | {top_seconds:.2f} | {top_rows / top_seconds:,.0f} | 100% |",
    ]
    for name, label in (("warm", "store, snapshot in the replica's cache: COPY + publish to S3"),
                        ("cold", "store, cold cache: fetch snapshot + COPY + publish to S3"),
                        ("dataset", "pyarrow dataset over S3 scanned by DuckDB (no cache) + publish")):
        seconds, written = measured[name]
        assert written == top_rows, (name, written, top_rows)
        lines.append(f"| {label} | {seconds:.2f} | {written / seconds:,.0f} | {top_seconds / seconds:.0%} |")
    fetch, copy, publish, size = phases[True]
    lines += ["", f"- cold cache, phases of the last run: fetch {fetch:.2f} s, DuckDB COPY {copy:.2f} s, publish {publish:.2f} s "
              f"({size / 2**20:.0f} MiB: upload to tmp/, server-side copy, delete); the same file PUT straight to its key: {put:.2f} s"]
    return lines


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def lookups(replicas: int, seconds: int, folder: Path) -> dict:
    import httpx

    from tests.deploy.cluster import cluster
    from tests.exchange.test_interfaces import _citizens, _csv
    from tests.factories import dataset_document
    from tests.deploy.test_replicas import _grant

    rows = _citizens(600)
    with cluster(folder, replicas=replicas, extra_env={"GOVSHARE_RATE_LIMIT_PER_SECOND": "1000000000",
                                                       "GOVSHARE_RATE_LIMIT_BURST": "1000000000"}) as deployment:
        with httpx.Client(base_url=deployment.base, timeout=60) as http:
            provider = deployment.client("psb", "PSB", "provider")
            demander = deployment.client("cab", "CAB", "demander")
            service = deployment.client("svc", "CAB", "service")
            manager = deployment.client("data", "DATA", "manager")
            assert http.post("/api/v1/datasets", json=dataset_document(), headers=provider).status_code == 201
            assert http.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("p.csv", _csv(rows))},
                             headers=provider).status_code == 201
            _grant(http, delivery="interface", demander=demander, manager=manager, provider=provider)
            key = next(r for r in rows if r["district"] == "02")["citizen_id"]
            url = f"{deployment.base}/api/v1/exchange/PSB-HOUSEHOLD/records/{key}"
            for _ in range(20):  # every replica has built its lookup store
                assert http.get(url, headers=service).status_code == 200
        pids = [server.pid for server in deployment.replicas]
        before = [_cpu_seconds(pid) for pid in pids]
        nginx = [deployment.nginx.process.pid, *_children(deployment.nginx.process.pid)]  # master and worker
        nginx_before = sum(_cpu_seconds(pid) for pid in nginx)
        done = subprocess.run(["/usr/bin/wrk", "-t", "2", "-c", "16", "-d", f"{seconds}s", "-H",
                               f"Authorization: {service['Authorization']}", url], capture_output=True, text=True, check=True)
        cpu = [_cpu_seconds(pid) - start for pid, start in zip(pids, before)]
        nginx_cpu = sum(_cpu_seconds(pid) for pid in nginx) - nginx_before
    requests = int(next(line for line in done.stdout.splitlines() if "requests in" in line).split()[0])
    non_2xx = next((int(line.split()[-1]) for line in done.stdout.splitlines() if "Non-2xx" in line), 0)
    return {"replicas": replicas, "requests": requests, "non_2xx": non_2xx, "per_second": requests / seconds,
            "cpu": cpu, "cpu_ms_per_call": sum(cpu) / requests * 1000, "nginx_ms_per_call": nginx_cpu / requests * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--skip-extract", action="store_true")
    parser.add_argument("--skip-lookup", action="store_true")
    options = parser.parse_args()
    print(f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.2f} at start, "
          f"{os.cpu_count()} cores")
    if not options.skip_extract:
        with tempfile.TemporaryDirectory(prefix="govshare-bench-") as folder:
            print("\n".join(extract_throughput(options.rows, Path(folder))))
    if not options.skip_lookup:
        print("\n| replicas | requests/s | non-2xx | replica CPU ms per call | nginx CPU ms per call | CPU s per replica |")
        print("|---|---|---|---|---|---|")
        for replicas in (1, 2):
            with tempfile.TemporaryDirectory(prefix="govshare-bench-") as folder:
                result = lookups(replicas, options.seconds, Path(folder))
            print(f"| {replicas} | {result['per_second']:,.0f} | {result['non_2xx']} | {result['cpu_ms_per_call']:.2f} | "
                  f"{result['nginx_ms_per_call']:.3f} | {', '.join(f'{c:.1f}' for c in result['cpu'])} |")
    print(f"- load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    sys.exit(main())
