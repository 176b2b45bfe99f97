"""Smoothing of noisy curves for charts: TensorBoard's debiased exponential moving average."""

from __future__ import annotations

import math
from typing import Sequence


def ema(values: Sequence[float | None], weight: float) -> list[float | None]:
    """The debiased exponential moving average of `values`, as TensorBoard's scalar charts draw it.

    `weight` in [0, 1): 0 returns the values unchanged, 0.6 is TensorBoard's default. The average
    starts at zero and is divided by 1 - weight**n (n: finite values seen so far), so the first
    points are not dragged towards zero. None and non-finite values are skipped: they stay None in
    the output and do not enter the average.
    """
    out: list[float | None] = []
    last, n = 0.0, 0
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(None)
            continue
        n += 1
        last = last * weight + (1 - weight) * value
        debias = 1 - weight ** n
        out.append(last / debias if debias else value)
    return out
