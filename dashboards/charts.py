"""Chart data both media share: the live comparison board (dashboards.visdom.compare) and the offline
report (dashboards.report) draw the same charts from the same facts, so the facts live here once.

It owns:
- the charts of a comparison (id -> title, axes, percent axis) and the titles of `metrics` events,
  and how their names group into charts (`metric_group`: `train/loss` and `train/kl` share `train`);
- the colours (Plotly's defaults, given explicitly so a seed band has its line's colour);
- the smoothing weight a spec asks for (`visdom.smoothing`, TensorBoard's 0.6 by default), and the
  smoothing itself (runner.smoothing, re-exported so both media import it from one place);
- seed bands: the runs sharing a label differ only in their seed and are drawn as their mean, with a
  shaded band from their minimum to their maximum (`seed_columns`, then `seed_traces`);
- long curves: at most MAX_POINTS points per trace, the past as a min/max envelope (`Bucket`: per
  run of consecutive points its lowest and highest, and its gaps), used whole by the report
  (`envelope`) and as a running summary by the live dashboard (dashboards.visdom.windows);
- the layout bits both media give every chart (the legend below the plot, the percent axis, the y range
  of a flat curve, which Plotly would otherwise centre on a unit range that reads as zero);
- the classes of a run: the confusion matrix as a heatmap (counts, the row's share on hover), each
  class's accuracy as bars, a mistake's caption ("Sneaker ✗ (Sandal) 0.97"); names are escaped here,
  as Plotly reads tags in its text. The weights' distributions are dashboards.distributions'.

Plain Python only: no plotly, numpy or visdom, so the report stays quick to import.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from runner.smoothing import Ema, ema

__all__ = ["ACTIVATION_CHARTS", "COLOURS", "COMPARISON", "DEFAULT_SMOOTHING", "MAX_POINTS", "METRIC_TITLES",
           "SYSTEM_CHARTS", "Bucket", "Chart", "Ema", "class_accuracy", "class_names", "colour_of", "confusion_figure",
           "ema", "envelope", "flat_range", "layer_label", "legend_below", "metric_group", "metric_title",
           "mistake_caption", "per_class_figure", "percent_axis", "seed_columns", "seed_traces", "smoothing_weight",
           "translucent"]

# Plotly's default colours, given explicitly so a seed band has its line's colour.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
METRIC_TITLES = {"lr": "learning rate"}  # a `metrics` event's key -> its chart's title
# An `activations` event's values -> (chart title, y axis, shown as percent), a line per layer over epochs.
ACTIVATION_CHARTS = {"mean": ("activation mean per layer", "mean", False),
                     "std": ("activation spread (std) per layer", "std", False),
                     "zeros": ("zeros per layer (dead units)", "zeros", True)}
# The `system` event's values, in two charts over steps: chart id -> (title, y axis, ((key, name), ...)).
SYSTEM_CHARTS = {"system": ("system load", "%", (("cpu_percent", "CPU %"), ("device_utilisation", "GPU busy %"))),
                 "system_memory": ("memory", "MB", (("rss_mb", "process RSS"), ("device_allocated_mb", "GPU allocated"),
                                                    ("device_reserved_mb", "GPU reserved")))}
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


def metric_group(key: str) -> tuple[str | None, str]:
    """The chart a `metrics` name is drawn on and its trace's name there: the part before the first '/'
    and the rest (`train/loss` -> ("train", "loss")), or (None, key) for a name with a chart of its own
    (`lr`)."""
    group, slash, rest = key.partition("/")
    return (group, rest) if slash and group and rest else (None, key)


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


def flat_range(values: Sequence[float | None], percent: bool = False, log: bool = False) -> list[float] | None:
    """The y range of a curve whose every value is the same (a constant learning rate), shown against
    zero; None when the values differ (or there are none) and the axis may range itself."""
    distinct = {v for v in values if v is not None}
    if len(distinct) != 1:
        return None
    (v,) = distinct
    if log:  # Plotly's log axes range over exponents
        return [math.log10(v) - 1, math.log10(v) + 1] if v > 0 else None
    if percent and 0 <= v <= 1:
        return [0, 1.05]
    return sorted([0, 1.5 * v]) if v else [-1, 1]


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


# ----- a run's classes ---------------------------------------------------------------------------

def layer_label(name: str, row: Any) -> str:
    """How a layer of an `activations` event is named on a chart: '1 (ReLU)', unescaped."""
    kind = row.get("kind") if isinstance(row, Mapping) else None
    return f"{name} ({kind})" if kind else name


def class_names(classes: Any, n: int) -> list[str]:
    """The names of classes 0..n-1 (the start event's dataset.classes, else the indices), escaped."""
    known = [str(c) for c in classes] if isinstance(classes, (list, tuple)) else []
    return [html.escape(known[i] if i < len(known) else str(i)) for i in range(n)]


def mistake_caption(predicted: str, truth: str, confidence: Any) -> str:
    """How a mistake is captioned in both media, unescaped: 'Sneaker ✗ (Sandal) 0.97'."""
    sure = f" {confidence:.2f}" if isinstance(confidence, (int, float)) and math.isfinite(confidence) else ""
    return f"{predicted} \u2717 ({truth}){sure}"


def _tick_angle(names: Sequence[str]) -> int:
    """Class names across an axis are slanted once they would run into each other."""
    return -40 if sum(len(n) for n in names) > 5 * len(names) else 0


def _row_totals(matrix: Sequence[Sequence[float]]) -> list[float]:
    return [math.fsum(row) for row in matrix]


def class_accuracy(matrix: Sequence[Sequence[float]]) -> list[float | None]:
    """Each class's accuracy (its diagonal count over its row's), None for a class absent from the test set."""
    return [row[i] / total if total else None for i, (row, total) in enumerate(zip(matrix, _row_totals(matrix)))]


def confusion_figure(matrix: Sequence[Sequence[float]], classes: Any, epoch: Any
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(data, layout) of the confusion heatmap: true classes down (the first on top), predicted across,
    coloured by count, each cell's count written in it (up to 20 classes) and its share of its row
    (of the true class) on hover."""
    names = class_names(classes, len(matrix))
    shares = [[c / total if total else 0.0 for c in row] for row, total in zip(matrix, _row_totals(matrix))]
    trace = {"type": "heatmap", "z": [list(row) for row in matrix], "x": names, "y": names, "customdata": shares,
             "colorscale": [[0, "#f7fbff"], [0.5, "#6baed6"], [1, "#08306b"]], "hoverongaps": False,
             "hovertemplate": "true %{y}<br>predicted %{x}<br>%{z} (%{customdata:.1%} of the true class)"
                              "<extra></extra>"}
    if len(names) <= 20:
        trace["texttemplate"] = "%{z}"
    side = max(360, min(900, 120 + 34 * len(names)))
    layout = {"title": {"text": f"confusion matrix, epoch {html.escape(str(epoch))}", "font": {"size": 14}},
              "height": side, "margin": {"l": 110, "r": 20, "t": 45, "b": 90},
              "xaxis": {"title": {"text": "predicted"}, "type": "category", "tickangle": _tick_angle(names)},
              "yaxis": {"title": {"text": "true"}, "type": "category", "autorange": "reversed"}}
    return [trace], layout


def per_class_figure(matrix: Sequence[Sequence[float]], classes: Any, epoch: Any
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(data, layout) of each class's accuracy as bars, with how many of the class were right on hover."""
    names = class_names(classes, len(matrix))
    totals = _row_totals(matrix)
    trace = {"type": "bar", "x": names, "y": class_accuracy(matrix), "marker": {"color": COLOURS[2]},
             "customdata": [[row[i], total] for i, (row, total) in enumerate(zip(matrix, totals))],
             "hovertemplate": "%{x}: %{y:.1%} (%{customdata[0]} of %{customdata[1]})<extra></extra>"}
    layout = {"title": {"text": f"accuracy per class, epoch {html.escape(str(epoch))}", "font": {"size": 14}},
              "height": 340, "margin": {"l": 60, "r": 20, "t": 45, "b": 90}, "showlegend": False,
              "xaxis": {"type": "category", "tickangle": _tick_angle(names)},
              "yaxis": {"title": {"text": "accuracy"}, "range": [0, 1.05], **percent_axis(True)}}
    return [trace], layout
