"""Row filters: structured row scopes, checked against a dataset's items and compiled to SQL.

A filter never carries SQL. Item names become identifiers only after they are found
among the dataset's items (and are quoted); every value becomes a bound parameter,
converted to the item's type first, so no value can change the shape of the query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import schemas
from govshare.db import quote_identifier
from govshare.errors import InvalidInput

MAX_DEPTH = 8
MAX_CONDITIONS = 200
COMPARISONS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
INT64 = range(-(2**63), 2**63)  # integer items are stored as 64-bit integers


class InvalidRowFilter(InvalidInput):
    type, title = "invalid-row-filter", "Invalid row filter"


DIALECTS = ("duckdb", "sqlite")
"""The engines a scope is compiled for: DuckDB (snapshots, keyed stores, extracts) and SQLite (lookup stores)."""
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # how a lookup store keeps datetimes: UTC, fixed width, so text order is time order


@dataclass(frozen=True)
class CompiledFilter:
    """A WHERE clause with ``?`` placeholders and the values bound to them, in order."""

    sql: str
    params: list[Any]


def bind_value(value: Any, dialect: str) -> Any:
    """A converted value (``convert_value``) as ``dialect`` binds it.

    SQLite has no date, time or boolean types: a lookup store keeps dates as ISO text,
    datetimes as UTC text in ``SQLITE_DATETIME`` and booleans as 0 and 1, so values are
    bound the same way and compare as the DuckDB types do.
    """
    if dialect == "duckdb" or value is None:
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(SQLITE_DATETIME)
    if isinstance(value, date):
        return value.isoformat()
    return value


def convert_value(value: Any, item_type: str, where: str) -> Any:
    """``value`` as the item's type, or InvalidRowFilter saying where it does not fit."""
    try:
        if item_type == "string":
            if not isinstance(value, str):
                raise ValueError
            if "\x00" in value:
                raise InvalidRowFilter(f"{where}: text values may not contain NUL characters")
            value.encode("utf-8")  # a lone surrogate (legal in JSON escapes) is no text any store can hold
            return value
        if item_type == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
            if value not in INT64:
                raise InvalidRowFilter(f"{where}: {value} is outside the range of integer items")
            return value
        if item_type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError
            # Python's JSON reads NaN and Infinity; no stored number compares sensibly with them.
            number = float(value)
            if not math.isfinite(number):
                raise InvalidRowFilter(f"{where}: {value!r} is not a finite number")
            return number
        if item_type == "boolean":
            if not isinstance(value, bool):
                raise ValueError
            return value
        if item_type == "date":
            return date.fromisoformat(value)
        if item_type == "datetime":
            moment = datetime.fromisoformat(value)
            # Stored datetimes are UTC; a naive value would otherwise be read in the server's local zone.
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, UnicodeEncodeError):
        raise InvalidRowFilter(f"{where}: {_shown(value)} is not a valid {item_type}") from None
    raise InvalidRowFilter(f"{where}: items of type {item_type} cannot be filtered")


def _shown(value: Any) -> str:
    """``value`` for an error message: its repr (which escapes surrogates and NUL), cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Compiler:
    def __init__(self, item_types: dict[str, str]) -> None:
        self.item_types = item_types
        self.params: list[Any] = []
        self.conditions = 0

    def node(self, node: dict[str, Any], where: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise InvalidRowFilter(f"{where}: filters may nest at most {MAX_DEPTH} levels")
        parts = []
        for key, value in node.items():
            if key in ("and", "or"):
                inner = [self.node(child, f"{where}.{key}[{index}]", depth + 1) for index, child in enumerate(value)]
                joined = f" {key.upper()} ".join(inner)
                parts.append(f"({joined})")
            else:
                parts.append(self.condition(key, value, f"{where}.{key}"))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def condition(self, item: str, condition: dict[str, Any], where: str) -> str:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise InvalidRowFilter(f"a filter may hold at most {MAX_CONDITIONS} conditions")
        if item not in self.item_types:
            raise InvalidRowFilter(f"{where}: the dataset has no item '{item}'")
        item_type = self.item_types[item]
        column = quote_identifier(item)
        (operator, operand), = condition.items()
        if operator == "is_null":
            return f"{column} IS NULL" if operand else f"{column} IS NOT NULL"
        if operator == "in":
            values = [convert_value(value, item_type, f"{where}.in[{index}]") for index, value in enumerate(operand)]
            self.params.extend(values)
            return f"{column} IN ({', '.join('?' for _ in values)})"
        if operator == "between":
            low, high = (convert_value(value, item_type, f"{where}.between[{index}]") for index, value in enumerate(operand))
            self.params.extend([low, high])
            return f"{column} BETWEEN ? AND ?"
        self.params.append(convert_value(operand, item_type, f"{where}.{operator}"))
        return f"{column} {COMPARISONS[operator]} ?"


def check_storable(row_filter: Any) -> None:
    """Refuse values no record store can keep (NaN, infinities, lone surrogates, NUL), wherever they sit.

    Runs before an application is stored, drafts included, whose filters are otherwise
    checked only by the inspection that follows the write.
    """
    stack: list[tuple[Any, str]] = [(row_filter, "row_filter")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            stack.extend((value, f"{where}.{key}") for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, f"{where}[{index}]") for index, value in enumerate(node))
        elif isinstance(node, float) and not math.isfinite(node):
            raise InvalidRowFilter(f"{where}: {node!r} is not a finite number")
        elif isinstance(node, str):
            if "\x00" in node:
                raise InvalidRowFilter(f"{where}: text values may not contain NUL characters")
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRowFilter(f"{where}: {_shown(node)} is not valid text (a lone surrogate)") from None


def validate(row_filter: dict[str, Any] | None, items: list[dict[str, Any]]) -> None:
    """Raise InvalidRowFilter if ``row_filter`` is malformed or names items the dataset lacks."""
    compile_filter(row_filter, items)


def compile_filter(row_filter: dict[str, Any] | None, items: list[dict[str, Any]], *, dialect: str = "duckdb") -> CompiledFilter:
    """The filter as a parameterised SQL condition over the dataset's columns ("TRUE" when absent), for ``dialect``.

    The condition's SQL is the same in both dialects; only how its values are bound differs (``bind_value``).
    """
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    if not row_filter:
        return CompiledFilter("TRUE", [])
    if _depth(row_filter) > MAX_DEPTH:
        raise InvalidRowFilter(f"row_filter: filters may nest at most {MAX_DEPTH} levels")
    found = schemas.errors("row_filter", row_filter)
    if found:
        first = found[0]
        raise InvalidRowFilter(f"row_filter.{first['field']}: {first['message']}", extra={"errors": found[:20]})
    compiler = _Compiler({item["name"]: item["type"] for item in items})
    sql = compiler.node(row_filter, "row_filter", 1)
    return CompiledFilter(sql, [bind_value(value, dialect) for value in compiler.params])


def _depth(node: Any) -> int:
    """Nesting depth, measured without recursion (a hostile filter may be very deep)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH + 1:
            break
        if isinstance(current, dict):
            for key in ("and", "or"):
                children = current.get(key)
                if isinstance(children, list):
                    stack.extend((child, level + 1) for child in children)
    return deepest


def items_named(row_filter: dict[str, Any] | None) -> set[str]:
    """Every item a filter conditions on."""
    names: set[str] = set()
    for key, value in (row_filter or {}).items():
        if key in ("and", "or"):
            for child in value:
                names |= items_named(child)
        else:
            names.add(key)
    return names
