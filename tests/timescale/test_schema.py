"""The schema contract of DESIGN.md, checked on the real embedded TimescaleDB."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from timescale.embedded import MAX_LOCKS, EmbeddedPostgres
from timescale.migrate import GRAFANA_ROLE, load_migrations, migrate

HYPERTABLES = {
    "ticks": "time",
    "ticks_rejected": "received_at",
    "bars": "time",
    "bar_metrics": "time",
    "forecasts": "time",
    "model_scores": "time",
    "model_checkpoints": "time",
    "alerts": "time",
    "session_events": "time",
}
PLAIN_TABLES = {
    "tickers",
    "schema_migrations",
    "feed_status",
    "sink_status",
    "alert_notifications",
    "daily_summary",
    "tick_archive",
}
CONTRACT_COLUMNS = {
    "tickers": {"symbol", "active", "added_at"},
    "ticks": {"time", "symbol", "price", "size", "seq"},
    "ticks_rejected": {"received_at", "source", "payload", "reason"},
    "bars": {"time", "symbol", "open", "high", "low", "close", "volume", "vwap", "trades"},
    "bar_metrics": {"time", "symbol", "log_return", "realized_vol", "ewma_vol", "sharpe"},
    "forecasts": {
        "time",
        "symbol",
        "model",
        "target",
        "horizon",
        "value",
        "lower",
        "upper",
        "made_at",
    },
    "model_scores": {"time", "symbol", "model", "target", "metric", "value"},
    "model_checkpoints": {"time", "symbol", "model", "version", "state", "metrics"},
    "alerts": {"time", "symbol", "kind", "severity", "value", "threshold", "message"},
}


def _snapshot(dsn: str) -> dict[str, object]:
    """Everything a migration could change: tables, columns, indexes, hypertables, rows."""
    with psycopg.connect(dsn) as conn:
        cols = conn.execute(
            """SELECT table_name, column_name, data_type, is_nullable
               FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"""
        ).fetchall()
        idx = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        hyper = conn.execute(
            """SELECT hypertable_name, num_dimensions FROM timescaledb_information.hypertables
               ORDER BY 1"""
        ).fetchall()
        migrations = conn.execute(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY 1"
        ).fetchall()
    return {"columns": cols, "indexes": idx, "hypertables": hyper, "migrations": migrations}


def test_every_contract_table_exists_with_its_columns(db: str) -> None:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            """SELECT table_name, column_name FROM information_schema.columns
               WHERE table_schema = 'public'"""
        ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    for table, expected in CONTRACT_COLUMNS.items():
        assert table in columns, f"missing table {table}"
        assert expected <= columns[table], f"{table} lacks {expected - columns[table]}"


def test_time_series_tables_are_hypertables_and_the_rest_are_not(db: str) -> None:
    with psycopg.connect(db) as conn:
        dims: dict[str, str] = dict(
            conn.execute(
                """SELECT hypertable_name, column_name FROM timescaledb_information.dimensions
                   WHERE hypertable_schema = 'public'"""
            ).fetchall()
        )
    assert dims == HYPERTABLES
    assert PLAIN_TABLES.isdisjoint(dims)


def test_bars_are_unique_per_symbol_and_start(db: str) -> None:
    row = ("2024-01-02T14:30:00Z", "AAPL", 1.0, 2.0, 0.5, 1.5, 10.0, 1.2, 3, 60)
    insert = "INSERT INTO bars VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    with psycopg.connect(db) as conn:
        conn.execute(insert, row)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, row)


def test_migrating_twice_changes_nothing(db: str) -> None:
    before = _snapshot(db)
    report = migrate(db, echo=lambda _: None)
    assert report.applied == []
    assert _snapshot(db) == before


def test_migrations_apply_in_order_from_empty_and_record_each(fresh_db: str) -> None:
    lines: list[str] = []
    report = migrate(fresh_db, echo=lines.append)
    expected = [f"{m.version:04d}_{m.name}" for m in load_migrations()]
    assert sorted(report.applied + report.skipped) == expected
    with psycopg.connect(fresh_db) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    recorded = [f"{v:04d}_{n}" for v, n in rows]
    assert recorded == report.applied
    # The Apache-only build skips the community-license migration and says so.
    if report.license == "apache":
        assert report.skipped == ["0004_community_policies", "0009_ticks_retention_by_archive"]
        assert any(
            "skipped 0004_community_policies" in line and "license" in line for line in lines
        )


def test_grafana_role_can_select_but_not_write(db: str) -> None:
    as_grafana = make_conninfo(db, user=GRAFANA_ROLE)
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO tickers (symbol) VALUES ('AAPL')")
    with psycopg.connect(as_grafana) as conn:
        assert conn.execute("SELECT symbol FROM tickers").fetchall() == [("AAPL",)]
        for table in HYPERTABLES:
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        conn.rollback()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO tickers (symbol) VALUES ('MSFT')")
        conn.rollback()
        # Even with read-only sessions switched off, the role holds no write privilege.
        conn.execute("SET default_transaction_read_only = off")
        conn.commit()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO tickers (symbol) VALUES ('MSFT')")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM bars")


def test_migrate_sets_the_grafana_password(db: str) -> None:
    migrate(db, grafana_password="s3cret-for-tests", echo=lambda _: None)
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s", [GRAFANA_ROLE]
        ).fetchone()
    assert row == (True,)


# --- The embedded server's settings ----------------------------------------------------


@pytest.mark.skipif("DATABASE_URL" in os.environ, reason="an external server has its own")
def test_the_embedded_server_runs_without_jit_and_with_room_for_chunk_locks(db: str) -> None:
    with psycopg.connect(db) as conn:
        settings: dict[str, str] = dict(
            conn.execute(
                """SELECT name, setting FROM pg_settings
                   WHERE name IN ('jit', 'max_locks_per_transaction')"""
            ).fetchall()
        )
    assert settings == {"jit": "off", "max_locks_per_transaction": str(MAX_LOCKS)}


def test_a_cluster_made_before_the_settings_file_gets_it(tmp_path: Path) -> None:
    """initdb's postgresql.conf (with an older version's settings appended) gains one
    include line, once; the settings file is rewritten only when it differs."""
    server = EmbeddedPostgres(tmp_path / "home")
    server.data_dir.mkdir(parents=True)
    conf = server.data_dir / "postgresql.conf"
    conf.write_text("#port = 5432\n\n# --- written by Stock Sentinel ---\nshared_buffers = 256MB\n")
    ours = server.data_dir / "sentinel.conf"
    ours.write_text("jit = on\n")
    assert server._configure()
    assert not server._configure()
    assert conf.read_text().count("include_if_exists = 'sentinel.conf'") == 1
    assert conf.read_text().endswith("include_if_exists = 'sentinel.conf'\n")  # wins: last
    assert "\njit = off\n" in ours.read_text()
    assert "jit = on" not in ours.read_text()
