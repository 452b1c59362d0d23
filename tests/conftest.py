"""Shared fixtures: the real embedded TimescaleDB, a migrated template, a clean DB per test.

With ``DATABASE_URL`` set, the tests use that server instead (its role needs CREATEDB);
otherwise they start their own embedded cluster under ``.sentinel/test`` so they never
touch the database ``make run`` uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from timescale.embedded import EmbeddedPostgres
from timescale.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
TEST_HOME = ROOT / ".sentinel" / "test"
TEMPLATE = "sentinel_test_template"


def with_dbname(dsn: str, dbname: str) -> str:
    return make_conninfo(dsn, dbname=dbname)


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A DSN on the server the tests use, pointing at its maintenance database."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield with_dbname(external, str(conninfo_to_dict(external).get("dbname") or "postgres"))
        return
    db = EmbeddedPostgres(TEST_HOME)
    TEST_HOME.parent.mkdir(parents=True, exist_ok=True)
    # Several pytest sessions may share the cluster: each holds a shared lock while it
    # runs, and the last one to finish (the one that then gets the lock exclusively)
    # stops the cluster.
    users = open(TEST_HOME.parent / ".test-cluster.users", "w")  # noqa: SIM115
    with open(TEST_HOME.parent / ".test-cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fcntl.flock(users, fcntl.LOCK_SH)
        db.start()
    try:
        yield db.dsn("postgres")
    finally:
        with open(TEST_HOME.parent / ".test-cluster.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fcntl.flock(users, fcntl.LOCK_UN)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another session still uses it
            else:
                db.stop()
            users.close()


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """A database migrated once per session, the template of every test database."""
    template = f"{TEMPLATE}_{os.getpid()}"
    _drop(server_dsn, template)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    migrate(with_dbname(server_dsn, template), echo=lambda _: None)
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        # No connections may remain to a template while it is copied, TimescaleDB's
        # background scheduler included: it skips databases that refuse connections.
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                sql.Identifier(template)
            )
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [template]
        )
    yield template
    _drop(server_dsn, template)


def _drop(server_dsn: str, name: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def fresh_db(server_dsn: str) -> Iterator[str]:
    """An empty database (no schema) that is dropped after the test."""
    with scratch_db(server_dsn, "template0") as dsn:
        yield dsn


@pytest.fixture
def db(server_dsn: str, template_db: str) -> Iterator[str]:
    """A clean, fully migrated database for one test; returns its DSN."""
    with scratch_db(server_dsn, template_db) as dsn:
        yield dsn


@contextlib.contextmanager
def scratch_db(server_dsn: str, template: str) -> Iterator[str]:
    """A new database copied from ``template``, dropped on exit; yields its DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    try:
        yield with_dbname(server_dsn, name)
    finally:
        _drop(server_dsn, name)
