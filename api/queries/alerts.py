"""``alerts``: the pipeline's alerts, newest first."""

from __future__ import annotations

from datetime import datetime

from psycopg import sql

from api.queries.base import Conn, Row, and_all, column_list, fetch, time_bounds, where_equal

ALERT_COLUMNS = ("time", "symbol", "kind", "severity", "value", "threshold", "message")
_NEWEST_FIRST = "SELECT {} FROM alerts WHERE {} ORDER BY time DESC, symbol, kind LIMIT %(limit)s"


async def alert_rows(
    conn: Conn,
    *,
    symbol: str | None,
    kind: str | None,
    severity: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[Row]:
    where, params = where_equal({"symbol": symbol, "kind": kind, "severity": severity})
    bounds, bound_params = time_bounds("time", since, until)
    query = sql.SQL(_NEWEST_FIRST).format(column_list(ALERT_COLUMNS), and_all([where, *bounds]))
    return await fetch(conn, query, params | bound_params | {"limit": limit})
