"""Directory search: a term index for full text; filters, facet counts and pages from columns kept in memory.

Full text is an inverted index (``dataset_terms``): each dataset's lower-cased
search text is split into terms (words; for CJK text, single characters and
character pairs), and a query term matches every indexed term it is a prefix of,
as a range scan on the term's b-tree index. This is the same on SQLite and
PostgreSQL and stays in step with the dataset in the same transaction.

The filters, the facet counts (exact, over every match) and the page are taken from the
datasets' filter columns held in memory as arrays, in code order (``FilterColumns``),
read again whenever the directory's stamp (``directory_state``, changed in every
transaction that changes a dataset) differs from theirs. In the record store, counting
the facets of a broad query cost about 1 µs a match (60-130 ms at 100,000 datasets);
here it is a few array operations over the matches.
"""

from __future__ import annotations

import copy
import threading
import uuid
import weakref
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, Pool, func, intersect, select, update
from sqlalchemy.orm import Session

from directory.models import Dataset, DatasetRevision, DatasetTerm, DirectoryState
from directory.terms import (  # noqa: F401  (the directory's names for them: service, api and tests use search.*)
    DELIVERY_COLUMNS, FACET_NAMES, MAX_PAGE_SIZE, MAX_QUERY_TERMS, MAX_TERM, check_filters, check_page, index_terms,
    prefix_upper, query_terms, search_text,
)


def _prefix_range(term: str) -> ColumnElement[bool]:
    return (DatasetTerm.term >= term) & (DatasetTerm.term < prefix_upper(term))


def directory_changed(session: Session) -> None:
    """Give the directory a new stamp, in the transaction that changes a dataset (see ``FilterColumns``)."""
    session.execute(update(DirectoryState).where(DirectoryState.id == 1).values(stamp=uuid.uuid4().hex))


_COLUMNS = (Dataset.id, Dataset.code, Dataset.status, Dataset.department_code, Dataset.domain, Dataset.share_type,
            Dataset.offers_extract, Dataset.offers_interface)
MAX_CHANGES_APPLIED = 2000  # past this many changed datasets, the columns are read whole again


def _latest_revision(session: Session) -> int:
    return session.execute(select(func.coalesce(func.max(DatasetRevision.id), 0))).scalar_one()


