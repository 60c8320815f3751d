"""``govshare datasets list`` read without SQLAlchemy or numpy (see ``govshare.readonly``).

The same answer as ``directory.search.search`` with ``service.dataset_summary`` for each
hit (tests compare the two on both stores): the active datasets matching every filter, in
code order by code point, one page of them, their total and the facet counts over every
match. Here the store does the filtering and counting with parameterised SQL, which for a
command run once costs less than reading every dataset's filter columns into arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from directory.terms import FACET_NAMES, check_filters, check_page, prefix_upper
from govshare.readonly import Reader

_FACET_COLUMNS = {"department": "department_code", "domain": "domain", "share_type": "share_type"}
_DELIVERY_COLUMNS = {"extract": "offers_extract", "interface": "offers_interface"}
_SUMMARY_COLUMNS = ("code", "title", "department_code", "document", "domain", "share_type", "open_type",
                    "update_frequency", "status", "latest_version", "updated_at")


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    total: int
    facets: dict[str, dict[str, int]]


def search(
    reader: Reader, *, q: str | None = None, department: str | None = None, domain: str | None = None,
    share_type: str | None = None, delivery: str | None = None, page: int = 1, page_size: int = 20,
) -> Listing:
    check_page(page, page_size)
    terms = check_filters(q=q, delivery=delivery)
    conditions, parameters = ["status = ?"], ["active"]
    for column, value in (("department_code", department.upper() if department else None), ("domain", domain), ("share_type", share_type)):
        if value:
            conditions.append(f"{column} = ?")
            parameters.append(value)
    if delivery:
        conditions.append(f"{_DELIVERY_COLUMNS[delivery]} = ?")
        parameters.append(True)
    if terms:
        matching = " INTERSECT ".join("SELECT dataset_id FROM dataset_terms WHERE term >= ? AND term < ?" for _ in terms)
        conditions.append(f"id IN ({matching})")
        parameters += [bound for term in terms for bound in (term, prefix_upper(term))]
    where = " AND ".join(conditions)
    facets: dict[str, dict[str, int]] = {}
    for name in FACET_NAMES:
        column = _FACET_COLUMNS[name]
        counts = reader.rows(f"SELECT {column}, COUNT(*) FROM datasets WHERE {where} GROUP BY {column}", parameters)
        facets[name] = dict(sorted((str(value), int(count)) for value, count in counts))
    total = sum(facets["department"].values())  # every dataset has a department
    rows = reader.rows(
        f"SELECT {', '.join(_SUMMARY_COLUMNS)} FROM datasets WHERE {where} ORDER BY {reader.code_order('code')} LIMIT ? OFFSET ?",
        [*parameters, page_size, (page - 1) * page_size],
    )
    return Listing(items=[_summary(reader, dict(zip(_SUMMARY_COLUMNS, row, strict=True))) for row in rows], total=total, facets=facets)


def _summary(reader: Reader, row: dict[str, Any]) -> dict[str, Any]:
    """As ``directory.service.dataset_summary`` shows a dataset."""
    document = reader.json(row["document"])
    return {
        "code": row["code"],
        "title": row["title"],
        "department": row["department_code"],
        "summary": document["summary"],
        "domain": row["domain"],
        "share_type": row["share_type"],
        "open_type": row["open_type"],
        "update_frequency": row["update_frequency"],
        "delivery_modes": document["delivery_modes"],
        "keywords": document.get("keywords", []),
        "status": row["status"],
        "latest_version": row["latest_version"],
        "modified": reader.timestamp(row["updated_at"]).isoformat(),
    }
