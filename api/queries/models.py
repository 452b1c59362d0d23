"""The online models of a symbol: each one's newest ``model_scores`` and
``model_checkpoints`` rows and its target, from the latest tables in one statement."""

from __future__ import annotations

from api.queries.base import Conn, Row, fetch

# The dataflow's own checkpoint rows, not models.
INTERNAL_MODELS = ("_shared", "_pipeline")

# Every model that forecast, was scored or was checkpointed: its target (its scores',
# else its forecasts'), its newest value per metric (a later target's wins a metric both
# have) and their newest time, and its newest checkpoint.
_MODELS = """
WITH s AS (
    SELECT model, max(target) AS target,
           array_agg(metric ORDER BY target, metric) AS metrics,
           array_agg(value ORDER BY target, metric) AS values, max(time) AS time
    FROM model_scores_latest WHERE symbol = %(symbol)s GROUP BY model
), c AS (
    SELECT model, time, version, bars_seen FROM model_checkpoints_latest
    WHERE symbol = %(symbol)s AND model <> ALL(%(internal)s::text[])
), f AS (
    SELECT model, max(target) AS target FROM forecasts_latest
    WHERE symbol = %(symbol)s GROUP BY model
)
SELECT m.model, coalesce(s.target, f.target) AS target, s.metrics, s.values,
       s.time AS scores_time, c.time AS checkpoint_time, c.version, c.bars_seen
FROM (SELECT model FROM s UNION SELECT model FROM c UNION SELECT model FROM f) m
LEFT JOIN s USING (model) LEFT JOIN c USING (model) LEFT JOIN f USING (model)
ORDER BY m.model
"""


async def model_rows(conn: Conn, symbol: str) -> list[Row]:
    """A row per model: ``model``, ``target``, ``scores`` ({metric: value}),
    ``scores_time``, and ``checkpoint`` ({time, version, bars_seen} or None)."""
    rows = await fetch(conn, _MODELS, {"symbol": symbol, "internal": list(INTERNAL_MODELS)})
    out = []
    for r in rows:
        metrics, values = r["metrics"], r["values"]
        checkpoint = None
        if r["checkpoint_time"] is not None:
            checkpoint = {"time": r["checkpoint_time"], "version": r["version"]}
            checkpoint["bars_seen"] = r["bars_seen"]
        out.append(
            {
                "model": r["model"],
                "target": r["target"],
                "scores": dict(zip(metrics, values, strict=True)) if metrics else {},
                "scores_time": r["scores_time"],
                "checkpoint": checkpoint,
            }
        )
    return out
