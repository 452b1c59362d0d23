"""The models a symbol runs, by name: their targets, the baselines they are scored
against, and the default sets (the names are database keys: never rename one)."""

from __future__ import annotations

from river import base

from online_models.config import ModelConfig
from online_models.ewma import EWMAVolatility
from online_models.har import HARVolatility
from online_models.last import LastVolatility
from online_models.linear_return import LinearReturn
from online_models.range_har import RangeHARVolatility
from online_models.rolling import RollingVolatility
from online_models.zero import ZeroReturn

VOLATILITY = "volatility"
RETURN = "return"
# The baselines the relative scores compare with, per target.
BASELINES = {VOLATILITY: "ewma", RETURN: "zero"}


def default_volatility_models(config: ModelConfig) -> dict[str, base.Regressor]:
    return {
        "har": HARVolatility(),
        "range_har": RangeHARVolatility(),
        "ewma": EWMAVolatility(decay=config.ewma_lambda),
        "last": LastVolatility(),
        "rolling": RollingVolatility(window_size=config.har_windows[-1]),
    }


def default_return_models(config: ModelConfig) -> dict[str, base.Regressor]:
    return {"linear": LinearReturn(lags=config.return_lags), "zero": ZeroReturn()}


def metric_suffix(horizon: int) -> str:
    """What a score's metric name ends in at ``horizon``: nothing for the next bar."""
    return "" if horizon == 1 else f"_h{horizon}"
