"""The checkpoint format of one symbol's models: rows of ``model_checkpoints``.

A checkpoint of one symbol at one time is a set of rows, one per model (``state`` is the
pickled :class:`~online_models.symbol_models.ModelSlot`: its estimators at every horizon
and its scores; ``metrics`` its current scores), one for the anomaly detector
(:data:`ANOMALY_MODEL`), and one for what they share (:data:`SHARED_MODEL`: the config,
the feature state and the forecasts waiting for their bar). ``version`` is
:data:`CHECKPOINT_VERSION`, bumped whenever the pickled classes change shape; a row of
another version is refused rather than half-read.

Unpickling runs code: only ever restore rows this service wrote to its own database.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, NamedTuple

CHECKPOINT_VERSION = 1
SHARED_MODEL = "_shared"
ANOMALY_MODEL = "anomaly"
RESERVED_NAMES = frozenset({SHARED_MODEL, ANOMALY_MODEL})


class CheckpointRow(NamedTuple):
    """One ``model_checkpoints`` row, in the table's column order."""

    time_us: int
    symbol: str
    model: str
    version: int
    bars_seen: int
    state: bytes
    metrics: dict[str, float | None]


class CheckpointError(Exception):
    """A checkpoint row that cannot be restored (the message says why)."""


def encode(
    time_us: int,
    symbol: str,
    model: str,
    bars_seen: int,
    obj: object,
    metrics: dict[str, float] | None = None,
) -> CheckpointRow:
    """Pickle ``obj`` into a row; non-finite metrics become ``None`` (JSON has no NaN)."""
    clean = {k: (v if math.isfinite(v) else None) for k, v in (metrics or {}).items()}
    state = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return CheckpointRow(time_us, symbol, model, CHECKPOINT_VERSION, bars_seen, state, clean)


def decode(row: Any, expected: type) -> Any:
    """Unpickle a row's state, checking its version and class; raise CheckpointError."""
    try:
        time_us, symbol, model, version, _bars_seen, state, _metrics = row
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"malformed checkpoint row: {exc}") from None
    where = f"checkpoint {symbol}/{model} at {time_us}"
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: version {version}, expected {CHECKPOINT_VERSION}")
    try:
        obj = pickle.loads(bytes(state))
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise CheckpointError(f"{where}: cannot unpickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, expected):
        raise CheckpointError(
            f"{where}: holds a {type(obj).__name__}, expected a {expected.__name__}"
        )
    return obj
