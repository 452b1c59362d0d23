"""``GET /`` and ``/dashboard``: the page, its files, and what it is told about this API.
(The page itself, in a browser, is ``test_dashboard_browser.py``.)"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from api.main import create_app
from api.routes import dashboard
from tests.api.conftest import API_KEY, settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# Nothing here touches the database: no lifespan, so no pool and no listener.
NO_DB = "postgresql://sentinel@127.0.0.1:1/none"


def client(**overrides: Any) -> TestClient:
    return TestClient(create_app(settings(**overrides), dsn=NO_DB))


def config_of(html: str) -> dict[str, Any]:
    found = re.search(r'<script id="config" type="application/json">(.*?)</script>', html)
    assert found, html[:500]
    parsed: dict[str, Any] = json.loads(found.group(1))
    return parsed


@pytest.fixture
def charts_js(tmp_path: Path) -> Path:
    path = tmp_path / "lightweight-charts.js"
    path.write_text("window.LightweightCharts = {};\n")
    return path


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_the_page_is_served_at_the_root_and_at_dashboard(path: str, charts_js: Path) -> None:
    r = client(dashboard_charts_js=charts_js).get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="static/dashboard.js">' in r.text
    assert config_of(r.text) == {
        "charts": "static/vendor/lightweight-charts.js",
        "timeZone": "America/New_York",
        "writeKey": False,
        "readKey": False,
        # The volatility model the page shows and its band: the dashboards' and alerts'.
        "forecastModel": "range_har",
        "bandModels": ["range_har", "har", "ewma", "rolling"],
    }


def test_its_files_are_served_with_their_types(charts_js: Path) -> None:
    c = client(dashboard_charts_js=charts_js)
    js = c.get("/static/dashboard.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in js.text
    css = c.get("/static/dashboard.css")
    assert css.headers["content-type"].startswith("text/css")
    lib = c.get("/static/vendor/lightweight-charts.js")
    assert lib.status_code == 200
    assert lib.text == charts_js.read_text()
    assert lib.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("name", ["index.html", "..%2Fmain.py", "nope.js", "%2e%2e"])
def test_nothing_else_is_served_from_static(name: str) -> None:
    r = client().get(f"/static/{name}")
    assert r.status_code == 404
    assert "error" in r.json()


def test_without_the_charts_the_page_says_so_and_the_file_is_a_clear_404(tmp_path: Path) -> None:
    c = client(dashboard_charts_js=tmp_path / "missing.js")
    assert config_of(c.get("/").text)["charts"] is None
    r = c.get("/static/vendor/lightweight-charts.js")
    assert r.status_code == 404
    assert "make" in r.json()["error"]
    assert "Charts are not installed" in c.get("/static/dashboard.js").text


def test_the_installed_charts_are_found_beside_the_packages() -> None:
    installed = dashboard.CHARTS_CANDIDATES[0]
    if not installed.is_file():
        pytest.skip("node_modules/ is not installed (`make` runs npm ci)")
    assert dashboard.charts_path(settings()) == installed
    assert "TradingView" in installed.read_text()[:400]


def test_the_page_asks_for_the_key_when_one_is_configured() -> None:
    assert config_of(client(api_key=API_KEY).get("/").text)["writeKey"] is True
    assert config_of(client(api_key=API_KEY).get("/").text)["readKey"] is False
    both = client(api_key=API_KEY, api_read_key_required=True)
    assert config_of(both.get("/").text)["readKey"] is True
    assert both.get("/").status_code == 200, "the page itself holds no data: it is open"
    assert both.get("/tickers").status_code == 401


@pytest.mark.parametrize(
    ("overrides", "zone"),
    [
        ({}, "America/New_York"),
        ({"calendar": "XLON"}, "Europe/London"),
        ({"calendar": "xtks"}, "Asia/Tokyo"),
        ({"calendar": "24/7"}, "UTC"),
        ({"calendar": "always"}, "UTC"),
        ({"calendar_override": "24/7"}, "America/New_York"),
        ({"dashboard_time_zone": "Asia/Tokyo"}, "Asia/Tokyo"),
    ],
)
def test_times_are_in_the_markets_time_zone(overrides: dict[str, str], zone: str) -> None:
    assert config_of(client(**overrides).get("/").text)["timeZone"] == zone


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        settings(dashboard_time_zone="Mars/Olympus_Mons")


def test_the_config_cannot_close_its_script_element() -> None:
    html = dashboard.render_page({"timeZone": "</script><script>alert(1)</script>"})
    assert "</script><script>alert(1)" not in html
    assert config_of(html)["timeZone"] == "</script><script>alert(1)</script>"


def test_openapi_lists_the_page_once_and_no_files() -> None:
    paths = create_app(settings()).openapi()["paths"]
    assert paths["/"]["get"]["tags"] == ["dashboard"]
    assert "text/html" in paths["/"]["get"]["responses"]["200"]["content"]
    assert "/dashboard" in paths
    assert not [p for p in paths if p.startswith("/static")]
