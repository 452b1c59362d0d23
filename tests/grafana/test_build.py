"""The generated files: committed and up to date, and in the shapes Grafana loads."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import alerts, build, market, models, pipeline_health, symbol
from grafana.common import (
    DATASOURCE_TYPE,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    RUNBOOK_BASE_URL,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "grafana" / "provisioning"
RUNBOOK = ROOT / "docs" / "runbook.md"
EXPR = "__expr__"


def _load(rel: str) -> Any:
    text = (COMMITTED / rel).read_text()
    return json.loads(text) if rel.endswith(".json") else yaml.safe_load(text)


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in (COMMITTED / "dashboards").glob("*.json")}


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load("alerting/rules.yaml")["groups"] for rule in group["rules"]]


def test_committed_files_are_what_build_generates(tmp_path: Path) -> None:
    written = build.build(tmp_path)
    rebuilt = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in written}
    committed = {
        p.relative_to(COMMITTED).as_posix(): p.read_bytes()
        for p in COMMITTED.rglob("*")
        if p.is_file()
    }
    assert set(rebuilt) == set(committed), "run `sentinel grafana build` and commit"
    stale = [rel for rel in rebuilt if rebuilt[rel] != committed[rel]]
    assert not stale, f"out of date, run `sentinel grafana build`: {stale}"


def test_build_is_deterministic_and_removes_what_it_no_longer_makes(tmp_path: Path) -> None:
    leftover = tmp_path / "dashboards" / "renamed.json"
    leftover.parent.mkdir(parents=True)
    leftover.write_text("{}")
    first = {p: p.read_bytes() for p in build.build(tmp_path)}
    second = {p: p.read_bytes() for p in build.build(tmp_path)}
    assert first == second
    assert not leftover.exists()


def test_dashboard_json_is_sorted_and_indented() -> None:
    for name, board in _dashboards().items():
        text = (COMMITTED / "dashboards" / name).read_text()
        assert text == json.dumps(board, sort_keys=True, indent=2) + "\n"


def test_dashboards_have_fixed_unique_uids_and_the_generated_tag() -> None:
    boards = _dashboards()
    uids = [b["uid"] for b in boards.values()]
    assert sorted(uids) == sorted([market.UID, symbol.UID, models.UID, pipeline_health.UID])
    for board in boards.values():
        assert "generated" in board["tags"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]
        assert all(p.get("title") and p.get("description") for p in board["panels"])


def test_panels_fit_the_grid_without_overlapping() -> None:
    for board in _dashboards().values():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0, panel["title"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            mine = _cells(pos)
            assert not cells & mine, f"{panel['title']} overlaps another panel"
            cells |= mine


def _cells(pos: dict[str, int]) -> set[tuple[int, int]]:
    """The grid cells a panel covers."""
    columns = range(pos["x"], pos["x"] + pos["w"])
    rows = range(pos["y"], pos["y"] + pos["h"])
    return set(itertools.product(columns, rows))


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def test_every_panel_and_query_uses_the_provisioned_datasource_by_uid() -> None:
    for board in _dashboards().values():
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
            assert panel["targets"], panel["title"]
        refs = list(_datasource_refs(board))
        assert refs
        assert all(r == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID} for r in refs)
    (source,) = _load("datasources/timescaledb.yaml")["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == DATASOURCE_TYPE


def test_datasource_is_the_read_only_role_on_timescaledb() -> None:
    doc = _load("datasources/timescaledb.yaml")
    assert doc["apiVersion"] == 1
    (source,) = doc["datasources"]
    assert source["user"] == "sentinel_grafana"
    assert source["secureJsonData"]["password"] == "$SENTINEL_GRAFANA_DB_PASSWORD"
    assert source["jsonData"]["timescaledb"] is True
    assert source["jsonData"]["database"] == "sentinel"
    assert source["url"] == "timescaledb:5432"


def test_dashboard_provider_points_at_the_dashboards() -> None:
    doc = _load("dashboards/provider.yaml")
    (provider,) = doc["providers"]
    assert doc["apiVersion"] == 1
    assert provider["type"] == "file"
    assert provider["folder"] == FOLDER_TITLE
    assert provider["folderUid"] == FOLDER_UID
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"


def test_alert_rules_load_as_grafana_provisioning() -> None:
    doc = _load("alerting/rules.yaml")
    assert doc["apiVersion"] == 1
    (group,) = doc["groups"]
    assert group["folder"] == FOLDER_TITLE
    assert group["orgId"] == 1
    assert re.fullmatch(r"\d+[smh]", group["interval"])
    rules = group["rules"]
    assert len(rules) == len(alerts.RULES)
    assert len({r["uid"] for r in rules}) == len(rules)
    for rule in rules:
        assert rule["noDataState"] in {"Alerting", "NoData", "OK"}
        assert rule["execErrState"] in {"Alerting", "Error", "OK"}
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["uid"]
        assert set(rule["annotations"]) >= {"summary", "description", "runbook_url"}
        assert rule["labels"]["severity"] in {"warning", "critical"}
        _check_queries(rule)


def _check_queries(rule: dict[str, Any]) -> None:
    ref_ids = [q["refId"] for q in rule["data"]]
    assert len(ref_ids) == len(set(ref_ids))
    assert rule["condition"] in ref_ids, "the condition names a query of the rule"
    seen: set[str] = set()
    for query in rule["data"]:
        model = query["model"]
        assert model["refId"] == query["refId"]
        if query["datasourceUid"] == EXPR:
            assert model["datasource"] == {"type": EXPR, "uid": EXPR}
            assert model["expression"] in seen, "an expression refers to an earlier query"
        else:
            assert query["datasourceUid"] == DATASOURCE_UID
            assert model["datasource"]["uid"] == DATASOURCE_UID
            assert model["rawQuery"] is True
            assert model["format"] == "table"
            assert query["relativeTimeRange"]["from"] > query["relativeTimeRange"]["to"] == 0
        seen.add(query["refId"])


def _github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_runbook_url_is_a_section_of_the_runbook() -> None:
    anchors = _github_anchors(RUNBOOK.read_text())
    for rule in _rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == RUNBOOK_BASE_URL, "the API serves docs/runbook.md there"
        assert anchor in anchors, f"{rule['uid']}: no section #{anchor} in docs/runbook.md"
        assert f"`{rule['uid']}`" in RUNBOOK.read_text()


def test_contact_points_use_environment_variables_for_secrets() -> None:
    doc = _load("alerting/contact-points.yaml")
    assert doc["apiVersion"] == 1
    receivers = {p["name"]: p["receivers"] for p in doc["contactPoints"]}
    (webhook,) = receivers[alerts.WEBHOOK]
    assert webhook["type"] == "webhook"
    assert webhook["settings"]["url"].endswith("/alerts/notifications")
    assert webhook["settings"]["httpMethod"] == "POST"
    assert webhook["settings"]["authorization_credentials"] == "$SENTINEL_API_KEY"
    ((email,), (slack,)) = receivers[alerts.EMAIL], receivers[alerts.SLACK]
    assert email["settings"]["addresses"] == "$SENTINEL_ALERT_EMAIL"
    assert slack["settings"]["url"] == "$SENTINEL_SLACK_WEBHOOK_URL"
    uids = [r["uid"] for rs in receivers.values() for r in rs]
    assert len(uids) == len(set(uids))


def test_policy_routes_only_to_provisioned_contact_points() -> None:
    names = {p["name"] for p in _load("alerting/contact-points.yaml")["contactPoints"]}
    doc = _load("alerting/policies.yaml")
    assert doc["apiVersion"] == 1
    (policy,) = doc["policies"]

    def receivers(route: dict[str, Any]) -> Iterator[str]:
        yield route["receiver"]
        for child in route.get("routes", []):
            yield from receivers(child)

    assert set(receivers(policy)) <= names
    assert policy["receiver"] == alerts.WEBHOOK
    is_critical = ["severity", "=", "critical"]
    critical = [r for r in policy["routes"] if is_critical in r.get("object_matchers", [])]
    assert {r["receiver"] for r in critical} == {alerts.EMAIL, alerts.SLACK}
    assert all(r["continue"] for r in policy["routes"])


@pytest.mark.parametrize("factory", alerts.RULES, ids=lambda f: f.__name__)
def test_rule_specs_are_complete(factory: Any) -> None:
    spec = factory()
    assert spec.uid.startswith("sentinel-")
    assert spec.summary
    assert spec.description
    assert "$__timeFilter(" in spec.sql
