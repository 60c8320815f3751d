"""The dashboard pages: who sees them, what they show for the scripted history, and in Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import update

from approvals.models import Application
from evaluation.models import Correction

from tests.approvals.test_views import HTML, PASSWORD, add_person, page_of, sign_in
from tests.evaluation.history import write_history

OCTOBER = {"from": "2026-10-01", "to": "2026-10-31"}


@pytest.fixture
def manager(factory, database) -> str:
    factory.department("DATA")
    add_person(database, "maria", "manager")
    return "maria"


@pytest.fixture
def signed_in(client, manager, database):
    client.history_ids = write_history(database)  # application number -> id
    assert sign_in(client, manager).status_code == 303
    return client


def _metric(page, name: str) -> str:
    element = page.find(data_metric=name)
    assert element is not None, name
    return element.text


def test_the_dashboard_asks_a_visitor_to_sign_in(client):
    response = client.get("/ui/dashboard", headers=HTML, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/ui/login")


def test_a_person_without_the_manager_role_gets_a_403(client, factory, database):
    factory.department("DATA")
    add_person(database, "pat", "provider")
    sign_in(client, "pat")
    assert client.get("/ui/dashboard", headers=HTML).status_code == 403


def test_the_dashboard_shows_the_period_s_figures_charts_and_lists(signed_in):
    response = signed_in.get("/ui/dashboard", params=OCTOBER, headers=HTML)
    assert response.status_code == 200, response.text
    page = page_of(response)
    assert _metric(page, "applications_filed") == "10"
    assert _metric(page, "pass_rate") == "77.8%"  # 7 of 9
    assert _metric(page, "review_seconds_median") == "1 day 12 hours"
    assert _metric(page, "availability") == "85.7%"  # 6 of 7
    assert _metric(page, "latency_ms_p90") == "60 ms"
    assert _metric(page, "datasets_stale") == "2"
    charts = page.find_all("svg", role="img")
    assert len(charts) == 5  # two trends, reasons, durations, most demanded
    for chart in charts:
        assert chart.find("title") is not None and chart.find("desc") is not None
    filed = page.find("figure", id="trend-filed")
    assert len(filed.find_all("rect")) == 31  # one bar a day of October
    assert [row.text for row in filed.find("table").find("tbody").find_all("tr")][:2] == ["1 Oct 2026 1", "2 Oct 2026 0"]
    # Each tile says its period; ratings say what they are out of; dates are written one way.
    assert {tile.find(class_="tile-period").text for tile in page.find(id="tiles").find_all("li")} == {"1 Oct 2026 to 31 Oct 2026"}
    quality = page.find(data_metric="rating_data_quality").parent
    assert "out of 5" in quality.find(class_="tile-label").text
    assert page.find(id="period-summary").text.startswith("From 1 Oct 2026 to 31 Oct 2026.")
    durations = page.find("figure", id="review-durations").find("tbody").find_all("tr")
    assert [row.find("td").text for row in durations] == ["0", "5", "2", "1", "1", "0"]
    reasons = page.find("figure", id="rejection-reasons").find("table").find("tbody").find_all("tr")
    assert [row.text for row in reasons] == ["Data not shareable 1", "No legal basis 1"]
    problems = page.find("table", id="supply-problems").find("tbody").find_all("tr")
    assert [row.get("data-dataset") for row in problems] == ["PSB-HOUSEHOLD", "HRSS-INSURANCE", "PSB-OLD"]
    assert [row.get("data-dataset") for row in page.find("table", id="to-promote").find("tbody").find_all("tr")] == ["EDU-SCHOOLS"]
    assert len(page.find("table", id="waiting-longest").find("tbody").find_all("tr")) == 1
    links = [link.get("href") for link in page.find("nav", class_="subnav").find_all("a")]
    assert "/ui/dashboard" in links and "/ui" in links


def test_the_dataset_page(signed_in):
    response = signed_in.get("/ui/dashboard/datasets/PSB-HOUSEHOLD", params=OCTOBER, headers=HTML)
    assert response.status_code == 200, response.text
    page = page_of(response)
    assert page.find("h1").text.startswith("PSB-HOUSEHOLD")
    assert _metric(page, "applications_filed") == "4"
    assert _metric(page, "decided") == "5: 4 approved (80.0%), 1 rejected (20.0%)"
    assert _metric(page, "latency") == "p50 30 ms, p90 60 ms, p99 60 ms"
    assert _metric(page, "fresh") == "fresh: last version 0.5 days before the end of the period"
    assert _metric(page, "corrections") == "2 filed in the period; 1 open now, 1 overdue"
    assert len(page.find("table", id="corrections").find("tbody").find_all("tr")) == 2
    assert len(page.find("figure", id="trend-calls").find_all("rect")) == 31
    # Ratings given in October, newest first: application 4's demander, then application 1's provider and demander
    # (application 2's rating of 5 November is outside the period).
    ratings = page.find("table", id="ratings").find("tbody").find_all("tr")
    assert [(row.get("data-party"), row.find("a").text) for row in ratings] == [
        ("demander", str(_application_id(signed_in, 4))), ("provider", str(_application_id(signed_in, 1))),
        ("demander", str(_application_id(signed_in, 1))),
    ]
    assert _scores(ratings[0]) == {
        "review_speed": "2", "data_quality": "1", "stability": "5",
    }


def _scores(row) -> dict[str, str]:
    return {span.get("data-score"): span.text for span in row.find_all("span") if span.has("data-score")}


def _application_id(client, number: int) -> int:
    return client.history_ids[number]


def test_the_application_page_shows_both_parties_ratings(signed_in, database):
    application_id = _application_id(signed_in, 1)
    with database.transaction() as session:  # CAB's open request of 5 October was about what it received under grant 1
        grant_id = session.get(Application, application_id).grant_id
        correction_id = session.execute(update(Correction).where(
            Correction.dataset_code == "PSB-HOUSEHOLD", Correction.department_code == "CAB",
        ).values(grant_id=grant_id).returning(Correction.id)).scalar_one()
    response = signed_in.get(f"/ui/dashboard/applications/{application_id}", headers=HTML)
    assert response.status_code == 200, response.text
    page = page_of(response)
    assert page.find("h1").text.startswith(f"Application {application_id}")
    assert page.find(data_field="delivered").text.startswith("yes")
    ratings = {row.get("data-party"): row for row in page.find("table", id="ratings").find("tbody").find_all("tr")}
    assert set(ratings) == {"demander", "provider"}
    assert _scores(ratings["demander"]) == {
        "review_speed": "4", "data_quality": "2", "stability": "3",
    }
    assert _scores(ratings["provider"]) == {"application_quality": "5"}
    assert "PSB" in ratings["provider"].text and "CAB" in ratings["demander"].text
    assert [row.get("data-correction") for row in page.find("table", id="corrections").find("tbody").find_all("tr")] == [
        str(correction_id)
    ]
    # An application nobody rated says so.
    unrated = page_of(signed_in.get(f"/ui/dashboard/applications/{_application_id(signed_in, 6)}", headers=HTML))
    assert unrated.find("table", id="ratings") is None and "Neither party has rated" in unrated.text
    assert unrated.find(data_field="delivered").text.startswith("not yet")
    assert signed_in.get("/ui/dashboard/applications/999999", headers=HTML).status_code == 404


def test_the_application_page_is_for_managers(client, factory, database):
    ids = write_history(database)
    factory.department("DATA")
    add_person(database, "pat", "provider")
    assert client.get(f"/ui/dashboard/applications/{ids[1]}", headers=HTML, follow_redirects=False).status_code == 303
    sign_in(client, "pat")
    assert client.get(f"/ui/dashboard/applications/{ids[1]}", headers=HTML).status_code == 403


def test_an_unknown_dataset_is_a_404_and_a_wrong_period_is_explained_beside_the_form(signed_in):
    assert signed_in.get("/ui/dashboard/datasets/NO-SUCH", headers=HTML).status_code == 404
    for path in ("/ui/dashboard", "/ui/dashboard/datasets/PSB-HOUSEHOLD"):
        wrong = signed_in.get(path, params={"from": "2026-10-31", "to": "2026-10-01"}, headers=HTML)
        assert wrong.status_code == 422
        page = page_of(wrong)
        form = page.find("form", class_="period")
        error = form.find(id="period-error")
        assert "'from' must come before 'to'" in error.text and "last 30 days" in error.text
        assert form.find("input", id="from").get("value") == "2026-10-31"  # what was typed, to correct it
        assert form.find("input", id="from").get("aria-describedby") == "period-error"
        assert page.find(data_metric="applications_filed") is not None  # the page goes on, with the default period
    nonsense = page_of(signed_in.get("/ui/dashboard", params={"from": "yesterday"}, headers=HTML))
    assert nonsense.find(id="period-error") is not None


def test_the_default_period_is_the_last_30_days_and_an_empty_chart_says_no_data(signed_in):
    page = page_of(signed_in.get("/ui/dashboard", params={"from": "2026-06-01", "to": "2026-06-30"}, headers=HTML))
    for chart in ("trend-filed", "trend-calls", "review-durations", "rejection-reasons", "most-demanded"):
        figure = page.find("figure", id=chart)
        assert figure.find("svg") is None and figure.find(class_="no-data").text.startswith("No "), chart
    assert page.find("figure", id="trend-filed").find(class_="no-data").text == "No data for this period."
    default = page_of(signed_in.get("/ui/dashboard", headers=HTML))
    assert len(default.find("figure", id="trend-filed").find("tbody").find_all("tr")) == 30


@pytest.mark.browser
def test_a_manager_reads_the_dashboard_in_a_browser(live_server, page, screenshot, manager, database):
    write_history(database)
    page.goto(f"{live_server}/ui/dashboard?from=2026-10-01&to=2026-10-31")
    page.get_by_label("Name").fill(manager)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Supply and demand")
    expect(page.locator('[data-metric="applications_filed"]')).to_have_text("10")
    expect(page.get_by_role("img", name="Review duration, filed to decided")).to_be_visible()
    assert page.locator("#trend-filed svg").bounding_box()["width"] > 200  # the stylesheet sized the chart
    screenshot(page, "dashboard")
    page.get_by_role("link", name="PSB-HOUSEHOLD").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("PSB-HOUSEHOLD")
    expect(page.locator('[data-metric="corrections"]')).to_have_text("2 filed in the period; 1 open now, 1 overdue")
    expect(page.locator("#ratings tbody tr")).to_have_count(3)
    screenshot(page, "dataset")
    page.locator('#ratings tr[data-party="provider"] a').click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Application")
    expect(page.locator('#ratings tr[data-party="demander"] [data-score="data_quality"]')).to_have_text("2")
    expect(page.locator('#ratings tr[data-party="provider"] [data-score="application_quality"]')).to_have_text("5")
    screenshot(page, "application")
    page.goto(f"{live_server}/ui/dashboard?from=2026-10-31&to=2026-10-01")
    expect(page.locator("#period-error")).to_be_visible()
    expect(page.get_by_label("From")).to_have_value("2026-10-31")
    screenshot(page, "period-error")
    page.get_by_label("From").fill("2026-06-01")
    page.get_by_label("To (included)").fill("2026-06-30")
    page.get_by_role("button", name="Show this period").click()
    expect(page.locator("#period-error")).to_have_count(0)
    expect(page.locator("#trend-filed .no-data")).to_have_text("No data for this period.")
    screenshot(page, "no-data")
