"""Every panel, annotation, variable and alert query, expanded as Grafana expands it, runs
on a database filled by a real simulated run, as Grafana's read-only role, and returns
rows with the columns its panel or rule needs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import yaml

from grafana import build
from grafana.alerts import RULES, RuleSpec
from grafana.macros import expand
from tests.grafana.conftest import FilledDb

NUMERIC = {"int2", "int4", "int8", "float4", "float8", "numeric"}
TEXT = {"text", "varchar", "name", "bpchar"}
DASHBOARD_RANGE = timedelta(hours=1)
INTERVAL_S = 5.0  # what Grafana picks for an hour on a wide panel, given timeInterval 5s
SYMBOL_INTERVAL = "1m"


@dataclass(frozen=True)
class Target:
    ref_id: str
    sql: str
    fmt: str


@dataclass(frozen=True)
class Panel:
    """One panel (or annotation) of a dashboard, with what it expects of its queries."""

    where: str
    targets: tuple[Target, ...]
    multi_symbol: bool
    needs: frozenset[str] = frozenset()  # columns the panel refers to by name


def _dashboards() -> dict[str, dict[str, Any]]:
    rendered = build.render()
    return {path: json.loads(text) for path, text in rendered.items() if path.endswith(".json")}


def _multi(board: dict[str, Any]) -> bool:
    return any(v["name"] == "symbol" and v.get("multi") for v in _variables(board))


def _variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = board["templating"].get("list", [])
    return found


def _panels() -> Iterator[Panel]:
    for path, board in _dashboards().items():
        multi = _multi(board)
        for panel in board["panels"]:
            needs = {
                o["matcher"]["options"]
                for o in panel["fieldConfig"]["overrides"]
                if o["matcher"]["id"] == "byName"
            }
            if panel["type"] == "candlestick":
                needs |= set(panel["options"]["fields"].values())
            targets = tuple(Target(t["refId"], t["rawSql"], t["format"]) for t in panel["targets"])
            yield Panel(f"{path} / {panel['title']}", targets, multi, frozenset(needs))
        for annotation in board["annotations"].get("list", []):
            target = annotation["target"]
            yield Panel(f"{path} / annotation {annotation['name']}",
                        (Target(target["refId"], target["rawSql"], "table"),), multi,
                        frozenset({"time", "text", "tags"}))  # fmt: skip


PANELS = list(_panels())
PANEL_SQL = [t.sql for p in PANELS for t in p.targets]
VARIABLE_QUERIES = [
    (f"{path} / ${v['name']}", v["query"])
    for path, board in _dashboards().items()
    for v in _variables(board)
    if v["type"] == "query"
]


def _run(dsn: str, sql: str) -> tuple[list[str], list[str], list[tuple[Any, ...]]]:
    """Run as Grafana does: the read-only role, in a read-only transaction."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET ROLE sentinel_grafana")
        conn.execute("SET TRANSACTION READ ONLY")
        cur = conn.execute(sql)
        assert cur.description is not None
        names = [c.name for c in cur.description]
        types = [_type_name(conn, c.type_code) for c in cur.description]
        return names, types, cur.fetchall()


def _type_name(conn: psycopg.Connection[Any], oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info else str(oid)


def _expand_panel(panel: Panel, sql: str, filled: FilledDb) -> str:
    """As the dashboard shows it over the last hour, just after the run."""
    symbol: str | list[str] = list(filled.symbols) if panel.multi_symbol else filled.symbols[0]
    return expand(
        sql,
        time_from=filled.ready - DASHBOARD_RANGE,
        time_to=filled.ready,
        interval_s=INTERVAL_S,
        variables={"symbol": symbol, "interval": SYMBOL_INTERVAL},
    )


def test_every_panel_and_alert_query_filters_on_the_time_range() -> None:
    sqls = PANEL_SQL + [spec().sql for spec in RULES]
    missing = [s for s in sqls if "$__timeFilter(" not in s]
    assert not missing


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p.where)
def test_panel_queries_return_what_the_panel_needs(panel: Panel, filled_db: FilledDb) -> None:
    columns: set[str] = set()
    for target in panel.targets:
        sql = _expand_panel(panel, target.sql, filled_db)
        assert "$" not in sql, "every macro and variable is expanded"
        names, types, rows = _run(filled_db.dsn, sql)
        assert rows, f"{target.ref_id}: no rows"
        if target.fmt == "time_series":
            _check_time_series(names, types, rows)
        columns.update(names)
    assert panel.needs <= columns, "the panel refers to columns no query returns"


