"""`sentinel db ...` as a user runs it: a separate process, its own embedded cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT
from timescale.embedded import EmbeddedPostgres, _pid_alive


def sentinel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sentinel", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def home() -> Iterator[Path]:
    path = ROOT / ".sentinel" / f"cli-{uuid.uuid4().hex[:8]}"
    yield path
    EmbeddedPostgres(path).stop()
    shutil.rmtree(path, ignore_errors=True)


def test_start_twice_is_harmless_and_stop_leaves_nothing_running(home: Path) -> None:
    env = {"SENTINEL_HOME": str(home)}
    first = sentinel("db", "start", env=env)
    assert first.returncode == 0, first.stderr
    pid = EmbeddedPostgres(home).status().pid
    assert pid is not None
    assert _pid_alive(pid)

    second = sentinel("db", "start", env=env)
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr
    assert EmbeddedPostgres(home).status().pid == pid, "a second start must not restart it"
    assert second.stdout == first.stdout  # the same DSN

    url = sentinel("db", "url", env=env).stdout.strip()
    with psycopg.connect(url) as conn:
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname='timescaledb'")
        assert ext.fetchone() is None  # not migrated yet: start does not migrate
        conn.execute("SELECT 1")

    stop = sentinel("db", "stop", env=env)
    assert stop.returncode == 0, stop.stderr
    assert not _pid_alive(pid)
    assert not EmbeddedPostgres(home).status().running
    assert sentinel("db", "status", env=env).returncode == 3
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    assert "not running" in sentinel("db", "stop", env=env).stderr


def test_db_url_is_accepted_by_psql(home: Path) -> None:
    env = {"SENTINEL_HOME": str(home)}
    assert sentinel("db", "migrate", env=env).returncode == 0
    url = sentinel("db", "url", env=env).stdout.strip()
    psql = shutil.which("psql")
    assert psql, "psql is installed with the PostgreSQL client"
    out = subprocess.run(
        [psql, url, "-tAc", "SELECT extname FROM pg_extension WHERE extname = 'timescaledb'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "timescaledb"


def test_database_url_overrides_the_embedded_database(home: Path, fresh_db: str) -> None:
    env = {"SENTINEL_HOME": str(home), "DATABASE_URL": fresh_db}
    start = sentinel("db", "start", env=env)
    assert start.returncode == 0
    assert "DATABASE_URL is set" in start.stderr
    assert sentinel("db", "url", env=env).stdout.strip() == fresh_db

    migrated = sentinel("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    with psycopg.connect(fresh_db) as conn:
        (count,) = conn.execute("SELECT count(*) FROM schema_migrations").fetchone() or (0,)
    assert count >= 3
    assert not home.exists(), "nothing embedded may be created when DATABASE_URL is set"


def test_status_and_url_explain_a_stopped_database(home: Path) -> None:
    env = {"SENTINEL_HOME": str(home)}
    url = sentinel("db", "url", env=env)
    assert url.returncode == 1
    assert "not running" in url.stderr
    assert "sentinel db start" in url.stderr


def test_a_bad_setting_is_one_clear_line_naming_the_variable(home: Path) -> None:
    result = sentinel(
        "db", "status", env={"SENTINEL_HOME": str(home), "SENTINEL_API_KEY": "changeme"}
    )
    assert result.returncode == 2
    assert "configuration error: SENTINEL_API_KEY" in result.stderr
    assert "placeholder" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_of_a_missing_file_fails_before_touching_the_database(home: Path) -> None:
    result = sentinel(
        "replay", "/no/such/file.csv", "--bar", "1m", env={"SENTINEL_HOME": str(home)}
    )
    assert result.returncode == 1
    assert "/no/such/file.csv: no such file" in result.stderr
    assert not home.exists()


def test_a_restart_keeps_the_port_even_with_connections_in_time_wait(home: Path) -> None:
    env = {"SENTINEL_HOME": str(home)}
    assert sentinel("db", "start", env=env).returncode == 0
    url = sentinel("db", "url", env=env).stdout.strip()
    conns = [psycopg.connect(url) for _ in range(5)]
    # A stop terminates them from the server side, which leaves its port in TIME_WAIT.
    assert sentinel("db", "stop", env=env).returncode == 0
    for conn in conns:
        conn.close()
    assert sentinel("db", "start", env=env).returncode == 0
    assert sentinel("db", "url", env=env).stdout.strip() == url
