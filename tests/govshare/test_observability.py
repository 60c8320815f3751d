"""Health and Prometheus metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def _samples(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_healthz_reports_the_store_and_the_keys(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "keys": "ok"}}


def test_healthz_fails_when_the_keys_are_gone(client, settings):
    (settings.resolved_keys_dir / "signing-keys.json").unlink()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["keys"] == "missing"


def test_metrics_count_requests_by_route_template_and_status(client, factory):
    headers = factory.caller("DATA", "manager")
    for _ in range(3):
        client.get("/api/v1/audit/verify", headers=headers)
    client.get("/api/v1/audit/verify")
    client.get("/no/such/route")
    samples = _samples(client)
    ok = ("govshare_http_requests_total", (("method", "GET"), ("route", "/api/v1/audit/verify"), ("status", "200")))
    refused = ("govshare_http_requests_total", (("method", "GET"), ("route", "/api/v1/audit/verify"), ("status", "401")))
    unmatched = ("govshare_http_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))
    assert samples[ok] == 3
    assert samples[refused] == 1
    assert samples[unmatched] == 1
    latency_count = ("govshare_http_request_duration_seconds_count", (("method", "GET"), ("route", "/api/v1/audit/verify")))
    assert samples[latency_count] == 4


def test_metrics_show_the_process_memory_by_allocator(client):
    samples = _samples(client)
    names = {name for name, _ in samples}
    assert {"process_resident_memory_bytes", "govshare_malloc_in_use_bytes", "govshare_malloc_free_bytes",
            "govshare_malloc_arenas", "govshare_python_allocated_blocks", "govshare_keyed_store_memory_bytes"} <= names
    assert samples[("process_resident_memory_bytes", ())] > samples[("govshare_malloc_in_use_bytes", ())] > 1_000_000
    assert samples[("govshare_python_allocated_blocks", ())] > 10_000
