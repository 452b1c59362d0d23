"""A short, bounded load test of one endpoint on localhost (``sentinel bench``).

Refuses any host but 127.0.0.1, stops after ``duration_s`` or ``max_requests`` (whichever
comes first), and reports requests/s and latency percentiles. The client runs in the
same process as the caller, so on a small machine its own CPU use is part of the figure.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from api.serve import api_process

MAX_DURATION_S = 120.0
MAX_CONCURRENCY = 256
MAX_REQUESTS = 1_000_000


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _check(
    base_url: str, path: str, duration_s: float, concurrency: int, max_requests: int
) -> None:
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise ValueError(f"load tests run against http://127.0.0.1 only, not {base_url!r}")
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/': {path!r}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S:g}]")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be in [1, {MAX_CONCURRENCY}]")
    if not 1 <= max_requests <= MAX_REQUESTS:
        raise ValueError(f"max_requests must be in [1, {MAX_REQUESTS}]")


async def _run(
    base_url: str, path: str, duration_s: float, concurrency: int, max_requests: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + duration_s

        async def worker() -> None:
            nonlocal issued
            while issued < max_requests and time.perf_counter() < deadline:
                issued += 1
                t0 = time.perf_counter()
                try:
                    r = await client.get(path)
                    await r.aread()
                    if r.status_code >= 400:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def ms(q: float) -> float | None:
        v = _percentile(ordered, q)
        return round(v * 1000, 3) if v is not None else None

    return {
        "url": base_url + path,
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "duration_s": round(elapsed, 3),
        "concurrency": concurrency,
        "requests_per_s": round(len(latencies) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "max_ms": ms(100),
    }


def load_test(
    base_url: str,
    path: str,
    *,
    duration_s: float = 5,
    concurrency: int = 8,
    max_requests: int = 5000,
) -> dict[str, Any]:
    """GET ``base_url + path`` from ``concurrency`` concurrent clients until ``duration_s``
    has passed or ``max_requests`` were sent. Returns requests, errors (status >= 400 or
    transport errors), requests/s, p50/p90/p99/max latency in ms."""
    _check(base_url, path, duration_s, concurrency, max_requests)
    return asyncio.run(_run(base_url.rstrip("/"), path, duration_s, concurrency, max_requests))


def bench_api(
    env: Mapping[str, str],
    symbol: str = "AAPL",
    *,
    duration_s: float = 5,
    concurrency: int = 8,
    max_requests: int = 5000,
) -> dict[str, Any]:
    """``sentinel bench``'s API part: serve the API in a child process (``env`` must hold
    ``DATABASE_URL``), load-test ``/forecasts/{symbol}``, stop it."""
    with api_process(env) as base_url:
        load_test(base_url, f"/forecasts/{symbol}", duration_s=0.5, concurrency=2)  # warm-up
        return load_test(
            base_url,
            f"/forecasts/{symbol}",
            duration_s=duration_s,
            concurrency=concurrency,
            max_requests=max_requests,
        )
