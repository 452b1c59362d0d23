"""Online models of returns and volatility, one bar at a time (River's way).

The pipeline only needs :class:`SymbolModels` (per symbol: ``step``, ``checkpoint``,
``restore``) and :class:`ModelConfig`; the estimators are River regressors and anomaly
detectors, one per module. The rows it produces are the record types
:class:`~dataflows.records.Forecast`, :class:`~dataflows.records.ModelScore` and
:class:`~dataflows.records.ModelCheckpoint`.

The models (and River) are imported on first use, so that the API and the Grafana
builder can read :mod:`online_models.config`'s names without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from online_models.config import (
    BAND_MODELS,
    FORECAST_MODEL,
    RETURN_MODELS,
    VOLATILITY_MODELS,
    ModelConfig,
)

if TYPE_CHECKING:
    from online_models.checkpoint import CHECKPOINT_VERSION
    from online_models.symbol_models import StepResult, SymbolModels, restore

_LAZY = {
    "CHECKPOINT_VERSION": "online_models.checkpoint",
    "StepResult": "online_models.symbol_models",
    "SymbolModels": "online_models.symbol_models",
    "restore": "online_models.symbol_models",
}

__all__ = [
    "BAND_MODELS",
    "CHECKPOINT_VERSION",
    "FORECAST_MODEL",
    "RETURN_MODELS",
    "VOLATILITY_MODELS",
    "ModelConfig",
    "StepResult",
    "SymbolModels",
    "restore",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'online_models' has no attribute {name!r}")
