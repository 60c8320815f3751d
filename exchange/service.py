"""Delivering what a grant allows: finding the caller's grant (its scope lives in ``approvals.scope``), snapshots, the access log."""

from __future__ import annotations

import dataclasses
import weakref
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

from approvals import rowfilter
from approvals import service as approvals
from approvals.models import Application, Grant
from approvals.scope import Scope, mask_key, scope_of  # noqa: F401 (the scope's home; named here for the exchange's callers)
from directory import service as directory
from directory.models import Dataset, DatasetVersion
from exchange.stores import keyed_store, lookup_store
from exchange.errors import GrantPaused, NoActiveGrant, NoData
from exchange.models import AccessLogEntry, AccessLogKey, DeliveredConsent, Extract, SharingFile
from govshare.storage import Store


def _grants_of(*columns: Any) -> Select:
    """``columns`` of a department's grants on a dataset for a delivery mode, newest first, with the
    grant's dataset and its newest version joined; parameters ``department``, ``dataset_code``, ``delivery``."""
    return (select(*columns).join(Dataset, Dataset.id == Grant.dataset_id)
            .outerjoin(DatasetVersion, (DatasetVersion.dataset_id == Dataset.id) & (DatasetVersion.number == Dataset.latest_version))
            .where(Grant.department_code == bindparam("department"), Grant.dataset_code == bindparam("dataset_code"),
                   Grant.delivery == bindparam("delivery"))
            .order_by(Grant.id.desc()))


# The grant's dataset, application and newest snapshot come in the same query (scope_of
# then finds them in the session). Built once with bound parameters: this runs on every
# interface call, and constructing the statement cost more than running it.
_GRANTS = _grants_of(Grant, Dataset, Application, DatasetVersion.path).join(Application, Application.id == Grant.application_id)
_GRANT_NAMED = _GRANTS.where(Grant.id == bindparam("grant_id"))


def active_grant(
    session: Session, *, department: str, dataset_code: str, delivery: str, today: date, grant_id: int | None = None,
) -> Scope:
    """The department's active grant on the dataset for this delivery mode (the newest, or the one named)."""
    query, params = _GRANTS, {"department": department, "dataset_code": dataset_code, "delivery": delivery}
    if grant_id is not None:
        query, params = _GRANT_NAMED, {**params, "grant_id": grant_id}
    paused = []
    for grant, _dataset, _application, latest_path in session.execute(query, params):
        state = approvals.grant_state(grant, today)
        if state == approvals.GrantState.active:
            return dataclasses.replace(scope_of(session, grant), latest_path=latest_path)
        if state == approvals.GrantState.paused:
            paused.append(grant.id)
    raise no_active_grant(department=department, dataset_code=dataset_code, delivery=delivery, paused=paused)


def no_active_grant(*, department: str, dataset_code: str, delivery: str, paused: list[int]) -> NoActiveGrant:
    """The refusal when no grant of the department serves now: ``GrantPaused`` when the one it would use is paused."""
    if paused:
        return GrantPaused(f"grant {paused[0]} of department {department} on {dataset_code} is paused: "
                           "nothing is delivered under it until it is resumed")
    return NoActiveGrant(f"department {department} holds no active {delivery} grant on {dataset_code}")


# The interfaces' calls (a lookup, a page, a stream) resolve the same grant's scope again
# and again: loading its grant, dataset and application as ORM objects cost more than the
# index probe. So a scope is built once and kept per process, and each call reads only the
# few columns that decide whether it still holds (``_GRANT_STATE``). A grant is never
# changed after the decision except by its revocation (read on every call, as are its
# dates, and its pause); its application is decided and final; the dataset's document bumps its
# revision when it changes, and a new snapshot changes its latest version. Those values
# are the cached scope's key, so a changed grant, dataset or version is a new entry,
# never a stale one, in this process or any other sharing the record store.
_GRANT_STATE = _grants_of(Grant.id, Grant.created_at, Grant.revoked_at, Grant.paused_at, Grant.valid_from, Grant.valid_until,
                          Dataset.revision, Dataset.updated_at, Dataset.latest_version, DatasetVersion.path)
# Per connection pool, so per record store (tests open many in one process). The times
# in the key tell a grant or dataset apart from one that reuses its id or revision (a
# store restored from a copy, then changed again).
_served: weakref.WeakKeyDictionary[Pool, dict[tuple[Any, ...], Scope]] = weakref.WeakKeyDictionary()
_SERVED_MAX = 4096


