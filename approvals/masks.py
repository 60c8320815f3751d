"""Masks a manager may set per item when approving: how a granted item is disguised on delivery.

Rules: ``{"keep_first": N}`` and ``{"keep_last": N}`` (text: the rest becomes '*'),
``"keyed_hash"`` (a SHA-256 keyed with the department's secret: the same value gives
the same token within one department, so records can be linked without revealing it),
``"year_only"`` (dates: the year as a number) and ``"null"`` (the item is withheld).
They compile to SQL expressions, so extracts and interfaces mask in the same way.
"""

from __future__ import annotations

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


def projection(columns: list[str], masks: dict[str, Any] | None, *, hash_key: str) -> Projection:
    parts, params = [], []
    for column in columns:
        quoted = quote_identifier(column)
        if not masks or column not in masks:
            parts.append(quoted)
            continue
        rule, count = _rule(masks[column])
        if rule == "keep_first":
            expression = f"left({quoted}, {count}) || repeat('*', greatest(length({quoted}) - {count}, 0))"
        elif rule == "keep_last":
            expression = f"repeat('*', greatest(length({quoted}) - {count}, 0)) || right({quoted}, {count})"
        elif rule == "keyed_hash":
            expression = f"CASE WHEN {quoted} IS NULL THEN NULL ELSE sha256(? || CAST({quoted} AS VARCHAR)) END"
            params.append(hash_key)
        elif rule == "year_only":
            expression = f"year({quoted})"
        else:
            expression = "NULL"
        parts.append(f"{expression} AS {quoted}")
    return Projection(", ".join(parts), params)
