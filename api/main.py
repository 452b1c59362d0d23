"""The FastAPI application: ``uvicorn api.main:app`` (settings from the environment), or
:func:`create_app` with explicit settings in tests and tools.

The lifespan opens one ``psycopg_pool.AsyncConnectionPool`` (without waiting for the
database: requests get 503 until it is reachable, and the pool reconnects by itself)
and starts the ``/stream`` hub's single LISTEN connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api import errors
from api.body import BodyLimitMiddleware
from api.deps import WallClock
from api.routes import (
    alerts,
    bar_metrics,
    bars,
    dashboard,
    forecasts,
    health,
    models,
    prometheus,
    runbook,
    sessions,
    stream,
    summary,
    tickers,
)
from api.schemas import ErrorOut
from api.stream import StreamHub
from api.telemetry import MetricsMiddleware, RequestMetrics
from sentinel.runtime import tune_gc
from sentinel.settings import Settings, database_url, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Stock Sentinel's HTTP API: bars, metrics, forecasts, models and alerts from TimescaleDB,
the tickers the live dataflow follows and their markets' sessions, daily summaries, live
updates (`/stream`) and Prometheus metrics.

Times are ISO 8601 in UTC. Every error is JSON: `{"error": "<what is wrong>", "detail": ...}`.
Request bodies are JSON (`Content-Type: application/json`), at most `SENTINEL_API_MAX_BODY_BYTES`.
Mutating requests need the API key (`X-API-Key`) when `SENTINEL_API_KEY` is set.
"""


def system_clock() -> datetime:
    return datetime.now(UTC)


def make_pool(dsn: str, settings: Settings) -> AsyncConnectionPool[Any]:
    statement_ms = int(settings.api_statement_timeout_s * 1000)

    async def configure(conn: AsyncConnection[Any]) -> None:
        await conn.execute("SET TIME ZONE 'UTC'")
        await conn.execute(f"SET statement_timeout = {statement_ms}")

    return AsyncConnectionPool(
        dsn,
        min_size=1,
        # Above min_size, so that a pool that gave up reconnecting grows again on demand.
        max_size=max(2, settings.api_db_pool_size),
        open=False,
        timeout=settings.api_db_timeout_s,
        # psycopg_pool's reconnect backoff doubles without a cap until it gives up: after a
        # long outage the next attempt could be minutes away. Giving up early lets the next
        # request start a fresh attempt, so the API is back within a request of the database.
        reconnect_timeout=settings.api_db_timeout_s,
        # Prepared on first use (psycopg's default waits for the fifth): the hot queries
        # are a few fixed texts, so each connection plans each of them once.
        kwargs={
            "autocommit": True,
            "connect_timeout": max(2, int(settings.api_db_timeout_s)),
            "prepare_threshold": 0,
        },
        configure=configure,
        check=RecentCheck(CHECK_EVERY_S).check,
        name="sentinel-api",
    )


# A connection from the pool is checked (an empty query) before use, so that a request
# does not meet one the server closed in an outage; under load that doubled the round
# trips of a latest endpoint. One that passed within this long is taken as it is (the
# server cannot restart that fast; a connection that broke anyway gets its request a
# 503 and is discarded by the pool).
CHECK_EVERY_S = 0.5


class RecentCheck:
    """psycopg_pool's ``check_connection``, skipped for a connection that passed it
    within ``every_s``."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._passed: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = (
            weakref.WeakKeyDictionary()
        )

    async def check(self, conn: AsyncConnection[Any]) -> None:
        now = time.monotonic()
        if now - self._passed.get(conn, -math.inf) < self.every_s:
            return
        await AsyncConnectionPool.check_connection(conn)
        self._passed[conn] = now


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    dsn = app.state.dsn or database_url(settings)
    pool = make_pool(dsn, settings)
    await pool.open(wait=False)
    if app.state.freeze_gc:  # the application is loaded: a collection mid-request walked it
        tune_gc()
    hub = StreamHub(dsn, queue_size=settings.api_stream_queue)
    task = asyncio.create_task(hub.run(), name="sentinel-stream-listener")
    app.state.pool, app.state.hub = pool, hub
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app.state.pool = app.state.hub = None
        await pool.close()


WRITE_METHODS = {"post", "put", "patch", "delete"}
# Mounted in this order; the OpenAPI schema lists their paths in it.
ROUTERS = (
    health.router,
    tickers.router,
    sessions.router,
    summary.router,
    bars.router,
    bar_metrics.router,
    forecasts.router,
    models.router,
    alerts.router,
    stream.router,
    prometheus.router,
    runbook.router,
    dashboard.router,
)


def fit_schema_to_settings(schema: dict[str, Any], settings: Settings) -> None:
    """Make the OpenAPI schema exact for this configuration: security (and 401/403) only
    where a key is really required, and the configured maximum `limit`."""
    for operations in schema.get("paths", {}).values():
        for method, op in operations.items():
            needs_key = settings.api_key is not None and (
                method in WRITE_METHODS or settings.api_read_key_required
            )
            if not needs_key:
                _drop_security(op)
            _cap_limit(op, settings.api_max_limit)


def _drop_security(op: dict[str, Any]) -> None:
    if "security" in op:
        del op["security"]
        for status in ("401", "403"):
            op.get("responses", {}).pop(status, None)


def _cap_limit(op: dict[str, Any], cap: int) -> None:
    for param in op.get("parameters", []):
        if param.get("name") == "limit" and param.get("in") == "query":
            for branch in param["schema"].get("anyOf", [param["schema"]]):
                if branch.get("type") == "integer":
                    most = branch.get("maximum", cap)  # a route's own, if lower
                    branch["maximum"] = min(most, cap)


def add_middleware(app: FastAPI, settings: Settings) -> None:
    """The body limit innermost, then CORS, then request metrics outermost (they count
    every answer, 413s and CORS preflights too)."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.request_metrics)


def create_app(
    settings: Settings | None = None,
    *,
    dsn: str | None = None,
    clock: WallClock = system_clock,
    freeze_gc: bool = False,
) -> FastAPI:
    """The application; ``dsn`` overrides the settings' database (tests); ``freeze_gc``
    tunes the process's garbage collector once it has started (the served app does)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Stock Sentinel",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses={500: {"model": ErrorOut, "description": "Unexpected error"}},
    )
    app.state.settings = settings
    app.state.dsn = dsn
    app.state.clock = clock
    app.state.freeze_gc = freeze_gc
    app.state.pool = app.state.hub = None
    app.state.request_metrics = RequestMetrics()
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    add_middleware(app, settings)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            fit_schema_to_settings(FastAPI.openapi(app), settings)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


app = create_app(freeze_gc=True)
