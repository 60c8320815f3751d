"""Delivering what a grant allows: grant resolution, scope, lookups, queries, deposits, the ledger."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import masks, rowfilter
from approvals import service as approvals
from approvals.models import Application, Grant
from directory import service as directory
from directory.models import Dataset
from exchange import keyed_store
from exchange.extract_files import extracts_holding
from exchange.errors import NoActiveGrant, NoData
from exchange.models import AccessLogEntry, AccessLogKey


@dataclass(frozen=True)
class Scope:
    """Everything one call may see: the grant's columns and rows, on one snapshot version."""

    grant: Grant
    application: Application
    dataset: Dataset
    columns: list[str]
    row_filter: rowfilter.CompiledFilter
    projection: masks.Projection

    @property
    def masked(self) -> set[str]:
        return set(self.grant.masks or {})

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.dataset.document["items"]

    @property
    def lookup_key(self) -> str | None:
        return self.dataset.document.get("lookup_key")


def active_grant(
    session: Session, *, department: str, dataset_code: str, delivery: str, today: date, grant_id: int | None = None,
) -> Scope:
    """The department's active grant on the dataset for this delivery mode (the newest, or the one named)."""
    query = select(Grant).where(Grant.department_code == department, Grant.dataset_code == dataset_code,
                                Grant.delivery == delivery)
    if grant_id is not None:
        query = query.where(Grant.id == grant_id)
    for grant in session.execute(query.order_by(Grant.id.desc())).scalars():
        if approvals.grant_state(grant, today) == approvals.GrantState.active:
            return scope_of(session, grant)
    raise NoActiveGrant(f"department {department} holds no active {delivery} grant on {dataset_code}")


def scope_of(session: Session, grant: Grant) -> Scope:
    dataset = session.get(Dataset, grant.dataset_id)
    application = session.get(Application, grant.application_id)
    compiled = rowfilter.compile_filter(grant.row_filter, dataset.document["items"])
    projection = masks.projection(list(grant.columns), grant.masks, hash_key=mask_key(session, grant.department_code))
    return Scope(grant, application, dataset, list(grant.columns), compiled, projection)


def mask_key(session: Session, department: str) -> str:
    """The department's key for keyed-hash masks: stable, so its deliveries link; secret, so nobody reverses them."""
    secret = session.info["keystore"].session_secret()
    return hashlib.sha256(f"govshare mask key:{department}:{secret}".encode()).hexdigest()


def snapshot(session: Session, *, dataset: Dataset, data_dir: Path) -> tuple[int, Path]:
    """The newest version's number and Parquet path."""
    version = directory.latest_version(session, dataset=dataset)
    if version is None:
        raise NoData(f"dataset {dataset.code} has no data yet")
    return version.number, directory.snapshot_path(data_dir, version)


def citizen_access_log(session: Session, *, citizen_id: str, data_dir: Path, limit: int = 1000) -> list[AccessLogEntry]:
    """Every recorded access that touched ``citizen_id``, newest first: calls by key, and extracts that held their row."""
    by_key = list(session.execute(
        select(AccessLogEntry).join(AccessLogKey, AccessLogKey.entry_id == AccessLogEntry.id)
        .where(AccessLogKey.key == citizen_id).order_by(AccessLogEntry.at.desc(), AccessLogEntry.id.desc()).limit(limit)
    ).scalars())
    downloads = list(session.execute(
        select(AccessLogEntry).where(AccessLogEntry.kind == "extract", AccessLogEntry.extract_id.is_not(None))
    ).scalars())
    held = extracts_holding(data_dir, sorted({entry.extract_id for entry in downloads}), citizen_id) if downloads else set()
    entries = by_key + [entry for entry in downloads if entry.extract_id in held]
    return sorted(entries, key=lambda entry: (entry.at, entry.id), reverse=True)[:limit]


def prebuild_keyed_stores(session: Session, *, data_dir: Path) -> int:
    """Build the keyed store of every dataset's newest version that lacks one; returns how many were built."""
    built = 0
    for dataset in session.execute(select(Dataset).where(Dataset.status == "active")).scalars():
        if dataset.document.get("intake"):
            continue
        version = directory.latest_version(session, dataset=dataset)
        if version is None:
            continue
        snapshot = directory.snapshot_path(data_dir, version)
        if snapshot.exists() and not keyed_store.store_path(snapshot).exists():
            keyed_store.ensure_store(snapshot, dataset.document.get("lookup_key"))
            built += 1
    return built
