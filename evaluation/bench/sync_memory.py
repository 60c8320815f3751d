"""Benchmark: peak memory of a connector sync against the size of the data it syncs.

Builds a SQLite source table of N rows (default 5 million), then syncs it into a
fresh store in a child process and reads the child's peak resident set size
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``). A second child that does
everything but the sync (imports, store, binding) gives the baseline, so the
figure printed is what streaming N rows costs on top of the process itself.
Usage: python -m evaluation.bench.sync_memory [--rows N]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODE = "BENCH-LEDGER"
DOCUMENT = {
    "code": CODE, "title": "Benchmark ledger", "department": "BEN", "summary": "synthetic rows for the sync benchmark",
    "domain": "finance", "share_type": "unconditional", "open_type": "closed", "update_frequency": "daily",
    "lookup_key": "id", "delivery_modes": ["extract"],
    "items": [
        {"name": "id", "type": "integer", "description": "row id", "sensitivity": "public", "is_key": True},
        {"name": "name", "type": "string", "description": "a name", "sensitivity": "public"},
        {"name": "district", "type": "string", "description": "district code", "sensitivity": "public"},
        {"name": "amount", "type": "number", "description": "an amount", "sensitivity": "public"},
        {"name": "updated", "type": "datetime", "description": "last change", "sensitivity": "public"},
    ],
}


def build_source(path: Path, rows: int) -> int:
    """A SQLite table of ``rows`` synthetic rows; returns the file's size in bytes."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, name TEXT, district TEXT, amount REAL, updated TEXT)")
    connection.execute(
        """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
           INSERT INTO ledger SELECT i, 'person number ' || i, printf('%02d', i % 97), i * 0.37,
                  '2026-01-01T00:00:00' FROM n""",
        [rows],
    )
    connection.commit()
    connection.close()
    return path.stat().st_size


def child(home: Path, source: Path, sync: bool) -> None:
    """Runs in the child process: a fresh store, the binding, and (unless baseline) the sync."""
    os.environ["GOVSHARE_HOME"] = str(home)
    from connectors import service
    from directory import service as directory
    from govshare import identities
    from govshare.db import Database
    from govshare import storage
    from govshare.keys import KeyStore
    from govshare.settings import get_settings
    from govshare.store import initialise

    settings = get_settings()
    initialise(settings)
    keystore = KeyStore(settings.resolved_keys_dir)
    database = Database(settings.resolved_database_url, keystore=keystore)
    with database.transaction() as session:
        identities.add_department(session, code="BEN", name="Benchmark")
        dataset = directory.register_dataset(session, document=DOCUMENT, department="BEN", actor="bench")
        service.bind_source(
            session, dataset=dataset, kind="sql", config={"url": f"sqlite:///{source}", "table": "ledger"}, mapping=None,
            mode="full", update_column=None, key_column=None, keystore=keystore, actor="bench", files_root=source.parent,
        )
    if sync:
        started = time.perf_counter()
        run = service.run_sync(
            database, dataset_code=CODE, store=storage.for_settings(settings), keystore=keystore, actor="bench", files_root=source.parent,
        )
        assert run.outcome == "ok", run.error
        print(f"synced {run.rows_read} rows into version {run.version} in {time.perf_counter() - started:.1f} s", flush=True)
    database.dispose()


def _peak_mib(home: Path, source: Path, sync: bool) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run([sys.executable, "-m", "evaluation.bench.sync_memory", "--child", str(home), str(source), "sync" if sync else "baseline"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest any child reached (KiB on Linux): run the larger one last.
    return max(before, after) / 1024


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "sync")
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="govshare-sync-bench-"))
    source = work / "source.db"
    size = build_source(source, args.rows)
    baseline = _peak_mib(work / "baseline", source, sync=False)
    peak = _peak_mib(work / "sync", source, sync=True)
    snapshot = next((work / "sync" / "data" / "datasets" / CODE).glob("v*.parquet"))
    print(f"rows: {args.rows:,}; source table {size / 2**20:.0f} MiB; snapshot {snapshot.stat().st_size / 2**20:.0f} MiB")
    print(f"peak RSS: baseline (no sync) {baseline:.0f} MiB; with the sync {peak:.0f} MiB; the sync adds {peak - baseline:.0f} MiB")


if __name__ == "__main__":
    main()
