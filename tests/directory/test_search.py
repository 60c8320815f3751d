"""Searching the directory: full text, filters, facets and paging, for any role."""

from __future__ import annotations

import pytest

from directory import search


@pytest.fixture
def catalog(directory):
    directory.dataset("PSB-HOUSEHOLD", "PSB", keywords=["hukou"])
    directory.dataset(
        "CAB-MARRIAGE", "CAB", title="Marriage registrations", summary="Marriages and divorces registered",
        domain="civil-affairs", share_type="unconditional", delivery_modes=["interface"],
        items=[{"name": "spouse_id", "type": "string", "description": "spouse's citizen ID", "sensitivity": "personal"}],
        lookup_key="spouse_id",
    )
    directory.dataset(
        "HEALTH-BIRTH", "HEALTH", title="Birth medical certificates", summary="Births in hospitals",
        domain="health", share_type="conditional", delivery_modes=["extract"],
        items=[{"name": "mother_id", "type": "string", "description": "mother's residence district", "sensitivity": "personal"}],
        lookup_key="mother_id",
    )
    directory.dataset("PSB-VEHICLE", "PSB", title="Motor vehicles", summary="Registered vehicles", domain="traffic", share_type="none")
    return directory


def _codes(client, headers, **params) -> list[str]:
    response = client.get("/api/v1/datasets", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["code"] for item in response.json()["items"]]


def test_full_text_finds_title_summary_item_names_descriptions_and_keywords(client, factory, catalog):
    headers = factory.caller("EDU", "demander")
    assert _codes(client, headers, q="marriage") == ["CAB-MARRIAGE"]
    assert _codes(client, headers, q="divorces") == ["CAB-MARRIAGE"]
    assert _codes(client, headers, q="spouse_id") == ["CAB-MARRIAGE"]
    assert _codes(client, headers, q="residence") == ["HEALTH-BIRTH"]
    assert _codes(client, headers, q="HUKOU") == ["PSB-HOUSEHOLD"]
    assert _codes(client, headers, q="regist") == ["CAB-MARRIAGE", "PSB-HOUSEHOLD", "PSB-VEHICLE"]
    assert _codes(client, headers, q="registered vehicles") == ["PSB-VEHICLE"]
    assert _codes(client, headers, q="nothing-like-this") == []


def test_filters_combine_and_facets_count_the_matches(client, factory, catalog):
    headers = factory.caller("DATA", "manager")
    body = client.get("/api/v1/datasets", headers=headers).json()
    assert body["total"] == 4
    assert body["facets"] == {
        "department": {"CAB": 1, "HEALTH": 1, "PSB": 2},
        "domain": {"civil-affairs": 1, "health": 1, "household": 1, "traffic": 1},
        "share_type": {"conditional": 2, "none": 1, "unconditional": 1},
    }
    assert _codes(client, headers, department="PSB") == ["PSB-HOUSEHOLD", "PSB-VEHICLE"]
    assert _codes(client, headers, domain="health") == ["HEALTH-BIRTH"]
    assert _codes(client, headers, share_type="conditional") == ["HEALTH-BIRTH", "PSB-HOUSEHOLD"]
    assert _codes(client, headers, delivery="interface") == ["CAB-MARRIAGE", "PSB-HOUSEHOLD", "PSB-VEHICLE"]
    assert _codes(client, headers, delivery="extract", share_type="conditional", department="health") == ["HEALTH-BIRTH"]
    filtered = client.get("/api/v1/datasets", params={"q": "registered"}, headers=headers).json()
    assert filtered["total"] == 3
    assert filtered["facets"]["department"] == {"CAB": 1, "PSB": 2}


def test_paging(client, factory, catalog):
    headers = factory.caller("EDU", "service")
    first = client.get("/api/v1/datasets", params={"page_size": 3}, headers=headers).json()
    second = client.get("/api/v1/datasets", params={"page_size": 3, "page": 2}, headers=headers).json()
    assert first["total"] == second["total"] == 4
    assert [i["code"] for i in first["items"]] + [i["code"] for i in second["items"]] == [
        "CAB-MARRIAGE", "HEALTH-BIRTH", "PSB-HOUSEHOLD", "PSB-VEHICLE"
    ]
    assert client.get("/api/v1/datasets", params={"page_size": 500}, headers=headers).status_code == 422
    assert client.get("/api/v1/datasets", params={"delivery": "fax"}, headers=headers).status_code == 422


