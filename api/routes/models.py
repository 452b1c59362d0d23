"""``GET /models/{symbol}``: each online model of a symbol, its scores and checkpoint."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PoolDep, ReadAccess
from api.errors import not_found, responses
from api.params import SymbolPath
from api.queries.models import model_rows
from api.queries.tickers import symbol_known
from api.responses import RowsJSON
from api.schemas import ModelsOut

router = APIRouter(prefix="/models", tags=["models"], dependencies=[ReadAccess])


@router.get("/{symbol}", response_model=ModelsOut, responses=responses(401, 403, 404, 422, 503))
async def get_models(symbol: SymbolPath, pool: PoolDep) -> RowsJSON:
    """Every model that forecast, was scored or was checkpointed for the symbol: its
    target, its latest score per metric, and its newest checkpoint (time, version,
    bars seen). The dataflow's internal checkpoint rows (`_shared`, `_pipeline`) are
    left out. 404 for a symbol with no ticker and no model rows."""
    sym = symbol.upper()
    async with pool.connection() as conn:
        models = await model_rows(conn, sym)
        tables = ["model_scores", "model_checkpoints"]
        if not models and not await symbol_known(conn, sym, tables):
            raise not_found(f"unknown symbol {sym!r}: no ticker and no models")
    return RowsJSON({"symbol": sym, "models": models})