def _check_time_series(names: list[str], types: list[str], rows: list[tuple[Any, ...]]) -> None:
    assert "time" in names
    assert types[names.index("time")] == "timestamptz"
    times = [row[names.index("time")] for row in rows]
    assert times == sorted(times), "Grafana refuses long series not sorted by time"
    values = [t for n, t in zip(names, types, strict=True) if n != "time"]
    assert any(t in NUMERIC for t in values), "at least one numeric value column"
    assert all(t in NUMERIC | TEXT for t in values), f"value columns must be numbers: {values}"
    numeric_cols = [i for i, t in enumerate(types) if t in NUMERIC]
    assert any(row[i] is not None for row in rows for i in numeric_cols)


@pytest.mark.parametrize(("where", "sql"), VARIABLE_QUERIES, ids=[w for w, _ in VARIABLE_QUERIES])
def test_variable_query_lists_the_active_tickers(where: str, sql: str, filled_db: FilledDb) -> None:
    names, _, rows = _run(filled_db.dsn, sql)
    assert len(names) == 1
    assert [r[0] for r in rows] == sorted(filled_db.symbols)


def test_tickers_table_holds_every_active_ticker_with_its_figures(filled_db: FilledDb) -> None:
    (panel,) = [p for p in PANELS if p.where.endswith("/ Tickers")]
    names, _, rows = _run(filled_db.dsn, _expand_panel(panel, panel.targets[0].sql, filled_db))
    table = {row[0]: dict(zip(names, row, strict=True)) for row in rows}
    assert set(table) == set(filled_db.symbols)
    for figures in table.values():
        assert all(figures[c] is not None for c in names), figures
        assert 0 < figures["forecast_vol"] < 50  # annualized; finite and positive
        assert 0 < figures["realized_vol"] < 50
    assert table["AAPL"]["alerts"] >= 1  # the injected spike


# -- alert rules --------------------------------------------------------------------------


def _rules_file() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(build.render()["alerting/rules.yaml"])
    return doc


def _rule_queries() -> list[tuple[str, str, int, float]]:
    out = []
    for group in _rules_file()["groups"]:
        for rule in group["rules"]:
            (a,) = [q for q in rule["data"] if q["refId"] == "A"]
            (c,) = [q for q in rule["data"] if q["refId"] == "C"]
            threshold = c["model"]["conditions"][0]["evaluator"]["params"][0]
            out.append((rule["uid"], a["model"]["rawSql"], a["relativeTimeRange"]["from"],
                        threshold))  # fmt: skip
    return out


RULE_QUERIES = _rule_queries()


def _evaluate(dsn: str, sql: str, window_s: int, now: datetime) -> dict[tuple[str, ...], float]:
    """Run a rule's query A; its instances (label values) and their values."""
    expanded = expand(sql, time_from=now - timedelta(seconds=window_s), time_to=now,
                      interval_s=1.0)  # fmt: skip
    assert "$" not in expanded
    _, types, rows = _run(dsn, expanded)
    numeric = [i for i, t in enumerate(types) if t in NUMERIC]
    assert len(numeric) == 1, "one numeric column: the value"
    assert all(t in TEXT for i, t in enumerate(types) if i not in numeric), "labels are text"
    instances = {}
    for row in rows:
        labels = tuple(str(v) for i, v in enumerate(row) if i != numeric[0])
        assert labels not in instances, "Grafana refuses duplicate label sets"
        value = row[numeric[0]]
        instances[labels] = float(value) if isinstance(value, int | float | Decimal) else value
    return instances


@pytest.mark.parametrize(("uid", "sql", "window_s", "threshold"), RULE_QUERIES,
                         ids=[r[0] for r in RULE_QUERIES])  # fmt: skip
def test_alert_query_returns_one_value_per_instance(
    uid: str, sql: str, window_s: int, threshold: float, filled_db: FilledDb
) -> None:
    instances = _evaluate(filled_db.dsn, sql, window_s, filled_db.now)
    assert instances, f"{uid}: no rows"


def test_volatility_spike_rule_fires_for_symbols_with_a_recent_spike(filled_db: FilledDb) -> None:
    spec = _spec("sentinel-volatility-spike")
    spikes = _spike_alerts(filled_db.dsn)
    assert "AAPL" in {symbol for _, symbol in spikes}, "the injected spike raised an alert"
    window = timedelta(seconds=spec.window_s)
    for at in sorted({t + timedelta(minutes=1) for t, _ in spikes} | {filled_db.now}):
        instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, at)
        firing = {labels[0] for labels, v in instances.items() if v > spec.threshold}
        assert firing == {s for t, s in spikes if at - window <= t <= at}, at