def test_search_follows_updates_and_shows_a_summary(client, catalog):
    headers = catalog.provider("CAB")
    client.patch("/api/v1/datasets/CAB-MARRIAGE", json={"title": "Wedding registrations"}, headers=headers)
    assert _codes(client, headers, q="wedding") == ["CAB-MARRIAGE"]
    assert _codes(client, headers, q="divorces") == ["CAB-MARRIAGE"]
    client.patch("/api/v1/datasets/CAB-MARRIAGE", json={"summary": "Unions"}, headers=headers)
    assert _codes(client, headers, q="divorces") == []
    [hit] = client.get("/api/v1/datasets", params={"q": "wedding"}, headers=headers).json()["items"]
    assert hit["title"] == "Wedding registrations" and hit["department"] == "CAB"
    assert hit["delivery_modes"] == ["interface"] and hit["share_type"] == "unconditional"


def test_chinese_text_is_found_by_character_pairs(client, directory):
    directory.dataset("PSB-HUKOU", "PSB", title="户籍人口信息", summary="全市常住人口户籍登记")
    headers = directory.provider("PSB")
    assert _codes(client, headers, q="户籍") == ["PSB-HUKOU"]
    assert _codes(client, headers, q="人口户籍") == ["PSB-HUKOU"]
    assert _codes(client, headers, q="婚姻") == []


def test_query_terms_are_words_and_cjk_pairs():
    assert search.query_terms("Household  REGISTRATION!") == ["household", "registration"]
    assert search.query_terms("户籍人口") == ["户籍", "籍人", "人口"]
    assert "citizen" in search.index_terms("citizen_id")


def test_full_text_totals_facets_and_pages_equal_a_plain_count(database, catalog):
    # Full-text searches read their matches once for the grouped count and the page:
    # every page, the total and each facet must equal what a plain filter over all rows gives.
    catalog.dataset("CAB-ADOPTION", "CAB", title="Adoption registrations", domain="civil-affairs", share_type="conditional")
    catalog.dataset("EDU-SCHOOLS", "EDU", title="School registers", summary="Registered schools", domain="education")
    with database.transaction(write=False) as session:
        everything = search.search(session, page_size=200).datasets
        for params in [{"q": "regist"}, {"q": "registrations"}, {"q": "regist", "department": "cab"},
                       {"q": "regist", "share_type": "conditional"}, {"q": "nothing-like-this"}]:
            department = params.get("department", "").upper()
            expected = [d for d in everything
                        if all(any(term.startswith(word) for term in search.index_terms(d.search_text))
                               for word in search.query_terms(params["q"]))
                        and (not department or d.department_code == department)
                        and d.share_type == params.get("share_type", d.share_type)]
            pages = [search.search(session, page=page, page_size=2, **params) for page in (1, 2, 3)]
            assert [d.code for p in pages for d in p.datasets] == sorted(d.code for d in expected), params
            assert {p.total for p in pages} == {len(expected)}, params
            for name, column in [("department", "department_code"), ("domain", "domain"), ("share_type", "share_type")]:
                counts: dict[str, int] = {}
                for d in expected:
                    counts[getattr(d, column)] = counts.get(getattr(d, column), 0) + 1
                assert pages[0].facets[name] == dict(sorted(counts.items())), (params, name)


def test_a_search_sees_changes_made_by_another_server_process_at_once(database, settings, catalog):
    # Search keeps the datasets' filter columns in memory; a second Database on the same store
    # stands for a second server process (or the CLI) changing the directory.
    from directory import service
    from govshare.db import Database
    from govshare.keys import KeyStore

    def searched(**params) -> tuple[list[str], dict[str, dict[str, int]]]:
        with database.transaction(write=False) as session:
            result = search.search(session, page_size=200, **params)
            return [d.code for d in result.datasets], result.facets

    before, facets = searched()
    assert "PSB-VEHICLE" in before and facets["domain"]["traffic"] == 1
    other = Database(settings.resolved_database_url, keystore=KeyStore(settings.resolved_keys_dir))
    try:
        with other.transaction() as session:
            vehicle = session.execute(search.select(search.Dataset).where(search.Dataset.code == "PSB-VEHICLE")).scalar_one()
            service.retire_dataset(session, dataset=vehicle, actor="test")
            marriage = session.execute(search.select(search.Dataset).where(search.Dataset.code == "CAB-MARRIAGE")).scalar_one()
            service.patch_dataset(session, dataset=marriage, patch={"domain": "traffic"}, actor="test")
    finally:
        other.dispose()
    after, facets = searched()
    assert "PSB-VEHICLE" not in after and len(after) == len(before) - 1
    assert facets["domain"]["traffic"] == 1 and "civil-affairs" not in facets["domain"]  # the patched domain counts
    assert searched(domain="traffic")[0] == ["CAB-MARRIAGE"]
    assert "PSB-VEHICLE" in searched(include_retired=True)[0]
    catalog.dataset("EDU-SCHOOLS", "EDU", title="School registers", domain="traffic")  # through the API this time
    assert searched(q="school")[0] == ["EDU-SCHOOLS"]
    assert searched()[1]["domain"]["traffic"] == 2


