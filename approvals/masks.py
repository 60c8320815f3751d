"""Masks a manager may set per item when approving: how a granted item is disguised on delivery.

Rules: ``{"keep_first": N}`` and ``{"keep_last": N}`` (text: the rest becomes '*'),
``"keyed_hash"`` (a SHA-256 keyed with the department's secret: the same value gives
the same token within one department, so records can be linked without revealing it),
``"year_only"`` (dates: the year as a number) and ``"null"`` (the item is withheld).
They compile to SQL expressions, so extracts and interfaces mask in the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from govshare.db import quote_identifier
from govshare.errors import InvalidInput

RULES = ("keep_first", "keep_last", "keyed_hash", "year_only", "null")


class InvalidMask(InvalidInput):
    type, title = "invalid-mask", "Invalid mask"


def _rule(mask: Any) -> tuple[str, int | None]:
    if isinstance(mask, str) and mask in ("keyed_hash", "year_only", "null"):
        return mask, None
    if isinstance(mask, dict) and len(mask) == 1:
        (rule, count), = mask.items()
        if rule in ("keep_first", "keep_last") and isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= 64:
            return rule, count
    raise InvalidMask(f"a mask is one of: {{\"keep_first\": N}}, {{\"keep_last\": N}}, \"keyed_hash\", \"year_only\", \"null\"; got {mask!r}")


def validate(masks: dict[str, Any], *, granted: list[str], items: list[dict[str, Any]]) -> dict[str, Any]:
    """``masks`` if each names a granted item and suits its type."""
    types = {item["name"]: item["type"] for item in items}
    for name, mask in masks.items():
        if name not in granted:
            raise InvalidMask(f"masks.{name}: not one of the application's items")
        rule, _ = _rule(mask)
        if rule in ("keep_first", "keep_last") and types[name] != "string":
            raise InvalidMask(f"masks.{name}: {rule} applies to text items only")
        if rule == "year_only" and types[name] not in ("date", "datetime"):
            raise InvalidMask(f"masks.{name}: year_only applies to dates only")
    return dict(masks)



@dataclass(frozen=True)
class Projection:
    """The SELECT list of a grant's columns with its masks applied, and the values it binds."""

    sql: str
    params: list[Any]


SQLITE_SHA256 = "govshare_sha256"
"""The SQL function a lookup store's connections register (``sqlite_sha256``): SQLite has no SHA-256 of its own."""


def sqlite_sha256(text: str | None) -> str | None:
    """SHA-256 of ``text`` as lowercase hex, as DuckDB's ``sha256`` gives it."""
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_column(name: str) -> str:
    """The column of a lookup store holding ``name`` as DuckDB's ``CAST(... AS VARCHAR)`` wrote it (numbers, datetimes)."""
    return f"__text_{name}"


TEXT_KEPT = ("number", "datetime")
"""Item types whose text a lookup store keeps beside the value: their text form is DuckDB's to define
(shortest round-trip doubles, the time zone's offset), so the keyed hash of SQLite reads DuckDB's text."""


def _sqlite_text(column: str, item_type: str) -> str:
    """SQL giving ``column`` as the text DuckDB's ``CAST(column AS VARCHAR)`` gives, in a lookup store."""
    quoted = quote_identifier(column)
    if item_type in TEXT_KEPT:
        return quote_identifier(text_column(column))
    if item_type == "boolean":
        return f"CASE {quoted} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"
    return f"CAST({quoted} AS TEXT)"  # text, integers, and dates (kept as ISO text)


def _stars(length: str, count: int, dialect: str) -> str:
    if dialect == "duckdb":
        return f"repeat('*', greatest({length} - {count}, 0))"
    return f"replace(hex(zeroblob(max({length} - {count}, 0))), '00', '*')"  # SQLite has no repeat()


def projection(columns: list[str], masks: dict[str, Any] | None, *, hash_key: str, dialect: str = "duckdb",
               items: list[dict[str, Any]] | None = None) -> Projection:
    """The SELECT list of ``columns`` under ``masks`` for ``dialect`` (``items``, with their types: needed for SQLite)."""
    types = {item["name"]: item["type"] for item in items or []}
    parts, params = [], []
    for column in columns:
        quoted = quote_identifier(column)
        if not masks or column not in masks:
            parts.append(quoted)
            continue
        rule, count = _rule(masks[column])
        if rule == "keep_first":
            head = f"left({quoted}, {count})" if dialect == "duckdb" else f"substr({quoted}, 1, {count})"
            expression = f"{head} || {_stars(f'length({quoted})', count, dialect)}"
        elif rule == "keep_last":
            tail = f"right({quoted}, {count})" if dialect == "duckdb" else (f"substr({quoted}, -{count})" if count else "''")
            expression = f"{_stars(f'length({quoted})', count, dialect)} || {tail}"
        elif rule == "keyed_hash":
            text = f"CAST({quoted} AS VARCHAR)" if dialect == "duckdb" else _sqlite_text(column, types[column])
            digest = "sha256" if dialect == "duckdb" else SQLITE_SHA256
            expression = f"CASE WHEN {quoted} IS NULL THEN NULL ELSE {digest}(? || {text}) END"
            params.append(hash_key)
        elif rule == "year_only":
            expression = f"year({quoted})" if dialect == "duckdb" else f"CAST(substr({quoted}, 1, 4) AS INTEGER)"
        else:
            expression = "NULL"
        if rule in ("keep_first", "keep_last") and dialect == "sqlite":
            expression = f"CASE WHEN {quoted} IS NULL THEN NULL ELSE {expression} END"  # zeroblob(NULL) is no NULL
        parts.append(f"{expression} AS {quoted}")
    return Projection(", ".join(parts), params)
