"""A live `sentinel up` for the fault tests, and the checks they share: no bar missing,
no trade judged late, returns that follow the stored closes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from connectors.timescale.specs import SPECS
from tests.integration.procs import running, wait_until
from timescale.embedded import free_port


@dataclass
class LiveStack:
    proc: subprocess.Popen[bytes]
    log: Path
    dsn: str
    api: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def child(self, name: str) -> int:
        """The pid of ``sentinel up``'s child running ``sentinel NAME``."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != self.proc.pid:
                    continue
                args = (stat.parent / "cmdline").read_bytes().split(b"\0")
                if name.encode() in args:
                    return int(stat.parent.name)
        raise LookupError(f"no child running {name!r}")

    def kill(self, name: str) -> float:
        """``kill -9`` the child ``name``, wait until it is restarted; when it was killed."""
        victim = self.child(name)
        os.kill(victim, signal.SIGKILL)
        killed_s = time.time()
        wait_until(lambda: f"{name} restarted" in self.text(), 30, f"{name} restarted", self.log)
        assert f"{name} was killed by SIGKILL" in self.text()
        assert self.child(name) != victim
        return killed_s

    def stop(self) -> None:
        """Ctrl-C, as a user would; `sentinel up` stops every child and exits."""
        os.kill(self.proc.pid, signal.SIGINT)
        self.proc.wait(60)
        assert self.proc.returncode == 130, "stopped by Ctrl-C, not by a failure"

    def scalar(self, query: str, *params: object) -> int:
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            row = conn.execute(query, params).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def bars_after(self, t_s: float) -> dict[str, int]:
        """Bars of each ticker starting after the Unix time ``t_s``."""
        with psycopg.connect(self.dsn, connect_timeout=5) as conn:
            rows = conn.execute(
                """SELECT t.symbol, count(b.time) FROM tickers t LEFT JOIN bars b
                     ON b.symbol = t.symbol AND b.time > to_timestamp(%s) GROUP BY 1""",
                [t_s],
            ).fetchall()
        return {s: int(n) for s, n in rows}

    def wait_for_bars_after(self, t_s: float, n: int, timeout: float) -> None:
        wait_until(
            lambda: min(self.bars_after(t_s).values() or [0]) >= n,
            timeout,
            f"{n} bars of every ticker after t={t_s:.0f}",
            self.log,
        )


def up_env(tmp_path: Path, db: str | None, bar: str) -> dict[str, str]:
    """What `sentinel up` needs to run beside other tests: its own home under
    ``tmp_path``, free ports for the simulator and the API, ``bar`` bars; on ``db``, or
    on its own embedded database when ``db`` is None."""
    env = {
        "SENTINEL_HOME": str(tmp_path / "home"),
        "SENTINEL_SIM_PORT": str(free_port()),
        "SENTINEL_API_PORT": str(free_port()),
        "SENTINEL_BAR": bar,
        # One API worker: these runs are about the pipeline, and each worker costs its
        # start-up; several are tested on their own (tests/api/test_workers.py, and the
        # dashboard's stack, whose API is killed with -9).
        "SENTINEL_API_WORKERS": "1",
    }
    if db is not None:
        env["DATABASE_URL"] = db
    return env


@contextlib.contextmanager
def live_stack(tmp_path: Path, env: dict[str, str], db: str | None) -> Iterator[LiveStack]:
    """`sentinel up` on the simulator (unless ``env`` says otherwise), 5 s bars; on
    ``db``, or on its own embedded database under ``tmp_path`` when ``db`` is None."""
    log = tmp_path / "up.log"
    full = {**up_env(tmp_path, db, "5s"), **env}
    with running(["-m", "sentinel", "up"], full, log) as proc:
        wait_until(lambda: "Stock Sentinel is up" in log.read_text(), 120, "start-up", log)
        text = log.read_text()
        api = re.search(r"^\s+api\s+(http://\S+)", text, re.M)
        dsn = re.search(r"^\s+database\s+(.+)$", text, re.M)
        assert api, text
        assert dsn, text
        yield LiveStack(proc, log, dsn.group(1), api.group(1))


def missing_bars(dsn: str, bar_s: int = 5) -> dict[str, int]:
    """Per symbol, how many bar starts are missing between its first and last bar."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """SELECT symbol, (extract(epoch FROM max(time) - min(time)) / %s)::int + 1 - count(*)
               FROM bars GROUP BY 1""",
            [bar_s],
        ).fetchall()
    return {s: int(n) for s, n in rows}


def late_rejects(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM ticks_rejected WHERE reason = 'late'").fetchone()
    return int(row[0]) if row else -1


def return_mismatches(dsn: str) -> list[tuple[object, ...]]:
    """Stored log returns that are not ln(close / previous stored close)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT symbol, time, log_return, expected FROM (
                   SELECT m.symbol, m.time, m.log_return,
                          ln(b.close / lag(b.close) OVER w) AS expected,
                          row_number() OVER w AS n
                   FROM bars b JOIN bar_metrics m USING (symbol, time)
                   WINDOW w AS (PARTITION BY b.symbol ORDER BY b.time)) x
               WHERE n > 1 AND (log_return IS NULL OR abs(log_return - expected) > 1e-12)"""
        ).fetchall()


def unbarred_ticks(dsn: str, bar_s: int = 5) -> dict[str, int]:
    """Per symbol, stored ticks (neither late nor out of the price band) inside its stored
    bars' span that no bar counted: nothing accepted may be lost between feed and bars."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """WITH span AS (SELECT symbol, min(time) AS lo,
                                    max(time) + make_interval(secs => %s) AS hi,
                                    sum(trades) AS trades
                             FROM bars GROUP BY 1)
               SELECT s.symbol, s.trades,
                      (SELECT count(*) FROM ticks t
                        WHERE t.symbol = s.symbol AND t.time >= s.lo AND t.time < s.hi)
                      - (SELECT count(*) FROM ticks_rejected r
                          WHERE r.symbol = s.symbol AND r.reason IN ('late', 'implausible_price'))
               FROM span s""",
            [bar_s],
        ).fetchall()
    return {s: int(ticks) - int(trades) for s, trades, ticks in rows}


def latest_mismatches(dsn: str) -> dict[str, int]:
    """Per latest table, the rows that differ from the newest row of each key of its
    hypertable (both ways), in one statement each: one snapshot, so rows being written
    meanwhile (in the same transactions as their latest rows) cannot make a difference."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for spec in SPECS.values():
            if spec.latest_key is None:
                continue
            keys = sql.SQL(", ").join(map(sql.Identifier, spec.latest_key))
            newest = sql.SQL(", ").join(
                sql.SQL("{} DESC").format(sql.Identifier(c)) for c in spec.newest_by
            )
            query = sql.SQL(
                """WITH h AS (SELECT DISTINCT ON ({k}) * FROM {t} ORDER BY {k}, {n}),
                        l AS (SELECT * FROM {latest})
                   SELECT (SELECT count(*) FROM (SELECT * FROM l EXCEPT SELECT * FROM h) a)
                        + (SELECT count(*) FROM (SELECT * FROM h EXCEPT SELECT * FROM l) b)"""
            ).format(
                k=keys,
                n=newest,
                t=sql.Identifier(spec.table),
                latest=sql.Identifier(f"{spec.table}_latest"),
            )
            row = conn.execute(query).fetchone()
            out[spec.table] = int(row[0]) if row else -1
    return out