class FilterColumns:
    """Every dataset's filter columns at one directory stamp, as arrays in code order.

    About 30 bytes a dataset (3 MB at 100,000). Read whole once per process (0.5-0.8 s
    at 100,000 datasets); after that, a new stamp costs the next search only the datasets
    changed since (their revisions, ``dataset_revisions`` ids above the last one applied:
    ``directory_changed`` takes the stamp's row lock before a revision is numbered, so
    revisions are numbered in commit order). Never changed once made: a change makes new
    columns, so searches under way keep theirs.
    """

    def __init__(self, stamp: str, revision: int, rows: list[tuple]) -> None:
        self.stamp, self.revision = stamp, revision
        columns = list(zip(*rows)) if rows else [()] * len(_COLUMNS)
        codes = np.array(columns[1], dtype=object)
        order = np.argsort(codes, kind="stable")  # code order, by code point on every store
        self.codes = codes[order]
        self.ids = np.array(columns[0], dtype=np.int64)[order]
        self.active = np.array([status == "active" for status in columns[2]], dtype=bool)[order]
        # Each facet as codes into its list of values.
        self.facets: dict[str, tuple[list[str], np.ndarray]] = {}
        for name, values in zip(FACET_NAMES, columns[3:6], strict=True):
            labels, codes_of = np.unique(np.array(values, dtype=object), return_inverse=True)
            self.facets[name] = ([str(label) for label in labels], codes_of.astype(np.int32).ravel()[order])
        self.delivery = {"extract": np.array(columns[6], dtype=bool)[order], "interface": np.array(columns[7], dtype=bool)[order]}
        self._index_ids()

    def _index_ids(self) -> None:
        self._by_id = np.argsort(self.ids)  # positions in id order, to place the ids full text matched
        self._sorted_ids = self.ids[self._by_id]

    @classmethod
    def read(cls, session: Session, stamp: str) -> FilterColumns:
        return cls(stamp, _latest_revision(session), [tuple(row) for row in session.execute(select(*_COLUMNS)).all()])

    def updated(self, session: Session, stamp: str) -> FilterColumns:
        """These columns with the datasets changed since they were made (or read whole, past MAX_CHANGES_APPLIED)."""
        latest = _latest_revision(session)
        changes = session.execute(select(DatasetRevision.id, DatasetRevision.dataset_id)
                                  .where(DatasetRevision.id > self.revision).order_by(DatasetRevision.id)
                                  .limit(MAX_CHANGES_APPLIED + 1)).all()
        if latest < self.revision or len(changes) > MAX_CHANGES_APPLIED:
            # Revisions gone (a store restored from an older copy), or too many to apply one by one.
            return FilterColumns.read(session, stamp)
        changed = sorted({dataset_id for _, dataset_id in changes})
        rows = session.execute(select(*_COLUMNS).where(Dataset.id.in_(changed))).all() if changed else []
        columns = copy.copy(self)
        columns.stamp, columns.revision = stamp, max([self.revision, *(revision for revision, _ in changes)])
        columns._apply([tuple(row) for row in rows])
        if len(columns.ids) != session.execute(select(func.count()).select_from(Dataset)).scalar_one():
            # Datasets written without a revision (a bulk load) or removed: read whole.
            return FilterColumns.read(session, stamp)
        return columns

    def _apply(self, rows: list[tuple]) -> None:
        # New arrays, never the old ones changed (a search under way reads them): a changed
        # dataset is set in place in copies, and the registered ones are inserted all at once.
        self.active = self.active.copy()
        self.facets = {name: (list(labels), codes.copy()) for name, (labels, codes) in self.facets.items()}
        self.delivery = {name: values.copy() for name, values in self.delivery.items()}
        registered = []
        for dataset_id, code, status, *values, extract, interface in sorted(rows, key=lambda row: row[1]):
            facet_codes = [self._facet_code(name, value) for name, value in zip(FACET_NAMES, values, strict=True)]
            at = int(np.searchsorted(self.codes, code))
            if at < len(self.codes) and self.codes[at] == code:  # a dataset changed (its code never does)
                self.active[at] = status == "active"
                for name, facet_code in zip(FACET_NAMES, facet_codes, strict=True):
                    self.facets[name][1][at] = facet_code
                self.delivery["extract"][at], self.delivery["interface"][at] = extract, interface
            else:  # a dataset registered: its place in the old arrays, in code order among the others
                registered.append((at, code, dataset_id, status == "active", facet_codes, extract, interface))
        if registered:
            places, codes, ids, active, facet_codes, extract, interface = (list(column) for column in zip(*registered))
            self.codes, self.ids = np.insert(self.codes, places, codes), np.insert(self.ids, places, ids)
            self.active = np.insert(self.active, places, active)
            for name, codes_of in zip(FACET_NAMES, zip(*facet_codes), strict=True):
                labels, current = self.facets[name]
                self.facets[name] = (labels, np.insert(current, places, codes_of))
            self.delivery = {"extract": np.insert(self.delivery["extract"], places, extract),
                             "interface": np.insert(self.delivery["interface"], places, interface)}
            self._index_ids()

    def _facet_code(self, name: str, value: str) -> int:
        """``value``'s code in facet ``name``, the value added to the facet's list if new."""
        labels = self.facets[name][0]
        if value not in labels:
            labels.append(value)
        return labels.index(value)

    def where(self, ids: np.ndarray) -> np.ndarray:
        """A mask of the datasets with these ids (ids unknown at this stamp, registered since, are left out)."""
        mask = np.zeros(len(self.ids), dtype=bool)
        if len(self._sorted_ids) and len(ids):
            places = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
            mask[self._by_id[places[self._sorted_ids[places] == ids]]] = True
        return mask

    def equals(self, name: str, value: str) -> np.ndarray:
        labels, codes = self.facets[name]
        try:
            return codes == labels.index(value)
        except ValueError:
            return np.zeros(len(self.ids), dtype=bool)


