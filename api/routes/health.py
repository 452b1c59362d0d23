"""``GET /health``: the database, the feed and how far behind the pipeline is."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter

from api.deps import ClockDep, ConnDep, HubDep
from api.errors import responses
from api.queries.base import Row
from api.queries.status import feed_status, server_info, symbol_progress
from api.schemas import DatabaseHealth, FeedHealth, HealthOut, SymbolHealth

router = APIRouter(prefix="/health", tags=["health"])


def _lag(now: datetime, t: datetime | None) -> float | None:
    return (now - t).total_seconds() if t is not None else None


def _symbol_health(row: Row, now: datetime) -> SymbolHealth:
    last_bar = row["last_bar"]
    bar_end = last_bar + timedelta(seconds=row["bar_seconds"]) if last_bar else None
    return SymbolHealth(
        symbol=row["symbol"],
        active=row["active"],
        last_tick=row["last_tick"],
        last_bar=last_bar,
        last_bar_end=bar_end,
        tick_lag_s=_lag(now, row["last_tick"]),
        bar_lag_s=_lag(now, bar_end),
    )


@router.get("", response_model=HealthOut, responses=responses(503))
async def health(conn: ConnDep, clock: ClockDep, hub: HubDep) -> HealthOut:
    """Database reachable (else 503), TimescaleDB version and license, each feed's state
    (`feed_status`), and per ticker the newest tick and bar with their lag behind the
    server's clock. `dataflow_lag_s` is now minus the end of the newest bar of any ticker."""
    info = await server_info(conn)
    feeds = [FeedHealth(**f) for f in await feed_status(conn)]
    now = clock()
    symbols = [_symbol_health(row, now) for row in await symbol_progress(conn)]
    bar_ends = [s.last_bar_end for s in symbols if s.last_bar_end is not None]
    ticks = [s.last_tick for s in symbols if s.last_tick is not None]
    connected = all(f.connected for f in feeds) if feeds else None
    return HealthOut(
        status="degraded" if connected is False else "ok",
        time=now,
        database=DatabaseHealth(reachable=True, **info),
        feeds=feeds,
        feed_connected=connected,
        symbols=symbols,
        dataflow_lag_s=_lag(now, max(bar_ends)) if bar_ends else None,
        tick_lag_s=_lag(now, max(ticks)) if ticks else None,
        stream_listening=hub.connected.is_set(),
    )
