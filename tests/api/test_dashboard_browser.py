"""The dashboard in a real browser: Debian's Chromium (``tests/install_chromium.sh``)
driven by Playwright's Python package, against a live ``sentinel up`` on the simulator
with 1 s bars. Nothing here downloads a browser: Playwright is pointed at the system's.

Each test opens a fresh page and fails on any console error or uncaught exception it
did not expect (a refused request it made on purpose; the connection errors while the
API is down). Screenshots at 1280x800 and 390x844 go to the test's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import exchange_calendars as xcals
import httpx
import pandas as pd
import psycopg
import pytest

from api.serve import api_process
from tests.api.conftest import API_KEY
from tests.api.daily import XNYS, insert_summaries, summary_row
from tests.conftest import scratch_db
from tests.integration.procs import wait_until
from tests.integration.stack import LiveStack, live_stack

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("SENTINEL_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SYMBOLS = "AAPL,MSFT"
WAIT_MS = 20_000
# Pixels of the candles' own colours (dashboard.js COLORS.up / COLORS.down).
CANDLE_PIXELS = """() => {
  const want = [[0x26, 0xa6, 0x9a], [0xef, 0x53, 0x50]];
  let n = 0;
  for (const canvas of document.querySelectorAll('#price-chart canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < px.length; i += 4) {
      const near = ([r, g, b]) =>
        Math.abs(px[i] - r) < 6 && Math.abs(px[i + 1] - g) < 6 && Math.abs(px[i + 2] - b) < 6;
      if (px[i + 3] > 200 && want.some(near)) n++;
    }
  }
  return n;
}"""

if not CHROMIUM.is_file():
    pytest.skip(
        f"no Chromium at {CHROMIUM}: `make test` installs it (tests/install_chromium.sh)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def stack(
    server_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    # Two API workers, as on a machine with two cores: killing the API with -9 must
    # take its workers too, or they go on serving and the restarted API cannot bind.
    env = {"SENTINEL_SYMBOLS": SYMBOLS, "SENTINEL_BAR": "1s", "SENTINEL_API_WORKERS": "2"}
    with (
        scratch_db(server_dsn, template_db) as dsn,
        live_stack(tmp_path_factory.mktemp("up"), env, dsn) as up,
    ):
        yield up


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


class Console:
    """A page's console errors and uncaught exceptions."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._message)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _message(self, msg: Any) -> None:
        if msg.type == "error":
            url = (msg.location or {}).get("url", "")
            self.errors.append(f"{msg.text} ({url})")

    def unexpected(self, *allowed: str) -> list[str]:
        return [e for e in self.errors if not any(re.search(a, e) for a in allowed)]


@contextlib.contextmanager
def dashboard_page(browser: Any, url: str) -> Iterator[tuple[Any, Console]]:
    """A new page with the dashboard at ``url`` loaded (not yet live), and its console."""
    page = browser.new_page()
    console = Console(page)
    try:
        page.goto(f"{url}/")
        page.wait_for_selector("body[data-ready='true']")
        yield page, console
    finally:
        page.close()


@contextlib.contextmanager
def own_api_page(
    browser: Any, stack: LiveStack, env: dict[str, str], log: Path
) -> Iterator[tuple[Any, Console]]:
    """The dashboard from an API process of its own on the stack's database, with ``env``."""
    with (
        api_process({"DATABASE_URL": stack.dsn, **env}, log=log) as url,
        dashboard_page(browser, url) as opened,
    ):
        yield opened


@pytest.fixture
def page(browser: Any, stack: LiveStack) -> Iterator[tuple[Any, Console]]:
    with dashboard_page(browser, stack.api) as (page, console):
        page.wait_for_selector("#live[data-state='live']")
        yield page, console


# Sessions of the daily table: 2024-07-04 is a holiday, 07-03 an early close.
DAILY_SESSIONS = XNYS.sessions_in_range("2024-07-01", "2024-07-05")
DAILY_COLUMNS = ("open", "high", "low", "close", "day", "overnight", "volume", "trades", "vol")


