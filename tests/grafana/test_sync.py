"""``grafana sync`` against a local server that speaks Grafana's API routes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from grafana import alerts, build, files
from grafana.common import FOLDER_TITLE, FOLDER_UID
from grafana.sync import SyncError, sync
from tests.grafana.fake_grafana import FakeGrafana, fake_grafana

ENV = {
    "SENTINEL_API_KEY": "k3y-for-the-api",
    "SENTINEL_ALERT_EMAIL": "oncall@example.com",
    "SENTINEL_SLACK_WEBHOOK_URL": "https://hooks.slack.example/T0/B0/x",
}
DASHBOARD_UIDS = {files.plain(f())["uid"] for f in build.DASHBOARDS.values()}
RULE_UIDS = {r["uid"] for r in files.rule_group_api()["rules"]}


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with fake_grafana() as fake:
        yield fake


def test_first_sync_creates_everything(grafana: FakeGrafana) -> None:
    report = sync(grafana.url, token=grafana.token, env=ENV)
    state = grafana.snapshot()

    assert state.folders[FOLDER_UID]["title"] == FOLDER_TITLE
    assert set(state.dashboards) == DASHBOARD_UIDS
    for stored in state.dashboards.values():
        assert stored["meta"]["folderUid"] == FOLDER_UID
        assert "generated" in stored["dashboard"]["tags"]
    assert set(state.rules) == RULE_UIDS
    assert {(r["folderUID"], r["ruleGroup"]) for r in state.rules.values()} == {
        (FOLDER_UID, alerts.RULE_GROUP)
    }
    assert state.groups[(FOLDER_UID, alerts.RULE_GROUP)] == alerts.RULE_GROUP_INTERVAL_S

    points = {cp["name"]: cp for cp in state.contact_points.values()}
    webhook = points[alerts.WEBHOOK]["settings"]
    assert webhook["url"] == alerts.WEBHOOK_URL
    assert webhook["authorization_credentials"] == ENV["SENTINEL_API_KEY"]
    assert points[alerts.EMAIL]["settings"]["addresses"] == ENV["SENTINEL_ALERT_EMAIL"]
    assert points[alerts.SLACK]["settings"]["url"] == ENV["SENTINEL_SLACK_WEBHOOK_URL"]

    policy = state.policy
    assert policy["receiver"] == alerts.WEBHOOK
    assert [r["receiver"] for r in policy["routes"]] == [alerts.WEBHOOK, alerts.EMAIL, alerts.SLACK]
    assert policy["routes"][1]["object_matchers"] == [["severity", "=", "critical"]]

    assert report.changed
    assert report.count("created") == 1 + len(DASHBOARD_UIDS) + len(RULE_UIDS) + 3
    assert report.count("skipped") == 0


def test_what_sync_sends_is_what_grafana_expects(grafana: FakeGrafana) -> None:
    sync(grafana.url, token=grafana.token, env=ENV)
    sent = {(r.method, r.path): r for r in grafana.requests}
    dashboard_posts = [r for r in grafana.requests if r.path == "/api/dashboards/db"]
    assert len(dashboard_posts) == len(DASHBOARD_UIDS)
    for post in dashboard_posts:
        assert post.body["overwrite"] is True
        assert post.body["folderUid"] == FOLDER_UID
        assert "id" not in post.body["dashboard"]
    rule_posts = [r for r in grafana.requests if r.path == "/api/v1/provisioning/alert-rules"]
    for post in rule_posts:
        assert post.method == "POST"
        assert post.body["folderUID"] == FOLDER_UID
        assert post.body["condition"] == "C"
        assert {d["refId"] for d in post.body["data"]} == {"A", "B", "C"}
    assert sent[("POST", "/api/folders")].body == {"title": FOLDER_TITLE, "uid": FOLDER_UID}
    assert all(r.headers["Authorization"] == f"Bearer {grafana.token}" for r in grafana.requests)


def test_second_sync_changes_nothing(grafana: FakeGrafana) -> None:
    sync(grafana.url, token=grafana.token, env=ENV)
    before = grafana.snapshot()
    writes = len(grafana.writes())

    report = sync(grafana.url, token=grafana.token, env=ENV)

    assert grafana.snapshot() == before
    assert len(grafana.writes()) == writes, "no POST or PUT the second time"
    assert not report.changed
    assert {c.action for c in report.changes} == {"unchanged"}


def test_sync_repairs_drift(grafana: FakeGrafana) -> None:
    sync(grafana.url, token=grafana.token, env=ENV)
    state = grafana.state
    board = next(iter(state.dashboards.values()))["dashboard"]
    board["title"] = "edited in the UI"
    state.rules["sentinel-stale-feed"]["for"] = "10m"
    state.contact_points["sentinel-email"]["settings"]["addresses"] = "someone@else.example"

    report = sync(grafana.url, token=grafana.token, env=ENV)

    updated = {(c.kind, c.name) for c in report.changes if c.action == "updated"}
    assert updated == {
        ("dashboard", board["uid"]),
        ("alert-rule", "sentinel-stale-feed"),
        ("contact-point", alerts.EMAIL),
    }
    assert grafana.state.rules["sentinel-stale-feed"]["for"] == "2m"
    assert grafana.state.dashboards[board["uid"]]["dashboard"]["version"] == 2


def test_unconfigured_contact_points_are_skipped_and_not_routed(grafana: FakeGrafana) -> None:
    report = sync(grafana.url, user="admin", password="pw", env={})
    state = grafana.snapshot()

    assert {cp["name"] for cp in state.contact_points.values()} == {alerts.WEBHOOK}
    (webhook,) = state.contact_points.values()
    assert "authorization_credentials" not in webhook["settings"]
    assert [r["receiver"] for r in state.policy["routes"]] == [alerts.WEBHOOK]
    skipped = {c.name: c.detail for c in report.changes if c.action == "skipped"}
    assert skipped == {
        alerts.EMAIL: "SENTINEL_ALERT_EMAIL not set",
        alerts.SLACK: "SENTINEL_SLACK_WEBHOOK_URL not set",
    }


def test_a_folder_provisioned_by_title_is_reused(grafana: FakeGrafana) -> None:
    folder = {"id": 99, "uid": "abc123", "title": FOLDER_TITLE, "version": 1}
    grafana.state.folders["abc123"] = folder
    report = sync(grafana.url, token=grafana.token, env=ENV)
    assert report.folder_uid == "abc123"
    assert set(grafana.state.folders) == {"abc123"}
    assert {d["meta"]["folderUid"] for d in grafana.state.dashboards.values()} == {"abc123"}
    assert {r["folderUID"] for r in grafana.state.rules.values()} == {"abc123"}


def test_bad_credentials_are_a_clear_error(grafana: FakeGrafana) -> None:
    with pytest.raises(SyncError, match="refused"):
        sync(grafana.url, token="wrong", env=ENV)
    assert not grafana.writes()


def test_an_unreachable_grafana_is_a_clear_error() -> None:
    with fake_grafana() as fake:
        url = fake.url  # closed once the block ends
    with pytest.raises(SyncError, match="cannot reach"):
        sync(url, token="t", timeout=2)


def test_report_lines_summarize_the_run(grafana: FakeGrafana) -> None:
    sync(grafana.url, token=grafana.token, env=ENV)
    lines = sync(grafana.url, token=grafana.token, env=ENV).lines()
    objects = 1 + len(DASHBOARD_UIDS) + len(RULE_UIDS) + 1 + 3 + 1  # folder ... group, policy
    assert lines[-1].endswith(f"0 created, 0 updated, {objects} unchanged, 0 skipped")
    assert json.dumps(lines)  # plain strings, printable by the CLI
