"""Replay a historical trades file, CSV or Parquet, as a stream of raw row blocks.

:class:`ReplaySource` reads a file with the columns ``time``, ``symbol``, ``price`` and
optionally ``size`` and emits :class:`~dataflows.records.RawBatch` items whose messages
are :class:`~dataflows.records.RowBlock` payloads: the values as read, so that the
dataflow validates them and can store the raw payload of a bad row in the dead-letter
table. By job:

- :mod:`connectors.replay.formats`: the CSV (``.csv``, ``.csv.gz``) and Parquet
  (``.parquet``, ``.pq``) files, their columns, and their rows read in chunks;
- :mod:`connectors.replay.pacing`: releasing rows by event time at a given speed;
- :mod:`connectors.replay.source`: the Bytewax source, its partition and its state;
- :mod:`connectors.replay.profile`: the file's time span, rows per symbol and days, read
  once before a replay to size the database's chunks.

Times are parsed by :func:`dataflows.times.to_epoch_us`, as in the parse step.
"""

from connectors.replay.source import Progress, ReplaySource, ReplayState

__all__ = ["Progress", "ReplaySource", "ReplayState"]
