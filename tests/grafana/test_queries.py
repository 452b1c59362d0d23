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
from typing import Any, NamedTuple

import exchange_calendars as xcals
import pandas as pd
import psycopg
import pytest
import yaml

from grafana import build
from grafana.alerts import PIPELINE_DATAFLOW_DOWN, PIPELINE_FEED_DOWN, RULES, RuleSpec
from grafana.macros import VariableValue, expand, parse_interval
from tests.grafana.conftest import INACTIVE, RUN_S, STALE_LATE, FilledDb, last_close_before

NUMERIC = {"int2", "int4", "int8", "float4", "float8", "numeric"}
TEXT = {"text", "varchar", "name", "bpchar"}
DASHBOARD_RANGE = timedelta(hours=1)
INTERVAL_S = 5.0  # what Grafana picks for an hour on a wide panel, given timeInterval 5s
SYMBOL_INTERVAL = "1m"
ANNOTATION_COLUMNS = frozenset({"time", "text", "tags"})  # what Grafana reads of each row


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
    time_from: str | None = None  # the panel's own relative range ("30d"), if it has one


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
            where = f"{path} / {panel['title']}"
            yield Panel(where, targets, multi, frozenset(needs), panel.get("timeFrom"))
        for annotation in board["annotations"].get("list", []):
            target = annotation["target"]
            where = f"{path} / annotation {annotation['name']}"
            targets = (Target(target["refId"], target["rawSql"], "table"),)
            yield Panel(where, targets, multi, ANNOTATION_COLUMNS)


PANELS = list(_panels())
PANEL_SQL = [t.sql for p in PANELS for t in p.targets]
VARIABLE_QUERIES = [
    (f"{path} / ${v['name']}", v["query"])
    for path, board in _dashboards().items()
    for v in _variables(board)
    if v["type"] == "query"
]


Result = tuple[list[str], list[str], list[tuple[Any, ...]]]


def _run(dsn: str, sql: str) -> Result:
    """Run as Grafana does: the read-only role, in a read-only transaction."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET ROLE sentinel_grafana")
        conn.execute("SET TRANSACTION READ ONLY")
        return _fetch(conn, sql)


def _fetch(conn: psycopg.Connection[Any], sql: str) -> Result:
    cur = conn.execute(sql)
    assert cur.description is not None
    names = [c.name for c in cur.description]
    types = [_type_name(conn, c.type_code) for c in cur.description]
    return names, types, cur.fetchall()


def _type_name(conn: psycopg.Connection[Any], oid: int) -> str:
    info = conn.adapters.types.get(oid)
    return info.name if info else str(oid)


def _expand_panel(panel: Panel, sql: str, filled: FilledDb) -> str:
    """As the dashboard shows it over the last hour, just after the run (a panel with a
    relative time of its own, ``timeFrom``, over that instead, as Grafana does)."""
    symbol: str | list[str] = list(filled.symbols) if panel.multi_symbol else filled.symbols[0]
    span = DASHBOARD_RANGE
    if panel.time_from is not None:
        span = timedelta(seconds=parse_interval(panel.time_from))
    return expand(
        sql,
        time_from=filled.ready - span,
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


def test_daily_summary_table_shows_the_sessions_the_dataflow_summarized(
    filled_db: FilledDb,
) -> None:
    (panel,) = [p for p in PANELS if p.where.endswith("/ $symbol: daily summary")]
    assert panel.time_from == "30d"
    names, _, rows = _run(filled_db.dsn, _expand_panel(panel, panel.targets[0].sql, filled_db))
    table = [dict(zip(names, row, strict=True)) for row in rows]
    close = last_close_before(filled_db.now - timedelta(seconds=RUN_S))
    session = xcals.get_calendar("XNYS").minute_to_session(pd.Timestamp(close), "previous")
    with psycopg.connect(filled_db.dsn) as conn:
        stored = conn.execute(
            "SELECT session_date, open, close, trades FROM daily_summary WHERE symbol = %s",
            [filled_db.symbols[0]],
        ).fetchall()
    assert [(r["session"], r["close_time"]) for r in table] == [(str(session.date()), close)]
    ((_, open_, close_price, trades),) = stored
    (row,) = table
    assert (row["open"], row["close"], row["trades"]) == (open_, close_price, trades)
    assert row["day_return"] == pytest.approx(close_price / open_ - 1)
    assert trades > 0


# -- alert rules --------------------------------------------------------------------------


def _rules_file() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(build.render()["alerting/rules.yaml"])
    return doc


class RuleQuery(NamedTuple):
    """An alert rule as its provisioning file has it: query A, its window, C's threshold."""

    uid: str
    sql: str
    window_s: int
    threshold: float


