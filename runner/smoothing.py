"""The smoothed loss curve: an exponential moving average, debiased as TensorBoard draws it.

TensorBoard's smoothing (its scalar dashboard, `smoothing` slider) starts the average at 0 and
divides by 1 - weight**n, so the first points are not pulled towards 0; a gap (None, NaN or inf)
stays a gap and leaves the average untouched. The run dashboard, replay, the comparison env and the
report all draw the smoothed trace with this one function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass
class Ema:
    """The running state, for curves that arrive in pieces: `extend` continues where it stopped."""

    weight: float
    last: float = 0.0
    count: int = 0

    def extend(self, values: Sequence[float | None]) -> list[float | None]:
        out: list[float | None] = []
        for v in values:
            if v is None or not math.isfinite(v):
                out.append(None)
                continue
            self.last = self.last * self.weight + (1 - self.weight) * v
            self.count += 1
            debias = 1 - self.weight ** self.count if self.weight < 1 else 1.0
            out.append(self.last / debias if debias else v)
        return out


def ema(values: Sequence[float | None], weight: float) -> list[float | None]:
    """The debiased exponential moving average of `values` (0 <= weight < 1; 0 gives them back)."""
    if not 0 <= weight < 1:
        raise ValueError(f"the smoothing weight must be in [0, 1), not {weight}")
    return Ema(weight).extend(values)
