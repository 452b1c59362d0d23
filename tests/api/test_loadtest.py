"""The bounded load test behind `sentinel bench`, and the production entry point
(`uvicorn api.main:app` in a child process, settings from the environment)."""

from __future__ import annotations

import pytest

from api.loadtest import bench_api, load_test
from api.main import create_app
from api.serve import serve_in_thread
from tests.api.conftest import settings


@pytest.mark.parametrize(
    ("base_url", "kwargs", "words"),
    [
        ("http://example.com", {}, "127.0.0.1 only"),
        ("http://localhost:8000", {}, "127.0.0.1 only"),
        ("https://127.0.0.1:8000", {}, "127.0.0.1 only"),
        ("http://127.0.0.1:8000", {"duration_s": 0}, "duration_s"),
        ("http://127.0.0.1:8000", {"duration_s": 3600}, "duration_s"),
        ("http://127.0.0.1:8000", {"concurrency": 0}, "concurrency"),
        ("http://127.0.0.1:8000", {"max_requests": 10**9}, "max_requests"),
    ],
)
def test_load_test_refuses_other_hosts_and_unbounded_runs(
    base_url: str, kwargs: dict[str, float], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        load_test(base_url, "/health", **kwargs)  # type: ignore[arg-type]


def test_load_test_is_bounded_by_count_and_reports_latencies(filled_db: str) -> None:
    with serve_in_thread(create_app(settings(), dsn=filled_db)) as base_url:
        report = load_test(
            base_url, "/forecasts/AAPL", duration_s=10, concurrency=4, max_requests=120
        )
    assert report["requests"] == 120
    assert report["errors"] == 0, report["errors_by_kind"]
    assert report["duration_s"] < 10
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["requests_per_s"] > 0


@pytest.mark.slow
def test_bench_serves_the_production_app_and_stops_it(filled_db: str) -> None:
    report = bench_api({"DATABASE_URL": filled_db}, "AAPL", duration_s=1, max_requests=2000)
    assert report["errors"] == 0, report["errors_by_kind"]
    assert report["requests"] > 10
    assert report["duration_s"] < 3
    print(report)