@pytest.fixture(scope="module")
def summaries(stack: LiveStack) -> list[dict[str, Any]]:
    """Daily summaries of AAPL, the page's first ticker, as the dataflow writes them."""
    rows = [summary_row("AAPL", s, i) for i, s in enumerate(DAILY_SESSIONS)]
    insert_summaries(stack.dsn, rows)
    return rows


def bars_shown(page: Any) -> int:
    return int(page.get_attribute("#price-box", "data-bars") or 0)


def test_up_prints_the_dashboard_first(stack: LiveStack) -> None:
    lines = [ln.strip() for ln in stack.text().split("Stock Sentinel is up", 1)[1].splitlines()]
    assert lines[1] == f"dashboard {stack.api}/"
    assert lines[2].startswith(f"api       {stack.api}")


def test_candles_render_and_new_bars_arrive_live(
    page: tuple[Any, Console], stack: LiveStack, tmp_path: Path
) -> None:
    p, console = page
    p.wait_for_function("document.querySelector('#price-box').dataset.bars >= 5")
    p.wait_for_function(f"({CANDLE_PIXELS})() > 50")
    assert p.locator("#tickers tbody tr").count() == len(SYMBOLS.split(","))
    assert p.text_content("#tz") is not None
    assert "America/New_York" in (p.text_content("#tz") or "")

    p.evaluate("window.__sameDocument = true")
    last = p.get_attribute("#price-box", "data-last-bar")
    p.wait_for_function(
        "last => document.querySelector('#price-box').dataset.lastBar > last", arg=last
    )
    assert p.evaluate("window.__sameDocument") is True, "the new bar came without a reload"
    assert p.get_attribute("#live", "data-state") == "live"
    first = p.locator("#tickers tbody tr").first
    assert re.fullmatch(r"[\d,]+\.\d\d", first.locator("[data-col='last']").inner_text())
    assert re.fullmatch(r"\d+\.\d%", first.locator("[data-col='rv']").inner_text())

    # Longer bars are re-bucketed by the API (interval=), and live bars join the bucket.
    with p.expect_response(lambda r: "interval=1m" in r.url and r.status == 200):
        p.select_option("#interval", "1m")
    p.wait_for_function("window.sentinelDashboard.candles.every(c => c.time % 60 === 0)")
    p.select_option("#interval", "")
    p.wait_for_function(f"({CANDLE_PIXELS})() > 50")

    p.screenshot(path=tmp_path / "dashboard-1280x800.png")
    p.set_viewport_size({"width": 390, "height": 844})
    p.wait_for_function("document.documentElement.scrollWidth <= 390")
    p.screenshot(path=tmp_path / "dashboard-390x844.png")
    assert console.unexpected() == []


def test_a_revised_bar_redraws_its_candle(page: tuple[Any, Console], stack: LiveStack) -> None:
    """A bar rewritten after it closed (late trades, a backfilled gap) is a `bar_revision`
    event: the chart reads its bars back and shows the new values."""
    p, console = page
    p.wait_for_function("window.sentinelDashboard.candles.length >= 5")
    symbol = p.evaluate("window.sentinelDashboard.selected")
    when = p.evaluate("window.sentinelDashboard.candles[1].time")  # closed long ago
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(
            """UPDATE bars SET high = high * 1.5, revision = 99
               WHERE symbol = %s AND time = to_timestamp(%s) RETURNING high""",
            (symbol, when),
        )
        high = conn.execute(
            "SELECT high FROM bars WHERE symbol = %s AND time = to_timestamp(%s)", (symbol, when)
        ).fetchone()
    assert high is not None
    p.wait_for_function(
        """([t, h]) => window.sentinelDashboard.candles.some(c => c.time === t && c.high === h)""",
        arg=[when, high[0]],
    )
    assert console.unexpected() == []


