"""The pipeline's state, for ``/health`` and Prometheus: the server, the feeds
(``feed_status``), each ticker's newest tick and bar, the sinks (``sink_status``) and
the rejected ticks (``ticks_rejected``)."""

from __future__ import annotations

from datetime import datetime

from api.queries.base import Conn, Row, fetch, fetch_one


async def server_info(conn: Conn) -> Row:
    row = await fetch_one(
        conn,
        """SELECT current_setting('server_version') AS server_version,
                  (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')
                      AS timescaledb_version,
                  current_setting('timescaledb.license', true) AS timescaledb_license""",
    )
    assert row is not None
    return row


async def feed_status(conn: Conn) -> list[Row]:
    return await fetch(
        conn,
        """SELECT source, url, connected, subscribed, last_message_at, reconnects,
                  silent_reconnects, backfilled_trades, last_backfill_at, last_backfill,
                  last_error, updated_at FROM feed_status ORDER BY source""",
    )


async def symbol_progress(conn: Conn) -> list[Row]:
    """Per ticker: the newest tick and bar, from the latest tables (no hypertable)."""
    return await fetch(
        conn,
        """SELECT t.symbol, t.active, lt.time AS last_tick, lb.time AS last_bar,
                  lb.bar_seconds
           FROM tickers t
           LEFT JOIN ticks_latest lt ON lt.symbol = t.symbol
           LEFT JOIN bars_latest lb ON lb.symbol = t.symbol
           ORDER BY t.symbol""",
    )


async def sink_status(conn: Conn) -> list[Row]:
    return await fetch(
        conn,
        """SELECT table_name, worker, rows_written, rows_skipped, rows_failed, retries,
                  updated_at
           FROM sink_status ORDER BY table_name, worker""",
    )


async def rejects_by_reason(conn: Conn, since: datetime) -> list[Row]:
    return await fetch(
        conn,
        """SELECT reason, count(*) AS n FROM ticks_rejected WHERE received_at >= %s
           GROUP BY reason ORDER BY reason""",
        [since],
    )
