"""Timestamps to integer microseconds since the Unix epoch (UTC), vectorized.

Pure functions, no I/O: :func:`to_epoch_us` reads a whole column of times at once, in
whatever form a feed or a replay file holds them (ISO 8601 strings, epoch numbers in any
unit, datetime objects, numpy, pandas or pyarrow arrays). The replay source and the parse
step both use it, so a time means the same wherever it is read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

__all__ = ["BoolArray", "IntArray", "TimeValues", "to_epoch_us"]

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
TimeValues = Sequence[object] | np.ndarray

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def to_epoch_us(values: TimeValues) -> tuple[IntArray, BoolArray]:
    """Parse timestamps to integer microseconds since the Unix epoch (UTC), vectorized.

    ``values`` is a sequence, or a numpy, pandas or pyarrow array. Returns ``(us, valid)``;
    ``us`` is 0 where ``valid`` is False. Accepted values:

    - ISO 8601 strings, with ``Z`` or an offset; naive means UTC; a date alone means its
      midnight UTC. Exact to the microsecond (digits below it are truncated).
    - Epoch numbers, or strings holding one, in a unit guessed from the magnitude:
      seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, else
      nanoseconds. Float seconds and milliseconds are rounded to the microsecond (their
      binary fractions are inexact); integers and finer units are truncated (floor).
    - ``datetime``/``date``, pandas, numpy and pyarrow timestamps (naive means UTC).

    Anything else (empty or blank strings, garbage, None, NaN, NaT, booleans) is invalid.

    >>> us, ok = to_epoch_us(["2024-01-02T09:30:00.5+01:00", "1704187800", "x"])
    >>> us.tolist(), ok.tolist()
    ([1704184200500000, 1704187800000000, 0], [True, True, False])
    """
    arr = _as_array(values)
    kind = arr.dtype.kind
    if kind == "M":
        return _datetime64_to_us(arr)
    if kind in "iuf":
        return _numbers_to_us(arr)
    if kind in "US":
        arr = arr.astype(object)
    elif kind != "O":  # booleans, timedeltas, complex numbers: not timestamps
        return _invalid(len(arr))
    return _objects_to_us(arr)


def _as_array(values: TimeValues) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.ravel()
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy()
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.to_numpy(zero_copy_only=False)
    return np.fromiter(values, dtype=object, count=len(values))


def _invalid(n: int) -> tuple[IntArray, BoolArray]:
    return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)


def _objects_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    inferred = pd.api.types.infer_dtype(arr, skipna=True)
    if inferred == "string":
        return _strings_to_us(arr)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return _number_objects_to_us(arr)
    if inferred in ("datetime", "datetime64", "date"):
        return _datetimes_to_us(arr)
    if inferred in ("empty", "boolean"):
        return _invalid(len(arr))
    return _mixed_to_us(arr)


def _numbers_to_us(x: np.ndarray) -> tuple[IntArray, BoolArray]:
    """Epoch numbers in a unit guessed from their magnitude."""
    if x.dtype.kind in "iu":
        valid = np.ones(len(x), dtype=np.bool_)
        if x.dtype.kind == "u":
            valid &= x <= _INT64_MAX
        xi = x.astype(np.int64)
        valid &= xi != _INT64_MIN  # its magnitude does not fit in int64
        mag = np.abs(xi)
        # Products that overflow belong to the branches np.select does not pick.
        us = np.select(
            [mag < 10**11, mag < 10**14, mag < 10**17], [xi * 10**6, xi * 10**3, xi], xi // 1000
        )
        return np.where(valid, us, 0).astype(np.int64), valid
    xf = x.astype(np.float64)
    valid = np.isfinite(xf) & (np.abs(xf) < 1e19)
    xf = np.where(valid, xf, 0.0)
    mag = np.abs(xf)
    us_f = np.select([mag < 1e11, mag < 1e14, mag < 1e17], [xf * 1e6, xf * 1e3, xf], xf / 1e3)
    us_f = np.where(mag >= 1e14, np.floor(us_f), np.rint(us_f))
    return us_f.astype(np.int64), valid


def _number_objects_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    us, ok = _invalid(len(arr))
    present = ~pd.isna(arr)
    vals = arr[present]
    if pd.api.types.infer_dtype(vals) == "integer":
        try:
            sub_us, sub_ok = _numbers_to_us(vals.astype(np.int64))
        except OverflowError:  # beyond int64: far outside any plausible time
            sub_us, sub_ok = _numbers_to_us(vals.astype(np.float64))
    else:
        sub_us, sub_ok = _numbers_to_us(vals.astype(np.float64))
    us[present], ok[present] = sub_us, sub_ok
    return us, ok


def _datetime64_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    valid = ~np.isnat(arr)
    us = arr.astype("datetime64[us]").view(np.int64)
    return np.where(valid, us, 0).astype(np.int64), valid


def _datetimes_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    parsed = pd.to_datetime(arr, utc=True, errors="coerce")
    valid = ~np.asarray(parsed.isna())
    us = np.asarray(parsed.as_unit("us").asi8)
    return np.where(valid, us, 0).astype(np.int64), valid


def _strings_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    """ISO 8601 or numeric strings; the batch's first string picks what to try first."""
    us, ok = _invalid(len(arr))
    todo = np.arange(len(arr))
    first = next((v for v in arr if isinstance(v, str) and v.strip()), "")
    if _NUMBER.fullmatch(first):
        todo = _parse_numeric_strings(arr, todo, us, ok)
        _parse_iso_strings(arr, todo, us, ok)
    else:
        todo = _parse_iso_strings(arr, todo, us, ok)
        _parse_numeric_strings(arr, todo, us, ok)
    return us, ok


