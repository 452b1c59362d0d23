"""The trading day over real calendar dates: 2024-06-28 (Fri) to 2024-07-09 (Tue), which
holds a weekend, the early close of 2024-07-03 (13:00 New York), the 4th of July holiday
and a second weekend. Every figure of ``daily_summary`` is recomputed with pandas from
the same ticks, with the sessions taken from ``exchange_calendars``' own schedule."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date
from typing import Any

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from dataflows.bars import BarConfig
from dataflows.config import SessionConfig
from dataflows.metrics import MetricsConfig
from dataflows.parse import ParseConfig
from dataflows.records import US, Alert, DailySummary, RawBatch, Tick
from dataflows.ticks import FlowConfig
from online_models.scoring import qlike
from tests.dataflows.test_flow import run

BAR_S = 300
FIRST, LAST = "2024-06-28", "2024-07-09"
STOCK, COIN = "AAPL", "BTCUSD"
GAP_DAY = date(2024, 7, 5)  # AAPL opens 10% above the 3rd's close
SPIKE_DAY = date(2024, 7, 8)
NY = "America/New_York"

CONFIG = FlowConfig(
    parse=ParseConfig(max_future_s=86_400, max_past_s=3 * 86_400),
    bars=BarConfig(bar_seconds=BAR_S, allowance_s=0, price_band=0),
    metrics=MetricsConfig(window=10),
    sessions=SessionConfig(default="XNYS", calendars={COIN: "24/7"}),
    live=False,
)


def _stock_ticks(rng: np.random.Generator) -> list[Tick]:
    """AAPL every ~30 s from 04:00 to 20:00 New York on every calendar day (a few prints
    on closed days too), some in-session trades with Finnhub's extended-hours code."""
    out: list[Tick] = []
    price = 190.0
    for day in pd.date_range(FIRST, LAST, freq="D"):
        start = pd.Timestamp(f"{day.date()} 04:00", tz=NY).value // 1000
        n = 1920
        times = start + np.sort(rng.choice(16 * 3600 * 1000, n, replace=False)) * 1000
        steps = rng.normal(0, 8e-4, n)
        if day.date() == SPIKE_DAY:  # a volatile hour: a spike alert within the session
            hour = pd.Timestamp(f"{day.date()} 11:00", tz=NY).value // 1000
            steps[(times >= hour) & (times < hour + 3600 * US)] *= 8
        if day.date() == GAP_DAY:
            open_us = pd.Timestamp(f"{day.date()} 09:30", tz=NY).value // 1000
            steps[np.searchsorted(times, open_us)] += math.log(1.10)
        prices = price * np.exp(np.cumsum(steps))
        price = float(prices[-1])
        for t, p in zip(times, prices, strict=True):
            cond = "24" if rng.random() < 0.01 else None
            out.append(
                Tick(int(t), STOCK, round(float(p), 4), float(rng.integers(1, 300)), 0, cond)
            )
    return out


def _coin_ticks(rng: np.random.Generator) -> list[Tick]:
    """BTCUSD every ~60 s around the clock, UTC days 2024-06-28 to 2024-07-09."""
    start = pd.Timestamp(FIRST, tz="UTC").value // 1000
    n = 12 * 1440
    times = start + np.sort(rng.choice(12 * 86_400 * 1000, n, replace=False)) * 1000
    prices = 60_000 * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    return [
        Tick(int(t), COIN, round(float(p), 2), round(float(rng.random()), 4), 0, None)
        for t, p in zip(times, prices, strict=True)
    ]


