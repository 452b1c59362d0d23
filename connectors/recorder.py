"""The feed process: receive from the websocket, stamp the arrival time, append to the journal.

:class:`FeedRecorder` drains a :class:`~connectors.finnhub.FinnhubFeed` (which
reconnects, resubscribes and follows the ``tickers`` table on its own thread) into a
:class:`~connectors.journal.Journal` every ``flush_s``, in one transaction per flush.
It writes a ``SUBSCRIBED`` entry whenever the wanted symbols change (before the
messages drained with it, so trades of a symbol just added are judged as subscribed), and
a ``HEARTBEAT`` when nothing else was written for ``heartbeat_s`` (0.1 s), so the
dataflow's clock moves on while the market, or the connection, is quiet, and between a
feed's messages: a bar closes at most that long after its allowance ran out, however
seldom the feed sends (the simulator sends every 0.2 s). It never parses: a message
the dataflow would refuse is journaled like any other and refused there, with a reason.

Trades the feed fetched to fill a reconnect's gap (:class:`~connectors.finnhub.Backfilled`)
are journaled as ``BACKFILL`` entries, in the order of their seqs among the messages.

If the journal cannot be written (disk full, a lock held too long), the entries stay in
memory and the next flush tries again; nothing received is dropped.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable

from connectors.finnhub import Backfilled, FinnhubFeed
from connectors.journal import BACKFILL, HEARTBEAT, MESSAGE, SUBSCRIBED, Journal, backfill_payload
from dataflows.records import US, wall_clock_us

__all__ = ["FeedRecorder"]

log = logging.getLogger(__name__)

Entry = tuple[int | None, int, "bytes | str | None"]


class FeedRecorder:
    def __init__(
        self,
        journal: Journal,
        feed: FinnhubFeed,
        *,
        flush_s: float = 0.02,
        heartbeat_s: float = 0.1,
        retention_s: float = 86_400.0,
        prune_every_s: float = 60.0,
        clock: Callable[[], int] = wall_clock_us,
    ) -> None:
        self.journal = journal
        self.feed = feed
        self.flush_s = flush_s
        self.heartbeat_us = round(heartbeat_s * US)
        self.retention_us = round(retention_s * US)
        self.prune_every_us = round(prune_every_s * US)
        self.clock = clock
        self.written = 0  # messages journaled (backfilled ones included)
        self._pending: list[Entry] = []
        self._wanted: frozenset[str] | None = None
        self._last_write_us = 0
        self._next_prune_us = 0

    def run(self, stop: threading.Event) -> None:
        """Record until ``stop`` is set; then flush what is left and stop the feed."""
        self.feed.start()
        try:
            while not stop.wait(self.flush_s):
                self.flush()
                self._maybe_prune()
        finally:
            self.feed.stop()
            self.flush()

    def flush(self) -> None:
        # Read before draining: every message stamped before a heartbeat's time is in
        # this write or an earlier one, so no later entry is behind the clock it sets.
        now = self.clock()
        inbox = self.feed.inbox
        messages = [inbox.popleft() for _ in range(len(inbox))]
        wanted = self.feed.wanted  # read after draining: see the module docstring
        if wanted != self._wanted:
            self._pending.append((None, SUBSCRIBED, json.dumps(sorted(wanted))))
            self._wanted = wanted
        self._pending.extend(_entry(seq, item) for seq, item in messages)
        if not self._pending and now - self._last_write_us >= self.heartbeat_us:
            self._pending.append((now, HEARTBEAT, None))
        if not self._pending:
            return
        try:
            self.journal.append(self._pending)
        except sqlite3.Error as exc:
            log.warning("journal write failed (%s); %d entries kept", exc, len(self._pending))
            return
        self.written += sum(1 for _, kind, _ in self._pending if kind in (MESSAGE, BACKFILL))
        self._pending = []
        self._last_write_us = now

    def _maybe_prune(self) -> None:
        now = self.clock()
        if now < self._next_prune_us:
            return
        self._next_prune_us = now + self.prune_every_us
        try:
            if removed := self.journal.prune(now - self.retention_us):
                log.info("journal: pruned %d entries older than the retention", removed)
        except sqlite3.Error as exc:
            log.warning("journal pruning failed: %s", exc)


def _entry(seq: int, item: str | Backfilled) -> Entry:
    if isinstance(item, Backfilled):
        return (seq, BACKFILL, backfill_payload(item.source, item.message))
    return (seq, MESSAGE, item)