# Per connection pool: one per store in a process, shared by an engine and its option
# variants (the write sessions' engine), which are other Engine objects.
_columns: weakref.WeakKeyDictionary[Pool, FilterColumns] = weakref.WeakKeyDictionary()
_columns_lock = threading.Lock()


def filter_columns(session: Session) -> FilterColumns:
    """The filter columns at the directory's current stamp (brought up to date only when it changed)."""
    stamp = session.execute(select(DirectoryState.stamp).where(DirectoryState.id == 1)).scalar_one()
    pool = session.get_bind().pool
    columns = _columns.get(pool)
    if columns is None or columns.stamp != stamp:
        with _columns_lock:  # one search brings them up to date; the others wait and take its columns
            columns = _columns.get(pool)
            if columns is None:
                columns = FilterColumns.read(session, stamp)
            elif columns.stamp != stamp:
                columns = columns.updated(session, stamp)
            _columns[pool] = columns
    return columns


def _matching(session: Session, terms: list[str]) -> np.ndarray:
    """Ids of the datasets holding, for every one of ``terms``, a term that starts with it (repeats allowed)."""
    selects = [select(DatasetTerm.dataset_id).where(_prefix_range(term)) for term in terms]
    statement = selects[0] if len(selects) == 1 else intersect(*selects)  # the store intersects: the lists may be long
    return np.fromiter(session.execute(statement).scalars(), dtype=np.int64)


@dataclass(frozen=True)
class SearchResult:
    datasets: list[Dataset]
    total: int
    facets: dict[str, dict[str, int]]


def _mask(
    session: Session, columns: FilterColumns, *, q: str | None, department: str | None, domain: str | None,
    share_type: str | None, delivery: str | None, include_retired: bool,
) -> np.ndarray:
    """The datasets matching every given filter, as a mask over ``columns``."""
    terms = check_filters(q=q, delivery=delivery)
    mask = np.ones(len(columns.ids), dtype=bool) if include_retired else columns.active.copy()
    for name, value in (("department", department.upper() if department else None), ("domain", domain), ("share_type", share_type)):
        if value:
            mask &= columns.equals(name, value)
    if delivery:
        mask &= columns.delivery[delivery]
    if terms and mask.any():
        mask &= columns.where(_matching(session, terms))
    return mask


def search(
    session: Session,
    *,
    q: str | None = None,
    department: str | None = None,
    domain: str | None = None,
    share_type: str | None = None,
    delivery: str | None = None,
    include_retired: bool = False,
    page: int = 1,
    page_size: int = 20,
) -> SearchResult:
    """One page of datasets matching every given filter (ordered by code), the total and facet counts."""
    check_page(page, page_size)
    columns = filter_columns(session)
    mask = _mask(session, columns, q=q, department=department, domain=domain, share_type=share_type,
                 delivery=delivery, include_retired=include_retired)
    facets: dict[str, dict[str, int]] = {}
    for name in FACET_NAMES:
        labels, codes = columns.facets[name]
        counts = np.bincount(codes[mask], minlength=len(labels))
        facets[name] = {labels[index]: int(counts[index]) for index in np.flatnonzero(counts)}
    total = int(mask.sum())
    offset = (page - 1) * page_size
    ids = [int(dataset_id) for dataset_id in columns.ids[np.flatnonzero(mask)[offset : offset + page_size]]]
    records = {dataset.id: dataset for dataset in session.execute(select(Dataset).where(Dataset.id.in_(ids))).scalars()} if ids else {}
    return SearchResult(
        datasets=[records[dataset_id] for dataset_id in ids],
        total=total,
        facets={name: dict(sorted(counts.items())) for name, counts in facets.items()},
    )
