"""Every metric computed on a scripted history (tests/evaluation/history.py), against answers worked out by hand."""

from __future__ import annotations

import pytest

from evaluation import service
from tests.evaluation.history import NOW, PERIOD_END, PERIOD_START, write_history

DAY = 86400
PERIOD = service.Period(PERIOD_START, PERIOD_END)


@pytest.fixture
def history(database):
    ids = write_history(database)
    with database.transaction(write=False) as session:
        yield session, ids


def _by(entries, key):
    return {entry[key]: entry for entry in entries}


def test_overall_metrics_of_the_period(history):
    session, _ = history
    overall = service.group_metrics(session, period=PERIOD, by=None, now=NOW)[0]
    # Filed in October: 1, 2, 3, 4, 5, 6, 8, 10, 11, 12 (7 was filed in September, 9 is a draft).
    assert overall["applications_filed"] == 10
    # Decided in October: approved 1, 2, 4, 7, 10, 11, 12; rejected 3, 5 (8 was decided in November).
    assert (overall["approved"], overall["rejected"], overall["decided"]) == (7, 2, 9)
    assert overall["pass_rate"] == pytest.approx(7 / 9)
    assert overall["rejection_rate"] == pytest.approx(2 / 9)
    assert overall["rejection_reasons"] == {"data_not_shareable": 1, "no_legal_basis": 1}
    # Review durations (days): 1, 3, 2, 10, 1.5, 6.5, 1, 1, 1 -> sorted 1,1,1,1,1.5,2,3,6.5,10; sum 27 days.
    assert overall["review_seconds_avg"] == pytest.approx(27 * DAY / 9)
    assert overall["review_seconds_median"] == pytest.approx(1.5 * DAY)  # rank ceil(4.5) = 5
    assert overall["review_seconds_p90"] == pytest.approx(10 * DAY)  # rank ceil(8.1) = 9
    # Grants made in October: 1 (first line 6 h later), 2 (2 days), 4 (1 day), 7 (6 h); 8's grant is November's.
    assert overall["grants_delivered"] == 4
    assert overall["first_delivery_seconds_avg"] == pytest.approx((6 * 3600 + 2 * DAY + DAY + 6 * 3600) / 4)
    assert overall["first_delivery_seconds_median"] == pytest.approx(6 * 3600)  # 6h, 6h, 1d, 2d: rank 2
    # Ledger lines in October: all but the one of 3 November.
    assert overall["calls"] == 9
    assert overall["rows"] == 1 + 0 + 50 + 0 + 1000 + 200 + 1 + 1 + 3
    assert overall["interface_calls"] == 7  # lookups, queries, streams (not the extract or the deposit)
    assert overall["availability"] == pytest.approx(6 / 7)  # one 500
    assert overall["interface_server_errors"] == 1
    assert overall["errors"] == 2  # the 500 and the 429; a 404 lookup is an answer
    assert overall["error_rate"] == pytest.approx(2 / 9)
    # Interface latencies 10, 20, 30, 40, 50, 5, 60 -> sorted 5,10,20,30,40,50,60.
    assert (overall["latency_ms_p50"], overall["latency_ms_p90"], overall["latency_ms_p99"]) == (30.0, 60.0, 60.0)
    # Ratings given in October: two demanders' and one provider's.
    assert overall["ratings"] == 3
    assert overall["rating_review_speed"] == pytest.approx(3.0)
    assert overall["rating_data_quality"] == pytest.approx(1.5)
    assert overall["rating_stability"] == pytest.approx(4.0)
    assert overall["rating_application_quality"] == pytest.approx(5.0)
    # Corrections filed in October: 2; open now: 3 (one filed in September, one in November); past due now: 2.
    assert (overall["corrections_filed"], overall["corrections_open"], overall["corrections_overdue"]) == (2, 3, 2)
    # On 1 November: PSB-HOUSEHOLD (daily) loaded 12 h before: fresh; HRSS-INSURANCE (monthly) 42 days before: stale;
    # PSB-OLD (weekly) never loaded: stale; EDU-SCHOOLS is realtime: not judged.
    assert (overall["datasets_fresh"], overall["datasets_stale"], overall["datasets_not_judged"]) == (1, 2, 1)


