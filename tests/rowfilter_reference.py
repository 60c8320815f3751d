"""The reference reading of a row filter, in plain Python and independent of the compiler,
against which the property tests check the SQL that DuckDB runs."""

from __future__ import annotations

from datetime import UTC, date, datetime


def typed(item_type: str, value):
    """The filter's JSON value as Python compares it."""
    if item_type == "date":
        return date.fromisoformat(value)
    if item_type == "datetime":
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return value


def evaluate(node: dict, row: dict, types: dict[str, str]) -> bool | None:
    """True, False or None (unknown), as SQL reads the filter: a comparison with NULL is unknown."""
    results = []
    for key, value in node.items():
        if key in ("and", "or"):
            parts = [evaluate(child, row, types) for child in value]
            if key == "and":
                results.append(False if False in parts else (None if None in parts else True))
            else:
                results.append(True if True in parts else (None if None in parts else False))
            continue
        (operator, operand), = value.items()
        cell = row[key]
        if operator == "is_null":
            results.append((cell is None) == operand)
        elif cell is None:
            results.append(None)
        elif operator == "in":
            results.append(any(cell == typed(types[key], member) for member in operand))
        elif operator == "between":
            low, high = (typed(types[key], bound) for bound in operand)
            results.append(low <= cell <= high)
        else:
            other = typed(types[key], operand)
            results.append({"eq": cell == other, "ne": cell != other, "lt": cell < other, "le": cell <= other,
                            "gt": cell > other, "ge": cell >= other}[operator])
    return False if False in results else (None if None in results else True)
