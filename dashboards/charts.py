"""Chart data both media share: the live comparison board (dashboards.visdom.compare) and the offline
report (dashboards.report) draw the same charts from the same facts, so the facts live here once.

It owns:
- the charts of a comparison (id -> title, axes, percent axis) and the titles of `metrics` events;
- the colours (Plotly's defaults, given explicitly so a seed band has its line's colour);
- the smoothing weight a spec asks for (`visdom.smoothing`, TensorBoard's 0.6 by default), and the
  smoothing itself (runner.smoothing, re-exported so both media import it from one place);
- seed bands: the runs sharing a label differ only in their seed and are drawn as their mean, with a
  shaded band from their minimum to their maximum (`seed_columns`, then `seed_traces`);
- long curves: at most MAX_POINTS points per trace, the past as a min/max envelope (`Bucket`: per
  run of consecutive points its lowest and highest, and its gaps), used whole by the report
  (`envelope`) and as a running summary by the live dashboard (dashboards.visdom.windows);
- the layout bits both media give every chart (the legend below the plot, the percent axis).

Plain Python only: no plotly, numpy or visdom, so the report stays quick to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from runner.smoothing import Ema, ema

__all__ = ["COLOURS", "COMPARISON", "DEFAULT_SMOOTHING", "MAX_POINTS", "METRIC_TITLES", "Bucket", "Chart", "Ema",
           "colour_of", "ema", "envelope", "legend_below", "metric_title", "percent_axis", "seed_columns", "seed_traces", "smoothing_weight",
           "translucent"]

# Plotly's default colours, given explicitly so a seed band has its line's colour.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
METRIC_TITLES = {"lr": "learning rate"}  # a `metrics` event's key -> its chart's title
DEFAULT_SMOOTHING = 0.6  # TensorBoard's default; a spec's visdom.smoothing overrides it
MAX_POINTS = 2000  # per trace on a chart: a screen is under 2,000 pixels wide

Points = Mapping[float, float | None]  # one run's curve on one chart: x -> y (None: a gap)


@dataclass(frozen=True)
class Chart:
    """One chart of a comparison: its title, its axes, and whether y is a fraction shown as percent."""

    title: str
    x: str
    y: str
    percent: bool = False


# The charts of a comparison, in the order they are laid out; each medium words the train loss's
# title after how it smooths it.
COMPARISON = {
    "train_loss": Chart("train loss", "step", "loss"),
    "test_accuracy": Chart("test accuracy", "epoch", "accuracy", percent=True),
    "test_loss": Chart("test loss", "epoch", "loss"),
}


def colour_of(index: int) -> str:
    """The colour of the index-th trace (or variant); the palette repeats after ten."""
    return COLOURS[index % len(COLOURS)]


def translucent(colour: str) -> str:
    """`#rrggbb` as the 20% opaque fill of a seed band."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.2)"


def metric_title(key: str) -> str:
    return METRIC_TITLES.get(key, key)


def smoothing_weight(spec: Mapping[str, Any]) -> float:
    """The spec's visdom.smoothing, when it has one and it makes sense, else DEFAULT_SMOOTHING."""
    value = (spec.get("visdom") or {}).get("smoothing", DEFAULT_SMOOTHING)
    return float(value) if isinstance(value, (int, float)) and 0 <= value < 1 else DEFAULT_SMOOTHING


def legend_below() -> dict[str, Any]:
    """Legend below the axis title: the plot keeps its width however long the names are."""
    return {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}


def percent_axis(percent: bool) -> dict[str, Any]:
    """What a y axis adds when its values are fractions (accuracy): ticks as percent."""
    return {"tickformat": ".1%"} if percent else {}


def seed_columns(per_run: Sequence[Points]) -> tuple[list[float], list[list[float]]]:
    """Every x any run has, in order, and at each the values the runs have there (gaps left out)."""
    xs = sorted({x for points in per_run for x in points})
    return xs, [[y for points in per_run if (y := points.get(x)) is not None] for x in xs]


def seed_traces(label: str, colour: str, xs: Sequence[float], columns: Sequence[Sequence[float]], runs: int, *,
                markers: bool, name: str | None = None) -> list[dict[str, Any]]:
    """One variant's Plotly traces: the run itself, or for several seeds (`runs` > 1) their mean with
    a min-max band. `label` groups the traces in the legend; `name` is how they are named there (the
    label, unless the medium escapes it). A column without values is a gap (None)."""
    name = label if name is None else name
    line = {"type": "scatter", "mode": "lines+markers" if markers else "lines", "x": list(xs),
            "line": {"color": colour}, "legendgroup": label}
    if runs == 1:
        return [{**line, "name": name, "y": [c[0] if c else None for c in columns]}]
    band = {"type": "scatter", "mode": "lines", "x": list(xs), "legendgroup": label, "showlegend": False,
            "hoverinfo": "skip", "line": {"width": 0, "color": colour}}
    return [{**band, "name": f"{name} min", "y": [min(c) if c else None for c in columns]},
            {**band, "name": f"{name} max", "y": [max(c) if c else None for c in columns],
             "fill": "tonexty", "fillcolor": translucent(colour)},
            {**line, "name": f"{name} (mean of {runs} seeds)",
             "y": [math.fsum(c) / len(c) if c else None for c in columns]}]


class Bucket:
    """Consecutive points of a curve as an envelope draws them: the lowest and the highest (in their
    order; the first of equals), and, if a value among them was missing (None), a gap at its first x."""

    __slots__ = ("start", "gap", "low", "high")

    def __init__(self, start: float) -> None:
        self.start = start
        self.gap = False
        self.low: tuple[float, float] | None = None
        self.high: tuple[float, float] | None = None

    def add(self, x: float, y: float | None) -> None:
        if y is None:
            self.gap = True
            return
        if self.low is None or y < self.low[1]:
            self.low = (x, y)
        if self.high is None or y > self.high[1]:
            self.high = (x, y)

    def merged(self, later: "Bucket") -> "Bucket":
        """A new bucket of this one and the one that follows it: the extremes of both, any gap of either."""
        both = Bucket(self.start)
        both.gap, both.low, both.high = self.gap or later.gap, self.low, self.high
        if later.low is not None and (self.low is None or later.low[1] < self.low[1]):
            both.low = later.low
        if later.high is not None and (self.high is None or later.high[1] > self.high[1]):
            both.high = later.high
        return both

    def points(self) -> list[tuple[float, float | None]]:
        """What a chart draws of it: the gap first, then the lowest and highest points in x order."""
        extremes = sorted({p for p in (self.low, self.high) if p is not None})
        return [(self.start, None), *extremes] if self.gap else extremes


def envelope(xs: Sequence[float], ys: Sequence[float | None], limit: int = MAX_POINTS
             ) -> tuple[list[float], list[float | None]]:
    """About `limit` points of the curve: per bucket of consecutive points, its lowest and its highest (in
    their order), so spikes and the spread stay visible; a bucket with a gap (None) also keeps the gap."""
    if len(xs) <= limit:
        return list(xs), list(ys)
    size = math.ceil(len(xs) / max(1, limit // 2))
    out_x: list[float] = []
    out_y: list[float | None] = []
    for start in range(0, len(xs), size):
        bucket = Bucket(xs[start])
        for i in range(start, min(start + size, len(xs))):
            bucket.add(xs[i], ys[i])
        for x, y in bucket.points():
            out_x.append(x)
            out_y.append(y)
    return out_x, out_y
