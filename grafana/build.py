"""``sentinel grafana build``: write the dashboards and provisioning files Grafana loads.

The output is deterministic (sorted JSON keys, fixed uids, no timestamps), committed
under ``grafana/provisioning/``, and mounted read-only into the Grafana container. A
test rebuilds it and diffs against the committed files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard

from grafana import files, market, models, pipeline_health, symbol
from grafana.common import RUNBOOK_BASE_URL

DEFAULT_DIR = Path(__file__).resolve().parent / "provisioning"
# The files `build` writes, as globs under its directory: one it no longer produces is removed.
_GENERATED = ("dashboards/*.json", "dashboards/*.yaml", "datasources/*.yaml", "alerting/*.yaml")

DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "market-overview": market.build,
    "symbol-detail": symbol.build,
    "models": models.build,
    "pipeline-health": pipeline_health.build,
}


def render(runbook_base: str = RUNBOOK_BASE_URL) -> dict[str, str]:
    """Every generated file's text, by its path relative to the provisioning directory."""
    out = {
        f"dashboards/{name}.json": files.to_json(factory().build())
        for name, factory in DASHBOARDS.items()
    }
    out["dashboards/provider.yaml"] = files.to_yaml(files.dashboard_provider_file())
    out["datasources/timescaledb.yaml"] = files.to_yaml(files.datasource_file())
    out["alerting/rules.yaml"] = files.to_yaml(files.rules_file(runbook_base))
    out["alerting/contact-points.yaml"] = files.to_yaml(files.contact_points_file())
    out["alerting/policies.yaml"] = files.to_yaml(files.policies_file())
    return out


def build(out_dir: Path | None = None, runbook_base: str = RUNBOOK_BASE_URL) -> list[Path]:
    """Write every file under ``out_dir`` (default ``grafana/provisioning``); return them.

    Generated files no longer produced (a renamed dashboard) are removed, so the
    directory holds exactly what Grafana should load.
    """
    root = out_dir or DEFAULT_DIR
    rendered = render(runbook_base)
    written = []
    for rel, text in sorted(rendered.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    for stale in _generated(root) - {root / rel for rel in rendered}:
        stale.unlink()
    return written


def _generated(root: Path) -> set[Path]:
    return {path for pattern in _GENERATED for path in root.glob(pattern)}


if __name__ == "__main__":
    for written_path in build():
        print(written_path)
