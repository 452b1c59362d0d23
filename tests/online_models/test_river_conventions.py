"""Every estimator follows River's conventions: its doctest passes, and River's own checks
(those that need no scikit-learn datasets, plus the dataset checks on our features)."""

from __future__ import annotations

import doctest
import importlib
import random
from typing import Any

import pytest
from river.checks import common

from dataflows.records import Bar
from online_models.ewma import EWMAVolatility
from online_models.features import FeatureState
from online_models.har import HARVolatility
from online_models.last import LastVolatility
from online_models.linear_return import LinearReturn
from online_models.range_har import RangeHARVolatility
from online_models.rolling import RollingVolatility
from online_models.tail_scorer import TailScorer
from online_models.zero import ZeroReturn

MODEL_MODULES = [
    "har",
    "range_har",
    "ewma",
    "last",
    "rolling",
    "linear_return",
    "zero",
    "tail_scorer",
]
ESTIMATORS = [
    HARVolatility(),
    RangeHARVolatility(),
    EWMAVolatility(),
    LastVolatility(),
    RollingVolatility(),
    LinearReturn(),
    ZeroReturn(),
    TailScorer(feature="rv_short", grace_period=5),
]
GENERAL_CHECKS = [
    "check_repr",
    "check_str",
    "check_tags",
    "check_clone_same_class",
    "check_clone_is_idempotent",
    "check_init_has_default_params_for_tests",
    "check_init_default_params_are_not_mutable",
    "check_doc",
    "check_clone_changes_memory_addresses",
    "check_mutate_can_be_idempotent",
    "check_pickling_supports_roundtrip",
    "check_repr_roundtrips_clone",
    "check_clone_with_new_params_applies",
    "check_get_params_matches_signature",
]
DATASET_CHECKS = [
    "check_learn_one",
    "check_pickling",
    "check_shuffle_features_no_impact",
    "check_emerging_features",
    "check_disappearing_features",
    "check_radically_disappearing_features",
    "check_predict_one_pure",
    "check_predict_one_before_any_learn",
    "check_no_state_aliasing_with_input",
    "check_clone_is_independent",
]


@pytest.mark.parametrize("module", MODEL_MODULES)
def test_doctests(module: str) -> None:
    result = doctest.testmod(
        importlib.import_module(f"online_models.{module}"), optionflags=doctest.ELLIPSIS
    )
    assert result.attempted > 0
    assert result.failed == 0


def features_dataset(n: int = 200) -> list[tuple[dict[str, Any], float]]:
    """``(x_t, r_{t+1}^2)`` pairs from the real feature state on Gaussian returns."""
    rng, state, data = random.Random(0), FeatureState(), []
    x = None
    for i in range(n):
        r = rng.gauss(0.0, 0.01)
        if x is not None:
            data.append((x, r * r))
        x, _ = state.update(Bar(i, "X", 1.0, 1.01, 0.99, 1.0, 1.0, None, 1, 60), r)
    return data


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_river_checks(estimator: Any) -> None:
    for name in GENERAL_CHECKS:
        getattr(common, name)(estimator.clone())
    data = features_dataset()
    for name in DATASET_CHECKS:
        getattr(common, name)(estimator.clone(), dataset=data)
