"""``GET /models/{symbol}``: each online model of a symbol, its scores and checkpoint."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PoolDep, ReadAccess
from api.errors import not_found, responses
from api.params import SymbolPath
from api.queries.forecasts import latest_forecasts
from api.queries.models import latest_checkpoints, latest_scores
from api.queries.tickers import symbol_known
from api.responses import RowsJSON
from api.routes.forecasts import scores_by_model
from api.schemas import CheckpointOut, ModelsOut

CHECKPOINT_FIELDS = tuple(CheckpointOut.model_fields)

router = APIRouter(prefix="/models", tags=["models"], dependencies=[ReadAccess])


@router.get("/{symbol}", response_model=ModelsOut, responses=responses(401, 403, 404, 422, 503))
async def get_models(symbol: SymbolPath, pool: PoolDep) -> RowsJSON:
    """Every model that forecast, was scored or was checkpointed for the symbol: its
    target, its latest score per metric, and its newest checkpoint (time, version,
    bars seen). The dataflow's internal checkpoint rows (`_shared`, `_pipeline`) are
    left out. 404 for a symbol with no ticker and no model rows."""
    sym = symbol.upper()
    async with pool.connection() as conn:
        scores = scores_by_model(await latest_scores(conn, sym))
        checkpoints = {c["model"]: c for c in await latest_checkpoints(conn, sym)}
        targets = {f["model"]: f["target"] for f in await latest_forecasts(conn, sym)}
        names = sorted(set(scores) | set(checkpoints) | set(targets))
        tables = ["model_scores", "model_checkpoints"]
        if not names and not await symbol_known(conn, sym, tables):
            raise not_found(f"unknown symbol {sym!r}: no ticker and no models")
    models = []
    for name in names:
        s, c = scores.get(name, {}), checkpoints.get(name)
        models.append(
            {
                "model": name,
                "target": s.get("target") or targets.get(name),
                "scores": s.get("scores", {}),
                "scores_time": s.get("time"),
                "checkpoint": {k: c[k] for k in CHECKPOINT_FIELDS} if c else None,
            }
        )
    return RowsJSON({"symbol": sym, "models": models})