def _batches(ticks: list[Tick], per_batch: int = 200) -> list[RawBatch]:
    batches = []
    for b in range(0, len(ticks), per_batch):
        chunk = ticks[b : b + per_batch]
        messages: list[tuple[int, Any]] = []
        for i, t in enumerate(chunk):
            trade: dict[str, Any] = {"s": t.symbol, "p": t.price, "t": t.time_us // 1000}
            trade["v"] = t.size
            if t.conditions:
                trade["c"] = [t.conditions]
            messages.append((b + i, json.dumps({"type": "trade", "data": [trade]})))
        batches.append(RawBatch("test", chunk[-1].time_us, messages))
    return batches


@pytest.fixture(scope="module")
def tick_list() -> list[Tick]:
    rng = np.random.default_rng(20240704)
    return sorted(_stock_ticks(rng) + _coin_ticks(rng), key=lambda t: t.time_us)


@pytest.fixture(scope="module")
def ticks(tick_list: list[Tick]) -> pd.DataFrame:
    df = pd.DataFrame(tick_list)
    df["seq"] = np.arange(len(df))  # in the order of the batches' messages
    return df


@pytest.fixture(scope="module")
def out(tick_list: list[Tick]) -> dict[str, list[Any]]:
    return run(_batches(tick_list), CONFIG, extra_sinks=("session_events", "summaries"))


def _sessions(calendar: str) -> pd.DataFrame:
    return xcals.get_calendar(calendar).schedule.loc[FIRST:LAST, ["open", "close"]]


def _us(ts: pd.Timestamp) -> int:
    return int(ts.value // 1000)


def _reference(ticks: pd.DataFrame, symbol: str, calendar: str) -> pd.DataFrame:
    """Each session's summary, by pandas: the session's regular trades, 300 s bars, the
    first bar's return from its own open, the others close to close."""
    cal = xcals.get_calendar(calendar)
    per_year = len(cal.sessions_in_range("2024-01-01", "2024-12-31"))
    df = ticks[ticks.symbol == symbol]
    rows, prev_close = [], None
    for label, s in _sessions(calendar).iterrows():
        o, c = _us(s.open), _us(s.close)
        day = df[(df.time_us >= o) & (df.time_us < c) & (df.conditions != "24")]
        day = day.sort_values(["time_us", "seq"])
        bars = day.groupby(day.time_us // (BAR_S * US)).price.agg(["first", "last"])
        r = np.log(bars["last"] / bars["last"].shift(1))
        r.iloc[0] = math.log(bars["last"].iloc[0] / bars["first"].iloc[0])
        bars_per_year = per_year * (c - o) / US / BAR_S
        open_ = day.price.iloc[0]
        rows.append(
            {
                "session_date": label.date(),
                "open": open_,
                "high": day.price.max(),
                "low": day.price.min(),
                "close": day.price.iloc[-1],
                "volume": day["size"].sum(),
                "vwap": (day.price * day["size"]).sum() / day["size"].sum(),
                "trades": len(day),
                "bars": len(bars),
                "realized_vol": math.sqrt((r**2).sum()),
                "realized_vol_ann": math.sqrt((r**2).sum()) * math.sqrt(per_year),
                "sharpe": r.mean() / r.std(ddof=1) * math.sqrt(bars_per_year),
                "overnight_return": math.log(open_ / prev_close) if prev_close else None,
            }
        )
        prev_close = day.price.iloc[-1]
    return pd.DataFrame(rows).set_index("session_date")


def _summaries(out: dict[str, list[Any]], symbol: str) -> pd.DataFrame:
    rows = [s for s in out["summaries"] if isinstance(s, DailySummary) and s.symbol == symbol]
    return pd.DataFrame(rows).set_index("session_date")


@pytest.mark.parametrize(("symbol", "calendar"), [(STOCK, "XNYS"), (COIN, "24/7")])
def test_one_summary_per_session_equal_to_pandas(
    ticks: pd.DataFrame, out: dict[str, list[Any]], symbol: str, calendar: str
) -> None:
    got, want = _summaries(out, symbol), _reference(ticks, symbol, calendar)
    assert list(got.index) == list(want.index)  # one per session, in order, no other day
    if calendar == "XNYS":
        assert date(2024, 7, 4) not in got.index
        assert date(2024, 7, 6) not in got.index
        early = got.loc[date(2024, 7, 3)]
        assert (early.close_us - early.open_us) / US == 3.5 * 3600
    else:
        assert len(got) == 12  # every UTC day, weekends included
    for column in want.columns:
        expected = want[column].to_numpy(dtype=float)
        np.testing.assert_allclose(got[column].to_numpy(dtype=float), expected, rtol=1e-9)
    events = [e for e in out["session_events"] if e.symbol == symbol]
    assert [(e.event, e.session_date) for e in events] == [
        (kind, d) for d in want.index for kind in ("open", "close")
    ]
    sched = _sessions(calendar)
    assert [e.time_us for e in events if e.event == "close"] == [_us(c) for c in sched.close]


def test_trades_outside_the_session_are_stored_flagged_and_not_in_bars(
    ticks: pd.DataFrame, out: dict[str, list[Any]]
) -> None:
    sched = _sessions("XNYS")
    stored = pd.DataFrame(out["ticks"]).sort_values("seq").set_index("seq")
    assert len(stored) == len(ticks)  # every trade is stored
    t = ticks.set_index("seq").time_us
    inside = np.zeros(len(t), dtype=bool)
    for s in sched.itertuples():
        inside |= (t.to_numpy() >= _us(s.open)) & (t.to_numpy() < _us(s.close))
    stock = (ticks.set_index("seq").symbol == STOCK).to_numpy()
    cond = (ticks.set_index("seq").conditions == "24").to_numpy()
    expected = stock & (~inside | cond)
    np.testing.assert_array_equal(stored.extended.to_numpy(), expected)
    assert expected.sum() > 10_000  # pre-market and after hours are most of the trades
    bars = pd.DataFrame(out["bars"])
    stock_bars = bars[bars.symbol == STOCK]
    assert stock_bars.trades.sum() == (stock & ~expected).sum()


def test_overnight_gaps_raise_no_alert_but_would_without_sessions(
    tick_list: list[Tick], out: dict[str, list[Any]]
) -> None:
    opens = {_us(o) for o in _sessions("XNYS").open}
    firsts = {o - o % (BAR_S * US) for o in opens}
    stock_alerts = [a for a in out["alerts"] if a.symbol == STOCK]
    assert not [a for a in stock_alerts if a.time_us in firsts]
    # The same ticks without calendars: the 10% gap of the 5th is a price jump.
    rows = [t for t in tick_list if t.symbol == STOCK]
    plain = run(_batches(rows), replace(CONFIG, sessions=None))
    gap_open = _us(_sessions("XNYS").loc[str(GAP_DAY)].open)
    jumps = [a for a in plain["alerts"] if a.kind == "price_jump"]
    assert any(gap_open <= a.time_us < gap_open + 3600 * US for a in jumps)

    # With sessions, the first bar's return is measured from its own open: the gap is
    # the day's overnight return instead (equal to pandas', checked above).
    def first_return(rows: list[Any]) -> float:
        (m,) = [m for m in rows if m.symbol == STOCK and m.start_us == gap_open]
        return float(m.log_return)

    assert abs(first_return(out["metrics"])) < 0.01 < first_return(plain["metrics"]) - 0.05


def test_summary_counts_the_days_alerts_and_scores_models_against_baselines(
    out: dict[str, list[Any]],
) -> None:
    alerts = pd.DataFrame(out["alerts"], columns=Alert._fields)
    metrics = pd.DataFrame(out["metrics"]).set_index(["symbol", "start_us"]).log_return
    forecasts = pd.DataFrame(out["forecasts"])
    forecasts = forecasts[forecasts.horizon == 1]
    for s in out["summaries"]:
        day_alerts = alerts[
            (alerts.symbol == s.symbol)
            & (alerts.time_us >= s.open_us)
            & (alerts.time_us < s.close_us)
        ]
        bars = metrics.loc[s.symbol]
        bars = bars[
            (bars.index >= s.open_us - s.open_us % (BAR_S * US)) & (bars.index < s.close_us)
        ]
        nxt = pd.Series(bars.to_numpy()[1:], index=bars.index[:-1])  # next bar's return
        f = forecasts[(forecasts.symbol == s.symbol) & forecasts.made_at_us.isin(nxt.index)]
        for model, got in s.model_scores.items():
            fm = f[f.model == model]
            r = nxt.loc[fm.made_at_us].to_numpy()
            if got["target"] == "volatility":
                losses = [qlike(v, x) for v, x in zip(fm.value, r, strict=True)]
            else:
                losses = list((r - fm.value.to_numpy()) ** 2)
            assert got["bars"] == len(losses)
            assert got["mean"] == pytest.approx(float(np.mean(losses)), rel=1e-9)
        assert s.alerts == day_alerts.kind.value_counts().to_dict()
        assert s.model_scores["ewma"]["vs_baseline"] == 0.0
        assert s.model_scores["zero"]["vs_baseline"] == 0.0
    spiked = [s for s in out["summaries"] if s.symbol == STOCK and s.session_date == SPIKE_DAY]
    assert spiked[0].alerts.get("volatility_spike", 0) >= 1


def test_annualization_follows_the_session_length(out: dict[str, list[Any]]) -> None:
    metrics = pd.DataFrame(out["metrics"])
    stock = metrics[(metrics.symbol == STOCK) & metrics.realized_vol.notna()].copy()
    stock["day"] = pd.to_datetime(stock.start_us, unit="us", utc=True).dt.tz_convert(NY).dt.date
    ratio = stock.realized_vol_ann / stock.realized_vol
    early = ratio[stock.day == date(2024, 7, 3)].iloc[-1]
    normal = ratio[stock.day == date(2024, 7, 2)].iloc[-1]
    assert early == pytest.approx(math.sqrt(252 * 3.5 * 3600 / BAR_S))
    assert normal == pytest.approx(math.sqrt(252 * 6.5 * 3600 / BAR_S))


def test_live_no_stale_alert_while_closed_and_sessions_follow_the_arrival_clock() -> None:
    """A live feed: AAPL trades until Friday's close, then nothing over the weekend and
    for the first minutes of Monday. Only Monday's silence is stale; the close and the
    open are marked by the arrival clock, without any trade."""
    friday_close = _us(pd.Timestamp("2024-07-05 16:00", tz=NY))
    monday_open = _us(pd.Timestamp("2024-07-08 09:30", tz=NY))
    batches, n = [], 0
    for clock in range(friday_close - 600 * US, monday_open + 180 * US, 30 * US):
        messages: list[tuple[int, Any]] = []
        if clock < friday_close:
            n += 1
            trade = {"s": STOCK, "p": 200 + n / 100, "t": clock // 1000, "v": 10}
            messages.append((clock, json.dumps({"type": "trade", "data": [trade]})))
        batches.append(RawBatch("live", clock, messages, (STOCK,)))
    config = replace(CONFIG, live=True, alerts=replace(CONFIG.alerts, stale_after_s=60))
    out = run(batches, config, extra_sinks=("session_events", "summaries"))
    stale = [a for a in out["alerts"] if a.kind == "stale_feed"]
    # Timed from the last batch before the open (live batches come every second).
    assert [a.time_us for a in stale] == [monday_open + 30 * US]
    events = [(e.event, e.time_us) for e in out["session_events"]]
    assert events == [
        ("open", _us(_sessions("XNYS").loc["2024-07-05"].open)),
        ("close", friday_close),
        ("open", monday_open),
    ]
    (friday,) = out["summaries"]
    assert (friday.session_date, friday.trades) == (date(2024, 7, 5), 20)


def test_sessions_do_not_depend_on_how_the_stream_is_cut(
    tick_list: list[Tick], out: dict[str, list[Any]]
) -> None:
    """A replay reads many rows at once: chunks that span sessions give the same
    sessions and summaries."""
    rows = [t for t in tick_list if t.symbol == STOCK]
    big = run(_batches(rows, per_batch=5000), CONFIG, extra_sinks=("summaries",))
    assert not big["rejects"]
    assert big["summaries"] == [s for s in out["summaries"] if s.symbol == STOCK]


def test_two_workers_give_the_same_sessions(
    tick_list: list[Tick], out: dict[str, list[Any]]
) -> None:
    two = run(_batches(tick_list), CONFIG, workers=2, extra_sinks=("session_events", "summaries"))
    for name in ("session_events", "summaries"):
        # Both records start with their time (or date); symbols go to different workers.
        assert sorted(two[name], key=lambda r: (r.symbol, r[0])) == sorted(
            out[name], key=lambda r: (r.symbol, r[0])
        )
