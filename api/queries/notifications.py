"""``alert_notifications``: what Grafana's webhook posted (rows made by
:mod:`api.notifications`), stored and listed newest first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from psycopg import sql

from api.notifications import NotificationRow
from api.queries.base import (
    Conn,
    Row,
    and_all,
    column_list,
    fetch,
    fetch_one,
    time_bounds,
    where_equal,
)

NOTIFICATION_COLUMNS = ("id", "received_at", "status", "rule_uid", "title", "message", "payload")
_INSERT = """INSERT INTO alert_notifications (status, rule_uid, title, message, payload)
             VALUES (%s, %s, %s, %s, %s::jsonb) RETURNING id"""
_NEWEST_FIRST = """SELECT {} FROM alert_notifications WHERE {}
                   ORDER BY received_at DESC, id DESC LIMIT %(limit)s"""


async def store_notifications(conn: Conn, rows: Sequence[NotificationRow]) -> list[int]:
    """Every row or none (one transaction); their ids."""
    ids = []
    async with conn.transaction():
        for row in rows:
            params = [row.status, row.rule_uid, row.title, row.message, json.dumps(row.payload)]
            got = await fetch_one(conn, _INSERT, params)
            assert got is not None
            ids.append(int(got["id"]))
    return ids


async def received_notifications(
    conn: Conn, *, status: str | None, since: datetime | None, limit: int
) -> list[Row]:
    where, params = where_equal({"status": status})
    bounds, bound_params = time_bounds("received_at", since, None)
    query = sql.SQL(_NEWEST_FIRST).format(
        column_list(NOTIFICATION_COLUMNS), and_all([where, *bounds])
    )
    return await fetch(conn, query, params | bound_params | {"limit": limit})
