"""Approvals' codes in words, for pages (any domain's): statuses, events, grant states, row filters, masks."""

from __future__ import annotations

from typing import Any

from approvals import service

STATUS_LABELS = {
    service.Status.draft: "Draft",
    service.Status.submitted: "Waiting for a decision",
    service.Status.awaiting_provider: "Waiting for the providing department",
    service.Status.approved: "Approved",
    service.Status.rejected: "Rejected",
    service.Status.returned: "Returned for changes",
    service.Status.withdrawn: "Withdrawn",
}

EVENT_LABELS = {
    "application.drafted": "Draft saved",
    "application.edited": "Changed by the applicant",
    "application.submitted": "Submitted for review",
    "application.withdrawn": "Withdrawn by the applicant",
    "application.awaiting_provider": "Approved by the data manager; waiting for the providing department",
    "application.approved": "Approved; grant created",
    "application.rejected": "Rejected",
    "application.returned": "Returned for changes",
    "application.provider_approved": "Signed off by the providing department; grant created",
    "application.provider_rejected": "Refused by the providing department",
    "application.provider_returned": "Returned by the providing department",
    "application.overdue": "Decision overdue",
    "grant.revoked": "Grant revoked",
    "grant.paused": "Grant paused",
    "grant.resumed": "Grant resumed",
}

GRANT_STATE_LABELS = {
    service.GrantState.pending: "Not yet started",
    service.GrantState.active: "Active",
    service.GrantState.paused: "Paused",
    service.GrantState.expired: "Expired",
    service.GrantState.revoked: "Revoked",
}

OPERATOR_WORDS = {"eq": "is", "ne": "is not", "lt": "is less than", "le": "is at most", "gt": "is more than", "ge": "is at least"}


def mask_words(mask: Any) -> str:
    """A mask in plain words: 'first 2 characters kept', 'year only'."""
    if isinstance(mask, dict) and len(mask) == 1:
        (rule, count), = mask.items()
        return f"{'first' if rule == 'keep_first' else 'last'} {count} characters kept, the rest hidden"
    return {"keyed_hash": "replaced by a keyed hash", "year_only": "year only", "null": "withheld"}.get(str(mask), str(mask))


def _value_words(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "empty" if value is None else str(value)


def _condition_words(row_filter: dict[str, Any]) -> str:
    parts = []
    for key, value in row_filter.items():
        if key in ("and", "or"):
            inner = f" {key} ".join(_condition_words(child) for child in value)
            parts.append(f"({inner})" if len(value) > 1 else inner)
            continue
        (operator, operand), = value.items()
        if operator == "in":
            parts.append(f"{key} is one of {', '.join(_value_words(item) for item in operand)}")
        elif operator == "between":
            parts.append(f"{key} is between {_value_words(operand[0])} and {_value_words(operand[1])}")
        elif operator == "is_null":
            parts.append(f"{key} is empty" if operand else f"{key} is not empty")
        else:
            parts.append(f"{key} {OPERATOR_WORDS.get(operator, operator)} {_value_words(operand)}")
    return " and ".join(parts)


def row_filter_words(row_filter: dict[str, Any] | None) -> str:
    """A row filter as a sentence: 'Only records where district is one of 01, 02 and active is yes.'"""
    if not row_filter:
        return "Every record of the dataset (no row filter)."
    return f"Only records where {_condition_words(row_filter)}."


def in_words(detail: str) -> str:
    """A service's message with its codes in words, for a page: 'reason “Other”', not "reason 'other'"."""
    for code, label in service.REASON_LABELS.items():
        detail = detail.replace(f"'{code}'", f"“{label}”")
    if ", one of: " in detail:  # the list of codes an API caller needs; the page offers the choices instead
        detail = detail.split(", one of: ")[0]
    return detail.replace("a reason_code", "a reason").replace("reason_code", "reason")
