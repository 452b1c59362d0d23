"""A short, bounded load test of endpoints on 127.0.0.1 (``sentinel bench``).

Refuses any host but 127.0.0.1, stops after ``duration_s`` or ``max_requests`` (whichever
comes first; a request still open then gets at most ``timeout_s`` more), and reports
requests/s, latency percentiles and errors.

The client is lean so that the figures are the server's: httpx, with 8 concurrent
clients against a trivial FastAPI app on this 2-core machine, drove about 260
requests/s, less than the API it was measuring. Here each concurrent client is one
keep-alive HTTP/1.1 connection sending prebuilt request bytes, answers are parsed by
httptools (uvicorn's own parser) on uvloop, and the whole client runs in a process of
its own (``python -m api.loadtest``), so nothing in the caller's interpreter competes with
it: about 2,600 requests/s against the same app. :func:`client_ceiling` measures that
ceiling in the same run as the figures it vouches for.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httptools
import uvloop

from api.serve import LOCALHOST, api_process

if TYPE_CHECKING:
    from fastapi import FastAPI

MAX_DURATION_S = 120.0
MAX_CONCURRENCY = 256
MAX_REQUESTS = 1_000_000
MAX_TIMEOUT_S = 60.0
_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LoadSpec:
    """One load test: GET ``base_url + path`` from ``concurrency`` clients."""

    base_url: str
    path: str
    duration_s: float = 5
    concurrency: int = 8
    max_requests: int = 5000
    timeout_s: float = 10

    def check(self) -> None:
        """Refuse anything but http://127.0.0.1, and any unbounded run."""
        parts = urlsplit(self.base_url)
        if parts.scheme != "http" or parts.hostname != LOCALHOST:
            raise ValueError(f"load tests run against http://127.0.0.1 only, not {self.base_url!r}")
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/': {self.path!r}")
        _within("duration_s", self.duration_s, MAX_DURATION_S)
        _within("timeout_s", self.timeout_s, MAX_TIMEOUT_S)
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be in [1, {MAX_CONCURRENCY}]")
        if not 1 <= self.max_requests <= MAX_REQUESTS:
            raise ValueError(f"max_requests must be in [1, {MAX_REQUESTS}]")


def _within(name: str, value: float, most: float) -> None:
    if not 0 < value <= most:
        raise ValueError(f"{name} must be in (0, {most:g}]")


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one request at a time, the answer's status
    once its whole body has arrived."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[int] | None = None
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's: no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_message_complete(self) -> None:  # called by the parser
        self.reusable = self._parser.should_keep_alive()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)

    async def get(self, request: bytes) -> int:
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass
class _Tally:
    """What the clients of one run share (one event loop: no locks)."""

    spec: LoadSpec
    deadline: float
    issued: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def more(self) -> bool:
        return self.issued < self.spec.max_requests and time.perf_counter() < self.deadline

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def _client(tally: _Tally, request: bytes) -> None:
    """One concurrent client: request after request on one connection, a new connection
    after a transport error or a server's ``Connection: close``."""
    loop = asyncio.get_running_loop()
    port = urlsplit(tally.spec.base_url).port or 80  # the host is 127.0.0.1: checked
    conn: _Connection | None = None
    while tally.more():
        tally.issued += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(tally.spec.timeout_s):
                if conn is None or not conn.reusable:
                    _, conn = await loop.create_connection(_Connection, LOCALHOST, port)
                status = await conn.get(request)
            if status >= 400:
                tally.error(str(status))
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            tally.error(type(exc).__name__)
            if conn is not None:
                conn.close()
            conn = None
        tally.latencies.append(time.perf_counter() - started)
    if conn is not None:
        conn.close()


async def _run(spec: LoadSpec) -> dict[str, Any]:
    parts = urlsplit(spec.base_url)
    request = f"GET {spec.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: */*\r\n\r\n"
    started = time.perf_counter()
    tally = _Tally(spec, started + spec.duration_s)
    await asyncio.gather(*(_client(tally, request.encode()) for _ in range(spec.concurrency)))
    return _report(spec, tally, time.perf_counter() - started)


