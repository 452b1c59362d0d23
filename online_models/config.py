"""Settings of one symbol's model set. Changing any of them invalidates a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

VOLATILITY_MODELS = ("har", "range_har", "ewma", "last", "rolling")
RETURN_MODELS = ("linear", "zero")
# The volatility forecast that dashboards, alert rules and the return intervals show: the
# best on real data (README, "On real data"). BAND_MODELS span the charts' forecast band.
FORECAST_MODEL = "range_har"
BAND_MODELS = ("range_har", "har", "ewma", "rolling")


@dataclass(frozen=True)
class ModelConfig:
    har_windows: tuple[int, int, int] = (1, 5, 22)  # short, medium, long windows, in bars
    ewma_lambda: float = 0.94  # RiskMetrics decay of the 'ewma' baseline and feature
    return_lags: int = 2  # lagged returns the 'linear' return model sees
    interval_level: float = 0.9  # central prediction interval of the return forecasts
    interval_model: str = FORECAST_MODEL  # volatility model whose sigma sets the interval width
    horizons: tuple[int, ...] = (1,)  # bars ahead; each horizon > 1 is a direct model
    score_window: int = 100  # bars in the rolling scores
    score_every: int = 1  # emit score rows every this many bars
    min_vol: float = 1e-8  # floor of any volatility forecast (per bar)
    anomaly_detector: str = "range_tail"  # see online_models.detectors.DETECTORS
    anomaly_window: int = 250  # bars the anomaly detector compares a bar with
    anomaly_grace: int = 30  # bars before an anomaly score is reported
    seed: int = 42

    def __post_init__(self) -> None:
        short, medium, long = self.har_windows
        if not 1 <= short < medium < long:
            raise ValueError("har_windows must be increasing: short < medium < long")
        if not 0 < self.ewma_lambda < 1:
            raise ValueError("ewma_lambda must be in (0, 1)")
        if not 0 < self.interval_level < 1:
            raise ValueError("interval_level must be in (0, 1)")
        if (
            not self.horizons
            or min(self.horizons) < 1
            or len(set(self.horizons)) != len(self.horizons)
        ):
            raise ValueError("horizons must be distinct integers >= 1")
        if self.return_lags < 1 or self.score_window < 2 or self.score_every < 1:
            raise ValueError("return_lags >= 1, score_window >= 2 and score_every >= 1")
        if self.min_vol <= 0:
            raise ValueError("min_vol must be positive")

    @property
    def interval_z(self) -> float:
        """Half-width of the central interval in standard deviations (1.645 for 90%)."""
        return NormalDist().inv_cdf(0.5 + self.interval_level / 2)
