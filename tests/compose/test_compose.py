"""docker-compose.yml, checked statically (no Docker engine here): every command runs an
entry point that exists, every mounted path exists, images are pinned, long-running
services have healthchecks, dependencies wait on conditions, secrets are required, and
.env.example lists every variable."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.files import DASHBOARDS_PATH

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
ONE_SHOT = {"migrate"}
LONG_RUNNING = sorted(set(SERVICES) - ONE_SHOT)
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",
    "SENTINEL_GRAFANA_DB_PASSWORD",
    "SENTINEL_API_KEY",
    "GRAFANA_ADMIN_PASSWORD",
}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME:+alt}, $NAME; $$ escapes.
_REF = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?+])([^}]*))?\}|\$(\w+)")


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _refs() -> list[tuple[str, str | None, str]]:
    """Every variable reference in the compose file: (name, operator, default or message)."""
    refs = []
    for text in _strings(COMPOSE):
        for m in _REF.finditer(text):
            if m.group(0) != "$$":
                refs.append((m.group(1) or m.group(4), m.group(2), m.group(3) or ""))
    return refs


def _interpolate(text: str) -> str:
    """What compose makes of ``text`` with an empty environment (defaults apply)."""

    def value(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1) or m.group(4), m.group(2), m.group(3) or ""
        if op in {"-", ":-"}:
            return arg
        return f"<{name}>"

    return _REF.sub(value, text)


def _dockerfile_entrypoint() -> list[str]:
    (line,) = [ln for ln in DOCKERFILE.splitlines() if ln.startswith("ENTRYPOINT")]
    parsed: list[str] = yaml.safe_load(line.removeprefix("ENTRYPOINT"))
    return parsed


def _argv(service: dict[str, Any]) -> list[str]:
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        entrypoint = _dockerfile_entrypoint() if "build" in service else []
    command = service.get("command", [])
    if isinstance(command, str):
        command = shlex.split(command)
    return [_interpolate(a) for a in [*entrypoint, *command]]


# -- images -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_images_are_pinned(name: str) -> None:
    image = SERVICES[name]["image"]
    repo, _, tag = image.rpartition(":")
    assert repo, f"{name}: {image} has no tag"
    assert tag != "latest"
    assert re.search(r"\d", tag), f"{name}: {image} is not a version"


def test_app_services_build_one_image_from_the_dockerfile() -> None:
    app = {name: s for name, s in SERVICES.items() if "build" in s}
    assert set(app) == {"migrate", "simulator", "feed", "dataflow", "archive", "api"}
    assert len({s["image"] for s in app.values()}) == 1
    assert all(s["build"]["dockerfile"] == "Dockerfile" for s in app.values())


def test_timescaledb_image_has_the_community_license() -> None:
    # timescale/timescaledb is the community-licensed build; the -oss images are Apache only.
    image = SERVICES["timescaledb"]["image"]
    assert image.startswith("timescale/timescaledb:")
    assert "oss" not in image
    assert image.endswith("-pg15")


def test_dockerfile_is_glibc_python_312_non_root_with_the_sentinel_entrypoint() -> None:
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", DOCKERFILE, flags=re.MULTILINE)
    bases = [base for base, name in stages if name != "dashboard"]
    assert bases
    assert stages[-1][0] in bases, "the image itself is a Python one"
    for base in bases:
        assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm", base), base
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^requires-python = ".*<3\.13"$', pyproject, flags=re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, flags=re.MULTILINE)
    assert _dockerfile_entrypoint() == ["sentinel"]
    assert re.search(r'^sentinel = "sentinel\.cli:main"$', pyproject, flags=re.MULTILINE)
    assert "pip install --no-deps ." in DOCKERFILE, "the project itself, its dependencies locked"
    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, flags=re.MULTILINE))
    (include,) = re.findall(r"^include = \[(.*)\]$", pyproject, flags=re.MULTILINE)
    packages = {p.strip(' "*') for p in include.split(",")}
    assert copied == packages, "every installed package is copied into the image"


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".sentinel", ".env", "tests", "node_modules"} <= ignored
    assert not {"package.json", "package-lock.json"} & ignored
    # Every path the Dockerfile copies from the context is in it.
    patterns = {
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    }
    for args in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, flags=re.MULTILINE):
        for source in args.split()[:-1]:
            assert source not in patterns, f"{source} is copied but ignored"


def test_dashboard_stage_installs_the_locked_charts_where_the_api_finds_them() -> None:
    from api.routes.dashboard import CHARTS_CANDIDATES, CHARTS_FILE

    (base,) = re.findall(r"^FROM (\S+) AS dashboard$", DOCKERFILE, flags=re.MULTILINE)
    assert re.fullmatch(r"node:\d+\.\d+\.\d+-bookworm-slim", base), "a pinned Node.js image"
    stage = DOCKERFILE.split("AS dashboard", 1)[1].split("\nFROM ", 1)[0]
    assert "COPY package.json package-lock.json ./" in stage
    assert re.search(r"^RUN npm ci --omit=dev\b", stage, flags=re.MULTILINE), "the lock file, as is"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    package = json.loads((ROOT / "package.json").read_text())
    assert lock["packages"][""]["dependencies"] == package["dependencies"], "lock file up to date"
    assert "node_modules/lightweight-charts" in lock["packages"]
    (src, dest) = re.findall(
        r"^COPY --from=dashboard (\S+) (\S+)$", DOCKERFILE, flags=re.MULTILINE
    )[0]
    assert src == f"/src/node_modules/lightweight-charts/dist/{CHARTS_FILE}"
    image_path = Path(dest) / CHARTS_FILE if dest.endswith("/") else Path(dest)
    assert image_path in CHARTS_CANDIDATES, f"the API looks for the file at {image_path}"


# -- commands ---------------------------------------------------------------------------


def _check_sentinel(args: list[str]) -> None:
    from sentinel.cli import build_parser

    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        raise AssertionError(f"`sentinel {' '.join(args)}` is not a valid command") from None
    assert callable(parsed.func)


def _check_import_target(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr.removesuffix("()"))


def _check_python_code(code: str) -> None:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert importlib.util.find_spec(alias.name), alias.name


def _check_argv(argv: list[str]) -> None:
    if argv[:2] == ["/bin/sh", "-c"]:
        for part in argv[2].split("&&"):
            _check_argv(shlex.split(part))
    elif argv[0] == "sentinel":
        _check_sentinel(argv[1:])
    elif argv[:3] == ["python", "-m", "bytewax.run"]:
        assert callable(_check_import_target(argv[3]))
        if "-w" in argv:
            assert int(argv[argv.index("-w") + 1]) >= 1
    elif argv[0] == "uvicorn":
        from fastapi import FastAPI

        assert isinstance(_check_import_target(argv[1]), FastAPI)
    elif argv[:2] == ["python", "-c"]:
        _check_python_code(argv[2])
    else:
        raise AssertionError(f"unknown entry point: {argv}")


@pytest.mark.parametrize("name", sorted(n for n, s in SERVICES.items() if "build" in s))
def test_every_command_refers_to_an_existing_entry_point(name: str) -> None:
    _check_argv(_argv(SERVICES[name]))


def test_the_dataflow_runs_the_production_flow() -> None:
    assert _argv(SERVICES["feed"]) == ["sentinel", "feed"]
    assert _argv(SERVICES["dataflow"])[:2] == ["sentinel", "dataflow"]
    assert _argv(SERVICES["api"])[:2] == ["uvicorn", "api.main:app"]
    assert _argv(SERVICES["migrate"])[2].startswith("sentinel db migrate")


def test_the_dataflow_scales_out_as_a_cluster_of_processes_set_in_the_env() -> None:
    """SENTINEL_WORKERS and SENTINEL_PROCESSES reach `sentinel dataflow`, which with
    --processes N runs a Bytewax cluster of N processes in the container."""
    from sentinel.cli import build_parser

    command = SERVICES["dataflow"]["command"]
    assert command[command.index("--workers") + 1] == "${SENTINEL_WORKERS:-1}"
    assert command[command.index("--processes") + 1] == "${SENTINEL_PROCESSES:-1}"
    parsed = build_parser().parse_args(_argv(SERVICES["dataflow"])[1:])
    assert (parsed.workers, parsed.processes) == (1, 1)
    assert (parsed.process_id, parsed.addresses) == (None, None)
    assert re.search(r"^SENTINEL_PROCESSES=1$", ENV_EXAMPLE, flags=re.MULTILINE)
    # One process dies, the container exits: the restart policy restarts the cluster.
    assert SERVICES["dataflow"]["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_healthcheck_commands_are_valid(name: str) -> None:
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}
    if test[:3] == ["CMD", "python", "-c"]:
        _check_python_code(test[3])


# -- mounts, volumes, health, dependencies ----------------------------------------------------


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        out.append((source, target, mode[0] if mode else "rw"))
    return out


def test_every_mounted_path_exists_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    used = set()
    for service in SERVICES.values():
        for source, _, _ in _mounts(service):
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), source
            else:
                used.add(source)
    assert used == declared


def test_grafana_mounts_the_provisioning_read_only_where_the_provider_looks() -> None:
    mounts = {t: (s, m) for s, t, m in _mounts(SERVICES["grafana"])}
    assert mounts["/etc/grafana/provisioning"] == ("./grafana/provisioning", "ro")
    assert DASHBOARDS_PATH.startswith("/etc/grafana/provisioning/")
    assert (ROOT / "grafana/provisioning" / DASHBOARDS_PATH.rsplit("/", 1)[1]).is_dir()
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana" / home.removeprefix("/etc/grafana/")).is_file()


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks_and_restart(name: str) -> None:
    service = SERVICES[name]
    assert service["healthcheck"]["test"]
    assert service["restart"] == "unless-stopped"


def test_migrate_runs_once() -> None:
    assert SERVICES["migrate"]["restart"] == "no"
    assert "healthcheck" not in SERVICES["migrate"]


def test_dependencies_wait_on_conditions() -> None:
    expected = {
        "migrate": {"timescaledb": "service_healthy"},
        "feed": {"migrate": "service_completed_successfully", "simulator": "service_healthy"},
        "dataflow": {"migrate": "service_completed_successfully", "feed": "service_started"},
        "api": {"migrate": "service_completed_successfully"},
        "archive": {"migrate": "service_completed_successfully"},
        "grafana": {"timescaledb": "service_healthy", "migrate": "service_completed_successfully"},
    }
    for name, service in SERVICES.items():
        deps = service.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions"
        got = {dep: spec["condition"] for dep, spec in deps.items()}
        assert got == expected.get(name, {}), name
        for dep, spec in deps.items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits on {dep}'s health"
            if SERVICES[dep].get("profiles"):
                assert spec.get("required") is False, f"{dep} is optional (a profile)"


# -- variables ------------------------------------------------------------------------------


def test_required_secrets_must_be_set() -> None:
    refs = _refs()
    for name, op, message in refs:
        if name in REQUIRED_SECRETS:
            assert op == ":?", f"{name} must be required: ${{{name}:?message}}"
            assert message
    assert {n for n, _, _ in refs} >= REQUIRED_SECRETS
    for name, op, default in refs:
        if re.search(r"PASSWORD|KEY|TOKEN|SECRET", name) and op in {"-", ":-"}:
            assert default == "", f"{name} has a default secret"


def test_env_example_lists_every_variable() -> None:
    listed = set(re.findall(r"^#? ?(\w+)=", ENV_EXAMPLE, flags=re.MULTILINE))
    referenced = {name for name, _, _ in _refs()}
    assert referenced - listed == set()
    assert "COMPOSE_PROFILES" in listed
    for secret in REQUIRED_SECRETS:  # no secret in the example, so compose refuses it as is
        assert re.search(rf"^{secret}=$", ENV_EXAMPLE, flags=re.MULTILINE), secret


def test_grafana_has_every_variable_its_provisioning_files_use() -> None:
    provisioning = ROOT / "grafana" / "provisioning"
    texts = [p.read_text() for p in (provisioning / "datasources").glob("*.yaml")]
    texts += [
        (provisioning / "alerting" / f).read_text()
        for f in ("contact-points.yaml", "policies.yaml")
    ]
    used = {m.group(1) for t in texts for m in re.finditer(r"\$\{?(\w+)\}?", t)}
    assert used
    assert used <= set(SERVICES["grafana"]["environment"])


def test_simulator_is_the_default_feed_and_live_needs_only_settings() -> None:
    assert "simulator" in re.findall(r"^COMPOSE_PROFILES=(.*)$", ENV_EXAMPLE, re.MULTILINE)[0]
    env = SERVICES["feed"]["environment"]
    assert _interpolate(env["SENTINEL_FEED_URL"]) == "ws://simulator:8765"
    assert "FINNHUB_TOKEN" in env
    assert SERVICES["simulator"]["profiles"] == ["simulator"]
    assert _argv(SERVICES["simulator"])[-4:] == ["--host", "0.0.0.0", "--port", "8765"]


def test_the_feed_and_the_dataflow_share_the_journal_and_recovery_survives_the_container() -> None:
    """A restarted dataflow container resumes: its recovery state and the journal it
    replays live on named volumes, where the settings put them under the image's
    SENTINEL_HOME."""
    from sentinel.settings import Settings

    home = re.search(r"SENTINEL_HOME=(\S+)", (ROOT / "Dockerfile").read_text())
    assert home
    settings = Settings(home=Path(home.group(1).rstrip("\\")))
    feed = {t: s for s, t, _ in _mounts(SERVICES["feed"])}
    flow = {t: s for s, t, _ in _mounts(SERVICES["dataflow"])}
    journal_dir = str(settings.journal_file.parent)
    assert feed[journal_dir] == flow[journal_dir] == "journal"
    recovery = settings.recovery_path("5s")
    assert flow[str(recovery.parent)] == "recovery"
    assert settings.recovery, "recovery is on by default"
    assert SERVICES["dataflow"]["restart"] == SERVICES["feed"]["restart"] == "unless-stopped"


def test_installs_come_from_the_locked_versions_checked_by_hash() -> None:
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    assert "--require-hashes -r requirements/app.lock" in DOCKERFILE
    assert "--require-hashes -r requirements/dev.lock" in (ROOT / "Makefile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = re.compile(r"^([A-Za-z0-9_.-]+)==\S+(?: ;[^\\\n]*)? \\\n    --hash=sha256:", re.M)
    for lock, deps in (
        ("app.lock", project["dependencies"]),
        ("dev.lock", project["dependencies"] + project["optional-dependencies"]["dev"]),
    ):
        text = (ROOT / "requirements" / lock).read_text()
        pinned = {canonicalize_name(name) for name in pin.findall(text)}
        wanted = {canonicalize_name(Requirement(d).name) for d in deps}
        assert wanted <= pinned, f"{lock} is out of date (`make lock`): {wanted - pinned}"
        entries = [line for line in text.splitlines() if line and line[0] not in " #"]
        assert len(entries) == len(pin.findall(text)), "every pin carries its hashes"
