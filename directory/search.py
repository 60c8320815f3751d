"""Directory search: a term index for full text, indexed filter columns, facet counts.

Full text is an inverted index (``dataset_terms``): each dataset's lower-cased
search text is split into terms (words; for CJK text, single characters and
character pairs), and a query term matches every indexed term it is a prefix of,
as a range scan on the term's b-tree index. This is the same on SQLite and
PostgreSQL and stays in step with the dataset in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, null, select, true, union_all
from sqlalchemy.orm import Session

from directory.models import Dataset, DatasetTerm
from govshare.errors import InvalidInput

MAX_TERM = 64
MAX_QUERY_TERMS = 8
MAX_PAGE_SIZE = 200
FACETS = {"department": Dataset.department_code, "domain": Dataset.domain, "share_type": Dataset.share_type}
DELIVERY_COLUMNS = {"extract": Dataset.offers_extract, "interface": Dataset.offers_interface}
_TOKEN = re.compile(r"[0-9a-z]+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def search_text(document: dict[str, Any]) -> str:
    """The lower-cased text a dataset is found by: code, title, summary, keywords, items."""
    parts: list[str] = [document["code"], document["title"], document["summary"], document["domain"]]
    parts += [document.get("category", ""), *document.get("keywords", [])]
    for item in document["items"]:
        parts += [item["name"], item["description"]]
    return " ".join(part for part in parts if part).lower()


def _cjk(token: str) -> bool:
    return bool(_CJK.match(token))


def index_terms(text: str) -> set[str]:
    """Terms stored for ``text``: words, and single characters plus pairs of CJK runs."""
    terms: set[str] = set()
    for token in _TOKEN.findall(text.lower()):
        if _cjk(token):
            terms.update(token)
            terms.update(token[i : i + 2] for i in range(len(token) - 1))
        else:
            terms.add(token[:MAX_TERM])
            terms.update(part[:MAX_TERM] for part in token.split("_") if part)
    return terms


def query_terms(q: str) -> list[str]:
    """Terms a query must all match (as prefixes): words, and CJK runs as character pairs."""
    terms: list[str] = []
    for token in _TOKEN.findall(q.lower()):
        if _cjk(token):
            pieces = [token] if len(token) == 1 else [token[i : i + 2] for i in range(len(token) - 1)]
        else:
            pieces = [token[:MAX_TERM]]
        terms += [piece for piece in pieces if piece not in terms]
    return terms[:MAX_QUERY_TERMS]


def _prefix_match(term: str) -> ColumnElement[bool]:
    # Every term starting with ``term`` sorts in [term, term with its last character bumped).
    upper = term[:-1] + chr(ord(term[-1]) + 1)
    matching = select(DatasetTerm.dataset_id).where(DatasetTerm.term >= term, DatasetTerm.term < upper)
    return Dataset.id.in_(matching)


@dataclass(frozen=True)
class SearchResult:
    datasets: list[Dataset]
    total: int
    facets: dict[str, dict[str, int]]


def _conditions(
    *, q: str | None, department: str | None, domain: str | None, share_type: str | None,
    delivery: str | None, include_retired: bool,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [] if include_retired else [Dataset.status == "active"]
    if department:
        conditions.append(Dataset.department_code == department.upper())
    if domain:
        conditions.append(Dataset.domain == domain)
    if share_type:
        conditions.append(Dataset.share_type == share_type)
    if delivery:
        if delivery not in DELIVERY_COLUMNS:
            raise InvalidInput(f"delivery must be one of: {', '.join(DELIVERY_COLUMNS)}")
        conditions.append(DELIVERY_COLUMNS[delivery] == true())
    if q:
        terms = query_terms(q)
        if not terms:
            raise InvalidInput("q holds no searchable words")
        conditions += [_prefix_match(term) for term in terms]
    return conditions


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
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page must be >= 1 and page_size between 1 and {MAX_PAGE_SIZE}")
    conditions = _conditions(
        q=q, department=department, domain=domain, share_type=share_type, delivery=delivery,
        include_retired=include_retired,
    )
    # One grouped count gives the total and every facet (the three are its margins).
    cube_columns = list(FACETS.values())
    offset = (page - 1) * page_size
    if q:
        # Full text: the matching rows are found once (the term ranges' id lists are the
        # costly part) and both the grouped count and the page are read from them.
        matched = select(Dataset.id, Dataset.code, *cube_columns).where(*conditions).cte("matched").prefix_with("MATERIALIZED")
        facet_columns = [matched.c[column.key] for column in cube_columns]
        nothing = [null() for _ in range(len(facet_columns) + 1)]
        page_ids = select(matched.c.id).order_by(matched.c.code).limit(page_size).offset(offset).subquery()
        rows = session.execute(
            union_all(
                select(*facet_columns, func.count(), null()).group_by(*facet_columns),
                select(*nothing, page_ids.c.id),
            )
        ).all()
        cube = [row[:-1] for row in rows if row[-1] is None]
        ids = [row[-1] for row in rows if row[-1] is not None]
    else:
        cube = session.execute(select(*cube_columns, func.count()).where(*conditions).group_by(*cube_columns)).all()
        # The page's ids come from a covering index; only those rows are read in full.
        ids = list(
            session.execute(
                select(Dataset.id).where(*conditions).order_by(Dataset.code).limit(page_size).offset(offset)
            ).scalars()
        )
    facets: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    for *values, count in cube:
        for name, value in zip(FACETS, values, strict=True):
            facets[name][value] = facets[name].get(value, 0) + count
    total = sum(count for *_, count in cube)
    records = {dataset.id: dataset for dataset in session.execute(select(Dataset).where(Dataset.id.in_(ids))).scalars()} if ids else {}
    return SearchResult(
        datasets=[records[dataset_id] for dataset_id in ids],
        total=total,
        facets={name: dict(sorted(counts.items())) for name, counts in facets.items()},
    )
