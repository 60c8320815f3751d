"""Plain words for a page's 422: which part of the address (or of a form) is wrong, and how.

FastAPI refuses a value it cannot read before any page runs (``/ui/grants/abc``: a grant
number that is not a number), and its words are a programmer's ("Input should be a valid
integer, unable to parse string as an integer"). API clients keep them in the problem+json
(``detail``, ``errors`` naming the field); a person reading a page gets a sentence per wrong
part instead, naming the part as the address shows it and what it should be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_SHOWN = 40  # characters of a wrong value quoted back


@dataclass(frozen=True)
class AddressProblem:
    heading: str
    sentences: list[str]


def _name(field: str) -> str:
    """``grant_id`` → 'grant number', ``page_size`` → 'page size'."""
    if field.endswith("_id"):
        return field[: -len("_id")].replace("_", " ") + " number"
    return field.replace("_", " ")


def _should(error: dict[str, Any]) -> str:
    """What the value should have been, in words."""
    rule, context = error.get("type", ""), error.get("ctx") or {}
    if rule in ("int_parsing", "int_type", "int_from_float"):
        return "should be a whole number, like 12"
    if rule in ("float_parsing", "float_type", "decimal_parsing"):
        return "should be a number, like 2.5"
    if rule in ("bool_parsing", "bool_type"):
        return "should be true or false"
    if rule.startswith("datetime"):
        return "should be a date and time, like 2026-12-07T09:30"
    if rule.startswith("date"):
        return "should be a date written year-month-day, like 2026-12-07"
    if rule in ("uuid_parsing", "uuid_type"):
        return "should be an identifier as the site writes it"
    if rule in ("literal_error", "enum"):
        return f"should be one of {context.get('expected', 'the values the page offers')}"
    bounds = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
              "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}
    if rule in bounds:
        key, words = bounds[rule]
        return f"should be {words} {context.get(key)}"
    if rule == "string_too_long":
        return f"is too long: at most {context.get('max_length')} characters"
    if rule == "string_too_short":
        return f"is too short: at least {context.get('min_length')} characters"
    if rule == "missing":
        return "is missing"
    return "is not a value this page can take"


def describe(errors: list[dict[str, Any]], *, path_params: dict[str, Any], query_params: Any) -> AddressProblem | None:
    """Sentences for FastAPI's validation ``errors`` (``exc.errors()``), or None when none is about the address or a form."""
    sentences: list[str] = []
    in_address = False
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if len(location) < 2 or location[0] not in ("path", "query", "body"):
            continue
        where, field = location[0], location[1]
        given = path_params.get(field) if where == "path" else query_params.get(field) if where == "query" else None
        shown = "" if given in (None, "") else f" (“{given if len(str(given)) <= MAX_SHOWN else str(given)[:MAX_SHOWN] + '…'}”)"
        should = _should(error)
        if where == "path":
            in_address = True
            sentence = f"The {_name(field)} in the address{shown} {should}."
        elif where == "query":
            in_address = True
            sentence = f"The {_name(field)} after the ? in the address{shown} {should}." if should != "is missing" \
                else f"The address needs a {_name(field)} (?{field}=…)."
        else:
            sentence = f"The form's {_name(field)} {should}."
        if sentence not in sentences:
            sentences.append(sentence)
    if not sentences:
        return None
    return AddressProblem("This address is not right" if in_address else "The form could not be read", sentences)
