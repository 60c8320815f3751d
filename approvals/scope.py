"""A grant's scope, in one place: what a delivery under a grant may see, and how each engine reads it.

The scope owns the grant's columns, its row filter compiled for each engine (DuckDB for
snapshots and extracts, SQLite for lookup stores: a dialect parameter of the one
compiler), its masks as each engine's SELECT list, its period and state, and the checks
every delivery path makes before it reads: ``check`` (and ``check(by_key=True)`` for any
access by key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from approvals import masks, rowfilter
from approvals.errors import GrantOutdated, KeyLookupNotGranted
from approvals.models import Application, Grant
from approvals.service import GrantState, grant_ended, grant_state
from directory.models import Dataset, DatasetVersion
from govshare.db import utcnow


@dataclass(frozen=True)
class Scope:
    """Everything one call may see: the grant's columns and rows, on one snapshot version."""

    grant: Grant
    application: Application
    dataset: Dataset
    columns: list[str]
    version_items: list[dict[str, Any]]  # the items of the version read (or the description's, with no data yet)
    hash_key: str  # the department's key for keyed-hash masks (``mask_key``)
    latest_path: str | None = None  # the newest version's snapshot, when found with the grant (see exchange.service)
    version: int | None = None  # the snapshot version the scope was built on (None: the dataset's description, no data yet)
    missing: tuple[str, ...] = ()  # items the grant uses that this version lacks (the provider dropped them)
    _compiled: dict[str, tuple[rowfilter.CompiledFilter, masks.Projection]] = field(
        default_factory=dict, compare=False, repr=False)

    @property
    def masked(self) -> set[str]:
        return set(self.grant.masks or {})

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.dataset.document["items"]

    @property
    def lookup_key(self) -> str | None:
        return self.dataset.document.get("lookup_key")

    @property
    def period(self) -> tuple[date, date]:
        return self.grant.valid_from, self.grant.valid_until

    def state(self, today: date) -> GrantState:
        return grant_state(self.grant, today)

    @property
    def key_in_clear(self) -> bool:
        """Whether the grant gives the lookup key unmasked: only then may rows be found by key."""
        return bool(self.lookup_key) and self.lookup_key in self.columns and self.lookup_key not in self.masked

    def compiled(self, dialect: str = "duckdb") -> tuple[rowfilter.CompiledFilter, masks.Projection]:
        """The row filter and the masked SELECT list for ``dialect``, compiled once per scope."""
        found = self._compiled.get(dialect)
        if found is None:
            self.check_items()
            found = (rowfilter.compile_filter(self.grant.row_filter, self.version_items, dialect=dialect),
                     masks.projection(list(self.columns), self.grant.masks, hash_key=self.hash_key, dialect=dialect,
                                      items=self.version_items))
            self._compiled[dialect] = found  # the same answer whichever thread stores it first
        return found

    @property
    def row_filter(self) -> rowfilter.CompiledFilter:
        """The row filter for DuckDB."""
        return self.compiled("duckdb")[0]

    @property
    def projection(self) -> masks.Projection:
        """The masked SELECT list for DuckDB."""
        return self.compiled("duckdb")[1]

    def check(self, *, by_key: bool = False) -> None:
        """The question every delivery path asks before it reads: may this grant be served from this version (and, with
        ``by_key``, by the lookup key)? Raises the refusal saying why."""
        self.check_items()
        if by_key:
            self.check_key_lookups()

    def check_items(self) -> None:
        """Refuse delivery (409) when the version read lacks an item the grant uses: the grant cannot be served as approved."""
        if self.missing:
            raise GrantOutdated(f"dataset version {self.version} no longer has item {', '.join(self.missing)} "
                                f"granted by grant {self.grant.id}")

    def check_key_lookups(self) -> None:
        """Refuse any access by key (lookups, batches, key filters) unless the grant gives the key in the clear.

        Otherwise a grant of ``[district, income]`` would read any citizen's income by their ID, and
        a keyed-hash grant would confirm which clear ID a hash stands for.
        """
        if not self.key_in_clear:
            raise KeyLookupNotGranted(
                f"grant {self.grant.id} does not include the lookup key {self.lookup_key} unmasked; lookups by key are not allowed")


def items_used(grant: Grant) -> list[str]:
    """Every item a grant uses: its columns, the items its row filter names, its masked items (each once)."""
    return list(dict.fromkeys([*grant.columns, *sorted(rowfilter.items_named(grant.row_filter)), *sorted(grant.masks or {})]))


def mask_key(session: Session, department: str) -> str:
    """The department's key for keyed-hash masks: stable, so its deliveries link; secret, so nobody reverses them."""
    secret = session.info["keystore"].session_secret()
    return hashlib.sha256(f"govshare mask key:{department}:{secret}".encode()).hexdigest()


def scope_of(session: Session, grant: Grant, *, version: DatasetVersion | None = None) -> Scope:
    """The grant's scope on ``version`` (the newest when absent), compiled against that version's own items.

    A version lacking an item the grant uses (the provider dropped it) gives a scope with
    ``missing`` set, which every delivery refuses with a 409 (``check``).
    """
    dataset = session.get(Dataset, grant.dataset_id)
    application = session.get(Application, grant.application_id)
    number, version_items = None, dataset.document["items"]
    if version is not None:
        number, version_items = version.number, version.items
    elif dataset.latest_version is not None:
        found = session.execute(select(DatasetVersion.number, DatasetVersion.items).where(
            DatasetVersion.dataset_id == dataset.id, DatasetVersion.number == dataset.latest_version)).first()
        if found is not None:
            number, version_items = found
    names = {item["name"] for item in version_items}
    missing = tuple(name for name in items_used(grant) if name not in names)
    return Scope(grant, application, dataset, list(grant.columns), list(version_items), mask_key(session, grant.department_code),
                 version=number, missing=missing)


def version_warnings(session: Session, dataset: Dataset, items: list[dict[str, Any]]) -> list[str]:
    """What a provider is told when a new version of ``dataset`` with ``items`` is stored: live grants using an item it lacks.

    Those grants are refused (409) on every delivery from the new version on, so the provider learns it at upload.
    """
    names = {item["name"] for item in items}
    warnings = []
    # The UTC date: a grant ending today in the configured zone is warned about a day longer, which is harmless.
    for grant in session.execute(select(Grant).where(Grant.dataset_id == dataset.id, ~grant_ended(utcnow().date()))
                                 .order_by(Grant.id)).scalars():
        dropped = [name for name in items_used(grant) if name not in names]
        if dropped:
            warnings.append(f"grant {grant.id} (department {grant.department_code}) uses item {', '.join(dropped)}, "
                            "which this version lacks: its deliveries from this version are refused (409)")
    return warnings
