"""The online models' newest ``model_scores`` and ``model_checkpoints`` rows."""

from __future__ import annotations

from api.queries.base import Conn, Row
from api.queries.latest import latest_rows

# The dataflow's own checkpoint rows, not models.
INTERNAL_MODELS = ("_shared", "_pipeline")
SCORE_COLUMNS = ("model", "target", "metric", "value", "time")
CHECKPOINT_COLUMNS = ("model", "time", "version", "bars_seen")


async def latest_scores(conn: Conn, symbol: str, model: str | None = None) -> list[Row]:
    filters = {"symbol": symbol, "model": model}
    return await latest_rows(conn, "model_scores", SCORE_COLUMNS, filters)


async def latest_checkpoints(conn: Conn, symbol: str, model: str | None = None) -> list[Row]:
    filters = {"symbol": symbol, "model": model}
    rows = await latest_rows(conn, "model_checkpoints", CHECKPOINT_COLUMNS, filters)
    return [r for r in rows if r["model"] not in INTERNAL_MODELS]
