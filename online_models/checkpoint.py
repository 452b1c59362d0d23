"""The checkpoint format of one symbol's models: rows of ``model_checkpoints``.

A checkpoint of one symbol at one time is a set of
:class:`~dataflows.records.ModelCheckpoint` rows, one per model (``state`` is the pickled
:class:`~online_models.slot.ModelSlot`: its estimators at every horizon and its scores;
``metrics`` its current scores), one for the anomaly detector (:data:`ANOMALY_MODEL`),
one for what they share (:data:`SHARED_MODEL`: the config, the feature state and the
forecasts waiting for their bar), and one the dataflow adds for its own per-symbol state
(:data:`PIPELINE_MODEL`: metrics and alerts, see :mod:`dataflows.analysis`). ``version``
is :data:`CHECKPOINT_VERSION`, bumped whenever the pickled classes change shape; a row of
another version is refused rather than half-read.

Unpickling runs code: only ever restore rows this service wrote to its own database.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable
from typing import Any

from dataflows.records import ModelCheckpoint

CHECKPOINT_VERSION = 2  # 2: the range variances in the features
SHARED_MODEL = "_shared"
PIPELINE_MODEL = "_pipeline"
ANOMALY_MODEL = "anomaly"
INTERNAL_MODELS = (SHARED_MODEL, PIPELINE_MODEL)
"""Checkpoint rows that are no model of their own (the API does not list them)."""
RESERVED_NAMES = frozenset({*INTERNAL_MODELS, ANOMALY_MODEL})
"""Names a model of a symbol cannot take: its checkpoint row would clash."""


class CheckpointError(Exception):
    """A checkpoint row that cannot be restored (the message says why)."""


def encode(
    time_us: int,
    symbol: str,
    model: str,
    bars_seen: int,
    obj: object,
    metrics: dict[str, float] | None = None,
) -> ModelCheckpoint:
    """Pickle ``obj`` into a row; non-finite metrics become ``None`` (JSON has no NaN)."""
    clean = {k: (v if math.isfinite(v) else None) for k, v in (metrics or {}).items()}
    state = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return ModelCheckpoint(time_us, symbol, model, CHECKPOINT_VERSION, bars_seen, state, clean)


def decode(row: ModelCheckpoint, expected: type) -> Any:
    """Unpickle a row's state, checking its version and class; raise CheckpointError."""
    where = f"checkpoint {row.symbol}/{row.model} at {row.time_us}"
    if row.version != CHECKPOINT_VERSION:
        raise CheckpointError(f"{where}: version {row.version}, expected {CHECKPOINT_VERSION}")
    try:
        obj = pickle.loads(bytes(row.state))
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise CheckpointError(f"{where}: cannot unpickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, expected):
        raise CheckpointError(
            f"{where}: holds a {type(obj).__name__}, expected a {expected.__name__}"
        )
    return obj


def newest_rows(rows: Iterable[object]) -> tuple[dict[str, ModelCheckpoint], list[str]]:
    """The rows of a symbol's newest checkpoint, by model, and the problems found.

    ``rows`` are as the database hands them back (any sequence of the seven columns); a
    row of another shape is reported and skipped. The result is empty, and the last
    problem says why, when no row is left or the rows mix symbols.
    """
    valid, errors = [], []
    for row in rows:
        if isinstance(row, tuple | list) and len(row) == len(ModelCheckpoint._fields):
            valid.append(ModelCheckpoint._make(row))
        else:
            errors.append(f"malformed checkpoint row: {row!r:.80}")
    if not valid:
        return {}, [*errors, "no checkpoint rows"]
    symbols = {r.symbol for r in valid}
    if len(symbols) > 1:
        return {}, [*errors, f"rows of several symbols: {sorted(symbols)}"]
    latest = max(r.time_us for r in valid)
    return {r.model: r for r in valid if r.time_us == latest}, errors


def take(
    rows: dict[str, ModelCheckpoint], symbol: str, name: str, expected: type, errors: list[str]
) -> Any:
    """Remove the row of ``symbol``'s model ``name`` from ``rows`` and decode it; None, with
    the problem added to ``errors``, if it is missing or unusable (the model starts afresh)."""
    row = rows.pop(name, None)
    if row is None:
        errors.append(f"{symbol}/{name}: no checkpoint row; starting it afresh")
        return None
    try:
        return decode(row, expected)
    except CheckpointError as exc:
        errors.append(f"{exc}; starting it afresh")
        return None