def _report(spec: LoadSpec, tally: _Tally, elapsed: float) -> dict[str, Any]:
    ordered = sorted(tally.latencies)

    def ms(q: float) -> float | None:
        v = _percentile(ordered, q)
        return round(v * 1000, 3) if v is not None else None

    return {
        "url": spec.base_url + spec.path,
        "requests": len(ordered),
        "errors": sum(tally.errors.values()),
        "errors_by_kind": tally.errors,
        "duration_s": round(elapsed, 3),
        "concurrency": spec.concurrency,
        "requests_per_s": round(len(ordered) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "max_ms": ms(100),
    }


def _measure(spec: LoadSpec) -> dict[str, Any]:
    return uvloop.run(_run(spec))


def run_specs(specs: Sequence[LoadSpec]) -> list[dict[str, Any]]:
    """Each of ``specs`` in turn (each checked first), from a child process of its own
    (``python -m api.loadtest``: the specs on stdin, the reports on stdout), so the
    client shares no interpreter lock with the caller's threads, a server in one of
    them included; one process for all of them, started once."""
    for spec in specs:
        spec.check()
    bound_s = sum(spec.duration_s + spec.timeout_s for spec in specs) + 30  # 30: its start
    done = subprocess.run(
        [sys.executable, "-m", "api.loadtest"],
        input=json.dumps([asdict(spec) for spec in specs]),
        capture_output=True,
        text=True,
        cwd=_ROOT,
        timeout=bound_s,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the load generator failed: {done.stderr[-2000:]}")
    reports: list[dict[str, Any]] = json.loads(done.stdout)
    return reports


def load_test(
    base_url: str,
    path: str,
    *,
    duration_s: float = 5,
    concurrency: int = 8,
    max_requests: int = 5000,
    timeout_s: float = 10,
) -> dict[str, Any]:
    """GET ``base_url + path`` from ``concurrency`` concurrent clients until ``duration_s``
    has passed or ``max_requests`` were sent. Returns requests, errors (status >= 400 or
    transport errors, timeouts included), requests/s, p50/p90/p99/max latency in ms."""
    spec = LoadSpec(base_url.rstrip("/"), path, duration_s, concurrency, max_requests, timeout_s)
    return run_specs([spec])[0]


def load_endpoints(
    base_url: str,
    paths: Mapping[str, str],
    *,
    duration_s: float = 3,
    concurrency: int = 8,
    max_requests: int = 30_000,
    timeout_s: float = 5,
) -> dict[str, dict[str, Any]]:
    """Each of ``paths`` (name -> path) in turn, in their order: a few warm-up requests
    (one per client: each opens its pooled database connection and plans its queries),
    then the load. A slow endpoint's timed-out requests go on in the server, so put the
    slowest last."""
    base_url = base_url.rstrip("/")
    specs = []
    for path in paths.values():
        specs.append(LoadSpec(base_url, path, 1, concurrency, concurrency, timeout_s))
        specs.append(LoadSpec(base_url, path, duration_s, concurrency, max_requests, timeout_s))
    reports = run_specs(specs)[1::2]  # without the warm-ups
    return dict(zip(paths, reports, strict=True))


def trivial_app() -> FastAPI:
    """An app that does next to nothing: what the client drives against it is its
    ceiling (a lower bound: the server's work is in the figure too)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


def client_ceiling(*, duration_s: float = 3, concurrency: int = 8) -> dict[str, Any]:
    """What :func:`load_test`'s client drives against :func:`trivial_app`, served as the
    API is (uvicorn, one worker, a child process) on 127.0.0.1."""

    with api_process({}, app="api.loadtest:trivial_app", factory=True) as base_url:
        paths = {"trivial": "/health"}
        report = load_endpoints(base_url, paths, duration_s=duration_s, concurrency=concurrency)
        return report["trivial"]


def bench_api(
    env: Mapping[str, str],
    paths: Mapping[str, str],
    *,
    workers: int = 1,
    duration_s: float = 3,
    concurrency: int = 8,
    max_requests: int = 30_000,
) -> dict[str, dict[str, Any]]:
    """``sentinel bench``'s API part: serve the API in a child process (``env`` must hold
    ``DATABASE_URL``), load each of ``paths`` in turn, stop it."""
    with api_process(env, workers=workers) as base_url:
        return load_endpoints(
            base_url,
            paths,
            duration_s=duration_s,
            concurrency=concurrency,
            max_requests=max_requests,
        )


def main() -> None:
    """The load generator process: a list of :class:`LoadSpec` as JSON on stdin, their
    reports as JSON on stdout."""
    specs = [LoadSpec(**fields) for fields in json.load(sys.stdin)]
    for spec in specs:
        spec.check()
    json.dump([_measure(spec) for spec in specs], sys.stdout)


if __name__ == "__main__":
    main()
