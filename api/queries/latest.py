"""The newest row: of a symbol (one ordered index probe), and of each key of a symbol
(a loose index scan: a recursive CTE that hops from one key to the next through the
primary key, then one probe per key)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from api.queries.base import Conn, Row, column_list, fetch, fetch_one, where_equal

LATEST_LOOKBACK = timedelta(days=31)

_LOOSE_INDEX_SCAN = """WITH RECURSIVE k AS (
       (SELECT {keys} FROM {t} WHERE {where} ORDER BY {keys} LIMIT 1)
       UNION ALL
       SELECT n.* FROM k CROSS JOIN LATERAL (
           SELECT {keys} FROM {t} WHERE {where} AND {after} ORDER BY {keys} LIMIT 1
       ) n
   )
   SELECT r.* FROM k CROSS JOIN LATERAL (
       SELECT {cols} FROM {t} WHERE {where} AND {same} ORDER BY time DESC LIMIT 1
   ) r"""


async def newest_time(conn: Conn, table: str, symbol: str) -> datetime | None:
    query = sql.SQL("SELECT time FROM {} WHERE symbol = %s ORDER BY time DESC LIMIT 1").format(
        sql.Identifier(table)
    )
    row = await fetch_one(conn, query, [symbol])
    return row["time"] if row else None


async def latest_per_key(
    conn: Conn,
    table: str,
    keys: Sequence[str],
    columns: Sequence[str],
    filters: Mapping[str, Any],
) -> list[Row]:
    """The newest row (by ``time``) of each distinct ``keys`` value among the rows that
    match ``filters``; a loose index scan over a primary key ``(symbol, *keys, time)``.

    Each probe of a loose index scan visits every chunk of the hypertable, so the scan is
    confined to the ``LATEST_LOOKBACK`` before the symbol's newest row (found first by
    one ordered probe): a couple of chunks, however long the history. A key with no row
    in that window is no longer current and is left out."""
    newest = await newest_time(conn, table, filters["symbol"])
    if newest is None:
        return []
    given = {k: v for k, v in filters.items() if v is not None}
    query = _latest_per_key_sql(table, tuple(keys), tuple(columns), tuple(given))
    params = {f"f_{k}": v for k, v in given.items()}
    return await fetch(conn, query, params | {"since": newest - LATEST_LOOKBACK})


@functools.lru_cache(maxsize=256)
def _latest_per_key_sql(
    table: str, keys: tuple[str, ...], columns: tuple[str, ...], filter_names: tuple[str, ...]
) -> bytes:
    """Composed once per shape: the endpoints that use it are the hot ones."""
    where, _ = where_equal(dict.fromkeys(filter_names, True))
    same = sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Identifier("k", key)) for key in keys
    )
    query = sql.SQL(_LOOSE_INDEX_SCAN).format(
        keys=column_list(keys),
        t=sql.Identifier(table),
        where=sql.SQL("{} AND time >= %(since)s").format(where),
        after=sql.SQL("({}) > ({})").format(column_list(keys), column_list(keys, "k")),
        same=same,
        cols=column_list(columns),
    )
    return query.as_bytes(None)
