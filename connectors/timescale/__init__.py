"""Everything the pipeline reads from or writes to TimescaleDB (the API has its own
queries in ``api/queries``).

- :mod:`.specs`: what each table takes (columns, record type, key), every spec by name
  in ``SPECS``;
- :mod:`.sinks`: the idempotent COPY sinks;
- :mod:`.status`: the sinks' and the feed's status rows, and row counts;
- :mod:`.tickers`: following the ``tickers`` table, and seeding it;
- :mod:`.checkpoints`: loading a symbol's newest model checkpoint;
- :mod:`.chunks`: chunks sized for a replay's history, created before it streams.
"""

from connectors.timescale.sinks import (
    SinkStats,
    TimescaleBackgroundSink,
    TimescaleSink,
    TimescaleSinkError,
    write_rows,
)
from connectors.timescale.specs import SPECS, TICKS, TICKS_REJECTED, TableSpec

__all__ = [
    "SPECS",
    "TICKS",
    "TICKS_REJECTED",
    "SinkStats",
    "TableSpec",
    "TimescaleBackgroundSink",
    "TimescaleSink",
    "TimescaleSinkError",
    "write_rows",
]
