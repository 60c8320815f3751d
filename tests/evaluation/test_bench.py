"""`govshare bench --quick`: the harness runs end to end and reports every section with its ceiling."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_quick_bench_reports_every_section_beside_its_ceiling(tmp_path):
    out = tmp_path / "REPORT.md"
    command = [sys.executable, "-m", "govshare", "bench", "--quick", "--out", str(out)]
    if os.environ.get("GOVSHARE_TEST_DATABASE_URL"):
        command += ["--database-url", os.environ["GOVSHARE_TEST_DATABASE_URL"]]
    env = {key: value for key, value in os.environ.items() if not key.startswith("GOVSHARE_")}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    report = out.read_text()
    assert "report written to" in finished.stdout
    for section in ["## extract", "## lookup", "## search", "## memory", "## metrics", "## cli"]:
        assert section in report
    assert re.search(r"- machine: .+, \d+ cores, [\d.]+ GiB", report)
    # Both extract formats ran through the API and through DuckDB, on the same 3/8 of the rows.
    for fmt in ("parquet", "csv"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {fmt}, 18,750 of 50,000 rows"))
        assert re.search(r"\| [\d,]+ rows/s .*\| DuckDB COPY [\d,]+ rows/s .*\| \d+% \| >= 80% \|", row), row
    lookup = next(line for line in report.splitlines() if line.startswith("| requests/s, 32 clients"))
    assert re.search(r"\| [\d,]+ \| bare FastAPI [\d,]+ \| \d+% \| >= 50% \|", lookup), lookup
    errors = next(line for line in report.splitlines() if line.startswith("| errors (non-2xx, socket)"))
    assert errors.startswith("| errors (non-2xx, socket) | 0, 0 | 0, 0 |"), errors  # every lookup was answered 200
    # The engine's share ran the real probe on the same store: every key inside the grant was found.
    share = next(line for line in report.splitlines() if line.startswith("| the engine's share:"))
    assert re.search(r"\| - \| [\d,]+ \(p50 [\d.]+ ms, p99 [\d.]+ ms\) \| \d+% of bare \|", share), share
    assert "| errors of the engine's share (non-2xx, socket) | - | 0, 0 |" in report
    assert re.search(r"\| p99 \| [\d.]+ ms \| - \| - \| < 50 ms \|", report)
    assert re.search(r"\| a search right after one dataset changed \(median of 5\) \| [\d.]+ ms \|", report)
    assert re.search(r"\| upload of 50,000 rows .*\| \+\d+ MiB \(peak \d+ MiB\)", report)
    assert re.search(r"\| GET /api/v1/metrics/summary.*\| median [\d.]+ s", report)


def test_an_unknown_section_is_refused(tmp_path):
    finished = subprocess.run([sys.executable, "-m", "govshare", "bench", "--quick", "--only", "nonsense", "--out", str(tmp_path / "r.md")],
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert "unknown section nonsense" in finished.stderr
    assert not (tmp_path / "r.md").exists()


def test_without_out_the_report_is_written_in_the_current_folder_outside_the_checkout(tmp_path):
    # Run where a user runs it: a folder of their own, far from the checkout's evaluation/bench/.
    command = [str(Path(sys.executable).with_name("govshare")), "bench", "--quick", "--only", "cli"]
    if os.environ.get("GOVSHARE_TEST_DATABASE_URL"):
        command += ["--database-url", os.environ["GOVSHARE_TEST_DATABASE_URL"]]
    env = {key: value for key, value in os.environ.items() if not key.startswith("GOVSHARE_")}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "report written to REPORT.md" in finished.stdout
    report = (tmp_path / "REPORT.md").read_text()
    for command in ("--help", "departments list", "clients list", "datasets list"):
        assert re.search(rf"\| govshare {command} \| median [\d.]+ s, CPU [\d.]+ s \| - \| - \| < 0.5 s \(CPU\) \| (yes|\*\*no\*\*) \|", report), report
    assert re.search(r"\| the interpreter alone \(python -c pass\) \| median [\d.]+ s, CPU [\d.]+ s \|", report), report
    assert re.search(r"\| govshare datasets list, through SQLAlchemy's ORM \| median [\d.]+ s, CPU [\d.]+ s \|", report), report