def test_the_form_adds_and_removes_tickers_and_shows_the_apis_message(
    page: tuple[Any, Console], stack: LiveStack
) -> None:
    p, console = page
    row = p.locator("#tickers tbody tr[data-symbol='IBM']")
    p.focus("#symbol")
    p.keyboard.type("ibm")
    p.keyboard.press("Enter")
    row.wait_for()
    assert "IBM" in (p.text_content("#form-message") or "")
    active = {t["symbol"] for t in httpx.get(f"{stack.api}/tickers?active=true").json()}
    assert "IBM" in active
    # The feed subscribes, the dataflow makes its first bar, and the stream brings it.
    p.wait_for_function(
        "document.querySelector(\"tr[data-symbol='IBM'] [data-col='last']\").textContent"
        " !== '\\u2013'"
    )

    p.fill("#symbol", "IBM")
    p.focus("#add")
    p.keyboard.press("Tab")  # to Remove
    p.keyboard.press("Enter")
    row.wait_for(state="detached")
    active = {t["symbol"] for t in httpx.get(f"{stack.api}/tickers?active=true").json()}
    assert "IBM" not in active

    expected = httpx.post(f"{stack.api}/tickers", json={"symbol": "NOT A SYMBOL"})
    assert expected.status_code == 422
    p.fill("#symbol", "NOT A SYMBOL")
    p.keyboard.press("Enter")
    p.wait_for_selector("#form-message.error")
    assert p.text_content("#form-message") == expected.json()["error"]
    assert console.unexpected(r"status of 422 .*/tickers\)$") == []


def test_it_reconnects_after_the_api_restarts_and_catches_up(
    page: tuple[Any, Console], stack: LiveStack
) -> None:
    p, console = page
    refetches = int(p.get_attribute("body", "data-refetches") or 0)
    os.kill(stack.child("uvicorn"), signal.SIGKILL)
    p.wait_for_selector("#live[data-state='reconnecting']")
    wait_until(lambda: "api restarted" in stack.text(), 30, "the API restarted", stack.log)
    p.wait_for_selector("#live[data-state='live']", timeout=30_000)
    p.wait_for_function(f"Number(document.body.dataset.refetches) > {refetches}")
    shown = bars_shown(p)
    last = p.get_attribute("#price-box", "data-last-bar")
    p.wait_for_function(
        "last => document.querySelector('#price-box').dataset.lastBar > last", arg=last
    )
    assert bars_shown(p) >= shown
    # The stream was cut and requests could not connect while the API was down (network
    # errors, no HTTP status); nothing else went wrong.
    assert console.unexpected(r"^Failed to load resource: net::ERR_[A-Z_]+ ") == []


def test_with_a_read_key_the_page_asks_for_it_then_reads_and_streams_with_it(
    browser: Any, stack: LiveStack, tmp_path: Path
) -> None:
    env = {"SENTINEL_API_KEY": API_KEY, "SENTINEL_API_READ_KEY_REQUIRED": "true"}
    with own_api_page(browser, stack, env, tmp_path / "api.log") as (p, console):
        assert "needs its key" in (p.text_content("#notice") or "")
        assert p.locator("#tickers tbody tr").count() == 0
        p.fill("#api-key", API_KEY)
        p.press("#api-key", "Enter")
        p.wait_for_selector("#live[data-state='live']")
        p.wait_for_function("document.querySelector('#price-box').dataset.bars >= 2")
        assert p.locator("#tickers tbody tr").count() == len(SYMBOLS.split(","))
        assert p.is_hidden("#notice")
        last = p.get_attribute("#price-box", "data-last-bar")
        p.wait_for_function(
            "last => document.querySelector('#price-box').dataset.lastBar > last", arg=last
        )
        # Without the key, reads were refused: those 401s, and nothing else.
        assert console.unexpected(r"status of 401 ") == []


def test_without_the_chart_library_the_page_says_so_and_still_works(
    browser: Any, stack: LiveStack, tmp_path: Path
) -> None:
    env = {"SENTINEL_DASHBOARD_CHARTS_JS": str(tmp_path / "none.js")}
    with own_api_page(browser, stack, env, tmp_path / "api.log") as (p, console):
        p.wait_for_selector("#live[data-state='live']")
        assert "Charts are not installed" in (p.text_content("#charts-note") or "")
        assert p.is_hidden("#price-box")
        assert p.locator("canvas").count() == 0
        assert p.locator("#tickers tbody tr").count() == len(SYMBOLS.split(","))
        p.wait_for_function("document.querySelectorAll('#scores tbody tr').length > 0")
        assert console.unexpected() == []


