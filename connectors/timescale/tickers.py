"""The ``tickers`` table: followed by the live feed, seeded on first start.

:class:`TickerFollower` re-reads the active symbols on every ``NOTIFY sentinel_tickers``
(the table's trigger sends one on each change) and at least every ``poll_interval_s``,
and on the same connection publishes the feed's health to ``feed_status``. While the
database is unreachable it keeps what it last read and retries: the feed goes on with
its current subscriptions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NamedTuple

import psycopg

from dataflows.records import US

__all__ = ["TICKERS_CHANNEL", "FeedStatus", "TickerFollower", "calendar_lookup", "seed_tickers"]

log = logging.getLogger(__name__)

TICKERS_CHANNEL = "sentinel_tickers"


class FeedStatus(NamedTuple):
    """One ``feed_status`` row, as the feed sees itself."""

    source: str
    url: str
    connected: bool
    subscribed: list[str]
    last_message_us: int | None
    last_trade_us: int | None
    reconnects: int
    last_error: str | None
    silent_reconnects: int = 0
    backfilled_trades: int = 0
    last_backfill_us: int | None = None
    last_backfill: str | None = None


class TickerFollower:
    def __init__(self, dsn: str, *, poll_interval_s: float = 2.0) -> None:
        self.dsn = dsn
        self.poll_interval_s = poll_interval_s

    async def run(
        self, on_symbols: Callable[[frozenset[str]], None], status: Callable[[], FeedStatus]
    ) -> None:
        """Call ``on_symbols`` with the active symbols whenever they may have changed, and
        publish ``status()`` as often; until cancelled."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(f"LISTEN {TICKERS_CHANNEL}")
                    log.info("following the tickers table")
                    while True:
                        cur = await conn.execute("SELECT symbol FROM tickers WHERE active")
                        on_symbols(frozenset(row[0] for row in await cur.fetchall()))
                        await publish_feed_status(conn, status())
                        async for _ in conn.notifies(timeout=self.poll_interval_s, stop_after=1):
                            pass
            except Exception as exc:  # whatever went wrong, keep the feed going
                log.warning(
                    "tickers table unavailable (%s: %s); keeping the subscriptions, "
                    "retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    self.poll_interval_s,
                )
                await asyncio.sleep(self.poll_interval_s)


async def publish_feed_status(conn: psycopg.AsyncConnection[Any], st: FeedStatus) -> None:
    """Upsert the feed's state into ``feed_status`` (for /health and Grafana).

    Best effort: a failure here must never disturb following the tickers."""
    params = {
        **st._asdict(),
        "last_message_at": _time(st.last_message_us),
        "last_trade_at": _time(st.last_trade_us),
        "last_backfill_at": _time(st.last_backfill_us),
    }
    try:
        async with conn.transaction():
            await conn.execute(
                """INSERT INTO feed_status (source, url, connected, subscribed,
                       last_message_at, last_trade_at, reconnects, last_error,
                       silent_reconnects, backfilled_trades, last_backfill_at,
                       last_backfill, updated_at)
                   VALUES (%(source)s, %(url)s, %(connected)s, %(subscribed)s,
                       %(last_message_at)s, %(last_trade_at)s, %(reconnects)s,
                       %(last_error)s, %(silent_reconnects)s, %(backfilled_trades)s,
                       %(last_backfill_at)s, %(last_backfill)s, now())
                   ON CONFLICT (source) DO UPDATE SET url = EXCLUDED.url,
                       connected = EXCLUDED.connected, subscribed = EXCLUDED.subscribed,
                       last_message_at = EXCLUDED.last_message_at,
                       last_trade_at = EXCLUDED.last_trade_at,
                       reconnects = EXCLUDED.reconnects, last_error = EXCLUDED.last_error,
                       silent_reconnects = EXCLUDED.silent_reconnects,
                       backfilled_trades = EXCLUDED.backfilled_trades,
                       last_backfill_at = EXCLUDED.last_backfill_at,
                       last_backfill = EXCLUDED.last_backfill,
                       updated_at = now()""",
                params,
            )
    except psycopg.Error as exc:
        log.debug("could not record the feed status: %s", exc)


def _time(us: int | None) -> datetime | None:
    return datetime.fromtimestamp(us / US, tz=timezone.utc) if us else None


def seed_tickers(dsn: str, symbols: list[str], calendar: str = "XNYS") -> int:
    """Put ``symbols`` (on ``calendar``) in an empty `tickers` table; returns how many
    were added."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM tickers").fetchone()
        if row and row[0]:
            return 0
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO tickers (symbol, calendar) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(s, calendar) for s in symbols],
            )
        return len(symbols)


def calendar_lookup(dsn: str) -> Callable[[str], str | None]:
    """A symbol's calendar as the `tickers` table says (``None``: not there). For
    :class:`~dataflows.config.SessionConfig`, which keeps the answers a while; a
    database error propagates (the caller keeps what it knew)."""

    def lookup(symbol: str) -> str | None:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT calendar FROM tickers WHERE symbol = %s", (symbol,))
            found = row.fetchone()
        return str(found[0]) if found else None

    return lookup