def _rule_queries() -> list[RuleQuery]:
    out = []
    for group in _rules_file()["groups"]:
        for rule in group["rules"]:
            (a,) = [q for q in rule["data"] if q["refId"] == "A"]
            (c,) = [q for q in rule["data"] if q["refId"] == "C"]
            threshold = c["model"]["conditions"][0]["evaluator"]["params"][0]
            window_s = a["relativeTimeRange"]["from"]
            out.append(RuleQuery(rule["uid"], a["model"]["rawSql"], window_s, threshold))
    return out


RULE_QUERIES = _rule_queries()


def _expand_rule(sql: str, window_s: int, now: datetime) -> str:
    """As Grafana sends a rule's query A when it evaluates the rule at ``now``."""
    return expand(sql, time_from=now - timedelta(seconds=window_s), time_to=now, interval_s=1.0)


def _evaluate(dsn: str, sql: str, window_s: int, now: datetime) -> dict[tuple[str, ...], float]:
    """Run a rule's query A; its instances (label values) and their values."""
    expanded = _expand_rule(sql, window_s, now)
    assert "$" not in expanded
    return _instances(_run(dsn, expanded))


def _evaluate_changed(
    dsn: str, spec: RuleSpec, now: datetime, changes: tuple[str, ...], params: dict[str, Any]
) -> dict[tuple[str, ...], float]:
    """:func:`_evaluate`, after ``changes`` in a transaction rolled back afterwards: other
    tests never see them."""
    expanded = _expand_rule(spec.sql, spec.window_s, now)
    assert "$" not in expanded
    with psycopg.connect(dsn) as conn:
        for change in changes:
            conn.execute(change, params)
        conn.execute("SET LOCAL ROLE sentinel_grafana")
        result = _fetch(conn, expanded)
        conn.rollback()
    return _instances(result)


def _instances(result: Result) -> dict[tuple[str, ...], float]:
    _, types, rows = result
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


@pytest.mark.parametrize("rule", RULE_QUERIES, ids=lambda r: r.uid)
def test_alert_query_returns_one_value_per_instance(rule: RuleQuery, filled_db: FilledDb) -> None:
    instances = _evaluate(filled_db.dsn, rule.sql, rule.window_s, filled_db.now)
    assert instances, f"{rule.uid}: no rows"


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
    end = filled_db.now
    late_alert = _stale_alerts(filled_db.dsn)[STALE_LATE]
    assert late_alert == [end + timedelta(minutes=1)], "raised stale_after_s after subscribing"
    window = timedelta(seconds=spec.window_s)
    # Before, during and after the dataflow's alerts (MSFT, INTC at end - 9 min; NVDA at
    # end + 1 min), up to the moment NVDA's alert leaves the window. The rule never looks
    # at the clock: whenever the tests run, it fires as the dataflow (calendar "always") said.
    offsets = [-9.5, -8.5, -8, 0, 0.5, 1.5, 3, 16, 16.5]
    for at in [end + timedelta(minutes=m) for m in offsets]:
        instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, at)
        assert set(instances) == {(s,) for s in filled_db.symbols}, at
        firing = {labels[0]: v for labels, v in instances.items() if v > spec.threshold}
        assert firing == _still_stale(filled_db.dsn, at, window), at
    instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, end + timedelta(minutes=3))
    assert instances == {("AAPL",): 0.0, ("MSFT",): 0.0, (STALE_LATE,): 120.0}