def interface_scope(session: Session, *, department: str, dataset_code: str, today: date, delivery: str = "interface") -> Scope:
    """``active_grant`` for the interface delivery (or ``delivery``: live), with the scope kept between calls (see ``_GRANT_STATE``).

    Its grant, dataset and application are shared between calls and threads: read them, never change them.
    """
    connection = session.connection()
    served = _served.get(connection.engine.pool)
    if served is None:
        served = _served.setdefault(connection.engine.pool, {})
    params = {"department": department, "dataset_code": dataset_code, "delivery": delivery}
    paused = []
    for state in connection.execute(_GRANT_STATE, params):
        grant_state = approvals.grant_state(state, today)
        if grant_state == approvals.GrantState.paused:
            paused.append(state.id)
        if grant_state != approvals.GrantState.active:
            continue
        key = (state.id, state.created_at, state.revision, state.updated_at, state.latest_version, state.path)
        scope = served.get(key)
        if scope is None:
            scope = scope_of(session, session.get(Grant, state.id))
            # Out of this session, so its commit or rollback does not expire what later calls read.
            for row in (scope.grant, scope.dataset, scope.application):
                session.expunge(row)
            if len(served) >= _SERVED_MAX:
                served.clear()  # bounded; a server serves a few grants at a time
            served[key] = scope
        return dataclasses.replace(scope, latest_path=state.path)
    raise no_active_grant(department=department, dataset_code=dataset_code, delivery=delivery, paused=paused)


def snapshot(session: Session, *, dataset: Dataset, store: Store, known_path: str | None = None) -> tuple[int, Path]:
    """The newest version's number and a local Parquet path (``known_path``: its key, already read with the grant).

    Reads the path column alone: every interface call asks, and the version row also
    holds its quality profile, which would be parsed for nothing.
    """
    path = known_path
    if path is None and dataset.latest_version is not None:
        path = session.execute(select(DatasetVersion.path).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == dataset.latest_version)).scalar_one_or_none()
    if path is None:
        raise NoData(f"dataset {dataset.code} has no data yet")
    return dataset.latest_version, store.local_path(path)


@dataclasses.dataclass(frozen=True)
class CitizenLogLine:
    """One access-log line as the citizen reads it, with the delayed disclosure its application asked for (if any)."""

    entry: AccessLogEntry
    delayed_until: date | None = None
    delay_basis: str | None = None


def citizen_access_log(session: Session, *, citizen_id: str, store: Store, today: date, include_delayed: bool = False,
                       limit: int = 1000) -> list[CitizenLogLine]:
    """Every recorded access that touched ``citizen_id``, newest first: calls by key, and extracts that held their row.

    Lines under an application with a delayed disclosure are left out until its ``delay_until`` (``today`` is the
    configured zone's date), unless ``include_delayed`` (a manager's view); from that day on they show, marked.
    """
    disclosed = or_(Application.disclosure_delay_until.is_(None), Application.disclosure_delay_until <= today)
    columns = (AccessLogEntry, Application.disclosure_delay_until, Application.disclosure_basis)
    by_key_query = (select(*columns).join(AccessLogKey, AccessLogKey.entry_id == AccessLogEntry.id)
                    .outerjoin(Application, Application.id == AccessLogEntry.application_id)
                    .where(AccessLogKey.key == citizen_id))
    downloads_query = (select(*columns).outerjoin(Application, Application.id == AccessLogEntry.application_id)
                       .where(AccessLogEntry.kind == "extract", AccessLogEntry.extract_id.is_not(None)))
    if not include_delayed:
        by_key_query, downloads_query = by_key_query.where(disclosed), downloads_query.where(disclosed)
    by_key = list(session.execute(
        by_key_query.order_by(AccessLogEntry.at.desc(), AccessLogEntry.id.desc()).limit(limit)).all())
    downloads = list(session.execute(downloads_query).all())
    held = extracts_holding(session, store=store, extract_ids={row[0].extract_id for row in downloads},
                            citizen_id=citizen_id) if downloads else set()
    rows = by_key + [row for row in downloads if row[0].extract_id in held]
    rows.sort(key=lambda row: (row[0].at, row[0].id), reverse=True)
    return [CitizenLogLine(entry, delay_until, basis if delay_until else None) for entry, delay_until, basis in rows[:limit]]


