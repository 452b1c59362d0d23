"""``sentinel grafana sync``: push dashboards, folder, alert rules, contact points and the
notification policy to a running Grafana through its HTTP API (``grafana-client``).

Idempotent: each object is read first and written only when it differs from what
``build`` generates, so a second sync changes nothing. Comparison is "the server holds
at least what we send": Grafana adds fields of its own (ids, versions, provenance,
defaults) that are not differences. Secrets Grafana returns redacted (``[REDACTED]``)
cannot be compared; pass ``force=True`` to rewrite contact points after rotating one.

Contact point settings written ``$VAR`` in the provisioning files are taken from ``env``
here (Grafana expands them itself when it loads the files). A contact point with a
variable missing from ``env`` is skipped, and the policy routes only to those pushed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from grafana import alerts, build, files
from grafana.common import FOLDER_TITLE, FOLDER_UID, RUNBOOK_BASE_URL

Action = Literal["created", "updated", "unchanged", "skipped"]
REDACTED = "[REDACTED]"
_VAR = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class Change:
    kind: str  # folder, dashboard, alert-rule, rule-group, contact-point, policy
    name: str
    action: Action
    detail: str = ""

    def line(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.kind:<14} {self.name:<40} {self.action}{detail}"


@dataclass
class SyncReport:
    url: str
    folder_uid: str = FOLDER_UID
    changes: list[Change] = field(default_factory=list)

    def add(self, kind: str, name: str, action: Action, detail: str = "") -> None:
        self.changes.append(Change(kind, name, action, detail))

    @property
    def changed(self) -> bool:
        return any(c.action in ("created", "updated") for c in self.changes)

    def count(self, action: Action) -> int:
        return sum(c.action == action for c in self.changes)

    def lines(self) -> list[str]:
        out = [c.line() for c in self.changes]
        totals = ", ".join(f"{self.count(a)} {a}" for a in ("created", "updated", "unchanged"))
        return [*out, f"{self.url}: {totals}, {self.count('skipped')} skipped"]


class SyncError(RuntimeError):
    """Grafana refused something; the message says what and why."""


def sync(
    url: str,
    *,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    env: Mapping[str, str] | None = None,
    webhook_url: str = alerts.WEBHOOK_URL,
    runbook_base: str = RUNBOOK_BASE_URL,
    force: bool = False,
    timeout: float = 10.0,
) -> SyncReport:
    """Make the Grafana at ``url`` hold what ``build`` generates; report what changed.

    Authenticate with a service account ``token``, or ``user`` and ``password`` (also
    taken from ``http://user:password@host`` in the URL).
    """
    credential: str | tuple[str, str] | None = token
    if credential is None and user is not None:
        credential = (user, password or "")
    api = GrafanaApi.from_url(url, credential=credential, timeout=timeout)
    report = SyncReport(url)
    try:
        report.folder_uid = _folder(api, report)
        _dashboards(api, report)
        _rules(api, report, runbook_base)
        receivers = _contact_points(api, report, env or {}, webhook_url, force)
        _policy(api, report, receivers)
    except GrafanaClientError as exc:
        raise SyncError(f"Grafana at {url} refused the request: {exc.message}") from exc
    except GrafanaException as exc:
        raise SyncError(f"Grafana at {url} failed: {exc.message}") from exc
    except OSError as exc:  # niquests' connection errors are OSErrors
        raise SyncError(f"cannot reach Grafana at {url}: {exc}") from exc
    return report


# -- folder and dashboards -------------------------------------------------------------------


def _folder(api: GrafanaApi, report: SyncReport) -> str:
    """The folder's uid: ours, or that of an existing folder with our title (Grafana's file
    provisioning creates the folder by title, with a uid of its own)."""
    existing = _get(api, f"/folders/{FOLDER_UID}")
    if existing is not None:
        if existing.get("title") == FOLDER_TITLE:
            report.add("folder", FOLDER_UID, "unchanged")
        else:
            api.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
            report.add("folder", FOLDER_UID, "updated", "title")
        return FOLDER_UID
    for folder in api.folder.get_all_folders():
        if folder.get("title") == FOLDER_TITLE:
            uid = str(folder["uid"])
            report.add("folder", uid, "unchanged", f"existing folder {FOLDER_TITLE!r} reused")
            return uid
    api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    report.add("folder", FOLDER_UID, "created")
    return FOLDER_UID


def _dashboards(api: GrafanaApi, report: SyncReport) -> None:
    for factory in build.DASHBOARDS.values():
        desired: dict[str, Any] = files.plain(factory())
        uid = desired["uid"]
        current = _get(api, f"/dashboards/uid/{uid}")
        if current is not None and _same_dashboard(current, desired, report.folder_uid):
            report.add("dashboard", uid, "unchanged")
            continue
        body = {
            "dashboard": desired,
            "folderUid": report.folder_uid,
            "overwrite": True,
            "message": "sentinel grafana sync",
        }
        api.dashboard.update_dashboard(body)
        report.add("dashboard", uid, "created" if current is None else "updated")


def _same_dashboard(current: dict[str, Any], desired: dict[str, Any], folder_uid: str) -> bool:
    stored = {k: v for k, v in current.get("dashboard", {}).items() if k not in ("id", "version")}
    return stored == desired and current.get("meta", {}).get("folderUid") == folder_uid


# -- alert rules -------------------------------------------------------------------------------


def _rules(api: GrafanaApi, report: SyncReport, runbook_base: str) -> None:
    group = files.rule_group_api(runbook_base)
    provisioning = api.alertingprovisioning
    for desired in group["rules"]:
        desired = {**desired, "folderUID": report.folder_uid}
        uid = desired["uid"]
        current = _get(api, f"/v1/provisioning/alert-rules/{uid}")
        if current is None:
            provisioning.create_alertrule(desired)
            report.add("alert-rule", uid, "created")
        elif _contains(current, desired):
            report.add("alert-rule", uid, "unchanged")
        else:
            provisioning.update_alertrule(uid, desired)
            report.add("alert-rule", uid, "updated")
    title, interval = group["title"], group["interval"]
    current_group = _get(api, f"/v1/provisioning/folder/{report.folder_uid}/rule-groups/{title}")
    if current_group is not None and current_group.get("interval") == interval:
        report.add("rule-group", title, "unchanged", f"every {interval} s")
        return
    body = copy.deepcopy(current_group or {"rules": []})
    body.update({"title": title, "folderUid": report.folder_uid, "interval": interval})
    provisioning.update_rule_group(report.folder_uid, title, body)
    report.add("rule-group", title, "updated", f"every {interval} s")


# -- contact points and policy --------------------------------------------------------------


def _contact_points(
    api: GrafanaApi, report: SyncReport, env: Mapping[str, str], webhook_url: str, force: bool
) -> tuple[str, ...]:
    """Push the contact points whose variables ``env`` has; return their names."""
    provisioning = api.alertingprovisioning
    existing = {cp.get("uid"): cp for cp in provisioning.get_contactpoints()}
    pushed = []
    for desired in files.contact_points_api():
        if desired["type"] == "webhook":
            desired = _webhook(desired, env, webhook_url)
        resolved, missing = _resolve(desired, env)
        uid, name = resolved["uid"], resolved["name"]
        if missing:
            report.add("contact-point", name, "skipped", f"{', '.join(missing)} not set")
            continue
        pushed.append(name)
        current = existing.get(uid)
        if current is None:
            provisioning.create_contactpoint(resolved)
            report.add("contact-point", name, "created")
        elif not force and _contains(current, resolved):
            report.add("contact-point", name, "unchanged")
        else:
            provisioning.update_contactpoint(uid, resolved)
            report.add("contact-point", name, "updated")
    return tuple(pushed)


def _webhook(desired: dict[str, Any], env: Mapping[str, str], url: str) -> dict[str, Any]:
    settings = {**desired["settings"], "url": url}
    if not env.get(alerts.API_KEY_VAR):  # an API without a key takes unauthenticated posts
        settings.pop("authorization_scheme", None)
        settings.pop("authorization_credentials", None)
    return {**desired, "settings": settings}


def _resolve(desired: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not env.get(name):
            missing.append(name)
            return match.group(0)
        return env[name]

    settings = {
        k: _VAR.sub(value, v) if isinstance(v, str) else v for k, v in desired["settings"].items()
    }
    return {**desired, "settings": settings}, missing


def _policy(api: GrafanaApi, report: SyncReport, receivers: tuple[str, ...]) -> None:
    desired = files.policy_api(receivers)
    provisioning = api.alertingprovisioning
    current = provisioning.get_notification_policy_tree()
    if _contains(current, desired):
        report.add("policy", "notification policy", "unchanged")
        return
    provisioning.set_notification_policy_tree(desired)
    report.add("policy", "notification policy", "updated", " -> ".join(receivers))


# -- helpers ---------------------------------------------------------------------------------


def _get(api: GrafanaApi, path: str) -> Any:
    """GET ``path`` under /api; ``None`` when Grafana answers 404."""
    try:
        return api.client.GET(path)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def _contains(actual: Any, desired: Any) -> bool:
    """Whether ``actual`` holds everything ``desired`` says (extra keys are allowed)."""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(_contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    if actual == REDACTED and isinstance(desired, str) and desired:
        return True  # a secret Grafana will not show back
    return bool(actual == desired)
