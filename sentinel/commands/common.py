"""What every command shares: the consoles, one-line errors, migrations, small checks."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from sentinel.settings import (
    Settings,
)
from timescale.migrate import migrate

console = Console(stderr=True)

out = Console(highlight=False, soft_wrap=True)


class CommandError(RuntimeError):
    """A failure to report in one line, without a traceback."""


def run_migrations(settings: Settings, dsn: str) -> None:
    secret = settings.grafana_db_password
    report = migrate(
        dsn,
        grafana_password=secret.get_secret_value() if secret else None,
        echo=lambda line: console.print(f"[dim]migrate:[/] {line}"),
    )
    if not report.applied:
        console.print(f"[dim]migrate:[/] up to date (TimescaleDB license: {report.license})")


def ensure_recovery_dir(directory: Path) -> None:
    """Bytewax needs its recovery partitions created before the first run."""
    from bytewax.recovery import init_db_dir

    directory.mkdir(parents=True, exist_ok=True)
    if not any(directory.glob("part-*.sqlite3")):
        init_db_dir(directory, 1)


def positive(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{name} takes 'max' or a positive number, not {text!r}") from None
    if value <= 0:
        raise CommandError(f"{name} must be positive")
    return value
