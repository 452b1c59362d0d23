"""Scratch databases and raw table operations, for the benchmark."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from timescale.migrate import migrate

__all__ = ["copy_ticks_again", "scratch_database", "table_counts"]


@contextlib.contextmanager
def scratch_database(dsn: str, name: str = "sentinel_bench") -> Iterator[str]:
    """A freshly migrated database beside ``dsn``'s, dropped afterwards."""
    admin = make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    bench = make_conninfo(dsn, dbname=name)
    try:
        migrate(bench, echo=lambda _: None)
        yield bench
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def table_counts(dsn: str, tables: Iterable[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        counts = {}
        for table in tables:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            row = conn.execute(query).fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts


def copy_ticks_again(dsn: str) -> tuple[int, float]:
    """Read every tick, empty the table, and time one raw binary COPY of them back into
    it: the physical limit the pipeline is measured against. Returns (rows, seconds)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT time, symbol, price, size, seq FROM ticks").fetchall()
        conn.execute("TRUNCATE ticks")
        conn.commit()
        started = time.perf_counter()
        copy_sql = "COPY ticks (time, symbol, price, size, seq) FROM STDIN (FORMAT BINARY)"
        with conn.cursor().copy(copy_sql) as copy:
            copy.set_types(["timestamptz", "text", "float8", "float8", "int8"])
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return len(rows), time.perf_counter() - started