def test_stale_feed_rule_ignores_a_ticker_that_traded_since_and_inactive_ones(
    filled_db: FilledDb,
) -> None:
    spec = _spec("sentinel-stale-feed")
    alerts = _stale_alerts(filled_db.dsn)
    (msft_alert,) = alerts["MSFT"]
    assert len(alerts[INACTIVE]) == 1, "the dataflow alerts for any subscribed symbol"
    msft_traded = _last_trade(filled_db.dsn, "MSFT", filled_db.now)
    assert msft_traded is not None
    assert msft_traded > msft_alert, "MSFT traded after its stale alert"
    assert _last_trade(filled_db.dsn, INACTIVE, filled_db.now) is None, "INTC never traded"
    for at in (msft_alert + timedelta(minutes=1), filled_db.now):
        instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, at)
        assert instances[("MSFT",)] == 0.0
        assert (INACTIVE,) not in instances
        assert all(v <= spec.threshold for v in instances.values())


def test_rejects_rule_compares_the_last_minutes_with_the_hour(filled_db: FilledDb) -> None:
    spec = _spec("sentinel-rejects-rising")
    instances = _evaluate(filled_db.dsn, spec.sql, spec.window_s, filled_db.now)
    # 4 rejects in each of the last 4 minutes, 12 in the 55 before (floored at 1/min).
    assert instances[("finnhub",)] == pytest.approx((4 * 4 + 1) / 5 / 1.0)


PIPELINE = "sentinel-pipeline-down"
# The live feed reporting itself (dis)connected, with a trade, just before %(at)s.
FEED_ALIVE = """UPDATE feed_status SET connected = %(connected)s,
    updated_at = %(at)s::timestamptz - interval '2 seconds',
    last_message_at = %(at)s::timestamptz - interval '1 second',
    last_trade_at = %(at)s::timestamptz - interval '1 second'"""
FEED_SILENT_SINCE = "UPDATE feed_status SET updated_at = %(at)s::timestamptz - %(ago)s"


def _pipeline(filled: FilledDb, at: datetime, *changes: str, **params: Any) -> float:
    """The pipeline-down rule's value at ``at``, after ``changes`` (rolled back)."""
    spec = _spec(PIPELINE)
    if changes:
        instances = _evaluate_changed(filled.dsn, spec, at, changes, {"at": at, **params})
    else:
        instances = _evaluate(filled.dsn, spec.sql, spec.window_s, at)
    assert set(instances) == {()}, "one instance, without labels"
    return instances[()]


def test_pipeline_down_rule_is_quiet_while_the_pipeline_runs(filled_db: FilledDb) -> None:
    # Just after the run: feed_status updated at its end, bars up to its last seconds.
    end = filled_db.now
    for at in (end, filled_db.ready, end + timedelta(seconds=59)):
        assert _pipeline(filled_db, at) == 0, at
    # The feed still reporting, the newest bars not yet 5 minutes old.
    at = end + timedelta(minutes=4)
    assert _pipeline(filled_db, at, FEED_ALIVE, connected=True) == 0


def test_pipeline_down_rule_fires_when_the_feed_stops_reporting(filled_db: FilledDb) -> None:
    spec = _spec(PIPELINE)
    at = filled_db.ready
    silent = _pipeline(filled_db, at, FEED_SILENT_SINCE, ago=timedelta(seconds=61))
    assert silent == PIPELINE_FEED_DOWN > spec.threshold
    assert _pipeline(filled_db, at, FEED_SILENT_SINCE, ago=timedelta(seconds=30)) == 0
    assert _pipeline(filled_db, at, "DELETE FROM feed_status") == PIPELINE_FEED_DOWN
    # Nothing has updated it since the run: two minutes after, the feed is down.
    assert _pipeline(filled_db, filled_db.now + timedelta(minutes=2)) == PIPELINE_FEED_DOWN