def test_metrics_per_dataset(history):
    session, _ = history
    datasets = _by(service.group_metrics(session, period=PERIOD, by="dataset", now=NOW), "dataset")
    assert set(datasets) == {"PSB-HOUSEHOLD", "HRSS-INSURANCE", "EDU-SCHOOLS", "PSB-OLD"}
    household = datasets["PSB-HOUSEHOLD"]
    assert household["applications_filed"] == 4  # 1, 2, 3, 4
    assert (household["approved"], household["rejected"]) == (4, 1)  # 1, 2, 4, 7; 3
    assert household["pass_rate"] == pytest.approx(0.8)
    # Durations 1, 3, 2, 10, 6.5 days -> sorted 1, 2, 3, 6.5, 10.
    assert household["review_seconds_avg"] == pytest.approx(22.5 * DAY / 5)
    assert household["review_seconds_median"] == pytest.approx(3 * DAY)
    assert household["review_seconds_p90"] == pytest.approx(10 * DAY)
    assert (household["calls"], household["rows"], household["interface_calls"]) == (8, 1253, 7)
    assert household["error_rate"] == pytest.approx(2 / 8)
    assert household["availability"] == pytest.approx(6 / 7)
    assert household["rating_data_quality"] == pytest.approx(1.5)
    assert (household["corrections_filed"], household["corrections_open"], household["corrections_overdue"]) == (2, 1, 1)
    assert household["fresh"] is True and household["age_days"] == pytest.approx(0.5)
    assert household["last_version_at"] == "2026-10-31T12:00:00+00:00"  # the 5 November version is after the period

    insurance = datasets["HRSS-INSURANCE"]
    assert (insurance["applications_filed"], insurance["approved"], insurance["rejected"]) == (2, 0, 1)
    assert (insurance["pass_rate"], insurance["rejection_rate"]) == (0.0, 1.0)
    assert insurance["review_seconds_median"] == pytest.approx(1.5 * DAY)
    assert (insurance["calls"], insurance["rows"], insurance["interface_calls"]) == (1, 3, 0)
    assert insurance["availability"] is None and insurance["latency_ms_p50"] is None
    assert insurance["error_rate"] == 0.0
    assert (insurance["corrections_open"], insurance["corrections_overdue"]) == (2, 1)
    assert insurance["fresh"] is False and insurance["age_days"] == pytest.approx(42)
    assert insurance["promised_days"] == 31

    schools = datasets["EDU-SCHOOLS"]
    assert (schools["applications_filed"], schools["approved"], schools["decided"]) == (4, 3, 3)
    assert schools["fresh"] is None and schools["promised_days"] is None
    old = datasets["PSB-OLD"]
    assert old["applications_filed"] == 0 and old["pass_rate"] is None
    assert old["fresh"] is False and old["last_version_at"] is None


def test_metrics_per_department_and_service_item(history):
    session, _ = history
    departments = _by(service.group_metrics(session, period=PERIOD, by="department", now=NOW), "department")
    assert set(departments) == {"CAB", "CIV"}
    cab, civ = departments["CAB"], departments["CIV"]
    assert (cab["applications_filed"], cab["approved"], cab["rejected"]) == (4, 3, 1)  # filed 1, 2, 5, 6; decided 1, 2, 7; 5
    assert (civ["applications_filed"], civ["approved"], civ["rejected"]) == (6, 4, 1)  # filed 3, 4, 8, 10-12; 4, 10-12; 3
    assert (cab["calls"], civ["calls"]) == (7, 2)
    assert civ["availability"] == 1.0 and civ["error_rate"] == pytest.approx(0.5)
    assert (civ["latency_ms_p50"], civ["latency_ms_p90"]) == (5.0, 50.0)  # 5, 50: ranks 1 and 2
    assert cab["grants_delivered"] == 3 and civ["grants_delivered"] == 1
    assert cab["first_delivery_seconds_median"] == pytest.approx(6 * 3600)  # 6h, 6h, 2d
    assert (cab["corrections_open"], cab["corrections_overdue"]) == (3, 2)
    assert cab["rating_review_speed"] == pytest.approx(4.0) and civ["rating_review_speed"] == pytest.approx(2.0)

    items = _by(service.group_metrics(session, period=PERIOD, by="service_item", now=NOW), "service_item")
    assert {name: entry["applications_filed"] for name, entry in items.items()} == {
        "marriage": 3, "pension": 1, "birth": 2, "school": 4, None: 0,
    }
    assert items[None]["calls"] == 1  # the deposit names no service item
    assert items["school"]["pass_rate"] == 1.0 and items["birth"]["rejection_reasons"] == {"data_not_shareable": 1}
    assert items["marriage"]["calls"] == 6  # CAB's lookups, queries and the extract under grants 1, 2, 7


