"""The embedded TimescaleDB: a private PostgreSQL cluster under a directory of ours.

It listens on a unix socket in its run directory and on a free port on 127.0.0.1, with
``trust`` authentication, so it is meant for one developer's machine, never for a shared
host. PostgreSQL refuses to run as root, so when we are root the server runs as an
unprivileged OS user (``postgres`` by default) and owns its data directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

DB_NAME = "sentinel"
DB_USER = "sentinel"
# The kernel's limit on a unix socket path (sun_path) is 108 bytes including the NUL.
_MAX_SOCKET_PATH = 100
# The server's settings live in a file of ours in the data directory, rewritten at every
# start and included from postgresql.conf, so that a cluster made by an older version
# gets the current ones too. ALTER SYSTEM (postgresql.auto.conf) still overrides them.
_CONF_FILE = "sentinel.conf"
_INCLUDE = f"include_if_exists = '{_CONF_FILE}'"
MAX_LOCKS = 1024  # per transaction; x max_connections (200) lock slots, ~50 MB shared
_SERVER_CONF = f"""# Rewritten by Stock Sentinel at every start (timescale/embedded.py).
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
listen_addresses = '127.0.0.1'
max_connections = 200
max_worker_processes = 16
shared_buffers = 256MB
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
# Planning a query over a hypertable locks every chunk it may touch, and each of the
# chunk's indexes: thousands of locks over a long history of small chunks.
max_locks_per_transaction = {MAX_LOCKS}
# JIT compiles each chunk's part of a plan separately. Measured over 20 years of 30-day
# chunks (244): a GROUP BY compiled 984 functions in 958 ms and ran slower than without
# (4.23 s against 3.97 s). The API's and dashboards' queries are short; JIT never pays.
jit = off
"""


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be set up, started or reached."""


@dataclass(frozen=True)
class DatabaseStatus:
    running: bool
    pid: int | None
    port: int | None
    socket_dir: Path
    data_dir: Path

    @property
    def dsn(self) -> str | None:
        if not self.running or self.port is None:
            return None
        return tcp_dsn(self.port)


def tcp_dsn(port: int, dbname: str = DB_NAME, user: str = DB_USER) -> str:
    return f"postgresql://{user}@127.0.0.1:{port}/{dbname}"


