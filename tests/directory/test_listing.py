"""``govshare datasets list``'s read without SQLAlchemy (directory.listing) answers as the server's search does."""

from __future__ import annotations

import pytest

from directory import listing, search, service
from govshare import readonly
from govshare.errors import InvalidInput
from tests.factories import citizen_id

# Codes whose order by code point ('-' < '.' < digits < '_') differs from a natural-language
# collation (PostgreSQL's default ignores punctuation): the page order must be search's.
CODES = ["PSB-A_1", "PSB-A-2", "PSB-A.3", "PSB-A1", "PSB-B"]


@pytest.fixture
def catalog(directory):
    for number, code in enumerate(CODES):
        directory.dataset(code, "PSB", title=f"Register number {number}", keywords=["hukou"] if number % 2 else [],
                          share_type=["conditional", "unconditional", "none"][number % 3],
                          delivery_modes=[["extract"], ["interface"], ["extract", "interface"]][number % 3])
    directory.dataset("CAB-MARRIAGE", "CAB", title="Marriage registrations 婚姻登记", summary="Marriages registered",
                      domain="civil-affairs", share_type="unconditional", delivery_modes=["interface"])
    directory.dataset("HEALTH-BIRTH", "HEALTH", title="Birth certificates", domain="health", delivery_modes=["extract"])
    directory.dataset("CAB-OLD", "CAB", title="Retired register", domain="civil-affairs")
    response = directory.http.post("/api/v1/datasets/CAB-OLD/retire", headers=directory.provider("CAB"))
    assert response.status_code == 200, response.text
    rows = "citizen_id,name,district,birth_date\n" + f"{citizen_id('11010119900101001')},A,01,1990-01-01\n"
    assert directory.upload("PSB-B", rows.encode()).status_code == 201
    return directory


FILTERS = [
    {}, {"page_size": 2}, {"page": 2, "page_size": 2}, {"page": 9, "page_size": 2}, {"q": "register"},
    {"q": "regist", "department": "cab"}, {"q": "hukou register"}, {"q": "婚姻"}, {"q": "nothing-like-this"},
    {"department": "PSB"}, {"domain": "health"}, {"share_type": "conditional"}, {"delivery": "interface"},
    {"delivery": "extract", "share_type": "conditional", "department": "psb"}, {"q": "register", "delivery": "extract"},
]


def test_the_list_commands_read_finds_pages_and_counts_as_the_search_does(settings, database, catalog):
    with database.transaction(write=False) as session, readonly.connect(
        settings.resolved_database_url, busy_timeout_seconds=5
    ) as reader:
        assert reader is not None  # SQLite and psycopg: both are read without SQLAlchemy
        for filters in FILTERS:
            expected = search.search(session, **filters)
            found = listing.search(reader, **filters)
            assert found.items == [service.dataset_summary(dataset) for dataset in expected.datasets], filters
            assert (found.total, found.facets) == (expected.total, expected.facets), filters
        everything = listing.search(reader, page_size=200)
    assert [item["code"] for item in everything.items if item["code"].startswith("PSB-")] == sorted(CODES)  # code-point order
    assert "CAB-OLD" not in {item["code"] for item in everything.items}
    assert next(item for item in everything.items if item["code"] == "PSB-B")["latest_version"] == 1


@pytest.mark.parametrize("filters", [{"page": 0}, {"page_size": 201}, {"delivery": "post"}, {"q": "!!"}])
def test_the_list_commands_read_refuses_what_the_search_refuses_in_the_same_words(settings, database, filters):
    with database.transaction(write=False) as session, pytest.raises(InvalidInput) as by_search:
        search.search(session, **filters)
    with readonly.connect(settings.resolved_database_url, busy_timeout_seconds=5) as reader, pytest.raises(InvalidInput) as by_listing:
        listing.search(reader, **filters)
    assert by_listing.value.detail == by_search.value.detail


def test_a_store_the_reader_does_not_read_is_left_to_sqlalchemy(tmp_path):
    with readonly.connect(f"sqlite:///{tmp_path / 'missing.db'}", busy_timeout_seconds=5) as reader:
        assert reader is None
    assert not (tmp_path / "missing.db").exists()  # never created by a list command
    with readonly.connect("mysql+pymysql://root@127.0.0.1/test", busy_timeout_seconds=5) as reader:
        assert reader is None
