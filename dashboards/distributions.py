"""Weights and gradients over steps as TensorBoard draws its "distributions", for both media: the live
dashboard (dashboards.visdom.insight) and the offline report (dashboards.report.insight).

A `layers` event carries, per weight tensor, a histogram of its values and of its gradient
(runner.loggers.base: {"min", "max", "counts"} over equal bins from min to max). Of each histogram
this module keeps nine percentiles, those of TensorBoard's compressed histograms (the normal
distribution's -inf, -1.5, -1, -0.5, 0, 0.5, 1, 1.5 and +inf sigma points), read off the counts by
linear interpolation inside the bin each falls in; so 0 and 100 are the histogram's min and max. Drawn
over steps they are four nested shaded bands (0-100, 7-93, 16-84, 31-69, darker inwards) and the
median as a line: where the mass of a tensor sits and how it spreads, at a glance, in 9 traces
however many bins or steps.

One figure per tensor, weights on top and gradients below on the same step axis (`figure`): the two
differ by orders of magnitude, so each needs its own axis, and a window per tensor rather than per
tensor and kind halves the windows. `thin` keeps a growing list of snapshots bounded (the live
dashboard's); the report strides over the journal's whole list.

Plain Python only, like dashboards.charts.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping, Sequence

from dashboards.charts import COLOURS

# TensorBoard's compressed-histogram basis points, as percentiles.
PERCENTILES = (0.0, 6.68, 15.87, 30.85, 50.0, 69.15, 84.13, 93.32, 100.0)
MEDIAN = 4
BANDS = ((0, 8), (1, 7), (2, 6), (3, 5))  # indices into PERCENTILES, outermost band first
BAND_ALPHA = 0.16  # each band's fill; nested bands add up, so the middle reads darkest
WEIGHT_COLOUR, GRAD_COLOUR = COLOURS[0], COLOURS[1]
MAX_TENSORS = 12  # tensors drawn (in the model's order); a larger model's others are named in a note
MAX_SNAPSHOTS = 200  # steps per tensor a figure draws

Bands = list[float]  # the nine percentiles of one histogram


def percentiles(hist: Any) -> Bands | None:
    """The nine PERCENTILES of a histogram {"min", "max", "counts"}, or None when it holds nothing
    (or is not one: journals are read as they are)."""
    try:
        low, high, counts = float(hist["min"]), float(hist["max"]), [float(c) for c in hist["counts"]]
    except (TypeError, KeyError, ValueError):
        return None
    total = math.fsum(counts)
    if not counts or not total > 0 or not math.isfinite(low) or not math.isfinite(high) or high < low:
        return None
    if high == low:
        return [low] * len(PERCENTILES)
    width = (high - low) / len(counts)
    out: Bands = []
    targets = iter(total * p / 100 for p in PERCENTILES)
    target = next(targets)
    below = 0.0  # counts in the bins before bin i
    for i, count in enumerate(counts):
        while count > 0 and below + count >= target:
            out.append(low + (i + (target - below) / count) * width)
            target = next(targets, math.inf)
        below += count
    out += [high] * (len(PERCENTILES) - len(out))  # rounding left the top ones past the last bin
    return [min(high, max(low, v)) for v in out]


def thin(items: list[Any], limit: int = MAX_SNAPSHOTS) -> list[Any]:
    """`items` if within `limit`, else every other one of them, the last always kept: a list fed one at
    a time and thinned whenever it outgrows `limit` stays bounded, the recent past at full detail and
    the older at halved resolution each time."""
    if len(items) <= limit:
        return items
    return items[:-1][::2] + items[-1:]


def tensors(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The tensors drawn (the first MAX_TENSORS, in order) and those left out."""
    return list(names[:MAX_TENSORS]), list(names[MAX_TENSORS:])


def band_traces(steps: Sequence[float], bands: Sequence[Bands | None], colour: str, kind: str,
                axis: str = "y") -> list[dict[str, Any]]:
    """The nine traces of one tensor's weights (or gradients) over `steps`: per band its lower edge,
    then its upper edge filled down to it, then the median. A step without a histogram is a gap."""
    xs = list(steps)

    def column(k: int) -> list[float | None]:
        return [None if b is None else float(f"{b[k]:.5g}") for b in bands]

    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    edge = {"type": "scatter", "mode": "lines", "x": xs, "yaxis": axis, "showlegend": False, "legendgroup": kind,
            "line": {"width": 0, "color": colour}, "marker": {"line": {"width": 0}}}
    traces: list[dict[str, Any]] = []
    for low, high in BANDS:
        traces.append({**edge, "name": f"{kind} {PERCENTILES[low]:g}%", "y": column(low)})
        traces.append({**edge, "name": f"{kind} {PERCENTILES[high]:g}%", "y": column(high), "fill": "tonexty",
                       "fillcolor": f"rgba({r},{g},{b},{BAND_ALPHA})"})
    traces.append({**edge, "name": f"{kind} median", "y": column(MEDIAN), "showlegend": True,
                   "line": {"width": 1.5, "color": colour}})
    return traces


def figure(name: str, steps: Sequence[float], weights: Sequence[Bands | None],
           grads: Sequence[Bands | None]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(data, layout) of one tensor's figure: weights on top, gradients below, steps across. `name` is
    escaped here: Plotly reads tags in its text."""
    data = band_traces(steps, weights, WEIGHT_COLOUR, "weight")
    if any(g is not None for g in grads):
        data += band_traces(steps, grads, GRAD_COLOUR, "gradient", "y2")
    layout = {"title": {"text": f"{html.escape(name)}: weights and gradients", "font": {"size": 14}},
              "height": 420, "margin": {"l": 70, "r": 20, "t": 62, "b": 40}, "hovermode": "x", "showlegend": True,
              "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.01, "yanchor": "bottom"},
              "xaxis": {"title": {"text": "step"}, "anchor": "y2"},
              "yaxis": {"title": {"text": "weight"}, "domain": [0.55, 1.0]},
              "yaxis2": {"title": {"text": "gradient"}, "domain": [0.0, 0.45], "exponentformat": "e"}}
    return data, layout


def layer_rows(layers: Any) -> dict[str, Mapping[str, Any]]:
    """A `layers` event's tensors that look like the protocol's (a dict of dicts), by name."""
    if not isinstance(layers, Mapping):
        return {}
    return {str(k): v for k, v in layers.items() if isinstance(v, Mapping)}