def test_metrics_per_providing_department(history):
    session, _ = history
    providers = _by(service.group_metrics(session, period=PERIOD, by="provider", now=NOW), "provider")
    assert set(providers) == {"PSB", "HRSS", "EDU"}
    psb, hrss, edu = providers["PSB"], providers["HRSS"], providers["EDU"]
    # PSB provides PSB-HOUSEHOLD and PSB-OLD: filed 1, 2, 3, 4; approved 1, 2, 4, 7, rejected 3.
    assert (psb["applications_filed"], psb["approved"], psb["rejected"]) == (4, 4, 1)
    assert psb["pass_rate"] == pytest.approx(0.8) and psb["rejection_reasons"] == {"data_not_shareable": 1}
    # Durations 1, 3, 2, 10, 6.5 days -> sorted 1, 2, 3, 6.5, 10.
    assert psb["review_seconds_median"] == pytest.approx(3 * DAY) and psb["review_seconds_p90"] == pytest.approx(10 * DAY)
    # Grants 1 (6 h), 2 (2 days), 4 (1 day), 7 (6 h): all PSB's.
    assert psb["grants_delivered"] == 4 and psb["first_delivery_seconds_median"] == pytest.approx(6 * 3600)
    # Lines: the 8 October ones on PSB-HOUSEHOLD; latencies 5, 10, 20, 30, 40, 50, 60.
    assert (psb["calls"], psb["rows"], psb["interface_calls"], psb["errors"]) == (8, 1253, 7, 2)
    assert psb["availability"] == pytest.approx(6 / 7)
    assert (psb["latency_ms_p50"], psb["latency_ms_p90"], psb["latency_ms_p99"]) == (30.0, 60.0, 60.0)
    # Ratings of applications 1 (both parties) and 4: review speed 4 and 2, quality 2 and 1, application quality 5.
    assert psb["ratings"] == 3 and psb["rating_review_speed"] == pytest.approx(3.0)
    assert psb["rating_data_quality"] == pytest.approx(1.5) and psb["rating_application_quality"] == pytest.approx(5.0)
    assert (psb["corrections_filed"], psb["corrections_open"], psb["corrections_overdue"]) == (2, 1, 1)
    # PSB-HOUSEHOLD loaded 12 h before the end: fresh; PSB-OLD never loaded: stale.
    assert (psb["datasets_fresh"], psb["datasets_stale"], psb["datasets_not_judged"]) == (1, 1, 0)

    # HRSS: filed 5 and 6, rejected 5 after 1.5 days; one deposit of 3 rows; two open corrections, one past due.
    assert (hrss["applications_filed"], hrss["approved"], hrss["rejected"], hrss["pass_rate"]) == (2, 0, 1, 0.0)
    assert hrss["review_seconds_median"] == pytest.approx(1.5 * DAY) and hrss["grants_delivered"] == 0
    assert (hrss["calls"], hrss["rows"], hrss["interface_calls"], hrss["availability"]) == (1, 3, 0, None)
    assert (hrss["corrections_filed"], hrss["corrections_open"], hrss["corrections_overdue"]) == (0, 2, 1)
    assert (hrss["ratings"], hrss["datasets_fresh"], hrss["datasets_stale"]) == (0, 0, 1)

    # EDU: filed 8, 10, 11, 12; approved 10, 11, 12 after a day each (8 in November); its one line is November's.
    assert (edu["applications_filed"], edu["approved"], edu["decided"], edu["pass_rate"]) == (4, 3, 3, 1.0)
    assert edu["review_seconds_median"] == pytest.approx(DAY)
    assert (edu["calls"], edu["grants_delivered"], edu["datasets_not_judged"]) == (0, 0, 1)
    assert service.group_metrics(session, period=PERIOD, by="provider", only="HRSS", now=NOW) == [hrss]


def test_one_dataset_alone_matches_its_row_in_the_list(history):
    session, _ = history
    alone = service.group_metrics(session, period=PERIOD, by="dataset", only="PSB-HOUSEHOLD", now=NOW)
    listed = _by(service.group_metrics(session, period=PERIOD, by="dataset", now=NOW), "dataset")["PSB-HOUSEHOLD"]
    assert alone == [listed]


