"""A stand-in for Grafana's HTTP API: the routes ``grafana sync`` uses, in memory.

It answers as Grafana 11 does (status codes, JSON shapes, 404s with and without a body),
adds what Grafana adds on write (ids, versions, provenance, the query defaults
``intervalMs``/``maxDataPoints``, an ``updated`` stamp on every rule write), redacts
secure settings of contact points on read, and validates what Grafana validates (the
folder exists, the condition names a query, contact points have their required settings,
policies route to existing contact points). Every request is recorded.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

SECURE = {"webhook": {"password", "authorization_credentials"}, "slack": {"url", "token"}}
REQUIRED = {"webhook": ("url",), "email": ("addresses",), "slack": ("url",)}
DEFAULT_RECEIVER = "grafana-default-email"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any
    headers: dict[str, str]


def _default_policy() -> dict[str, Any]:
    """A fresh Grafana's notification policy."""
    return {"receiver": DEFAULT_RECEIVER, "group_by": ["grafana_folder", "alertname"]}


@dataclass
class State:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[tuple[str, str], int] = field(default_factory=dict)
    contact_points: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=_default_policy)


class ApiError(Exception):
    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _found(items: dict[str, dict[str, Any]], key: str, not_found: Any) -> dict[str, Any]:
    """``items[key]``, or a 404 answering ``not_found`` when there is no such item."""
    item = items.get(key)
    if item is None:
        raise ApiError(404, not_found)
    return item


Handler = Callable[["FakeGrafana", dict[str, str], Any, dict[str, list[str]]], tuple[int, Any]]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), handler))
        return handler

    return register


