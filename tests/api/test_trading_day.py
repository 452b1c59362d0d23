"""The trading day in the API: each ticker's calendar (POST, PATCH, GET /tickers with its
market's next open and close), `/summary/{symbol}` over `daily_summary`, and
`/sessions/{symbol}`. Market times are checked against `exchange_calendars` itself, at
clocks the tests fix: a Saturday, the early close of 2024-07-03, the 4th of July."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import exchange_calendars as xcals
import pandas as pd
import psycopg
import pytest

from api.deps import WallClock, request_clock
from api.main import create_app
from connectors.timescale import write_rows
from connectors.timescale.specs import BARS
from dataflows.records import Bar
from tests.api.conftest import TestClient, execute, query, settings
from tests.api.daily import XNYS, insert_summaries, summary_row

SATURDAY = datetime(2024, 7, 6, 15, 0, tzinfo=UTC)
EARLY_CLOSE_DAY = datetime(2024, 7, 3, 15, 0, tzinfo=UTC)  # XNYS closes at 13:00 New York
AFTER_EARLY_CLOSE = datetime(2024, 7, 3, 18, 0, tzinfo=UTC)
HOLIDAY = datetime(2024, 7, 4, 15, 0, tzinfo=UTC)
MOMENTS = [SATURDAY, EARLY_CLOSE_DAY, AFTER_EARLY_CLOSE, HOLIDAY]


def at(moment: datetime) -> WallClock:
    return lambda: moment


def client_at(dsn: str, moment: datetime, **overrides: Any) -> TestClient:
    return TestClient(create_app(settings(**overrides), dsn=dsn, clock=at(moment)))


def iso(t: pd.Timestamp | datetime) -> str:
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(calendar: str, moment: datetime) -> dict[str, Any]:
    """What `exchange_calendars` itself says of ``calendar`` at ``moment``."""
    cal = xcals.get_calendar(calendar)
    minute = pd.Timestamp(moment)
    return {
        "open_now": bool(cal.is_open_on_minute(minute)),
        "next_open": iso(cal.next_open(minute)),
        "next_close": iso(cal.next_close(minute)),
    }


# -- calendars of tickers ------------------------------------------------------------------


def test_post_takes_a_calendar_and_stores_its_canonical_name(db: str) -> None:
    with client_at(db, SATURDAY, calendar="XNAS") as c:
        r = c.post("/tickers", json={"symbol": "shel", "calendar": "xlon"})
        assert r.status_code == 201, r.text
        assert r.json()["calendar"] == "XLON"
        btc = c.post("/tickers", json={"symbol": "BINANCE:BTCUSDT", "calendar": "always"})
        assert btc.json()["calendar"] == "24/7"
        plain = c.post("/tickers", json={"symbol": "AAPL"})
        assert plain.status_code == 201
        assert plain.json()["calendar"] == "XNAS", "the settings' default calendar"
        stored = query(db, "SELECT symbol, calendar FROM tickers ORDER BY symbol")
        assert [(t["symbol"], t["calendar"]) for t in stored] == [
            ("AAPL", "XNAS"),
            ("BINANCE:BTCUSDT", "24/7"),
            ("SHEL", "XLON"),
        ]

        again = c.post("/tickers", json={"symbol": "SHEL"})
        assert again.status_code == 200
        assert again.json() == r.json(), "without a calendar it keeps its own, untouched"
        moved = c.post("/tickers", json={"symbol": "SHEL", "calendar": "XAMS"})
        assert moved.status_code == 200
        assert moved.json()["calendar"] == "XAMS"
        assert moved.json()["updated_at"] > r.json()["updated_at"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"symbol": "AAPL", "calendar": "NOPE"}, "unknown market calendar 'NOPE'"),
        ({"symbol": "AAPL", "calendar": "   "}, "unknown market calendar '   '"),
        ({"symbol": "AAPL", "calendar": "X" * 33}, "body field 'calendar'"),
        ({"symbol": "AAPL", "calendar": 7}, "body field 'calendar'"),
    ],
)
def test_an_unknown_calendar_is_a_422_that_says_what_is_accepted(
    db: str, body: dict[str, Any], message: str
) -> None:
    with client_at(db, SATURDAY) as c:
        r = c.post("/tickers", json=body)
        assert r.status_code == 422, r.text
        assert message in r.json()["error"]
        if "unknown market calendar" in message:
            assert "XNYS" in r.json()["error"]
            assert "24/7" in r.json()["error"]
    assert query(db, "SELECT count(*) AS n FROM tickers")[0]["n"] == 0


def test_patch_changes_the_calendar_or_active_and_notifies_the_live_source(db: str) -> None:
    with client_at(db, SATURDAY) as c, psycopg.connect(db, autocommit=True) as listener:
        created = c.post("/tickers", json={"symbol": "HSBC"}).json()
        listener.execute("LISTEN sentinel_tickers")

        r = c.patch("/tickers/hsbc", json={"calendar": "xhkg"})
        assert r.status_code == 200, r.text
        assert (r.json()["calendar"], r.json()["active"]) == ("XHKG", True)
        assert r.json()["updated_at"] > created["updated_at"]
        assert r.json()["added_at"] == created["added_at"]

        same = c.patch("/tickers/HSBC", json={"calendar": "XHKG"})
        assert same.json() == r.json(), "nothing new: the row is left alone"

        off = c.patch("/tickers/HSBC", json={"active": False})
        assert (off.json()["calendar"], off.json()["active"]) == ("XHKG", False)
        both = c.patch("/tickers/HSBC", json={"active": True, "calendar": "24/7"})
        assert (both.json()["calendar"], both.json()["active"]) == ("24/7", True)
        row = query(db, "SELECT calendar, active FROM tickers WHERE symbol = 'HSBC'")[0]
        assert row == {"calendar": "24/7", "active": True}

        notes = [n.payload for n in listener.notifies(timeout=1, stop_after=4)]
        assert notes == ["HSBC:UPDATE"] * 3, "one per change, none for the no-op"


@pytest.mark.parametrize(
    ("symbol", "body", "status", "message"),
    [
        ("HSBC", {}, 422, "nothing to change"),
        ("HSBC", {"calendar": None, "active": None}, 422, "nothing to change"),
        ("HSBC", {"calendar": "MOON"}, 422, "unknown market calendar 'MOON'"),
        ("HSBC", {"active": "yes"}, 422, "body field 'active'"),
        ("HSBC", {"active": 1}, 422, "body field 'active'"),
        ("HSBC", {"symbol": "OTHER"}, 422, "body field 'symbol'"),
        ("NOPE", {"active": False}, 404, "unknown ticker 'NOPE'"),
    ],
)
def test_patch_refuses_what_it_cannot_do(
    db: str, symbol: str, body: dict[str, Any], status: int, message: str
) -> None:
    execute(db, "INSERT INTO tickers (symbol, calendar) VALUES ('HSBC', 'XHKG')")
    with client_at(db, SATURDAY) as c:
        r = c.patch(f"/tickers/{symbol}", json=body)
        assert r.status_code == status, r.text
        assert message in r.json()["error"]
    assert query(db, "SELECT calendar, active FROM tickers") == [
        {"calendar": "XHKG", "active": True}
    ]


@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.isoformat())
def test_tickers_show_their_markets_next_open_and_close(db: str, moment: datetime) -> None:
    calendars = {"AAPL": "XNYS", "SHEL": "XLON", "0700": "XHKG", "BTC": "24/7"}
    for symbol, calendar in calendars.items():
        execute(db, "INSERT INTO tickers (symbol, calendar) VALUES (%s, %s)", symbol, calendar)
    with client_at(db, moment) as c:
        body = {t["symbol"]: t for t in c.get("/tickers").json()}
    for symbol, calendar in calendars.items():
        shown = {k: body[symbol][k] for k in ("open_now", "next_open", "next_close")}
        assert shown == reference(calendar, moment), (symbol, moment)
        assert body[symbol]["calendar"] == body[symbol]["effective_calendar"] == calendar


def test_the_early_close_and_the_holiday_in_new_york(db: str) -> None:
    """The same checks spelt out: open until 13:00 New York on the 3rd, shut on the 4th."""
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL')")
    expected = {
        EARLY_CLOSE_DAY: (True, "2024-07-05T13:30:00Z", "2024-07-03T17:00:00Z"),
        AFTER_EARLY_CLOSE: (False, "2024-07-05T13:30:00Z", "2024-07-05T20:00:00Z"),
        HOLIDAY: (False, "2024-07-05T13:30:00Z", "2024-07-05T20:00:00Z"),
        SATURDAY: (False, "2024-07-08T13:30:00Z", "2024-07-08T20:00:00Z"),
    }
    for moment, (open_now, next_open, next_close) in expected.items():
        with client_at(db, moment) as c:
            (t,) = c.get("/tickers").json()
        assert (t["open_now"], t["next_open"], t["next_close"]) == (open_now, next_open, next_close)


def test_the_override_is_reported_beside_each_tickers_own_calendar(db: str) -> None:
    execute(db, "INSERT INTO tickers (symbol, calendar) VALUES ('AAPL', 'XNYS')")
    with client_at(db, SATURDAY, calendar_override="24/7") as c:
        (t,) = c.get("/tickers").json()
        sessions = c.get("/sessions/AAPL").json()
    assert (t["calendar"], t["effective_calendar"]) == ("XNYS", "24/7")
    assert t["open_now"] is False, "the market itself is closed on a Saturday"
    assert (sessions["calendar"], sessions["effective_calendar"]) == ("XNYS", "24/7")


def test_a_calendar_written_past_the_api_leaves_its_market_unknown(db: str) -> None:
    execute(db, "INSERT INTO tickers (symbol, calendar) VALUES ('AAPL', 'XNYS'), ('ODD', 'MOON')")
    with client_at(db, SATURDAY) as c:
        r = c.get("/tickers")
    assert r.status_code == 200
    odd = r.json()[1]
    assert (odd["symbol"], odd["calendar"], odd["open_now"], odd["next_open"]) == (
        "ODD",
        "MOON",
        None,
        None,
    )
    assert r.json()[0]["next_open"] == "2024-07-08T13:30:00Z"


def test_the_clock_is_a_dependency_tests_can_override(db: str) -> None:
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL')")
    app = create_app(settings(), dsn=db)
    app.dependency_overrides[request_clock] = lambda: at(EARLY_CLOSE_DAY)
    with TestClient(app) as c:
        (t,) = c.get("/tickers").json()
    assert t["open_now"] is True
    assert t["next_close"] == "2024-07-03T17:00:00Z"


# -- /summary -------------------------------------------------------------------------------

JULY = XNYS.sessions_in_range("2024-05-01", "2024-07-12")  # 50 sessions; no 4th of July


@pytest.fixture
def summaries(db: str) -> list[dict[str, Any]]:
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL'), ('MSFT')")
    rows = [summary_row("AAPL", s, i) for i, s in enumerate(JULY)]
    insert_summaries(db, [*rows, summary_row("NVDA", JULY[-1], 0)])
    return rows


def dates(body: dict[str, Any]) -> list[str]:
    return [s["session_date"] for s in body["sessions"]]


def test_summary_filters_by_session_dates_inclusive(
    db: str, summaries: list[dict[str, Any]]
) -> None:
    with client_at(db, SATURDAY) as c:
        r = c.get("/summary/aapl", params={"start": "2024-07-02", "end": "2024-07-08"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["symbol"] == "AAPL"
        assert dates(body) == ["2024-07-08", "2024-07-05", "2024-07-03", "2024-07-02"]
        assert body["count"] == 4
        asc = c.get("/summary/AAPL", params={"start": "2024-07-02", "order": "asc", "limit": 2})
        assert dates(asc.json()) == ["2024-07-02", "2024-07-03"]
        one_day = c.get("/summary/AAPL", params={"start": "2024-07-03", "end": "2024-07-03"})
        assert dates(one_day.json()) == ["2024-07-03"]
        holiday = c.get("/summary/AAPL", params={"start": "2024-07-04", "end": "2024-07-04"})
        assert holiday.json()["sessions"] == [], "no session on the 4th"
        until = c.get("/summary/AAPL", params={"end": "2024-05-02", "order": "asc"})
        assert dates(until.json()) == ["2024-05-01", "2024-05-02"]


def test_summary_rows_are_the_tables(db: str, summaries: list[dict[str, Any]]) -> None:
    with client_at(db, SATURDAY) as c:
        (row,) = c.get("/summary/AAPL", params={"start": "2024-07-03", "end": "2024-07-03"}).json()[
            "sessions"
        ]
    (stored,) = [r for r in summaries if r["session_date"] == date(2024, 7, 3)]
    assert row["open_time"] == "2024-07-03T13:30:00Z"
    assert row["close_time"] == "2024-07-03T17:00:00Z", "the early close"
    for key in ("open", "high", "low", "close", "volume", "vwap", "trades", "bars", "sharpe"):
        assert row[key] == stored[key], key
    assert row["realized_vol_ann"] == pytest.approx(stored["realized_vol_ann"])
    assert row["overnight_return"] == pytest.approx(stored["overnight_return"])
    assert row["alerts"] == stored["alerts"]
    assert row["model_scores"] == stored["model_scores"]
    assert row["calendar"] == "XNYS"


def test_summary_defaults_to_the_latest_thirty_sessions(
    db: str, summaries: list[dict[str, Any]]
) -> None:
    newest_first = [str(s.date()) for s in reversed(JULY)]
    with client_at(db, SATURDAY) as c:
        assert dates(c.get("/summary/AAPL").json()) == newest_first[:30]
        assert dates(c.get("/summary/AAPL", params={"limit": 3}).json()) == newest_first[:3]
        ranged = c.get("/summary/AAPL", params={"start": "2024-05-01"}).json()
        assert dates(ranged) == newest_first, "a range is not cut to 30"
        assert c.get("/summary/MSFT").json()["sessions"] == [], "a ticker without summaries"
        assert dates(c.get("/summary/NVDA").json()) == ["2024-07-12"], "no ticker, but rows"
    with client_at(db, SATURDAY, api_max_limit=10) as c:
        assert c.get("/summary/AAPL").json()["count"] == 10
        assert c.get("/summary/AAPL", params={"limit": 11}).status_code == 422


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2024-07-05", "end": "2024-07-01"}, "start (2024-07-05) is after end"),
        ({"start": "2024-02-30"}, "query parameter 'start': bad date '2024-02-30'"),
        ({"end": "2024-7-1"}, "query parameter 'end': bad date '2024-7-1': expected YYYY-MM-DD"),
        ({"start": "2024-07-01T00:00:00Z"}, "expected YYYY-MM-DD"),
        ({"limit": 0}, "query parameter 'limit'"),
    ],
)
def test_summary_refuses_bad_dates(db: str, params: dict[str, Any], message: str) -> None:
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL')")
    with client_at(db, SATURDAY) as c:
        r = c.get("/summary/AAPL", params=params)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]


def test_summary_of_an_unknown_symbol_is_a_404(db: str) -> None:
    with client_at(db, SATURDAY) as c:
        r = c.get("/summary/NOPE")
    assert r.status_code == 404
    assert r.json()["error"] == "unknown symbol 'NOPE': no ticker and no daily summary"


# -- /sessions ------------------------------------------------------------------------------


def session_of(calendar: str, day: str) -> dict[str, Any]:
    """A session as `exchange_calendars` has it."""
    cal = xcals.get_calendar(calendar)
    opens, closes = cal.session_open(day), cal.session_close(day)
    return {
        "session_date": day,
        "open": iso(opens),
        "close": iso(closes),
        "hours": (closes - opens).total_seconds() / 3600,
    }


def get_sessions(dsn: str, moment: datetime, symbol: str = "AAPL") -> dict[str, Any]:
    with client_at(dsn, moment) as c:
        r = c.get(f"/sessions/{symbol}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_sessions_on_a_holiday(db: str) -> None:
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL')")
    body = get_sessions(db, HOLIDAY)
    assert body["calendar"] == body["effective_calendar"] == "XNYS"
    assert body["time_zone"] == "America/New_York"
    assert body["time"] == "2024-07-04T15:00:00Z"
    assert body["local_date"] == "2024-07-04"
    assert body["open_now"] is False
    assert body["today"] is None, "no session on the 4th of July"
    assert body["next"] == session_of("XNYS", "2024-07-05")
    assert body["next"]["hours"] == 6.5
    assert body["last_event"] is None


def test_sessions_on_the_early_close(db: str) -> None:
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL')")
    during = get_sessions(db, EARLY_CLOSE_DAY)
    assert during["open_now"] is True
    assert during["today"] == session_of("XNYS", "2024-07-03")
    assert during["today"]["hours"] == 3.5
    assert during["next"] == session_of("XNYS", "2024-07-05")
    after = get_sessions(db, AFTER_EARLY_CLOSE)
    assert after["open_now"] is False
    assert after["today"] == session_of("XNYS", "2024-07-03"), "today's, after its close"
    assert after["next"] == session_of("XNYS", "2024-07-05")
    before = get_sessions(db, datetime(2024, 7, 3, 12, 0, tzinfo=UTC))
    assert before["open_now"] is False
    assert before["today"] == session_of("XNYS", "2024-07-03"), "today's, before its open"
    assert before["next"] == session_of("XNYS", "2024-07-03")


@pytest.mark.parametrize("moment", [HOLIDAY, SATURDAY])
def test_sessions_of_a_market_that_never_closes(db: str, moment: datetime) -> None:
    execute(db, "INSERT INTO tickers (symbol, calendar) VALUES ('BTC', '24/7')")
    body = get_sessions(db, moment, "btc")
    day = moment.date()
    assert (body["calendar"], body["time_zone"], body["open_now"]) == ("24/7", "UTC", True)
    assert body["today"] == session_of("24/7", str(day))
    assert body["today"]["hours"] == 24
    assert body["next"] == session_of("24/7", str(day + timedelta(days=1)))


def test_sessions_show_the_last_event_the_dataflow_saw(db: str) -> None:
    execute(db, "INSERT INTO tickers (symbol) VALUES ('AAPL')")
    events = [
        ("2024-07-03T13:30:00Z", "open", "2024-07-03"),
        ("2024-07-03T17:00:00Z", "close", "2024-07-03"),
        ("2024-07-05T13:30:00Z", "open", "2024-07-05"),  # the clock's future: still stored
    ]
    for t, event, day in events:
        execute(
            db,
            "INSERT INTO session_events (time, symbol, event, session_date, calendar) "
            "VALUES (%s, 'AAPL', %s, %s, 'XNYS')",
            t,
            event,
            day,
        )
    body = get_sessions(db, HOLIDAY)
    assert body["last_event"] == {
        "time": "2024-07-05T13:30:00Z",
        "event": "open",
        "session_date": "2024-07-05",
        "calendar": "XNYS",
    }


def test_sessions_of_a_symbol_known_only_by_its_rows_use_the_default_calendar(db: str) -> None:
    shel = Bar(
        1_720_015_200_000_000, "SHEL", 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, 5
    )  # 2024-07-03 14:00
    write_rows(db, BARS, [shel])  # as the dataflow writes them (the latest table too)
    with client_at(db, HOLIDAY, calendar="XLON") as c:
        body = c.get("/sessions/SHEL").json()
        assert (body["calendar"], body["time_zone"]) == ("XLON", "Europe/London")
        assert body["open_now"] is True, "London trades on the 4th of July"
        missing = c.get("/sessions/NOPE")
    assert missing.status_code == 404
    assert missing.json()["error"] == "unknown symbol 'NOPE': no ticker and no rows"
