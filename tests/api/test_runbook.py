"""Every Grafana alert rule's runbook link opens the right section of the runbook page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import yaml
from fastapi.testclient import TestClient

from api.main import create_app
from grafana.common import RUNBOOK_BASE_URL
from sentinel.settings import Settings
from tests.conftest import ROOT


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(v for k, v in attrs if k == "id" and v)


def test_every_rule_links_to_a_section_the_api_serves(db: str) -> None:
    rules = yaml.safe_load((ROOT / "grafana/provisioning/alerting/rules.yaml").read_text())
    urls = [r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]]
    assert urls
    app = create_app(Settings(database_url=db))
    with TestClient(app) as client:
        page = client.get("/runbook")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    parser = _Ids()
    parser.feed(page.text)
    for url in urls:
        base, _, section = url.partition("#")
        assert base == RUNBOOK_BASE_URL
        assert re.fullmatch(r"[a-z0-9-]+", section)
        assert section in parser.ids, f"{section} is not a heading of the runbook"