def _as_rows(columns: search.FilterColumns) -> list[tuple]:
    """Columns as comparable rows, in their order (facet codes turned back into values)."""
    facets = [[columns.facets[name][0][code] for code in columns.facets[name][1]] for name in search.FACET_NAMES]
    return list(zip(columns.codes, columns.ids.tolist(), columns.active.tolist(), *facets,
                    columns.delivery["extract"].tolist(), columns.delivery["interface"].tolist(), strict=True))


def test_filter_columns_brought_up_to_date_equal_columns_read_whole(database, catalog):
    import random

    from sqlalchemy import delete, insert, update

    from directory import service
    from directory.models import Dataset, DatasetRevision
    from govshare.db import utcnow
    from tests.factories import dataset_document

    rng = random.Random(5)
    for department in ("CAB", "EDU", "PSB"):
        catalog.factory.department(department)
    with database.transaction(write=False) as session:
        search.filter_columns(session)  # read whole, then kept up to date change by change
    for step in range(30):
        with database.transaction() as session:
            datasets = session.execute(search.select(Dataset).where(Dataset.status == "active")).scalars().all()
            action = rng.choice(["register", "register", "patch", "retire"])
            if action == "register":  # one to three at once, landing anywhere in code order (side by side too)
                for code in sorted({f"{rng.choice(['CAB', 'EDU', 'PSB'])}-{rng.choice('ZAMB')}{step:02d}" for _ in range(rng.randint(1, 3))}):
                    service.register_dataset(session, document=dataset_document(
                        code, code[:3], domain=rng.choice(["health", "tax", "new-domain-" + str(step)]),
                        share_type=rng.choice(["conditional", "unconditional"]),
                        delivery_modes=rng.choice([["extract"], ["interface"], ["extract", "interface"]])),
                        department=code[:3], actor="test")
            elif action == "patch":
                service.patch_dataset(session, dataset=rng.choice(datasets), actor="test",
                                      patch={"domain": rng.choice(["health", "traffic"]), "share_type": "none"})
            else:
                service.retire_dataset(session, dataset=rng.choice(datasets), actor="test")
        with database.transaction(write=False) as session:
            kept = search.filter_columns(session)
            whole = search.FilterColumns.read(session, kept.stamp)
            assert _as_rows(kept) == _as_rows(whole), (step, action)
            assert kept.revision == whole.revision
    # A dataset written without a revision (a bulk load) is not missed: the columns are read whole.
    with database.transaction() as session:
        session.execute(insert(Dataset), [{**service.row_values(dataset_document("EDU-BULK", "EDU")), "status": "active",
                                           "revision": 1, "created_at": utcnow(), "updated_at": utcnow()}])
        search.directory_changed(session)
    with database.transaction(write=False) as session:
        assert "EDU-BULK" in search.filter_columns(session).codes
    # A store put back to an older copy (here: its revisions gone, a dataset's domain as it was) is read whole.
    with database.transaction() as session:
        session.execute(delete(DatasetRevision))
        session.execute(update(Dataset).where(Dataset.code == "EDU-BULK").values(domain="restored"))
        search.directory_changed(session)
    with database.transaction(write=False) as session:
        kept = search.filter_columns(session)
        assert kept.revision == 0 and "restored" in kept.facets["domain"][0]
        assert _as_rows(kept) == _as_rows(search.FilterColumns.read(session, kept.stamp))


def test_a_started_server_has_read_the_filter_columns_before_its_first_search(settings):
    # The columns are read whole once per process (0.5-0.8 s at 100,000 datasets): at start,
    # not in the first person's search. Searches in read and write sessions share them.
    from fastapi.testclient import TestClient

    from govshare.app import create_app

    app = create_app(settings)
    with TestClient(app):
        database = app.state.database
        assert database.engine.pool in search._columns
        with database.transaction(write=True) as session:
            assert search.filter_columns(session) is search._columns[database.engine.pool]
