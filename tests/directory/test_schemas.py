"""The unified format: every JSON Schema file loads, and a failure names the field and the rule."""

from __future__ import annotations

import json

import pytest

import schemas
from govshare.errors import InvalidInput
from tests.factories import dataset_document


def test_every_schema_file_is_a_valid_draft_2020_12_schema():
    from jsonschema import Draft202012Validator

    for path in sorted(schemas.SCHEMAS_DIR.glob("*.json")):
        document = json.loads(path.read_text())
        Draft202012Validator.check_schema(document)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert path.stem in schemas.NAMES


def test_the_contract_example_dataset_is_valid():
    assert schemas.validate("dataset", dataset_document()) == dataset_document()


def test_a_failure_names_the_field_path_and_the_rule():
    document = dataset_document(published="2026-02-30")
    document["items"][2]["sensitivity"] = "secret"
    with pytest.raises(InvalidInput) as raised:
        schemas.validate("dataset", document)
    found = {(error["field"], error["rule"]) for error in raised.value.extra["errors"]}
    assert found == {("items[2].sensitivity", "enum"), ("published", "format")}
    assert raised.value.status == 422


def test_application_row_filter_and_rating_schemas_accept_the_contract_shapes():
    application = {
        "dataset": "PSB-HOUSEHOLD", "service_item": "newborn-registration",
        "scenario": "verify parents' household registration when registering a birth",
        "basis": "Household Registration Regulation art. 7", "items": ["citizen_id", "name", "district"],
        "row_filter": {"district": {"in": ["01", "02"]}}, "delivery": "interface",
        "period": {"start": "2026-12-01", "end": "2027-11-30"},
        "purpose": "birth registration without asking parents for paper proof",
    }
    schemas.validate("application", application)
    schemas.validate("row_filter", {"or": [{"district": {"eq": "01"}}, {"and": [{"age": {"between": [18, 30]}}, {"name": {"is_null": False}}]}]})
    schemas.validate("rating", {"review_speed": 5, "data_quality": 4})
    with pytest.raises(InvalidInput) as raised:
        schemas.validate("row_filter", {"district": {"like": "0%"}})
    assert raised.value.extra["errors"][0]["field"] == "district.like"
    with pytest.raises(InvalidInput) as raised:
        schemas.validate("rating", {"stability": 6})
    assert raised.value.extra["errors"][0] == {"field": "stability", "rule": "maximum", "message": "6 is greater than the maximum of 5"}
