"""The debiased EMA the charts smooth with."""

from __future__ import annotations

import math

import pytest

from runner.smoothing import ema


def test_weight_zero_is_the_identity() -> None:
    assert ema([3.0, 1.0, 2.0], 0) == [3.0, 1.0, 2.0]


def test_first_value_is_not_pulled_towards_zero() -> None:
    assert ema([5.0], 0.9) == [pytest.approx(5.0)]
    assert ema([2.0, 2.0, 2.0], 0.6) == [pytest.approx(2.0)] * 3  # a constant stays constant


def test_matches_the_debiased_formula() -> None:
    w, values = 0.6, [1.0, 3.0, 2.0]
    last, expected = 0.0, []
    for n, v in enumerate(values, 1):
        last = last * w + (1 - w) * v
        expected.append(last / (1 - w ** n))
    assert ema(values, w) == pytest.approx(expected)


def test_gaps_are_kept_and_skipped() -> None:
    out = ema([1.0, None, math.nan, 3.0], 0.5)
    assert out[1] is None and out[2] is None
    assert out[0] == pytest.approx(1.0)
    assert out[3] == pytest.approx(((0.5 * 1.0) * 0.5 + 0.5 * 3.0) / (1 - 0.25))
