"""The unified format: JSON Schema files (Draft 2020-12), loaded once, and their validator.

The files in this folder are the one definition of each shape; the API, the CLI
and the tests all validate through ``validate``. A failure raises
``InvalidInput`` naming the field path and the rule that failed.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from govshare.errors import InvalidInput

SCHEMAS_DIR = Path(__file__).parent
NAMES = ("item", "dataset", "row_filter", "application", "rating")
MAX_REPORTED = 20
MAX_DEPTH = 64  # far beyond any real document; deeper input is refused before validation
# A row filter's size is capped before anything else looks at it: validating and compiling a
# filter costs time in proportion to its values, and a filing holds the record store's write lock.
ROW_FILTER_MAX_VALUES = 10_000  # values in all its conditions together (an "in" list counts each)
ROW_FILTER_MAX_DEPTH = 8  # levels of and / or, the filter itself being the first


class SchemaViolation(InvalidInput):
    type, title = "schema-violation", "Does not match the unified format"


def load(name: str) -> dict[str, Any]:
    """The JSON Schema document called ``name`` (e.g. "dataset")."""
    return _documents()[name]


@cache
def _documents() -> dict[str, dict[str, Any]]:
    return {name: json.loads((SCHEMAS_DIR / f"{name}.json").read_text(encoding="utf-8")) for name in NAMES}


@cache
def _validator(name: str) -> Draft202012Validator:
    documents = _documents()
    registry = Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in documents.values()
    )
    return Draft202012Validator(documents[name], registry=registry, format_checker=FormatChecker())


def field_path(error: ValidationError) -> str:
    """``items[2].name`` style path of the field an error is about ("(document)" for the root)."""
    return _path_text(error.absolute_path)


def _path_text(path: Any) -> str:
    text = ""
    for part in path:
        if isinstance(part, str) and _text_fault(part) is not None:  # a name that is no text, shown escaped
            part = part.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _describe(error: ValidationError) -> dict[str, str]:
    field = field_path(error)
    if error.validator == "required":
        # jsonschema reports a missing property at its parent; name the property itself.
        missing = error.message.split("'")[1] if "'" in error.message else ""
        field = f"{field}.{missing}" if field != "(document)" else missing
    elif error.validator == "additionalProperties" and "'" in error.message:
        unknown = error.message.split("'")[1]
        field = f"{field}.{unknown}" if field != "(document)" else unknown
    return {"field": field, "rule": str(error.validator), "message": error.message}


def nesting_depth(document: Any) -> int:
    """How deeply arrays and objects nest in ``document`` (a scalar is 0); iterative, so any depth is safe."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        pending.extend((child, depth + 1) for child in children)
    return deepest


def row_filter_limit_errors(row_filter: Any, field: str = "row_filter") -> list[dict[str, str]]:
    """The size limit ``row_filter`` breaks (ROW_FILTER_MAX_VALUES or ROW_FILTER_MAX_DEPTH), if any.

    Counted without recursion, stopping as soon as a limit is passed: cheap enough to run on
    any filter before anything else looks at it.
    """
    values, pending = 0, [(row_filter, 1)]
    while pending:
        node, level = pending.pop()
        if not isinstance(node, dict):
            continue
        if level > ROW_FILTER_MAX_DEPTH:
            return [{"field": field, "rule": "maxFilterDepth",
                     "message": f"and / or nest more than {ROW_FILTER_MAX_DEPTH} levels deep (the limit is {ROW_FILTER_MAX_DEPTH})"}]
        for key, value in node.items():
            if key in ("and", "or") and isinstance(value, list):
                pending.extend((child, level + 1) for child in value)
            elif isinstance(value, dict):
                for operand in value.values():
                    values += len(operand) if isinstance(operand, list) else 1
        if values > ROW_FILTER_MAX_VALUES:
            return [{"field": field, "rule": "maxFilterValues",
                     "message": f"holds more than {ROW_FILTER_MAX_VALUES:,} values in its conditions (the limit is {ROW_FILTER_MAX_VALUES:,})"}]
    return []


def check_row_filter_limits(row_filter: Any, field: str = "row_filter") -> None:
    """Raise ``SchemaViolation`` naming the limit when ``row_filter`` is too large or too deep."""
    found = row_filter_limit_errors(row_filter, field)
    if found:
        raise SchemaViolation(f"{found[0]['field']}: {found[0]['message']}", extra={"schema": "row_filter", "errors": found})


def errors(name: str, document: Any) -> list[dict[str, str]]:
    """Every way ``document`` breaks schema ``name``, in document order: field, rule, message."""
    if nesting_depth(document) > MAX_DEPTH:
        # Checked first: the validator recurses once per level and would exhaust the stack.
        return [{"field": "(document)", "rule": "maxDepth",
                 "message": f"nested more than {MAX_DEPTH} levels deep"}]
    # So is a row filter's size: the validator's time grows with it.
    if name == "row_filter" and (too_large := row_filter_limit_errors(document, "(document)")):
        return too_large
    if name == "application" and isinstance(document, dict) and (too_large := row_filter_limit_errors(document.get("row_filter"))):
        return too_large
    found = [(list(error.absolute_path), _describe(error)) for error in _validator(name).iter_errors(document)]
    found += _unstorable_text(document)
    return [described for _, described in sorted(found, key=lambda pair: [str(part) for part in pair[0]])]


def _unstorable_text(document: Any) -> list[tuple[list[Any], dict[str, str]]]:
    """Text a record store cannot hold (or not on every backend alike), in names and values alike.

    A lone surrogate (legal in a JSON escape) is refused by SQLite and PostgreSQL alike, and
    a NUL character by PostgreSQL, both only when the row is written and with an error that
    names no field; here either is refused up front, by field, like any other rule, so a
    document valid on one record store is valid on every one.
    """
    found: list[tuple[list[Any], dict[str, str]]] = []
    pending: list[tuple[Any, list[Any]]] = [(document, [])]
    while pending:
        value, path = pending.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                # A name that is no text is the field at fault; what it holds is not looked at.
                pending.append((child, [*path, key]) if _text_fault(key) is None else (key, [*path, key]))
        elif isinstance(value, list):
            pending.extend((child, [*path, index]) for index, child in enumerate(value))
        elif isinstance(value, str) and (fault := _text_fault(value)) is not None:
            found.append((path, {"field": _path_text(path), "rule": "text", "message": f"is not valid text: it holds {fault}"}))
    return found


def _text_fault(value: str) -> str | None:
    """What keeps ``value`` out of a record store (a lone surrogate, a NUL character), or None."""
    if "\x00" in value:
        return "a NUL character (\\u0000), which PostgreSQL cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (an unpaired \\ud800-\\udfff escape)"
    return None


def unstorable_text(document: Any) -> list[dict[str, str]]:
    """The fields of ``document`` holding text a record store cannot keep (see ``_unstorable_text``), in document order."""
    return [described for _, described in sorted(_unstorable_text(document), key=lambda pair: [str(part) for part in pair[0]])]


def validate(name: str, document: Any) -> Any:
    """Return ``document`` if it matches schema ``name``; raise ``SchemaViolation`` otherwise."""
    found = errors(name, document)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SchemaViolation(
            f"{first['field']}: {first['message']} (rule '{first['rule']}'){more}",
            extra={"schema": name, "errors": found[:MAX_REPORTED]},
        )
    return document
