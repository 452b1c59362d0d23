"""``GET /`` (and ``/dashboard``): the live dashboard, a page the API serves itself.

Plain HTML, CSS and one ES module of our own (``api/static/``), reading the same
endpoints as any client (``/tickers``, ``/bars``, ``/metrics``, ``/forecasts``,
``/models``, ``/alerts``, ``/sessions``, ``/summary``, ``/health``) and following
``/stream``. Its charts are
TradingView's ``lightweight-charts``, installed from the npm registry by ``make``
(``npm ci`` into ``node_modules/``) or by the Dockerfile's build stage, and served from
there: when the file is not installed, the page says so and works without charts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from api.deps import SettingsDep
from api.errors import echo, not_found, text_responses
from dataflows.sessions import market_calendar
from online_models.config import BAND_MODELS, FORECAST_MODEL
from sentinel.settings import Settings

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
# Our own files, by name: nothing else under /static is served.
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
CHARTS_FILE = "lightweight-charts.standalone.production.js"
CHARTS_URL = "static/vendor/lightweight-charts.js"
# `npm ci` beside the packages (make), or where the app image copies it (Dockerfile).
CHARTS_CANDIDATES = (
    Path(__file__).resolve().parents[2]
    / "node_modules"
    / "lightweight-charts"
    / "dist"
    / CHARTS_FILE,
    Path("/opt/sentinel/vendor") / CHARTS_FILE,
)
CONFIG_PLACEHOLDER = "{{CONFIG}}"
NO_STORE = {"Cache-Control": "no-cache"}


def charts_path(settings: Settings) -> Path | None:
    """The lightweight-charts file to serve: the setting's, else the first installed."""
    candidates = (
        (settings.dashboard_charts_js,) if settings.dashboard_charts_js else CHARTS_CANDIDATES
    )
    return next((p for p in candidates if p is not None and p.is_file()), None)


def market_time_zone(calendar: str) -> str:
    """The IANA time zone of a market calendar (``24/7``: UTC; an unknown one: UTC)."""
    try:
        return market_calendar(calendar).tz  # the calendar /sessions loads, cached
    except ValueError:  # UnknownCalendar, or one exchange_calendars cannot load
        return "UTC"


async def page_config(settings: Settings) -> dict[str, Any]:
    """What the page needs to know about this API: where the charts are, the time zone
    it shows times in (the default calendar's market, ``SENTINEL_CALENDAR``, unless
    ``SENTINEL_DASHBOARD_TIME_ZONE`` says), and whether writes (or reads too) need the
    API key. Each ticker's own market (calendar, open or closed) the page reads from
    ``/sessions``."""
    tz = settings.dashboard_time_zone or await asyncio.to_thread(
        market_time_zone, settings.calendar
    )
    keyed = settings.api_key is not None
    return {
        "charts": CHARTS_URL if charts_path(settings) else None,
        "timeZone": tz,
        "writeKey": keyed,
        "readKey": keyed and settings.api_read_key_required,
        "forecastModel": FORECAST_MODEL,
        "bandModels": list(BAND_MODELS),
    }


def render_page(config: dict[str, Any]) -> str:
    # The config goes into a <script type="application/json">: no "<" may close it early.
    blob = json.dumps(config, separators=(",", ":")).replace("<", "\\u003c")
    return _template().replace(CONFIG_PLACEHOLDER, blob)


@lru_cache(maxsize=1)
def _template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


PageRoute = Callable[[Settings], Awaitable[HTMLResponse]]
HTML_RESPONSES = text_responses("text/html", "The page")


def html_page(path: str, summary: str) -> Callable[[PageRoute], PageRoute]:
    """``router.get`` for an HTML page (the schema says ``text/html``)."""
    return router.get(path, response_class=HTMLResponse, responses=HTML_RESPONSES, summary=summary)


@html_page("/", "The live dashboard")
async def dashboard(settings: SettingsDep) -> HTMLResponse:
    """The live dashboard (HTML): tickers with their last price, change today, realized
    and forecast volatility, Sharpe ratio, alerts and feed state; for the selected
    ticker, its market open or closed, candlesticks, volatility and return forecasts
    against what happened, its daily summaries, the models' scores and the latest
    alerts; a form to add and remove tickers. It updates
    itself from `/stream`. Open to anyone: the data it shows is read with the API key
    the user enters when `SENTINEL_API_READ_KEY_REQUIRED` is set."""
    return HTMLResponse(render_page(await page_config(settings)), headers=NO_STORE)


@html_page("/dashboard", "The live dashboard (same as /)")
async def dashboard_alias(settings: SettingsDep) -> HTMLResponse:
    """The same page as `/`."""
    return await dashboard(settings)


@router.get("/static/vendor/lightweight-charts.js", include_in_schema=False)
async def charts_library(settings: SettingsDep) -> FileResponse:
    path = charts_path(settings)
    if path is None:
        raise not_found("lightweight-charts is not installed with this API (run `make`)")
    return FileResponse(path, media_type="text/javascript")


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise not_found(f"no such dashboard file {echo(name)}")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name], headers=NO_STORE)
