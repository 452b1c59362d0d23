"""Online models of returns and volatility, one bar at a time (River's way).

The pipeline only needs :class:`SymbolModels` (per symbol: ``step``, ``checkpoint``,
``restore``) and :class:`ModelConfig`; the estimators are River regressors and anomaly
detectors, one per module. The rows it produces are the record types
:class:`~dataflows.records.Forecast`, :class:`~dataflows.records.ModelScore` and
:class:`~dataflows.records.ModelCheckpoint`.
"""

from online_models.checkpoint import CHECKPOINT_VERSION
from online_models.config import RETURN_MODELS, VOLATILITY_MODELS, ModelConfig
from online_models.symbol_models import StepResult, SymbolModels, restore

__all__ = [
    "CHECKPOINT_VERSION",
    "RETURN_MODELS",
    "VOLATILITY_MODELS",
    "ModelConfig",
    "StepResult",
    "SymbolModels",
    "restore",
]
