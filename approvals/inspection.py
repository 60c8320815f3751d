"""The normative inspection: what is checked automatically the moment an application is filed.

Hard findings (``severity: error``) stop a submission with a 422; warnings are shown
to the manager with the application.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from approvals.rowfilter import InvalidRowFilter, compile_filter, items_named


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "error" or "warning"
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "severity": self.severity, "message": self.message}


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def inspect(
    *,
    dataset: dict[str, Any],
    dataset_active: bool,
    application: dict[str, Any],
    today: date,
    max_usage_months: int,
    holds_active_grant: bool,
    max_disclosure_delay_days: int = 180,
) -> list[Finding]:
    """Every finding of the normative inspection for ``application`` against ``dataset``."""
    findings: list[Finding] = []

    def error(rule: str, message: str) -> None:
        findings.append(Finding(rule, "error", message))

    def warning(rule: str, message: str) -> None:
        findings.append(Finding(rule, "warning", message))

    items = {item["name"]: item for item in dataset["items"]}
    requested = application["items"]
    if not dataset_active:
        error("dataset-retired", f"dataset {dataset['code']} is retired and can no longer be applied for")
    unknown = [name for name in requested if name not in items]
    if unknown:
        error("items-exist", f"the dataset has no item(s): {', '.join(unknown)}")
    if dataset["share_type"] == "none":
        error("share-type", f"dataset {dataset['code']} is not shareable (share type 'none')")
    elif dataset["share_type"] == "conditional":
        warning("provider-sign-off", "conditional dataset: the providing department must also sign off")
    if application["delivery"] not in dataset["delivery_modes"]:
        offered = ", ".join(dataset["delivery_modes"])
        error("delivery-offered", f"delivery '{application['delivery']}' is not offered; the dataset offers: {offered}")

    start, end = date.fromisoformat(application["period"]["start"]), date.fromisoformat(application["period"]["end"])
    if end < start:
        error("period-order", "the usage period ends before it starts")
    if start < today:
        error("period-not-past", f"the usage period starts in the past ({start}, today is {today})")
    latest_end = add_months(start, max_usage_months) - timedelta(days=1)
    if end > latest_end:
        error("period-maximum", f"the usage period may last at most {max_usage_months} months (end by {latest_end})")

    for field in ("basis", "purpose", "service_item"):
        if not str(application.get(field) or "").strip():
            error(f"{field.replace('_', '-')}-present", f"the application needs a {field.replace('_', ' ')}")

    if disclosure := application.get("disclosure"):
        _inspect_disclosure(disclosure, today=today, max_days=max_disclosure_delay_days, error=error, warning=warning)

    justifications = application.get("justifications") or {}
    for name in requested:
        item = items.get(name)
        if item and item["sensitivity"] == "sensitive" and not str(justifications.get(name) or "").strip():
            error("sensitive-justified", f"item '{name}' is sensitive: give a justification for it")
    personal = [name for name in requested if name in items and items[name]["sensitivity"] == "personal"]
    unexplained = [name for name in personal if not str(justifications.get(name) or "").strip()]
    if unexplained:
        warning("personal-explained", f"personal items without a justification: {', '.join(unexplained)}")

    try:
        compile_filter(application.get("row_filter"), dataset["items"])
    except InvalidRowFilter as problem:
        error("row-filter-valid", problem.detail)
    else:
        if not application.get("row_filter") and personal:
            warning("row-scope", "no row filter: every citizen's record is requested")
        outside = items_named(application.get("row_filter")) - set(items)
        if outside:
            error("row-filter-valid", f"the row filter names unknown items: {', '.join(sorted(outside))}")

    if known := [name for name in requested if name in items]:
        if len(known) == len(items) and len(items) > 3:
            warning("items-minimal", "every item of the dataset is requested: check each is needed")
    if finding := lookup_key_finding(dataset=dataset, application=application):
        findings.append(finding)
    if holds_active_grant:
        warning("duplicate", "the department already holds an active grant on this dataset")
    return findings


def _inspect_disclosure(disclosure: dict[str, Any], *, today: date, max_days: int, error, warning) -> None:
    """A delay of citizens' sight of the accesses needs a basis, a day still to come, and no more than ``max_days`` from today."""
    delay_until = date.fromisoformat(disclosure["delay_until"])
    basis = str(disclosure.get("basis") or "").strip()
    if not basis:
        error("disclosure-basis", "disclosure.basis: a delayed disclosure needs the basis that allows it (e.g. the investigation)")
    if delay_until <= today:
        error("disclosure-delay-past", f"disclosure.delay_until: {delay_until} is not after today ({today})")
    latest = today + timedelta(days=max_days)
    if delay_until > latest:
        error("disclosure-delay-maximum", f"disclosure.delay_until: a disclosure may be delayed at most {max_days} days "
              f"(until {latest} at the latest)")
    if basis and today < delay_until <= latest:
        warning("disclosure-delayed", f"citizens see these accesses only from {delay_until}, on the basis: {basis}")


def lookup_key_finding(*, dataset: dict[str, Any], application: dict[str, Any]) -> Finding | None:
    """A warning when an interface application's items lack the lookup key in the clear: its lookups by key will be refused.

    ``application["masks"]`` (set by the manager's approval) counts: a masked key is no key to look up by.
    """
    key = dataset.get("lookup_key")
    if application["delivery"] != "interface" or not key:
        return None
    if key not in application["items"]:
        return Finding("lookup-key", "warning", f"the items do not include the lookup key '{key}': lookups by key "
                       "(single, batch, or a query filtered by it) will be refused (403); only paged queries and streams serve it")
    if key in (application.get("masks") or {}):
        return Finding("lookup-key", "warning", f"the lookup key '{key}' is masked: lookups by key "
                       "(single, batch, or a query filtered by it) will be refused (403); only paged queries and streams serve it")
    return None


def summary(findings: list[Finding]) -> dict[str, Any]:
    """The inspection as stored and shown with the application."""
    return {
        "passed": not any(finding.severity == "error" for finding in findings),
        "findings": [finding.as_dict() for finding in findings],
    }
