"""Apply the numbered SQL migrations in ``timescale/migrations`` in order.

Each file ``NNNN_what.sql`` runs in its own transaction and is recorded in
``schema_migrations`` with a checksum. A file may start with a header line
``-- requires-license: timescale``: it then applies only where ``timescaledb.license``
allows, and is left pending (and said so) elsewhere, so it applies later if the license
changes. An advisory lock keeps two runners from migrating the same database at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_REQUIRES = re.compile(r"^--\s*requires-license:\s*(\w+)\s*$", re.MULTILINE)
_LOCK_KEY = 0x5E17_1E1  # any constant, shared by every runner
GRAFANA_ROLE = "sentinel_grafana"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def required_license(self) -> str | None:
        m = _REQUIRES.search(self.sql.split("\n\n", 1)[0])
        return m.group(1) if m else None


@dataclass(frozen=True)
class MigrationReport:
    applied: list[str]
    skipped: list[str]
    license: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file name must look like 0001_what.sql: {path.name}")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {directory}")
    return found


def _license(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return (row[0] if row else None) or "none"


def _allowed(required: str | None, license_: str) -> bool:
    # The community ("timescale") license is a superset of the Apache one.
    return required is None or required == license_ or license_ == "timescale"


def migrate(
    dsn: str,
    *,
    directory: Path = MIGRATIONS_DIR,
    grafana_password: str | None = None,
    echo: Callable[[str], None] = log.info,
) -> MigrationReport:
    """Bring the database at ``dsn`` up to date; a no-op when it already is."""
    migrations = load_migrations(directory)
    applied: list[str] = []
    skipped: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version INTEGER PRIMARY KEY,
                       name TEXT NOT NULL,
                       checksum TEXT NOT NULL,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            conn.add_notice_handler(lambda diag: echo(f"  notice: {diag.message_primary}"))
            rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            done: dict[int, str] = dict(rows)
            license_ = "none"
            for m in migrations:
                # Known only once the extension exists (the first migration creates it).
                license_ = _license(conn)
                label = f"{m.version:04d}_{m.name}"
                if m.version in done:
                    if done[m.version] != m.checksum:
                        echo(f"warning: {label} changed after it was applied; it is not re-run")
                    continue
                if not _allowed(m.required_license, license_):
                    echo(
                        f"skipped {label}: needs the TimescaleDB '{m.required_license}' license, "
                        f"this server has '{license_}'"
                    )
                    skipped.append(label)
                    continue
                with conn.transaction():
                    conn.execute(m.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s,%s,%s)",
                        [m.version, m.name, m.checksum],
                    )
                echo(f"applied {label}")
                applied.append(label)
            if grafana_password:
                conn.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                        sql.Identifier(GRAFANA_ROLE), sql.Literal(grafana_password)
                    )
                )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    return MigrationReport(applied, skipped, license_)


def current_version(dsn: str) -> int | None:
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return row[0] if row else None
