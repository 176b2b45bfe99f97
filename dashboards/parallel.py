"""The charts of what a comparison learned, as plain Plotly figures ({"data": [...], "layout": {...}},
no plotly import), drawn by both media: the live comparison env (dashboards.visdom.compare, windows
`parallel` and `importance`) and a sweep's report (dashboards.report.sweep).

- `parallel_figure`: parallel coordinates (Plotly's `parcoords` trace). One axis per key the
  comparison varied (runner.sweeps.importance.Target.keys): a choice, and every key of a sweep of
  listed values, as a categorical axis labelled with its values; a `loguniform` range in log scale,
  labelled with the values; other ranges as numbers. The metric is the last axis. One line per
  finished run, coloured by its metric (the better, the brighter): the seeds of one variant are a line
  each, so their spread shows.
- `importance_figure`: each key's importance as a horizontal bar, the largest on top, or the sentence
  saying why there is none.

Every text taken from a run (keys, values, notes) is escaped: Plotly reads tags in its labels.
"""

from __future__ import annotations

import html
import math
import textwrap
from typing import Any, Mapping, Sequence

from dashboards.charts import COLOURS, COMPARISON
from runner.sweeps.importance import Target, Trial, internal
from runner.sweeps.variants import short_keys, show

LABEL = 28  # characters of a value shown as a tick label (a long data.root is cut, with "...")


def metric_name(metric: str) -> str:
    """test_accuracy -> test accuracy: the metric as the comparison's charts title it."""
    chart = COMPARISON.get(metric)
    return chart.title if chart is not None else metric


def parallel_figure(target: Target, trials: Sequence[Trial]) -> dict[str, Any]:
    """Parallel coordinates of the finished runs: a line per run through its values and its metric."""
    shorts = short_keys(target.keys)
    dimensions = [_dimension(shorts[key], target.space[key], [values[key] for values, _ in trials])
                  for key in target.keys]
    scores = [value for _, value in trials]
    percent = COMPARISON.get(target.metric) is not None and COMPARISON[target.metric].percent
    shown = {"tickformat": ".1%"} if percent else {}
    span = _span(scores, percent)
    dimensions.append({"label": html.escape(metric_name(target.metric)), "values": scores, **shown,
                       **({"range": span} if span else {})})
    # Viridis runs from dark to bright: the better runs are drawn bright, whichever way is better.
    line = {"color": scores, "colorscale": "Viridis", "reversescale": not target.maximize, "showscale": True,
            "colorbar": {"title": {"text": html.escape(metric_name(target.metric))}, **shown},
            **({"cmin": span[0], "cmax": span[1]} if span else {})}
    layout: dict[str, Any] = {
        "title": {"text": f"what each finished run ran with, and its {html.escape(metric_name(target.metric))}",
                  "font": {"size": 15}},
        "height": 420, "margin": {"l": 80, "r": 40, "t": 90, "b": 30}}
    if not trials:
        layout["annotations"] = [_note("No variant has finished yet.")]
    return {"data": [{"type": "parcoords", "line": line, "dimensions": dimensions}], "layout": layout}


def _dimension(label: str, dist: Mapping[str, list[Any]], values: Sequence[Any]) -> dict[str, Any]:
    """One key's axis: its values as the runs had them, placed on the axis as the distribution says."""
    (kind, args), = dist.items()
    if kind == "choice":
        ticks = [html.escape(_cut(show(a))) for a in args]
        return {"label": html.escape(label), "values": [internal(dist, v) for v in values],
                "range": [0, len(args) - 1], "tickvals": list(range(len(args))), "ticktext": ticks}
    low, high = args
    if kind == "loguniform":  # parcoords has no log axis: the values' logarithms, ticked with the values
        ends = [math.log10(low), math.log10(high)]
        decades = [float(d) for d in range(math.ceil(ends[0]), math.floor(ends[1]) + 1)]
        ticks = sorted({*ends, *decades})
        return {"label": html.escape(f"{label} (log scale)"), "values": [math.log10(v) for v in values],
                "range": ends, "tickvals": ticks, "ticktext": [f"{10 ** t:.3g}" for t in ticks]}
    return {"label": html.escape(label), "values": list(values), "range": [low, high]}


def _span(scores: Sequence[float], percent: bool) -> list[float] | None:
    """The metric axis's range when every run scored the same (Plotly would stretch it 10% past 100%)."""
    if not scores or min(scores) != max(scores):
        return None
    value = scores[0]
    margin = abs(value) / 20 or 0.05
    low, high = value - margin, value + margin
    return [max(low, 0.0), min(high, 1.0)] if percent and 0 <= value <= 1 else [low, high]


def _cut(text: str) -> str:
    return text if len(text) <= LABEL else text[:LABEL - 3] + "..."


def _note(text: str) -> dict[str, Any]:
    """A sentence in the middle of an empty chart, a line every 60 characters or so."""
    lines = textwrap.wrap(text, 60) or [""]
    return {"text": "<br>".join(html.escape(line) for line in lines), "showarrow": False, "xref": "paper",
            "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "#8a5a00"}}


def importance_figure(found: Mapping[str, float], note: str, metric: str) -> dict[str, Any]:
    """Each key's importance for the metric as a bar, the largest on top; or `note` when there is none."""
    title = f"what mattered for the {html.escape(metric_name(metric))} (Optuna's importance)"
    layout: dict[str, Any] = {"title": {"text": title, "font": {"size": 15}},
                              "height": 140 + 32 * max(len(found), 2), "margin": {"l": 120, "r": 30, "t": 50, "b": 45}}
    if not found:  # an empty bar: Visdom takes a window's kind from its first trace
        layout.update(annotations=[_note(note)], xaxis={"visible": False}, yaxis={"visible": False})
        return {"data": [{"type": "bar", "x": [], "y": [], "showlegend": False}], "layout": layout}
    keys = list(found)[::-1]  # Plotly draws the first category at the bottom
    layout.update(xaxis={"title": {"text": "importance (they add up to 1)"}, "range": [0, 1]},
                  yaxis={"automargin": True})
    bar = {"type": "bar", "orientation": "h", "x": [found[k] for k in keys], "y": [html.escape(k) for k in keys],
           "text": [f"{found[k]:.3f}" for k in keys], "textposition": "auto", "marker": {"color": COLOURS[0]},
           "hovertemplate": "%{y}: %{x:.3f}<extra></extra>", "showlegend": False}
    return {"data": [bar], "layout": layout}