def test_the_lists_a_manager_acts_on(history):
    session, ids = history
    summary = service.summary(session, period=PERIOD, now=NOW)
    # The summary sums the counts of its per-dataset entries: the same as counting all records.
    overall = service.group_metrics(session, period=PERIOD, by=None, now=NOW)[0]
    for name in ("applications_filed", "approved", "rejected", "rejection_reasons", "pass_rate", "calls", "rows", "interface_calls", "interface_server_errors", "errors", "availability", "error_rate",
                 "latency_ms_p50", "latency_ms_p99", "review_seconds_median", "first_delivery_seconds_avg"):
        assert summary[name] == overall[name], name
    assert summary["most_demanded"] == [
        {"dataset": "EDU-SCHOOLS", "applications_filed": 4},  # a tie: by code
        {"dataset": "PSB-HOUSEHOLD", "applications_filed": 4},
        {"dataset": "HRSS-INSURANCE", "applications_filed": 2},
    ]
    # Points: PSB-HOUSEHOLD 1 not shareable + 3 availability + 3 error rate + 3 quality rating + 1 open + 1 overdue;
    # HRSS-INSURANCE 3 stale + 2 open + 1 overdue; PSB-OLD 3 never loaded.
    assert [(item["dataset"], item["points"]) for item in summary["supply_problems"]] == [
        ("PSB-HOUSEHOLD", 12), ("HRSS-INSURANCE", 6), ("PSB-OLD", 3),
    ]
    assert summary["supply_problems"][1]["problems"] == [
        "stale data", "2 open correction request(s)", "1 overdue correction request(s)",
    ]
    assert summary["supply_problems"][2]["problems"] == ["no data loaded"]
    # Only EDU-SCHOOLS has 3 decisions, all approved, and no problem.
    assert summary["to_promote"] == [{"dataset": "EDU-SCHOOLS", "pass_rate": 1.0, "approved": 3, "decided": 3}]
    assert [(item["id"], item["overdue"]) for item in summary["waiting_longest"]] == [(ids[6], True)]
    assert summary["waiting_longest"][0]["waiting_seconds"] == pytest.approx(39 * DAY)  # 15 October to 23 November


def test_the_trend_and_the_review_duration_histogram(history):
    session, _ = history
    days = service.daily_trend(session, period=PERIOD)
    assert len(days) == 31 and days[0]["day"] == "2026-10-01" and days[-1]["day"] == "2026-10-31"
    assert days[0] == {"day": "2026-10-01", "filed": 1, "approved": 1, "rejected": 0, "calls": 1}
    assert days[1] == {"day": "2026-10-02", "filed": 0, "approved": 1, "rejected": 0, "calls": 2}
    assert sum(day["filed"] for day in days) == 10 and sum(day["calls"] for day in days) == 9
    histogram = service.review_duration_histogram(session, period=PERIOD)
    # 1, 1, 1, 1, 1.5 | 2, 3 | 6.5 | 10 (a bucket holds its lower bound).
    assert [bucket["count"] for bucket in histogram] == [0, 5, 2, 1, 1, 0]
    household = service.review_duration_histogram(session, period=PERIOD, dataset="PSB-HOUSEHOLD")
    assert [bucket["count"] for bucket in household] == [0, 1, 2, 1, 1, 0]


def test_overall_latency_percentiles_are_exact_within_a_histogram_bucket(database):
    from exchange.models import AccessLogEntry
    from tests.evaluation.history import at

    latencies = [12.31, 12.34, 12.35, 12.39, 12.30, 0.01, 0.04, 7.77, 100.5, 12.36]
    with database.transaction() as session:
        session.add_all(AccessLogEntry(at=at(10, 2), kind="lookup", client_id="c", department_code="CAB", dataset_code="X",
                                       rows=1, status=200, latency_ms=latency) for latency in latencies)
    with database.transaction(write=False) as session:
        overall = service.group_metrics(session, period=PERIOD, by=None, now=NOW)[0]
        by_dataset = service.group_metrics(session, period=PERIOD, by="dataset", now=NOW)
    # Sorted: 0.01, 0.04, 7.77, 12.30, 12.31, 12.34, 12.35, 12.36, 12.39, 100.5 (six share the 12.3 bucket).
    assert (overall["latency_ms_p50"], overall["latency_ms_p90"], overall["latency_ms_p99"]) == (12.31, 12.39, 100.5)
    # The grouped path (one window pass) agrees with the histogram.
    assert [(entry["latency_ms_p50"], entry["latency_ms_p90"], entry["latency_ms_p99"]) for entry in by_dataset] == [(12.31, 12.39, 100.5)]
