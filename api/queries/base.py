"""What every query module shares: the row and connection types, running a query, and
composing column lists and equality filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

Row = dict[str, Any]
Query = str | bytes | sql.SQL | sql.Composed
Conn = AsyncConnection[Any]


async def fetch(conn: Conn, query: Query, params: Any = None) -> list[Row]:
    """The rows of ``query``, as dicts. Results come in PostgreSQL's binary format: times
    and floats load several times faster than from text."""
    async with conn.cursor(row_factory=dict_row, binary=True) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def fetch_one(conn: Conn, query: Query, params: Any = None) -> Row | None:
    rows = await fetch(conn, query, params)
    return rows[0] if rows else None


def column_list(names: Sequence[str], prefix: str | None = None) -> sql.Composable:
    """``"a", "b"`` (or ``"p"."a", "p"."b"`` with a ``prefix``)."""
    if prefix:
        return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def where_equal(filters: Mapping[str, Any]) -> tuple[sql.Composable, dict[str, Any]]:
    """``col = %(f_col)s AND ...`` for the filters that are not None, and their params."""
    parts, params = [], {}
    for col, value in filters.items():
        if value is not None:
            parts.append(
                sql.SQL("{} = {}").format(sql.Identifier(col), sql.Placeholder(f"f_{col}"))
            )
            params[f"f_{col}"] = value
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE"), params


def and_all(parts: Sequence[sql.Composable]) -> sql.Composable:
    return sql.SQL(" AND ").join(parts)


def time_bounds(
    column: str,
    lower: datetime | None,
    upper: datetime | None,
    names: tuple[str, str] = ("since", "until"),
) -> tuple[list[sql.Composable], dict[str, Any]]:
    """``column >= lower`` and ``column < upper`` for the bounds that are given, with the
    params (under ``names``)."""
    parts: list[sql.Composable] = []
    if lower is not None:
        parts.append(sql.SQL("{} >= {}").format(sql.Identifier(column), sql.Placeholder(names[0])))
    if upper is not None:
        parts.append(sql.SQL("{} < {}").format(sql.Identifier(column), sql.Placeholder(names[1])))
    return parts, {names[0]: lower, names[1]: upper}
