"""The bounded load test behind `sentinel bench`, and the production entry point
(`uvicorn api.main:app` in a child process, settings from the environment)."""

from __future__ import annotations

import httpx
import pytest

from api.loadtest import bench_api, client_ceiling, load_test, trivial_app
from api.main import create_app
from api.serve import api_process, serve_in_thread
from tests.api.conftest import settings
from timescale.embedded import free_port


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
        ("http://127.0.0.1:8000", {"timeout_s": 0}, "timeout_s"),
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


def test_errors_are_counted_by_status_and_by_transport_failure() -> None:
    with serve_in_thread(trivial_app()) as base_url:
        missing = load_test(base_url, "/nowhere", duration_s=5, concurrency=2, max_requests=20)
    assert missing["requests"] == missing["errors"] == 20
    assert missing["errors_by_kind"] == {"404": 20}
    # Nothing listens there: every request fails to connect, and the run still ends.
    refused = load_test(f"http://127.0.0.1:{free_port()}", "/health", duration_s=5, max_requests=16)
    assert refused["errors"] == 16
    assert refused["errors_by_kind"] == {"ConnectionRefusedError": 16}


def test_the_clients_ceiling_is_measured_against_a_trivial_app() -> None:
    ceiling = client_ceiling(duration_s=0.5)
    assert ceiling["errors"] == 0
    assert ceiling["requests_per_s"] > 100
    assert ceiling["concurrency"] == 8


@pytest.mark.slow
def test_bench_serves_the_production_app_and_stops_it(filled_db: str) -> None:
    paths = {"forecasts": "/forecasts/AAPL", "health": "/health"}
    reports = bench_api({"DATABASE_URL": filled_db}, paths, duration_s=1, max_requests=2000)
    assert list(reports) == ["forecasts", "health"]
    for report in reports.values():
        assert report["errors"] == 0, report["errors_by_kind"]
        assert report["requests"] > 10
        assert report["duration_s"] < 3


@pytest.mark.slow
def test_the_api_serves_with_several_workers_and_all_of_them_stop(filled_db: str) -> None:
    with api_process({"DATABASE_URL": filled_db}, workers=2) as base_url:
        assert httpx.get(f"{base_url}/health", timeout=10).status_code == 200
        port = int(base_url.rsplit(":", 1)[1])
    # No worker lives on holding the socket.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
