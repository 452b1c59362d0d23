"""``GET /metrics``: Prometheus text format (API requests and pipeline counters)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from fastapi import APIRouter, Request, Response
from psycopg_pool import PoolClosed, PoolTimeout

from api import db
from api.deps import ClockDep, PoolDep, ReadAccess, SettingsDep
from api.errors import responses
from api.telemetry import CONTENT_TYPE, exposition, pipeline_families

router = APIRouter(prefix="/metrics", tags=["monitoring"], dependencies=[ReadAccess])


@router.get(
    "",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format 0.0.4",
        },
        **responses(401, 403),
    },
)
async def prometheus(
    request: Request, pool: PoolDep, settings: SettingsDep, clock: ClockDep
) -> Response:
    """Requests by route template, method and status; latency histograms; and, read from
    the database at scrape time: rows written/skipped/retries per sink table and worker
    (`sink_status`), rejected ticks per reason over the last hour, and feed state.
    Answers even when the database is down (`sentinel_database_up 0`)."""
    sinks: list[db.Row] = []
    rejects: list[db.Row] = []
    feeds: list[db.Row] = []
    up = True
    try:
        async with pool.connection(timeout=min(2.0, settings.api_db_timeout_s)) as conn:
            sinks = await db.sink_status(conn)
            rejects = await db.rejects_by_reason(conn, clock() - timedelta(hours=1))
            feeds = await db.feeds(conn)
    except (psycopg.Error, PoolTimeout, PoolClosed):
        up = False
    body = exposition(
        request.app.state.request_metrics, pipeline_families(up, sinks, rejects, feeds)
    )
    return Response(body, media_type=CONTENT_TYPE)
