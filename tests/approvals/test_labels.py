"""Approvals' codes in words, as the pages show them."""

from __future__ import annotations

from approvals.labels import in_words, row_filter_words


def test_a_row_filter_reads_as_a_sentence():
    assert row_filter_words({"active": {"eq": True}}) == "Only records where active is yes."
    assert row_filter_words({"or": [{"retired": {"eq": False}}, {"age": {"between": [18, 65]}}], "note": {"is_null": True}}) == (
        "Only records where (retired is no or age is between 18 and 65) and note is empty.")
    assert row_filter_words(None) == row_filter_words({}) == "Every record of the dataset (no row filter)."


def test_messages_name_reasons_not_codes():
    assert in_words("a rejection for reason 'other' needs a comment saying why") == (
        "a rejection for reason “Other” needs a comment saying why")
    assert in_words("a rejection needs a reason_code, one of: no_legal_basis, items_beyond_need") == "a rejection needs a reason"