def shown_as(row: dict[str, Any]) -> dict[str, str]:
    """How the daily table writes a row's cells, worked out here from the stored values."""
    day = row["close"] / row["open"] - 1
    overnight = row["overnight_return"]

    def bp(r: float | None) -> str:
        if r is None:
            return "\u2013"
        text = f"{abs(r) * 1e4:.0f} bp"
        return f"+{text}" if r > 0 else f"\u2212{text}" if r < 0 else text

    return {
        "open": f"{row['open']:,.2f}",
        "high": f"{row['high']:,.2f}",
        "low": f"{row['low']:,.2f}",
        "close": f"{row['close']:,.2f}",
        "day": bp(day),
        "overnight": bp(overnight),
        "volume": f"{row['volume']:,.0f}",
        "trades": f"{row['trades']:,}",
        "vol": f"{row['realized_vol_ann'] * 100:.1f}%",
    }


def expected_market(text: str, state: str) -> None:
    """The market line as XNYS stands now, by `exchange_calendars` itself."""
    cal = xcals.get_calendar("XNYS")
    now = pd.Timestamp.now(tz="UTC").floor("min")
    around = {bool(cal.is_open_on_minute(now + pd.Timedelta(minutes=m))) for m in (-2, 0, 2)}
    if len(around) > 1:
        pytest.skip("the market opens or closes this very minute: no stable answer")
    (open_now,) = around
    change = cal.next_close(now) if open_now else cal.next_open(now)
    word = "open" if open_now else "closed"
    assert state == word
    assert text.startswith(f"market {word} (XNYS) \u00b7 {'closes' if open_now else 'opens'} ")
    assert change.tz_convert("America/New_York").strftime("%H:%M") in text


def test_the_selected_ticker_shows_its_market_and_daily_summary(
    browser: Any, stack: LiveStack, summaries: list[dict[str, Any]], tmp_path: Path
) -> None:
    with dashboard_page(browser, f"{stack.api}") as (p, console):
        p.wait_for_selector("#live[data-state='live']")
        assert p.text_content("#detail-title") == "AAPL"
        p.wait_for_selector("#market:not([data-state='unknown'])")
        market = p.locator("#market")
        answer = httpx.get(f"{stack.api}/sessions/AAPL").json()
        expected_market(market.inner_text(), market.get_attribute("data-state") or "")
        override = answer["effective_calendar"] if answer["effective_calendar"] != "XNYS" else ""
        assert market.get_attribute("data-override") == override
        assert ("demo runs" in market.inner_text()) == bool(override)
        assert "Next session" in (market.get_attribute("title") or "")

        p.wait_for_selector("#daily tbody tr[data-date='2024-07-03']")
        dates = [
            d
            for d in p.locator("#daily tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.date)"
            )
            if d.startswith("2024-07")
        ]
        assert dates == ["2024-07-05", "2024-07-03", "2024-07-02", "2024-07-01"]
        assert p.is_hidden("#daily-empty")
        for row in summaries:
            tr = p.locator(f"#daily tbody tr[data-date='{row['session_date']}']")
            cells = {c: tr.locator(f"[data-col='{c}']").inner_text() for c in DAILY_COLUMNS}
            assert cells == shown_as(row), row["session_date"]
            alerts = sum(row["alerts"].values())
            assert tr.locator("[data-col='alerts']").inner_text() == (
                str(alerts) if alerts else "\u2013"
            )
        early = p.locator("#daily tbody tr[data-date='2024-07-03'] [data-col='date']")
        assert "13:00" in (early.get_attribute("title") or ""), "the early close, New York time"
        p.screenshot(path=tmp_path / "daily-1280x800.png", full_page=True)
        assert console.unexpected() == []


def test_with_the_demo_override_the_market_line_says_the_demo_runs_24_7(
    browser: Any, stack: LiveStack, tmp_path: Path
) -> None:
    env = {"SENTINEL_CALENDAR_OVERRIDE": "24/7"}
    with own_api_page(browser, stack, env, tmp_path / "api.log") as (p, console):
        p.wait_for_selector("#market:not([data-state='unknown'])")
        market = p.locator("#market")
        assert market.get_attribute("data-override") == "24/7"
        assert market.inner_text().endswith("; demo runs 24/7")
        expected_market(market.inner_text(), market.get_attribute("data-state") or "")
        assert console.unexpected() == []