class FakeGrafana:
    def __init__(self, token: str = "test-token", basic: tuple[str, str] = ("admin", "pw")):
        self.state = State()
        self.requests: list[Request] = []
        self.token = token
        self.basic = basic
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self.lock = threading.Lock()
        self.url = ""

    def snapshot(self) -> State:
        with self.lock:
            return copy.deepcopy(self.state)

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in {"POST", "PUT", "DELETE"}]

    def next_id(self) -> int:
        return next(self._ids)

    def stamp(self) -> str:
        return f"2025-01-01T00:00:{next(self._clock):02d}Z"

    def authorized(self, header: str | None) -> bool:
        if header == f"Bearer {self.token}":
            return True
        if header and header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return (user, password) == self.basic
        return False

    def handle(
        self, method: str, path: str, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        for verb, pattern, handler in ROUTES:
            match = pattern.match(path)
            if verb == method and match:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                try:
                    with self.lock:
                        return handler(self, params, body, query)
                except ApiError as exc:
                    return exc.status, exc.body
        return 404, {"message": "Not found"}


# -- folders ---------------------------------------------------------------------------------


@route("GET", "/api/folders")
def list_folders(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    return 200, [
        {"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in g.state.folders.values()
    ]


@route("GET", "/api/folders/(?P<uid>[^/]+)")
def get_folder(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    return 200, _found(
        g.state.folders, p["uid"], {"message": "folder not found", "status": "not-found"}
    )


@route("POST", "/api/folders")
def create_folder(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    uid = body.get("uid") or f"f{g.next_id()}"
    if uid in g.state.folders:
        raise ApiError(409, {"message": "a folder with the same uid already exists"})
    if any(f["title"] == body["title"] for f in g.state.folders.values()):
        raise ApiError(409, {"message": "a folder with the same name already exists"})
    folder = {
        "id": g.next_id(),
        "uid": uid,
        "title": body["title"],
        "url": f"/dashboards/f/{uid}/",
        "version": 1,
        "parentUid": body.get("parentUid"),
    }
    g.state.folders[uid] = folder
    return 200, folder


@route("PUT", "/api/folders/(?P<uid>[^/]+)")
def update_folder(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    folder = _found(g.state.folders, p["uid"], {"message": "folder not found"})
    folder.update(title=body.get("title", folder["title"]), version=folder["version"] + 1)
    return 200, folder


# -- dashboards ------------------------------------------------------------------------------


@route("GET", "/api/dashboards/uid/(?P<uid>[^/]+)")
def get_dashboard(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    return 200, _found(g.state.dashboards, p["uid"], {"message": "Dashboard not found"})


@route("POST", "/api/dashboards/db")
def save_dashboard(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    board = copy.deepcopy(body["dashboard"])
    folder_uid = body.get("folderUid", "")
    if folder_uid and folder_uid not in g.state.folders:
        raise ApiError(400, {"message": "folder not found"})
    uid = board.get("uid") or f"d{g.next_id()}"
    existing = g.state.dashboards.get(uid)
    if existing is not None and not body.get("overwrite"):
        changed = "The dashboard has been changed by someone else"
        raise ApiError(412, {"message": changed, "status": "version-mismatch"})
    version = existing["dashboard"]["version"] + 1 if existing else 1
    board_id = existing["dashboard"]["id"] if existing else g.next_id()
    board.update(uid=uid, id=board_id, version=version)
    slug = re.sub(r"[^a-z0-9]+", "-", board["title"].lower()).strip("-")
    url = f"/d/{uid}/{slug}"
    meta = {"folderUid": folder_uid, "version": version, "slug": slug, "url": url}
    g.state.dashboards[uid] = {"dashboard": board, "meta": {**meta, "provisioned": False}}
    return 200, {**meta, "id": board_id, "uid": uid, "status": "success"}


# -- alert rules -----------------------------------------------------------------------------


def _stored_rule(g: FakeGrafana, rule: dict[str, Any], rule_id: int) -> dict[str, Any]:
    if rule.get("folderUID") not in g.state.folders:
        raise ApiError(400, {"message": "folder does not exist"})
    ref_ids = [d["refId"] for d in rule.get("data", [])]
    if rule.get("condition") not in ref_ids:
        raise ApiError(400, {"message": f"condition {rule.get('condition')} does not exist"})
    stored = copy.deepcopy(rule)
    for query in stored["data"]:
        query.setdefault("queryType", "")
        query.setdefault("relativeTimeRange", {"from": 0, "to": 0})
        query["model"].setdefault("intervalMs", 1000)
        query["model"].setdefault("maxDataPoints", 43200)
    stored.update(id=rule_id, provenance="api", updated=g.stamp(), orgID=1)
    stored.setdefault("labels", {})
    stored.setdefault("annotations", {})
    stored.setdefault("isPaused", False)
    g.state.groups.setdefault((stored["folderUID"], stored["ruleGroup"]), 60)
    return stored


@route("GET", "/api/v1/provisioning/alert-rules/(?P<uid>[^/]+)")
def get_rule(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    return 200, _found(g.state.rules, p["uid"], None)  # Grafana answers an empty 404 here


@route("POST", "/api/v1/provisioning/alert-rules")
def create_rule(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    if body.get("uid") in g.state.rules:
        raise ApiError(409, {"message": "rule with this uid already exists"})
    stored = _stored_rule(g, body, g.next_id())
    g.state.rules[stored["uid"]] = stored
    return 201, stored


@route("PUT", "/api/v1/provisioning/alert-rules/(?P<uid>[^/]+)")
def update_rule(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    existing = _found(g.state.rules, p["uid"], {"message": "rule not found"})
    stored = _stored_rule(g, {**body, "uid": p["uid"]}, existing["id"])
    g.state.rules[p["uid"]] = stored
    return 200, stored


@route("GET", "/api/v1/provisioning/folder/(?P<folder>[^/]+)/rule-groups/(?P<group>[^/]+)")
def get_group(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    key = (p["folder"], p["group"])
    if key not in g.state.groups:
        raise ApiError(404, {"message": "rule group does not exist"})
    rules = [r for r in g.state.rules.values() if (r["folderUID"], r["ruleGroup"]) == key]
    group = {"title": p["group"], "folderUid": p["folder"], "interval": g.state.groups[key]}
    return 200, {**group, "rules": rules}


@route("PUT", "/api/v1/provisioning/folder/(?P<folder>[^/]+)/rule-groups/(?P<group>[^/]+)")
def put_group(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    if p["folder"] not in g.state.folders:
        raise ApiError(400, {"message": "folder does not exist"})
    key = (p["folder"], p["group"])
    g.state.groups[key] = int(body["interval"])
    for rule in body.get("rules", []):
        existing = g.state.rules.get(rule["uid"])
        rule_id = existing["id"] if existing else g.next_id()
        g.state.rules[rule["uid"]] = _stored_rule(g, rule, rule_id)
    return get_group(g, p, None, q)


# -- contact points and policy ----------------------------------------------------------------


def _validate_contact_point(cp: dict[str, Any]) -> None:
    if not cp.get("name"):
        raise ApiError(400, {"message": "contact point name is required"})
    for key in REQUIRED.get(cp.get("type", ""), ()):
        value = cp.get("settings", {}).get(key)
        if not value or "$" in str(value):
            raise ApiError(400, {"message": f"{cp['type']}: invalid setting {key}"})


def _redacted(cp: dict[str, Any]) -> dict[str, Any]:
    secure = SECURE.get(cp["type"], set())
    settings = {k: "[REDACTED]" if k in secure and v else v for k, v in cp["settings"].items()}
    return {**cp, "settings": settings}


@route("GET", "/api/v1/provisioning/contact-points")
def list_contact_points(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    name = q.get("name", [None])[0]
    points = [_redacted(cp) for cp in g.state.contact_points.values()]
    return 200, [cp for cp in points if name is None or cp["name"] == name]


@route("POST", "/api/v1/provisioning/contact-points")
def create_contact_point(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    _validate_contact_point(body)
    uid = body.get("uid") or f"cp{g.next_id()}"
    if uid in g.state.contact_points:
        raise ApiError(400, {"message": "contact point with this uid already exists"})
    stored = {**copy.deepcopy(body), "uid": uid, "provenance": "api"}
    stored.setdefault("disableResolveMessage", False)
    g.state.contact_points[uid] = stored
    return 202, stored


@route("PUT", "/api/v1/provisioning/contact-points/(?P<uid>[^/]+)")
def update_contact_point(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    if p["uid"] not in g.state.contact_points:
        raise ApiError(404, {"message": "contact point not found"})
    _validate_contact_point(body)
    stored = {**copy.deepcopy(body), "uid": p["uid"], "provenance": "api"}
    stored.setdefault("disableResolveMessage", False)
    g.state.contact_points[p["uid"]] = stored
    return 202, {"message": "contactpoint updated"}


@route("GET", "/api/v1/provisioning/policies")
def get_policy(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    return 200, g.state.policy


def _receivers(route_: dict[str, Any]) -> Iterator[str]:
    if route_.get("receiver"):
        yield route_["receiver"]
    for child in route_.get("routes", []):
        yield from _receivers(child)


@route("PUT", "/api/v1/provisioning/policies")
def put_policy(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    known = {cp["name"] for cp in g.state.contact_points.values()} | {DEFAULT_RECEIVER}
    unknown = set(_receivers(body)) - known
    if unknown:
        raise ApiError(400, {"message": f"receiver {sorted(unknown)[0]!r} does not exist"})
    for child in body.get("routes", []):
        for matcher in child.get("object_matchers", []):
            if not (isinstance(matcher, list) and len(matcher) == 3):
                raise ApiError(400, {"message": "object_matchers must be [name, op, value]"})
    g.state.policy = {**copy.deepcopy(body), "provenance": "api"}
    return 202, {"message": "policies updated"}


@route("GET", "/api/health")
def health(g: FakeGrafana, p: dict[str, str], body: Any, q: Any) -> tuple[int, Any]:
    return 200, {"database": "ok", "version": "11.6.0"}


# -- the server ------------------------------------------------------------------------------


def _handler(fake: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            fake.requests.append(Request(self.command, parsed.path, body, dict(self.headers)))
            if not fake.authorized(self.headers.get("Authorization")):
                self._reply(401, {"message": "Unauthorized"})
                return
            status, payload = fake.handle(self.command, parsed.path, body, parse_qs(parsed.query))
            self._reply(status, payload)

        def _reply(self, status: int, payload: Any) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return RequestHandler


@contextmanager
def fake_grafana() -> Iterator[FakeGrafana]:
    """A running fake on 127.0.0.1 (a free port); ``.url`` is its base URL."""
    fake = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="fake-grafana",
        daemon=True,
    )
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