def find_pg_bin(major: str = "15") -> Path:
    """Where ``initdb``/``pg_ctl`` live: Debian's versioned dir, else ``pg_config``."""
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise EmbeddedDatabaseError(
        "PostgreSQL server binaries not found; run `make run` (which installs them) or set "
        "DATABASE_URL to an existing TimescaleDB"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    """Could PostgreSQL listen on ``port``? It binds with SO_REUSEADDR, so connections
    still in TIME_WAIT from its last run do not count, only a live listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class EmbeddedPostgres:
    """Start, stop and inspect the cluster in ``home``. Every method is idempotent."""

    def __init__(self, home: Path, pg_bin: Path | None = None, os_user: str = "postgres"):
        self.home = Path(home).expanduser().resolve()
        self.pg_bin = pg_bin or find_pg_bin()
        self.os_user = os_user
        self.data_dir = self.home / "pgdata"
        self.run_dir = self.home / "run"
        self.log_file = self.run_dir / "postgres.log"
        self.port_file = self.home / "port"

    # -- running commands as the server's user ----------------------------------------

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _user_kwargs(self) -> dict[str, Any]:
        if not self._as_root:
            return {}
        try:
            pw = pwd.getpwnam(self.os_user)
        except KeyError as exc:
            raise EmbeddedDatabaseError(
                f"running as root, so the server must run as another user, but OS user "
                f"{self.os_user!r} does not exist (set SENTINEL_DB_OS_USER)"
            ) from exc
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.pg_bin / tool), *args]
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        out = subprocess.run(
            cmd, capture_output=True, text=True, env=env, cwd="/", **self._user_kwargs()
        )
        if check and out.returncode != 0:
            raise EmbeddedDatabaseError(
                f"{tool} failed ({out.returncode}): {(out.stderr or out.stdout).strip()}"
            )
        return out

    def _own(self, path: Path) -> None:
        """Give ``path`` to the server's user (root only)."""
        if self._as_root:
            pw = pwd.getpwnam(self.os_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _make_reachable(self) -> None:
        """As root, the server's user must be able to traverse every parent of ``home``.

        Temporary directories are often mode 0700; we add only the search bit (o+x), which
        lets the server reach its own directory without listing anything.
        """
        if not self._as_root:
            return
        for parent in reversed(self.home.parents):
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                log.warning("granting o+x on %s so the %s user can reach it", parent, self.os_user)
                parent.chmod(mode | stat.S_IXOTH)

    # -- state -----------------------------------------------------------------------

    @property
    def socket_dir(self) -> Path:
        """The unix socket lives in the run directory unless that path is too long."""
        if len(str(self.run_dir / ".s.PGSQL.65535")) <= _MAX_SOCKET_PATH:
            return self.run_dir
        import hashlib

        digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:12]
        return Path("/tmp") / f"sentinel-{digest}"

    def status(self) -> DatabaseStatus:
        pid_file = self.data_dir / "postmaster.pid"
        pid = port = None
        running = False
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            lines = pid_file.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            running = _pid_alive(pid)
        return DatabaseStatus(
            running, pid if running else None, port, self.socket_dir, self.data_dir
        )

    def is_initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    # -- lifecycle -------------------------------------------------------------------

    def init(self) -> None:
        if self.is_initialised():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o755)
        self._make_reachable()
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._own(self.data_dir)
        log.info("initialising a new cluster in %s", self.data_dir)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            DB_USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
        )

    def start(self, timeout: float = 60.0) -> DatabaseStatus:
        st = self.status()
        if st.running:
            self._reconfigure_running()
            return st
        self.init()
        self._configure()
        self._make_reachable()
        for d in (self.run_dir, self.socket_dir):
            d.mkdir(mode=0o755, exist_ok=True)
            self._own(d)
        port = self._choose_port()
        out = self._pg_ctl_start(port, timeout)
        if out.returncode != 0 and "could not bind" in self._log_tail():
            # Taken between our check and the server's bind: once more on a fresh port.
            port = free_port()
            out = self._pg_ctl_start(port, timeout)
        if out.returncode != 0:
            raise EmbeddedDatabaseError(
                f"PostgreSQL did not start: {out.stderr.strip() or out.stdout.strip()}\n"
                f"--- last lines of {self.log_file} ---\n{self._log_tail()}"
            )
        self.port_file.write_text(f"{port}\n")
        self._wait_ready(port, timeout)
        self._ensure_database(port)
        return self.status()

    def _pg_ctl_start(self, port: int, timeout: float) -> subprocess.CompletedProcess[str]:
        options = f"-p {port} -k {self.socket_dir}"
        log.info("starting PostgreSQL on 127.0.0.1:%d (socket in %s)", port, self.socket_dir)
        return self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            options,
            check=False,
        )

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the server; returns whether one was running."""
        st = self.status()
        if not st.running:
            return False
        self._run(
            "pg_ctl",
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(timeout)),
            check=False,
        )
        deadline = time.monotonic() + timeout
        while st.pid is not None and _pid_alive(st.pid):
            if time.monotonic() > deadline:
                raise EmbeddedDatabaseError(f"PostgreSQL (pid {st.pid}) did not stop")
            time.sleep(0.1)
        return True

    def destroy(self) -> None:
        """Stop and delete the cluster (tests only)."""
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def dsn(self, dbname: str = DB_NAME) -> str:
        st = self.status()
        if not st.running or st.port is None:
            raise EmbeddedDatabaseError("the embedded database is not running: `sentinel db start`")
        return tcp_dsn(st.port, dbname)

    # -- helpers ---------------------------------------------------------------------

    def _configure(self) -> bool:
        """Write our settings file and include it from postgresql.conf (once); returns
        whether the file changed. A running server needs a reload (settings such as
        shared_buffers, a restart) to apply it."""
        conf = self.data_dir / "postgresql.conf"
        if _INCLUDE not in conf.read_text():
            with conf.open("a") as f:
                f.write(f"\n# Stock Sentinel's settings, rewritten at every start\n{_INCLUDE}\n")
        ours = self.data_dir / _CONF_FILE
        with contextlib.suppress(FileNotFoundError):
            if ours.read_text() == _SERVER_CONF:
                return False
        staged = ours.with_name(f".{_CONF_FILE}.tmp")  # a reload never reads half a file
        staged.write_text(_SERVER_CONF)
        self._own(staged)
        staged.replace(ours)
        return True

    def _reconfigure_running(self) -> None:
        """A running server reloads our settings if they changed (best effort: another
        OS user may own the data directory)."""
        try:
            changed = self._configure()
        except OSError as exc:
            log.debug("settings of the running server left as they are: %s", exc)
            return
        if changed:
            self._run("pg_ctl", "reload", "-D", str(self.data_dir), check=False)

    def _choose_port(self) -> int:
        with contextlib.suppress(FileNotFoundError, ValueError):
            port = int(self.port_file.read_text().strip())
            if _port_is_free(port):
                return port
        return free_port()

    def _wait_ready(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(tcp_dsn(port, "postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedDatabaseError(f"PostgreSQL refuses connections: {exc}") from exc
                time.sleep(0.2)

    def _ensure_database(self, port: int) -> None:
        with psycopg.connect(tcp_dsn(port, "postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME])
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not a running server.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True
