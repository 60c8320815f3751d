"""The ledger's daily rollups give the same metrics as the lines themselves, on random ledgers and odd periods.

The expected figures are worked out here in plain Python from the lines written;
the service reads rollups for whole days and lines only at the period's edges.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from evaluation import service
from exchange import rollups
from exchange.models import AccessLogEntry, GrantFirstLine, LedgerDayCount, LedgerDayLatency

START = datetime(2026, 9, 1, tzinfo=UTC)
KINDS = ("lookup", "query", "stream", "extract", "deposit")
INTERFACE = ("lookup", "query", "stream")


def _random_lines(rng: random.Random, count: int) -> list[dict]:
    lines = []
    for _ in range(count):
        kind = rng.choice(KINDS)
        lines.append({
            "at": START + timedelta(seconds=rng.uniform(0, 20 * 86400)), "kind": kind, "client_id": "c",
            "department_code": rng.choice(["CAB", "CIV", "EDU"]), "dataset_code": rng.choice(["A", "B", "C"]),
            "service_item": rng.choice([None, "birth", "marriage"]), "grant_id": rng.choice([None, 1, 2, 3, 4]),
            "rows": rng.randint(0, 40), "status": rng.choice([200, 200, 200, 404, 429, 500]),
            # Repeated values on purpose: ties at a rank, and several values in one latency bucket.
            "latency_ms": rng.choice([None, round(rng.lognormvariate(2.5, 0.8), rng.choice([0, 1, 3]))]),
        })
    return lines


def _nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(percent * len(ordered) / 100) - 1]


def _expected(lines: list[dict], period: service.Period, by: str | None) -> dict:
    column = {"dataset": "dataset_code", "department": "department_code", "service_item": "service_item"}.get(by)
    groups: dict = {}
    for line in lines:
        if period.start <= line["at"] < period.end:
            groups.setdefault(line[column] if by else None, []).append(line)
    expected = {}
    for key, members in groups.items():
        interface = [line for line in members if line["kind"] in INTERFACE]
        latencies = [line["latency_ms"] for line in interface if line["latency_ms"] is not None]
        expected[key] = {
            "calls": len(members), "rows": sum(line["rows"] for line in members), "interface_calls": len(interface),
            "interface_server_errors": sum(1 for line in interface if line["status"] >= 500),
            "errors": sum(1 for line in members if line["status"] >= 500 or (line["status"] >= 400 and line["status"] != 404)),
            **{f"latency_ms_p{percent}": _nearest_rank(latencies, percent) if latencies else None for percent in (50, 90, 99)},
        }
    return expected


def _write(database, lines: list[dict], rng: random.Random) -> None:
    """Several transactions of several flushes each: rollup rows are created, then added to."""
    position = 0
    while position < len(lines):
        with database.transaction() as session:
            for _ in range(rng.randint(1, 3)):
                batch = lines[position:position + rng.randint(1, 60)]
                session.add_all(AccessLogEntry(**line) for line in batch)
                session.flush()
                position += len(batch)


def _rollup_tables(session) -> tuple:
    return (
        sorted(tuple(row) for row in session.execute(select(
            LedgerDayCount.day, LedgerDayCount.dimension, LedgerDayCount.key, LedgerDayCount.calls, LedgerDayCount.rows,
            LedgerDayCount.interface_calls, LedgerDayCount.interface_server_errors, LedgerDayCount.errors))),
        sorted(tuple(row) for row in session.execute(select(LedgerDayLatency.day, LedgerDayLatency.bucket, LedgerDayLatency.calls))),
        sorted(tuple(row) for row in session.execute(select(GrantFirstLine.grant_id, GrantFirstLine.first_at))),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_and_lines_agree_on_a_random_ledger(database, seed):
    rng = random.Random(seed)
    lines = _random_lines(rng, 600)
    _write(database, lines, rng)
    periods = [
        service.Period(START + timedelta(days=2), START + timedelta(days=15)),  # whole days only
        service.Period(START + timedelta(days=1, hours=rng.randint(1, 23), minutes=7),
                       START + timedelta(days=17, hours=rng.randint(1, 23), seconds=31)),  # part-days at both edges
        service.Period(START + timedelta(days=5, hours=3), START + timedelta(days=5, hours=20)),  # inside one day
        service.Period(START - timedelta(days=3), START + timedelta(days=40)),  # beyond the ledger on both sides
    ]
    counted = ("calls", "rows", "interface_calls", "interface_server_errors", "errors",
               "latency_ms_p50", "latency_ms_p90", "latency_ms_p99")
    with database.transaction(write=False) as session:
        for period in periods:
            for by in (None, "dataset", "department", "service_item"):
                entries = service.group_metrics(session, period=period, by=by, now=START + timedelta(days=60))
                found = {entry[by] if by else None: {name: entry[name] for name in counted} for entry in entries if entry["calls"]}
                assert found == _expected(lines, period, by), (period, by)
        # Overall counts from the per-dataset entries (the summary's way) match too.
        period = periods[1]
        datasets = service.group_metrics(session, period=period, by="dataset", distributions=False)
        overall = service.group_metrics(session, period=period, by=None, counted_by_dataset=datasets)[0]
        assert {name: overall[name] for name in counted} == _expected(lines, period, None)[None]
        # Calls per day agree with the lines on every day, the edges' part-days included.
        per_day: dict = {}
        for line in lines:
            if period.start <= line["at"] < period.end:
                per_day[line["at"].date().isoformat()] = per_day.get(line["at"].date().isoformat(), 0) + 1
        trend = service.daily_trend(session, period=period)
        assert {day["day"]: day["calls"] for day in trend if day["calls"]} == per_day
        # Each grant's first line is the earliest of its lines.
        first = {}
        for line in lines:
            if line["grant_id"] is not None:
                first[line["grant_id"]] = min(first.get(line["grant_id"], line["at"]), line["at"])
        assert dict(session.execute(select(GrantFirstLine.grant_id, GrantFirstLine.first_at)).all()) == first
        written_as_they_came = _rollup_tables(session)
    # Rebuilt from the lines in one go (the migration's back-fill), the rollups are the same.
    with database.transaction() as session:
        rollups.rebuild(session)
    with database.transaction(write=False) as session:
        assert _rollup_tables(session) == written_as_they_came
