"""``GET /metrics``: Prometheus text format (API requests and pipeline counters).

The path is declared whole, not as a prefix: ``/metrics/{symbol}`` is another resource
(:mod:`api.routes.bar_metrics`)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from fastapi import APIRouter, Request, Response
from psycopg_pool import PoolClosed, PoolTimeout

from api.deps import ClockDep, PoolDep, ReadAccess, SettingsDep
from api.errors import text_responses
from api.queries.base import Row
from api.queries.status import feed_status, rejects_by_reason, sink_status
from api.telemetry import CONTENT_TYPE, exposition, pipeline_families

router = APIRouter(tags=["monitoring"], dependencies=[ReadAccess])


@router.get(
    "/metrics",
    response_class=Response,
    responses=text_responses("text/plain", "Prometheus text exposition format 0.0.4", 401, 403),
)
async def prometheus(
    request: Request, pool: PoolDep, settings: SettingsDep, clock: ClockDep
) -> Response:
    """Requests by route template, method and status; latency histograms; and, read from
    the database at scrape time: rows written/skipped/retries per sink table and worker
    (`sink_status`), rejected ticks per reason over the last hour, and feed state.
    Answers even when the database is down (`sentinel_database_up 0`)."""
    sinks: list[Row] = []
    rejects: list[Row] = []
    feeds: list[Row] = []
    up = True
    try:
        async with pool.connection(timeout=min(2.0, settings.api_db_timeout_s)) as conn:
            sinks = await sink_status(conn)
            rejects = await rejects_by_reason(conn, clock() - timedelta(hours=1))
            feeds = await feed_status(conn)
    except (psycopg.Error, PoolTimeout, PoolClosed):
        up = False
    body = exposition(
        request.app.state.request_metrics, pipeline_families(up, sinks, rejects, feeds)
    )
    return Response(body, media_type=CONTENT_TYPE)
