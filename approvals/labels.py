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
}

GRANT_STATE_LABELS = {
    service.GrantState.pending: "Not yet started",
    service.GrantState.active: "Active",
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


def row_filter_words(row_filter: dict[str, Any] | None) -> str:
    """A row filter in plain words: 'district is one of 01, 02 and birth_date is at least 1990-01-01'."""
    if not row_filter:
        return "No row filter: every record of the dataset"
    parts = []
    for key, value in row_filter.items():
        if key in ("and", "or"):
            inner = f" {key} ".join(row_filter_words(child) for child in value)
            parts.append(f"({inner})" if len(value) > 1 else inner)
            continue
        (operator, operand), = value.items()
        if operator == "in":
            parts.append(f"{key} is one of {', '.join(str(item) for item in operand)}")
        elif operator == "between":
            parts.append(f"{key} is between {operand[0]} and {operand[1]}")
        elif operator == "is_null":
            parts.append(f"{key} is empty" if operand else f"{key} is not empty")
        else:
            parts.append(f"{key} {OPERATOR_WORDS.get(operator, operator)} {operand}")
    return " and ".join(parts)