def test_pipeline_down_rule_fires_when_the_feed_runs_but_no_bars_come(
    filled_db: FilledDb,
) -> None:
    spec = _spec(PIPELINE)
    newest = "SELECT max(time) FROM bars WHERE symbol = ANY(%s)"
    with psycopg.connect(filled_db.dsn) as conn:
        row = conn.execute(newest, [list(filled_db.symbols)]).fetchone()
    assert row is not None
    assert filled_db.now - timedelta(seconds=30) <= row[0] <= filled_db.now
    at = filled_db.now + timedelta(minutes=10)
    stuck = _pipeline(filled_db, at, FEED_ALIVE, connected=True)
    assert stuck == PIPELINE_DATAFLOW_DOWN > spec.threshold
    at = row[0] + timedelta(minutes=5, seconds=1)
    assert _pipeline(filled_db, at, FEED_ALIVE, connected=True) == PIPELINE_DATAFLOW_DOWN
    # A disconnected feed explains the missing bars: the stale-feed rule's business.
    assert _pipeline(filled_db, at, FEED_ALIVE, connected=False) == 0
    # No active ticker: no bars are expected.
    deactivate = "UPDATE tickers SET active = false"
    assert _pipeline(filled_db, at, FEED_ALIVE, deactivate, connected=True) == 0


def _spec(uid: str) -> RuleSpec:
    (spec,) = [s for s in (f() for f in RULES) if s.uid == uid]
    return spec


def _stale_alerts(dsn: str) -> dict[str, list[datetime]]:
    """The dataflow's stale_feed alerts, by symbol, in time order."""
    out: dict[str, list[datetime]] = {}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT symbol, time FROM alerts WHERE kind = 'stale_feed' ORDER BY time"
        ).fetchall()
    for symbol, at in rows:
        out.setdefault(symbol, []).append(at)
    return out


def _last_trade(dsn: str, symbol: str, at: datetime) -> datetime | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT max(time) FROM ticks WHERE symbol = %s AND time <= %s", [symbol, at]
        ).fetchone()
    return row[0] if row else None


def _still_stale(dsn: str, at: datetime, window: timedelta) -> dict[str, float]:
    """What the rule means, worked out apart from its SQL: each active ticker whose latest
    stale_feed alert in the window has no trade after it, and the seconds since that alert."""
    with psycopg.connect(dsn) as conn:
        active = {r[0] for r in conn.execute("SELECT symbol FROM tickers WHERE active")}
    out = {}
    for symbol, times in _stale_alerts(dsn).items():
        recent = [t for t in times if at - window <= t <= at]
        if symbol not in active or not recent:
            continue
        last_trade = _last_trade(dsn, symbol, at)
        if last_trade is None or last_trade <= recent[-1]:
            out[symbol] = (at - recent[-1]).total_seconds()
    return out


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
TICKS_CHUNKS = """
SELECT chunk_name FROM timescaledb_information.chunks WHERE hypertable_name = 'ticks'
"""


def _over_a_day(sql: str, filled: FilledDb) -> str:
    """A panel's query as a dashboard showing the whole last day sends it."""
    variables: dict[str, VariableValue] = {"symbol": list(filled.symbols), "interval": "1h"}
    start = filled.now - timedelta(days=1)
    return expand(sql, time_from=start, time_to=filled.now, interval_s=60, variables=variables)


def _ticks_queries(filled: FilledDb) -> list[tuple[str, str]]:
    """Every query on raw ticks: the panels' over a day, the rules' over their window."""
    panels = [(p.where, t.sql) for p in PANELS for t in p.targets if TICKS.search(t.sql)]
    rules = [r for r in RULE_QUERIES if TICKS.search(r.sql)]
    out = [(where, _over_a_day(sql, filled)) for where, sql in panels]
    return out + [(r.uid, _expand_rule(r.sql, r.window_s, filled.now)) for r in rules]


def test_queries_on_raw_ticks_read_only_the_last_minutes(filled_db: FilledDb) -> None:
    """EXPLAIN ANALYZE over a whole day: the rows read from `ticks` chunks are at most
    those of the last five minutes, and no chunk is scanned sequentially."""
    queries = _ticks_queries(filled_db)
    assert len(queries) >= 2
    with psycopg.connect(filled_db.dsn) as conn:
        chunks = {r[0] for r in conn.execute(TICKS_CHUNKS)}
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
