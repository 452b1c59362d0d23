"""What is stored of a Grafana webhook notification: one row per alert, each bounded.

- A call's first ``max_alerts`` alerts are stored; the others are added to the stored
  envelope's ``truncatedAlerts`` (Grafana's own count of the alerts it left out).
- A row (its title, message and JSON payload together, as JSON text with every number
  written out in full, as ``jsonb`` writes it) takes at most ``max_bytes``: in a larger
  one every string longer than some length is cut to it (ending in "…"), that length
  the longest that fits, and the payload says so: ``"_truncated": {"strings_cut_to": N}``.
  A payload that fits no other way (a huge number of keys, say) is stored as that
  record alone (``N`` = 0). The envelope, repeated in every row, is cut the same way to
  half the limit first.

The request's strings were checked before (:mod:`api.body`): no NUL character nor lone
surrogate gets this far.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.body import written_out

MARK = "…"
_RULE_IN_URL = re.compile(r"/alerting/grafana/([^/?#]+)")
_STUB_TEXT = 64  # characters of the title and message kept with a stub payload
_RECORD_BYTES = 64  # room for the `_truncated` record


@dataclass(frozen=True)
class NotificationRow:
    """One `alert_notifications` row."""

    status: str
    rule_uid: str | None
    title: str | None
    message: str | None
    payload: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "message": self.message, "payload": self.payload}


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode()) + _growth(value)


def _growth(value: Any) -> int:
    """What ``jsonb`` adds writing floats out in full (``1e+20``: 100000000000000000000)."""
    if isinstance(value, float):
        text = repr(value)
        return max(0, written_out(text) - len(text))
    if isinstance(value, dict):
        return sum(_growth(v) for v in value.values())
    if isinstance(value, list):
        return sum(_growth(v) for v in value)
    return 0


def _longest(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return max((_longest(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_longest(v) for v in value), default=0)
    return 0


def _cut(value: Any, limit: int) -> Any:
    """Strings longer than ``limit`` cut to it (plus the mark); keys are kept whole."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + MARK
    if isinstance(value, dict):
        return {k: _cut(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, limit) for v in value]
    return value


def fit(value: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], int | None]:
    """``value`` with its strings cut to the longest length at which its JSON text takes
    at most ``max_bytes``, and that length; ``(value, None)`` when it fits as it is, and
    ``({}, 0)`` when cutting every string is not enough."""
    if _size(value) <= max_bytes:
        return value, None
    lo, hi, best = 0, _longest(value), None
    while lo <= hi:  # the size grows with the length kept: bisect it
        mid = (lo + hi) // 2
        candidate = _cut(value, mid)
        if _size(candidate) <= max_bytes:
            best, lo = (candidate, mid), mid + 1
        else:
            hi = mid - 1
    return best or ({}, 0)


def _fit_marked(value: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    fitted, cut_to = fit(value, max_bytes - _RECORD_BYTES)
    return value if cut_to is None else {**fitted, "_truncated": {"strings_cut_to": cut_to}}


def _bounded(row: NotificationRow, max_bytes: int) -> NotificationRow:
    fitted, cut_to = fit(row.as_json(), max_bytes - _RECORD_BYTES)
    if cut_to is None:
        return row
    record = {"strings_cut_to": cut_to}
    if not fitted:
        title = row.title and _cut(row.title, _STUB_TEXT)
        message = row.message and _cut(row.message, _STUB_TEXT)
        return NotificationRow(row.status, row.rule_uid, title, message, {"_truncated": record})
    payload = {**fitted["payload"], "_truncated": record}
    return NotificationRow(row.status, row.rule_uid, fitted["title"], fitted["message"], payload)


def _rule_uid(alert: Mapping[str, Any]) -> str | None:
    labels = alert.get("labels") or {}
    found = _RULE_IN_URL.search(str(alert.get("generatorURL") or ""))
    uid = labels.get("__alert_rule_uid__") or labels.get("rule_uid")
    return uid or (found.group(1) if found else None)


def notification_rows(
    payload: Mapping[str, Any], max_alerts: int, max_bytes: int
) -> list[NotificationRow]:
    """One row per alert of a Grafana webhook payload (one row for the message itself
    when it carries no alert): status, rule uid, title, message, and the payload (the
    envelope without the other alerts, plus this alert under ``alert``)."""
    envelope = {k: v for k, v in payload.items() if k != "alerts"}
    alerts_in = list(payload.get("alerts") or [])
    if len(alerts_in) > max_alerts:
        before = envelope.get("truncatedAlerts")
        before = before if isinstance(before, int) and not isinstance(before, bool) else 0
        envelope["truncatedAlerts"] = before + len(alerts_in) - max_alerts
        alerts_in = alerts_in[:max_alerts]
    shared = _fit_marked(envelope, max_bytes // 2)
    title, message = payload.get("title"), payload.get("message")
    if not alerts_in:
        rows = [NotificationRow(str(payload.get("status")), None, title, message, shared)]
    else:
        rows = []
        for alert in alerts_in:
            labels = alert.get("labels") or {}
            annotations = alert.get("annotations") or {}
            rows.append(
                NotificationRow(
                    status=str(alert.get("status") or payload.get("status")),
                    rule_uid=_rule_uid(alert),
                    title=annotations.get("summary") or labels.get("alertname") or title,
                    message=annotations.get("description") or message,
                    payload={**shared, "alert": alert},
                )
            )
    return [_bounded(row, max_bytes) for row in rows]