def consents_named(session: Session, *, citizen_id: str, entries: list[AccessLogEntry]) -> dict[int, int]:
    """For the citizen's log: the consent each of these lines delivered ``citizen_id``'s data under (line id -> consent
    id), for lines of ``consent_required`` datasets (by key: kept with the key; files: kept with the file)."""
    named: dict[int, int] = {}
    ids = [entry.id for entry in entries]
    for start in range(0, len(ids), 500):
        named.update(session.execute(select(AccessLogKey.entry_id, AccessLogKey.consent_id).where(
            AccessLogKey.key == citizen_id, AccessLogKey.entry_id.in_(ids[start:start + 500]),
            AccessLogKey.consent_id.is_not(None))).all())
    files = {entry.extract_id: entry.id for entry in entries if entry.extract_id}
    if files:
        for file_id, consent_id in session.execute(select(DeliveredConsent.file_id, DeliveredConsent.consent_id).where(
                DeliveredConsent.citizen_id == citizen_id, DeliveredConsent.file_id.in_(sorted(files)))):
            named[files[file_id]] = consent_id
    return named


def extracts_holding(session: Session, *, store: Store, extract_ids: set[str], citizen_id: str) -> set[str]:
    """Which of these extracts held the row of ``citizen_id``.

    An extract is its grant's scope applied to one snapshot version, so the question is a
    lookup in that version's keyed store under that scope: exact, and no second pass over
    the data (or copy of its keys) is needed when the extract is made.
    """
    ids = sorted(extract_ids)
    delivered = [(extract.id, extract.grant_id, int(extract.manifest["version"])) for extract in session.execute(
        select(Extract).where(Extract.id.in_(ids), Extract.status == "done")).scalars()]
    # Delta Sharing files are delivered extracts too: one per grant and snapshot version.
    delivered += [(file.id, file.grant_id, file.version_number) for file in session.execute(
        select(SharingFile).where(SharingFile.id.in_(ids))).scalars()]
    # Files of consent_required datasets hold the rows of the citizens consenting when they were made: noted with each
    # file (DeliveredConsent), since re-reading the scope now would not know who consented then.
    held: set[str] = set(session.execute(select(DeliveredConsent.file_id).where(
        DeliveredConsent.citizen_id == citizen_id, DeliveredConsent.file_id.in_(ids))).scalars())
    answers: dict[tuple[int, int], bool] = {}
    for file_id, grant_id, version in delivered:
        if (grant_id, version) not in answers:
            answers[grant_id, version] = _holds(session, store=store, grant_id=grant_id, version=version, citizen_id=citizen_id)
        if answers[grant_id, version]:
            held.add(file_id)
    return held


def _holds(session: Session, *, store: Store, grant_id: int, version: int, citizen_id: str) -> bool:
    grant = session.get(Grant, grant_id)
    row = session.execute(select(DatasetVersion).where(DatasetVersion.dataset_id == grant.dataset_id,
                                                       DatasetVersion.number == version)).scalar_one_or_none()
    if row is None or not store.exists(row.path):
        return False
    scope = scope_of(session, grant, version=row)
    if scope.dataset.document.get("consent_required"):
        return False  # only what DeliveredConsent notes (see extracts_holding)
    if not scope.lookup_key or scope.missing:
        return False  # no key, or a version the grant could not be served from: nothing was delivered from it
    key_type = next(item["type"] for item in scope.items if item["name"] == scope.lookup_key)
    try:
        value = rowfilter.convert_value(citizen_id, key_type, "key")
    except rowfilter.InvalidRowFilter:
        return False  # an ID that cannot be this dataset's key is in none of its rows
    keyed = keyed_store.ensure_store(directory.snapshot_path(store, row), scope.lookup_key, store=store)
    return bool(keyed_store.lookup(keyed, key=scope.lookup_key, value=value, projection=scope.projection,
                                   scope=scope.row_filter, limit=1))


def prebuild_keyed_stores(session: Session, *, store: Store) -> int:
    """Build this replica's keyed store and lookup store of every dataset's newest version that lacks them; returns how many were built."""
    built = 0
    for dataset in session.execute(select(Dataset).where(Dataset.status == "active")).scalars():
        if dataset.document.get("intake"):
            continue
        try:
            _, path = snapshot(session, dataset=dataset, store=store)
        except NoData:
            continue
        if path.exists() and not keyed_store.store_path(path, store).exists():
            keyed_store.ensure_store(path, dataset.document.get("lookup_key"), store=store)
            built += 1
        key = dataset.document.get("lookup_key")
        if key and path.exists() and not lookup_store.store_path(path, store).exists():  # what lookups read (issue 22)
            items = session.execute(select(DatasetVersion.items).where(
                DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == dataset.latest_version)).scalar_one()
            if any(item["name"] == key for item in items):
                lookup_store.ensure_store(path, key=key, items=items, store=store)
                built += 1
    return built
