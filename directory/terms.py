"""The directory's search terms and the checks of a search's parameters: plain Python, no store.

Shared by ``directory.search`` (the server's search) and ``directory.listing`` (the
command line's ``datasets list``, which reads the store without SQLAlchemy or numpy), so
that both find the same datasets and refuse the same parameters with the same words.
"""

from __future__ import annotations

import re
from typing import Any

from govshare.errors import InvalidInput

MAX_TERM = 64
MAX_QUERY_TERMS = 8
MAX_PAGE_SIZE = 200
DELIVERY_COLUMNS = ("extract", "interface")
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



def prefix_upper(term: str) -> str:
    """Every term starting with ``term`` sorts in [term, this): ``term`` with its last character bumped."""
    return term[:-1] + chr(ord(term[-1]) + 1)


FACET_NAMES = ("department", "domain", "share_type")


def check_page(page: int, page_size: int) -> None:
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page must be >= 1 and page_size between 1 and {MAX_PAGE_SIZE}")


def check_filters(*, q: str | None, delivery: str | None) -> list[str]:
    """The query's terms, after refusing an unknown delivery or a query with no searchable word."""
    if delivery and delivery not in DELIVERY_COLUMNS:
        raise InvalidInput(f"delivery must be one of: {', '.join(DELIVERY_COLUMNS)}")
    terms = query_terms(q) if q else []
    if q and not terms:
        raise InvalidInput("q holds no searchable words")
    return terms