def test_realized_over_forecast_is_a_ratio_per_active_symbol(filled_db: FilledDb) -> None:
    spec = _spec("sentinel-volatility-above-forecast")
    instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, filled_db.now)
    assert set(instances) == {(s,) for s in filled_db.symbols}
    for value in instances.values():
        assert 0.2 < value < 10


def test_stale_feed_rule_sees_a_silent_ticker(filled_db: FilledDb) -> None:
    spec = _spec("sentinel-stale-feed")
    # Five minutes after the run, every ticker has been silent for the whole window: the
    # value is the window (during market hours) or 0 (closed), never below the threshold
    # while open.
    later = filled_db.now + timedelta(minutes=5)
    instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, later)
    assert set(instances) == {(s,) for s in filled_db.symbols}
    assert {v for v in instances.values()} <= {0.0, float(spec.window_s)}
    fresh = _evaluate(filled_db.dsn, spec.sql, spec.window_s, filled_db.now)
    assert all(v <= spec.threshold for v in fresh.values())


@pytest.mark.parametrize(
    ("at", "open_"),
    [
        ("2025-06-11T13:31:00+00:00", True),  # Wednesday 09:31 New York (EDT)
        ("2025-06-11T19:59:00+00:00", True),  # 15:59
        ("2025-06-11T20:01:00+00:00", False),  # 16:01, closed
        ("2025-01-15T14:31:00+00:00", True),  # winter (EST): 09:31
        ("2025-01-15T14:29:00+00:00", False),  # 09:29, not yet open
        ("2025-06-14T15:00:00+00:00", False),  # Saturday
    ],
)
def test_stale_feed_rule_only_counts_during_the_session(
    at: str, open_: bool, filled_db: FilledDb
) -> None:
    spec = _spec("sentinel-stale-feed")
    instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, datetime.fromisoformat(at))
    # No trades then: silent for the whole window while the market is open.
    assert set(instances.values()) == {float(spec.window_s) if open_ else 0.0}


def test_rejects_rule_compares_the_last_minutes_with_the_hour(filled_db: FilledDb) -> None:
    spec = _spec("sentinel-rejects-rising")
    instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, filled_db.now)
    # 4 rejects in each of the last 4 minutes, 12 in the 55 before (floored at 1/min).
    assert instances[("finnhub",)] == pytest.approx((4 * 4 + 1) / 5 / 1.0)


def _spec(uid: str) -> RuleSpec:
    (spec,) = [s for s in (f() for f in RULES) if s.uid == uid]
    return spec


def _spike_alerts(dsn: str) -> list[tuple[datetime, str]]:
    with psycopg.connect(dsn) as conn:
        return [
            (t, s)
            for t, s in conn.execute(
                "SELECT time, symbol FROM alerts WHERE kind = 'volatility_spike'"
            ).fetchall()
        ]


# -- raw ticks: only ever a few minutes ----------------------------------------------------

TICKS = re.compile(r"\bticks\b(?!_)")


def _ticks_queries(filled: FilledDb) -> list[tuple[str, str]]:
    day = timedelta(days=1)
    out = [(p.where, expand(q.sql, time_from=filled.now - day, time_to=filled.now, interval_s=60,
                            variables={"symbol": list(filled.symbols), "interval": "1h"}))
           for p in PANELS for q in p.targets if TICKS.search(q.sql)]  # fmt: skip
    out += [(uid, expand(sql, time_from=filled.now - timedelta(seconds=w), time_to=filled.now,
                         interval_s=1))
            for uid, sql, w, _ in RULE_QUERIES if TICKS.search(sql)]  # fmt: skip
    return out


def test_queries_on_raw_ticks_read_only_the_last_minutes(filled_db: FilledDb) -> None:
    """EXPLAIN ANALYZE over a whole day: the rows read from `ticks` chunks are at most
    those of the last five minutes, and no chunk is scanned sequentially."""
    queries = _ticks_queries(filled_db)
    assert len(queries) >= 2
    with psycopg.connect(filled_db.dsn) as conn:
        chunks = {r[0] for r in conn.execute(
            "SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name = 'ticks'"
        )}  # fmt: skip
        row = conn.execute(
            "SELECT count(*) FROM ticks WHERE time > %s", [filled_db.now - timedelta(minutes=5)]
        ).fetchone()
        assert row is not None
        recent = row[0]
        for where, sql in queries:
            (plan,) = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()  # type: ignore[misc]
            scans = [n for n in _nodes(plan[0]["Plan"]) if n.get("Relation Name") in chunks]
            assert scans, where
            read = sum(n["Actual Rows"] * n["Actual Loops"] for n in scans)
            assert read <= recent, f"{where}: read {read} ticks, more than the last 5 minutes"
            assert all(n["Node Type"] != "Seq Scan" for n in scans), where


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)