def _parse_iso_strings(arr: np.ndarray, idx: IntArray, us: IntArray, ok: BoolArray) -> IntArray:
    """Parse ``arr[idx]`` as ISO 8601 into ``us``/``ok``; return the indices that failed."""
    if len(idx) == 0:
        return idx
    sub = arr[idx]
    parsed = pd.to_datetime(sub, utc=True, errors="coerce", format="ISO8601")
    good = ~np.asarray(parsed.isna())
    # The ISO parser also takes a few bare numbers ("2024", "20240102", "-5"): numbers win.
    hits = np.flatnonzero(good)
    lengths = np.fromiter(map(len, sub[hits]), dtype=np.int64, count=len(hits))
    for k in hits[lengths <= 12]:
        if _NUMBER.fullmatch(sub[k]):
            good[k] = False
    us[idx[good]] = np.asarray(parsed.as_unit("us").asi8)[good]
    ok[idx[good]] = True
    return idx[~good]


def _parse_numeric_strings(arr: np.ndarray, idx: IntArray, us: IntArray, ok: BoolArray) -> IntArray:
    """Parse ``arr[idx]`` as epoch numbers into ``us``/``ok``; return the indices that failed."""
    if len(idx) == 0:
        return idx
    sub = arr[idx]
    nums = np.asarray(pd.to_numeric(sub, errors="coerce"))
    good = np.isfinite(nums) if nums.dtype.kind == "f" else np.ones(len(nums), dtype=np.bool_)
    sub_us, sub_ok = _numbers_to_us(nums)
    if nums.dtype.kind == "f":
        # float64 is exact only below 2**53: integers beyond it (nanoseconds) are re-read
        exact: dict[int, int] = {}
        for k in np.flatnonzero(good & (np.abs(nums) >= 2.0**53)).tolist():
            if _INTEGER.fullmatch(sub[k]) and _INT64_MIN < (v := int(sub[k])) <= _INT64_MAX:
                exact[k] = v
        if exact:
            values = np.fromiter(exact.values(), dtype=np.int64, count=len(exact))
            keys = list(exact)
            sub_us[keys], sub_ok[keys] = _numbers_to_us(values)
    us[idx[good]] = sub_us[good]
    ok[idx[good]] = sub_ok[good]
    return idx[~good]


def _mixed_to_us(arr: np.ndarray) -> tuple[IntArray, BoolArray]:
    """Values of several kinds: group them by kind, then parse each group vectorized."""
    us, ok = _invalid(len(arr))
    groups: dict[str, list[int]] = {"str": [], "num": [], "time": []}
    values = arr.copy()
    for i, value in enumerate(arr):
        v = value.as_py() if isinstance(value, pa.Scalar) else value
        values[i] = v
        if isinstance(v, str):
            groups["str"].append(i)
        elif isinstance(v, (bool, np.bool_)):
            continue
        elif isinstance(v, (int, float, Decimal, np.integer, np.floating)):
            groups["num"].append(i)
        elif isinstance(v, (datetime, date, np.datetime64)):
            groups["time"].append(i)
    parsers = {"str": _strings_to_us, "num": _number_objects_to_us, "time": _datetimes_to_us}
    for kind, members in groups.items():
        if members:
            us[members], ok[members] = parsers[kind](values[members])
    return us, ok
