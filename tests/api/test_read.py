"""Every read endpoint returns what the tables hold, checked by SQL (and by pandas for the
re-bucketed series), on a database filled by a simulated run of the real dataflow."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import make_conninfo

from online_models.config import RETURN_MODELS, VOLATILITY_MODELS
from tests.api.conftest import NOW, SIM_START, TestClient, client_for, query

START = SIM_START.isoformat()
END = (SIM_START + timedelta(hours=1)).isoformat()


def ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def as_rows(items: list[dict[str, Any]], time_keys: tuple[str, ...] = ("time",)) -> list[dict]:
    return [{k: ts(v) if k in time_keys else v for k, v in item.items()} for item in items]


def test_the_simulated_run_filled_every_table(filled_db: str) -> None:
    for table in (
        "bars",
        "bar_metrics",
        "forecasts",
        "model_scores",
        "model_checkpoints",
        "alerts",
    ):
        assert query(filled_db, f"SELECT count(*) AS n FROM {table}")[0]["n"] > 0, table


def test_bars_are_the_rows_of_the_table_in_the_range(client: TestClient, filled_db: str) -> None:
    r = client.get(
        "/bars/AAPL", params={"start": START, "end": END, "order": "asc", "limit": 10_000}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    want = query(
        filled_db,
        "SELECT time, open, high, low, close, volume, vwap, trades, "
        "bar_seconds, revision FROM bars WHERE symbol = 'AAPL' ORDER BY time",
    )
    assert (body["symbol"], body["interval_s"], body["order"]) == ("AAPL", None, "asc")
    assert body["count"] == len(want) > 300
    assert as_rows(body["bars"]) == want


def test_bars_default_to_the_newest_first_and_honour_limit(
    client: TestClient, filled_db: str
) -> None:
    body = client.get("/bars/msft", params={"limit": 7}).json()
    want = query(
        filled_db, "SELECT time FROM bars WHERE symbol = 'MSFT' ORDER BY time DESC LIMIT 7"
    )
    assert body["symbol"] == "MSFT", "symbols are case-insensitive"
    assert [ts(b["time"]) for b in body["bars"]] == [w["time"] for w in want]


def test_start_is_inclusive_and_end_exclusive(client: TestClient) -> None:
    t0 = SIM_START + timedelta(minutes=10)
    body = client.get(
        "/bars/AAPL",
        params={
            "start": t0.isoformat(),
            "order": "asc",
            "end": (t0 + timedelta(minutes=1)).isoformat(),
        },
    ).json()
    times = [ts(b["time"]) for b in body["bars"]]
    assert times[0] == t0
    assert times[-1] == t0 + timedelta(seconds=55)


def reference_bars(filled_db: str, rule: str) -> pd.DataFrame:
    """Stored bars re-aggregated by pandas: the independent reference."""
    raw = pd.DataFrame(query(filled_db, "SELECT * FROM bars WHERE symbol = 'AAPL'"))
    raw = raw.set_index("time").sort_index()
    raw["pv"] = raw["vwap"] * raw["volume"]
    g = raw.resample(rule)
    out = pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "volume": g["volume"].sum(),
            "trades": g["trades"].sum(),
            "vwap": g["pv"].sum() / g["volume"].sum(),
        }
    )
    return out[g["open"].count() > 0]


@pytest.mark.parametrize(("interval", "rule"), [("1m", "1min"), ("300", "5min"), ("1h", "1h")])
def test_rebucketed_bars_match_pandas(
    client: TestClient, filled_db: str, interval: str, rule: str
) -> None:
    r = client.get(
        "/bars/AAPL",
        params={"start": START, "end": END, "interval": interval, "order": "asc", "limit": 10_000},
    )
    assert r.status_code == 200, r.text
    got = pd.DataFrame(r.json()["bars"])
    got["time"] = pd.to_datetime(got["time"], utc=True)
    want = reference_bars(filled_db, rule)
    assert list(got["time"]) == list(want.index)
    for col in ("open", "high", "low", "close", "volume", "vwap", "trades"):
        assert got[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-12), col
    assert set(got["bar_seconds"]) == {pd.Timedelta(rule).total_seconds()}


def test_rebucketed_without_range_ends_at_the_newest_bar(
    client: TestClient, filled_db: str
) -> None:
    body = client.get("/bars/AAPL", params={"interval": "1m", "limit": 3}).json()
    newest = query(filled_db, "SELECT max(time) AS t FROM bars WHERE symbol = 'AAPL'")[0]["t"]
    minute = newest.replace(second=0)
    want = [minute - timedelta(minutes=i) for i in range(3)]
    assert [ts(b["time"]) for b in body["bars"]] == want
    assert body["count"] == 3


def test_metrics_raw_and_rebucketed(client: TestClient, filled_db: str) -> None:
    raw = pd.DataFrame(query(filled_db, "SELECT * FROM bar_metrics WHERE symbol = 'AAPL'"))
    raw = raw.set_index("time").sort_index()
    body = client.get(
        "/metrics/AAPL", params={"start": START, "end": END, "order": "asc", "limit": 10_000}
    ).json()
    assert body["count"] == len(raw)
    got = pd.DataFrame(body["metrics"])
    for col in ("log_return", "realized_vol", "ewma_vol", "sharpe", "bars_seen"):
        assert got[col].tolist() == pytest.approx(raw[col].tolist(), nan_ok=True), col

    body = client.get(
        "/metrics/AAPL",
        params={"start": START, "end": END, "interval": "1m", "order": "asc", "limit": 10_000},
    ).json()
    got = pd.DataFrame(body["metrics"])
    g = raw.resample("1min")
    want_return = g["log_return"].sum(min_count=1)
    assert got["log_return"].tolist() == pytest.approx(want_return.tolist(), nan_ok=True)
    for col in ("realized_vol", "ewma_vol", "ewma_vol_ann", "sharpe", "bars_seen"):
        last = g[col].apply(lambda s: s.iloc[-1])  # the bucket's last bar, null or not
        assert got[col].tolist() == pytest.approx(last.tolist(), nan_ok=True), col


def test_latest_forecasts_with_scores_and_checkpoints(client: TestClient, filled_db: str) -> None:
    body = client.get("/forecasts/AAPL").json()
    want = query(
        filled_db,
        """SELECT DISTINCT ON (model, target, horizon) model, target, horizon, time, value,
                  lower, upper, made_at
           FROM forecasts WHERE symbol = 'AAPL' ORDER BY model, target, horizon, time DESC""",
    )
    assert body["mode"] == "latest"
    got = as_rows(body["forecasts"], ("time", "made_at", "scores_time", "last_checkpoint"))
    assert [{k: g[k] for k in want[0]} for g in got] == want
    assert {g["model"] for g in got} == {*VOLATILITY_MODELS, *RETURN_MODELS}
    scores = query(
        filled_db,
        """SELECT DISTINCT ON (model, metric) model, metric, value, time FROM model_scores
           WHERE symbol = 'AAPL' ORDER BY model, metric, time DESC""",
    )
    checkpoints = query(
        filled_db,
        "SELECT model, max(time) AS t FROM model_checkpoints WHERE symbol = 'AAPL' GROUP BY model",
    )
    for g in got:
        mine = [s for s in scores if s["model"] == g["model"]]
        assert g["scores"] == {s["metric"]: s["value"] for s in mine}
        assert g["scores_time"] == max(s["time"] for s in mine)
        assert g["last_checkpoint"] == next(c["t"] for c in checkpoints if c["model"] == g["model"])
    assert "qlike_rel_ewma" in next(g for g in got if g["model"] == "har")["scores"]


def test_forecast_history_filters_by_model_target_and_range(
    client: TestClient, filled_db: str
) -> None:
    t0, t1 = SIM_START + timedelta(minutes=5), SIM_START + timedelta(minutes=6)
    body = client.get(
        "/forecasts/AAPL",
        params={
            "start": t0.isoformat(),
            "end": t1.isoformat(),
            "model": "linear",
            "order": "asc",
        },
    ).json()
    want = query(
        filled_db,
        """SELECT model, target, horizon, time, value, lower, upper, made_at FROM forecasts
           WHERE symbol = 'AAPL' AND model = 'linear' AND time >= %s AND time < %s
           ORDER BY time""",
        t0,
        t1,
    )
    assert body["mode"] == "history"
    got = as_rows(body["forecasts"], ("time", "made_at"))
    assert [{k: g[k] for k in want[0]} for g in got] == want
    # One a bar with prices, at most 12 bars of 5 s a minute (a bar of odd lots only has
    # none: dataflows.conditions), each forecast for the bar after the one it was made at.
    priced = query(
        filled_db,
        """SELECT count(*) AS n FROM bars WHERE symbol = 'AAPL' AND close IS NOT NULL
           AND time >= %s AND time < %s""",
        t0 - timedelta(seconds=5),
        t1 - timedelta(seconds=5),
    )[0]["n"]
    assert 0 < len(want) == priced <= 12
    assert all(g["lower"] < g["value"] < g["upper"] for g in got)
    assert (
        client.get(
            "/forecasts/AAPL", params={"start": START, "target": "volatility", "limit": 4}
        ).json()["count"]
        == 4
    )


def test_models_have_target_scores_and_checkpoint(client: TestClient, filled_db: str) -> None:
    body = client.get("/models/AAPL").json()
    names = [m["model"] for m in body["models"]]
    assert "_shared" not in names
    assert "_pipeline" not in names
    checkpoints = query(
        filled_db,
        """SELECT DISTINCT ON (model) model, time, version, bars_seen FROM model_checkpoints
           WHERE symbol = 'AAPL' AND model NOT IN ('_shared', '_pipeline')
           ORDER BY model, time DESC""",
    )
    assert names == [c["model"] for c in checkpoints]
    targets = dict(
        (r["model"], r["target"])
        for r in query(filled_db, "SELECT DISTINCT model, target FROM forecasts")
    )
    for m, c in zip(body["models"], checkpoints, strict=True):
        assert m["target"] == targets.get(m["model"])
        assert ts(m["checkpoint"]["time"]) == c["time"]
        assert (m["checkpoint"]["version"], m["checkpoint"]["bars_seen"]) == (
            c["version"],
            c["bars_seen"],
        )
    anomaly = next(m for m in body["models"] if m["model"] == "anomaly")
    assert anomaly["target"] is None
    assert anomaly["scores"] == {}
    har = next(m for m in body["models"] if m["model"] == "har")
    latest = query(
        filled_db,
        "SELECT DISTINCT ON (metric) metric, value FROM model_scores "
        "WHERE symbol = 'AAPL' AND model = 'har' ORDER BY metric, time DESC",
    )
    assert har["scores"] == {r["metric"]: r["value"] for r in latest}


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({}, "TRUE"),
        ({"symbol": "aapl"}, "symbol = 'AAPL'"),
        ({"kind": "volatility_spike"}, "kind = 'volatility_spike'"),
        (
            {"since": (SIM_START + timedelta(minutes=20)).isoformat()},
            f"time >= '{SIM_START + timedelta(minutes=20)}'",
        ),
        ({"severity": "critical", "symbol": "AAPL"}, "severity = 'critical' AND symbol = 'AAPL'"),
    ],
)
def test_alerts_filters(
    client: TestClient, filled_db: str, params: dict[str, str], where: str
) -> None:
    body = client.get("/alerts", params=params).json()
    want = query(
        filled_db,
        f"SELECT time, symbol, kind, severity, value, threshold, message "
        f"FROM alerts WHERE {where} ORDER BY time DESC, symbol, kind",
    )
    assert as_rows(body) == want
    if not params:
        assert len(want) >= 1


def test_health_reports_database_feed_and_progress(client: TestClient, filled_db: str) -> None:
    r = client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["database"]["reachable"] is True
    assert (
        body["database"]["timescaledb_version"]
        == query(filled_db, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")[0][
            "extversion"
        ]
    )
    assert body["database"]["timescaledb_license"] in {"apache", "timescale"}
    assert body["status"] == "ok"
    assert body["feed_connected"] is True
    assert body["feeds"][0]["subscribed"] == ["AAPL", "MSFT"]
    assert body["feeds"][0]["reconnects"] == 2
    feed = body["feeds"][0]
    assert (feed["silent_reconnects"], feed["backfilled_trades"]) == (1, 37)
    assert ts(feed["last_backfill_at"]) == NOW - timedelta(seconds=2)
    assert feed["last_backfill"] == "gap 14:00:00.000-14:00:30.000 UTC: 37 trades"
    assert ts(body["time"]) == NOW
    progress = {s["symbol"]: s for s in body["symbols"]}
    assert set(progress) == {"AAPL", "MSFT", "TSLA"}
    for sym in ("AAPL", "MSFT"):
        tick = query(filled_db, "SELECT max(time) AS t FROM ticks WHERE symbol = %s", sym)[0]["t"]
        bar = query(filled_db, "SELECT max(time) AS t FROM bars WHERE symbol = %s", sym)[0]["t"]
        assert ts(progress[sym]["last_tick"]) == tick
        assert ts(progress[sym]["last_bar"]) == bar
        assert ts(progress[sym]["last_bar_end"]) == bar + timedelta(seconds=5)
        assert progress[sym]["bar_lag_s"] == (NOW - bar - timedelta(seconds=5)).total_seconds()
        assert progress[sym]["tick_lag_s"] == (NOW - tick).total_seconds()
    assert progress["TSLA"]["active"] is False
    assert progress["TSLA"]["last_tick"] is None
    assert body["dataflow_lag_s"] == min(
        p["bar_lag_s"] for p in progress.values() if p["bar_lag_s"] is not None
    )


HYPERTABLES = ("ticks", "bars", "bar_metrics", "forecasts", "model_scores", "model_checkpoints")


@pytest.fixture
def blind_dsn(filled_db: str) -> Iterator[str]:
    """``filled_db`` as a role that may read every table but the hypertables the latest
    tables stand for: what answers through it never touches their history."""
    role = f"blind_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(filled_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )
        for table in HYPERTABLES:
            conn.execute(
                sql.SQL("REVOKE SELECT ON {} FROM {}").format(
                    sql.Identifier(table), sql.Identifier(role)
                )
            )
    try:
        yield make_conninfo(filled_db, user=role)
    finally:
        with psycopg.connect(filled_db, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_latest_endpoints_and_health_never_read_the_hypertables(
    blind_dsn: str, client: TestClient
) -> None:
    paths = ["/health", "/forecasts/AAPL", "/models/AAPL", "/tickers", "/forecasts/ZZZZ"]
    with client_for(blind_dsn) as blind:
        with (
            psycopg.connect(blind_dsn) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("SELECT 1 FROM forecasts LIMIT 1")  # the role is blind indeed
        for path in paths:
            r, expected = blind.get(path), client.get(path)
            assert r.status_code == expected.status_code, (path, r.text)
            if path != "/health":  # its lags are measured from the clock at each call
                assert r.json() == expected.json(), path
        assert blind.get("/forecasts/AAPL").json()["count"] > 0


def test_tickers_list(client: TestClient) -> None:
    body = client.get("/tickers").json()
    assert [(t["symbol"], t["active"]) for t in body] == [
        ("AAPL", True),
        ("MSFT", True),
        ("TSLA", False),
    ]
    assert [t["symbol"] for t in client.get("/tickers", params={"active": False}).json()] == [
        "TSLA"
    ]


def test_times_are_iso_8601_utc(client: TestClient) -> None:
    body = client.get("/forecasts/AAPL").json()
    for f in body["forecasts"]:
        for key in ("time", "made_at", "scores_time", "last_checkpoint"):
            assert f[key].endswith("Z"), f[key]


def test_prometheus_metrics(client: TestClient, filled_db: str) -> None:
    client.get("/bars/AAPL", params={"limit": 1})
    client.get("/bars/NOPE")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    route = (("method", "GET"), ("route", "/bars/{symbol}"))
    assert samples[("sentinel_api_requests_total", (*route, ("status", "200")))] >= 1
    assert samples[("sentinel_api_requests_total", (*route, ("status", "404")))] >= 1
    assert samples[("sentinel_api_request_duration_seconds_count", route)] >= 2
    assert not any("/bars/AAPL" in str(k) for k in samples), "route templates, not paths"
    sinks = query(filled_db, "SELECT * FROM sink_status")
    assert len(sinks) > 1, "the run's sinks report too"
    for row in sinks:
        key = (("table", row["table_name"]), ("worker", str(row["worker"])))
        assert samples[("sentinel_sink_rows_written_total", key)] == row["rows_written"]
        assert samples[("sentinel_sink_rows_skipped_total", key)] == row["rows_skipped"]
        assert samples[("sentinel_sink_rows_failed_total", key)] == row["rows_failed"]
        assert samples[("sentinel_sink_retries_total", key)] == row["retries"]
    ticks = (("table", "ticks"), ("worker", "99"))
    assert samples[("sentinel_sink_rows_written_total", ticks)] == 12345
    assert samples[("sentinel_ticks_rejected_last_hour", (("reason", "malformed_json"),))] == 2
    assert samples[("sentinel_ticks_rejected_last_hour", (("reason", "non_positive_price"),))] == 1
    assert samples[("sentinel_feed_connected", (("source", "finnhub"),))] == 1
    assert samples[("sentinel_database_up", ())] == 1
