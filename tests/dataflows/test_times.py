"""to_epoch_us: every form a time comes in, to integer microseconds since the epoch."""

from __future__ import annotations

import doctest
import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from dataflows import times
from dataflows.times import to_epoch_us

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# 2024-01-02T09:30:00Z, by hand: 19_724 days * 86_400 s + 9.5 h
S_0930 = 19_724 * 86_400 + 34_200


def epoch_us(values: Sequence[object] | np.ndarray) -> list[int | None]:
    us, ok = to_epoch_us(values)
    assert us.dtype == np.int64
    assert ok.dtype == np.bool_
    assert (us[~ok] == 0).all()
    return [int(u) if v else None for u, v in zip(us, ok, strict=True)]


def test_iso_strings() -> None:
    assert S_0930 == 1_704_187_800
    assert epoch_us(
        [
            "2024-01-02T09:30:00Z",
            "2024-01-02T09:30:00+02:00",
            "2024-01-02T09:30:00-0530",
            "2024-01-02T09:30:00",  # naive: UTC
            "2024-01-02",  # midnight UTC
            "2024-01-02T09:30:00.123456Z",
            "2024-01-02 09:30:00.000001",
            "2024-01-02T09:30:00.5Z",
            "2024-01-02T09:30:00.123456789Z",  # below a microsecond: truncated
            " 2024-01-02T09:30:00Z",
        ]
    ) == [
        S_0930 * 10**6,
        (S_0930 - 7_200) * 10**6,
        (S_0930 + 19_800) * 10**6,
        S_0930 * 10**6,
        (S_0930 - 34_200) * 10**6,
        S_0930 * 10**6 + 123_456,
        S_0930 * 10**6 + 1,
        S_0930 * 10**6 + 500_000,
        S_0930 * 10**6 + 123_456,
        S_0930 * 10**6,
    ]


def test_iso_strings_are_exact_to_the_microsecond() -> None:
    rng = random.Random(7)
    instants = [rng.randrange(0, 4_102_444_800 * 10**6) for _ in range(2_000)]
    offsets = [rng.choice([0, 3_600, -19_800, 45_900]) for _ in instants]
    texts = [
        (EPOCH + timedelta(microseconds=us, seconds=off))
        .replace(tzinfo=timezone(timedelta(seconds=off)))
        .isoformat(timespec="microseconds")
        for us, off in zip(instants, offsets, strict=True)
    ]
    assert epoch_us(texts) == instants


def test_epoch_numbers_by_magnitude() -> None:
    expected = [S_0930 * 10**6, S_0930 * 10**6 + 123_000, S_0930 * 10**6 + 123_456] * 2
    assert epoch_us([S_0930, S_0930 * 10**3 + 123, S_0930 * 10**6 + 123_456]) == expected[:3]
    assert epoch_us([S_0930 * 10**9 + 123_456_789, 1.5, 1_704_187_800.25]) == [
        expected[2],
        1_500_000,
        S_0930 * 10**6 + 250_000,
    ]
    # Numeric strings, ns exact although mixed with a bad one (which makes them floats).
    assert epoch_us(
        [str(S_0930), f"{S_0930}123", f"{S_0930}123456", f"{S_0930}123456789", "x", " 1e3 "]
    ) == [*expected[:3], expected[2], None, 1_000 * 10**6]
    # Magnitude boundaries: s < 1e11 <= ms < 1e14 <= us < 1e17 <= ns
    assert epoch_us(np.array([10**11 - 1, 10**11, 10**14 - 1, 10**14, 10**17 - 1, 10**17])) == [
        (10**11 - 1) * 10**6,
        10**11 * 10**3,
        (10**14 - 1) * 10**3,
        10**14,
        10**17 - 1,
        10**14,
    ]
    assert epoch_us([-1, "-1.5"]) == [-(10**6), -1_500_000]
    assert epoch_us(["2024", "20240102"]) == [2024 * 10**6, 20_240_102 * 10**6]


def test_timestamp_objects() -> None:
    us = S_0930 * 10**6 + 123_456
    aware = datetime(2024, 1, 2, 11, 30, 0, 123_456, tzinfo=timezone(timedelta(hours=2)))
    assert epoch_us(
        [
            aware,
            aware.astimezone(timezone.utc).replace(tzinfo=None),  # naive: UTC
            pd.Timestamp("2024-01-02T04:30:00.123456-05:00"),
            np.datetime64("2024-01-02T09:30:00.123456789"),
            pa.scalar(us, pa.timestamp("us", tz="UTC")),
            date(2024, 1, 2),
        ]
    ) == [us] * 5 + [(S_0930 - 34_200) * 10**6]
    assert epoch_us(np.array(["2024-01-02T09:30:00.123456", "NaT"], "datetime64[ns]")) == [
        us,
        None,
    ]
    assert epoch_us(pd.Series(pd.to_datetime([aware, None], utc=True))) == [us, None]
    assert epoch_us([pd.Timestamp(aware), pd.NaT, None]) == [us, None, None]


def test_invalid_times() -> None:
    garbage: list[object] = ["", "  ", "garbage", "nan", "NaN", "inf", "2024-13-45", "12:00"]
    garbage += [None, float("nan"), pd.NaT, True, b"2024-01-02", object(), float("inf"), 1e30]
    assert epoch_us(garbage) == [None] * len(garbage)
    assert epoch_us([]) == []
    assert epoch_us([None, None]) == [None, None]
    assert epoch_us(np.array([True, False])) == [None, None]
    assert epoch_us(np.array([np.nan, 1.0])) == [None, 10**6]


def test_doctest() -> None:
    result = doctest.testmod(times)
    assert result.attempted > 0
    assert result.failed == 0
