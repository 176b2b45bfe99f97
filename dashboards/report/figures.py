"""A report's charts: Plotly figures (data and layout) from runs read back by `report.data`.

A run's figures: the train loss per step (a min/max envelope of the raw curve, so spikes survive,
with its smoothed trace), test loss and accuracy per epoch, and one chart per `metrics` key (the
learning rate), names with a '/' one chart per group as on the live dashboard (`scalar_figures`:
`train/loss` and `train/kl` are the traces loss and kl of the chart train); a tracked run's
(runner.track) are those charts alone. A sweep's figures: the comparison's charts
(dashboards.charts.COMPARISON) plus one per `metrics` key, a trace per variant, seeds as mean and
min-max band as in the comparison env.

Charts keep at most MAX_POINTS points per trace (SWEEP_MAX_POINTS on a sweep's, which draws three
traces per variant), numbers cut to five significant digits; the page's tables hold exact values.
"""

from __future__ import annotations

import html
import math
from dataclasses import replace
from typing import Any, Iterable, Sequence

from dashboards.charts import (
    COLOURS,
    COMPARISON,
    MAX_POINTS,
    Chart,
    colour_of,
    ema,
    envelope,
    flat_range,
    legend_below,
    metric_group,
    metric_title,
    percent_axis,
    seed_columns,
    seed_traces,
    smoothing_weight,
)
from dashboards.report.data import Journal, Run, epoch_means, finite

__all__ = ["MAX_POINTS", "SWEEP_MAX_POINTS", "band_traces", "chart", "envelope", "run_figures", "scalar_figures",
           "short", "stride", "sweep_figures"]

# MAX_POINTS (dashboards.charts): per trace on a chart, the train loss's as a min/max envelope (`envelope`)
SWEEP_MAX_POINTS = 1000  # per trace on a sweep's charts: three traces per variant

Curves = dict[str, list[dict[float, float | None]]]  # chart id -> one {x: y} per run


# ----- curves fit for a chart --------------------------------------------------------------------

def stride(xs: Sequence[Any], limit: int) -> list[int]:
    """Indices of at most `limit` evenly spread points, the last one always among them."""
    if len(xs) <= limit:
        return list(range(len(xs)))
    step = math.ceil(len(xs) / (limit - 1))
    return sorted({*range(0, len(xs), step), len(xs) - 1})


def short(values: Iterable[float | None]) -> list[float | None]:
    # Five significant digits are plenty for a chart and halve the page's numbers; tables stay exact.
    return [None if v is None else float(f"{v:.5g}") for v in values]


# ----- figures -----------------------------------------------------------------------------------

def _layout(title: str, xtitle: str, ytitle: str, percent: bool = False) -> dict[str, Any]:
    return {"title": {"text": html.escape(title), "font": {"size": 15}}, "height": 340,
            "margin": {"l": 60, "r": 20, "t": 45, "b": 40}, "showlegend": True, "legend": legend_below(),
            "xaxis": {"title": {"text": html.escape(xtitle), "standoff": 4}},
            "yaxis": {"title": {"text": html.escape(ytitle)}, **percent_axis(percent)}}  # a metric's name may be any text


def chart(fid: str, title: str, xtitle: str, ytitle: str, data: list[dict[str, Any]], percent: bool = False,
          log: bool = False) -> dict[str, Any]:
    """A line chart of the page: `data`'s traces, titles escaped, a flat curve shown against zero."""
    layout = _layout(title, xtitle, ytitle, percent)
    if log:
        layout["yaxis"]["type"] = "log"
    # Plotly would centre a flat line on a unit range that reads as zero; show it against zero instead.
    span = flat_range([y for d in data for y in d["y"]], percent, log=layout["yaxis"].get("type") == "log")
    if span:
        layout["yaxis"]["range"] = span
    if xtitle == "epoch":  # whole epochs only, at most about ten ticks
        last = max((x for d in data for x in d["x"]), default=1)
        layout["xaxis"]["dtick"] = max(1, math.ceil(last / 10))
    layout["height"] += 20 * max(0, len([d for d in data if d.get("showlegend", True)]) - 2) // 2
    return {"id": fid, "data": data, "layout": layout}


def run_figures(run: Run) -> list[dict[str, Any]]:
    j, weight = run.journal, smoothing_weight(run.spec)
    figures = []
    if j.steps:
        xs, ys = envelope(j.steps, j.losses)
        keep = stride(j.steps, MAX_POINTS)
        smooth = ema(j.losses, weight)
        data = [{"type": "scatter", "mode": "lines", "name": "loss per step" + (" (min/max envelope)" if
                                                                                len(j.steps) > MAX_POINTS else ""),
                 "x": xs, "y": short(ys), "line": {"color": COLOURS[0], "width": 1}, "opacity": 0.35}]
        if weight > 0:
            data.append({"type": "scatter", "mode": "lines", "name": f"smoothed (EMA {weight:g})",
                         "x": [j.steps[i] for i in keep], "y": short(smooth[i] for i in keep),
                         "line": {"color": COLOURS[0], "width": 2}})
        figures.append(chart("train_loss", "train loss", "step", "loss", data))
    if j.evaluations:
        figures += _test_figures(j)
    figures += scalar_figures(j.series)
    lr = finite((run.spec.get("optim") or {}).get("lr"))
    if "lr" not in j.series and lr is not None and j.steps:  # journals from before the metrics event
        figures.append(chart("lr", "learning rate (constant, optim.lr of the spec)", "step", "lr", [
            {"type": "scatter", "mode": "lines", "name": "lr", "x": [j.steps[0], j.steps[-1]], "y": [lr, lr],
             "line": {"color": COLOURS[3]}}]))
    return figures


def scalar_figures(series: dict[str, tuple[list[int], list[float | None]]]) -> list[dict[str, Any]]:
    """One chart per `metrics` name, or per group of names (the part before the first '/'), charts and
    traces in the order the names first came, as on the live dashboard (so a trace has its colour
    there); each trace a min/max envelope of at most MAX_POINTS points, drawn to its last point."""
    charts: dict[str, list[str]] = {}  # a group (or a name of its own, as "/name") -> its names
    for key in series:
        group, _ = metric_group(key)
        charts.setdefault(group if group is not None else "/" + key, []).append(key)
    figures = []
    for n, (chart_key, keys) in enumerate(charts.items()):
        if chart_key.startswith("/"):  # a name of its own: one trace named after it, as ever
            key = keys[0]
            xs, ys = _to_the_end(*series[key])
            figures.append(chart(f"metric_{n}", metric_title(key), "step", key, [
                {"type": "scatter", "mode": "lines", "name": html.escape(key), "x": xs, "y": short(ys),
                 "line": {"color": colour_of(3 + n)}}]))
            continue
        data = []
        for i, key in enumerate(keys):
            xs, ys = _to_the_end(*series[key])
            data.append({"type": "scatter", "mode": "lines", "name": html.escape(metric_group(key)[1]), "x": xs,
                         "y": short(ys), "line": {"color": colour_of(i)}})
        figures.append(chart(f"metric_{n}", chart_key, "step", "", data))
    return figures


def _to_the_end(xs: list[int], ys: list[float | None]) -> tuple[list[float], list[float | None]]:
    """The envelope of a curve, drawn to its last point (a bucket draws its extremes, not its end)."""
    out_x, out_y = envelope(xs, ys)
    if xs and (out_x[-1], out_y[-1]) != (xs[-1], ys[-1]):
        out_x.append(xs[-1])
        out_y.append(ys[-1])
    return out_x, out_y


def _test_figures(j: Journal) -> list[dict[str, Any]]:
    """Test loss (with the train loss's epoch mean) and test accuracy, per epoch."""
    epochs = [e["epoch"] for e in j.evaluations]
    means = epoch_means(j)
    data = [{"type": "scatter", "mode": "lines+markers", "name": "test loss", "x": epochs,
             "y": short(finite(e["test_loss"]) for e in j.evaluations), "line": {"color": COLOURS[1]}},
            {"type": "scatter", "mode": "lines+markers", "name": "train loss (epoch mean)", "x": epochs,
             "y": short(means.get(e) for e in epochs), "line": {"color": COLOURS[0], "dash": "dot"}}]
    return [chart("test_loss", "test loss", "epoch", "loss", data),
            chart("test_accuracy", "test accuracy", "epoch", "accuracy", [
                {"type": "scatter", "mode": "lines+markers", "name": "test accuracy", "x": epochs,
                 "y": short(finite(e["test_accuracy"]) for e in j.evaluations), "line": {"color": COLOURS[2]}}],
                percent=True)]


def band_traces(label: str, colour: str, per_run: list[dict[float, float | None]], limit: int,
                markers: bool) -> list[dict[str, Any]]:
    """One variant's curve: the run itself, or for several seeds their mean with a min-max band."""
    xs, columns = seed_columns(per_run)
    keep = stride(xs, limit)
    xs, columns = [xs[i] for i in keep], [columns[i] for i in keep]
    traces = seed_traces(label, colour, xs, columns, len(per_run), markers=markers, name=html.escape(label))
    for trace in traces:
        trace["y"] = short(trace["y"])
    return traces


def sweep_figures(groups: dict[str, list[Run]], weight: float) -> list[dict[str, Any]]:
    keys = sorted({key for members in groups.values() for run in members for key in run.journal.series})
    charts: dict[str, Chart] = {**COMPARISON, "train_loss": replace(
        COMPARISON["train_loss"], title=f"train loss (EMA {weight:g} of each run)" if weight else "train loss")}
    for n, key in enumerate(keys):
        charts[f"metric_{n}"] = Chart(metric_title(key), "step", key)
    data: dict[str, list[dict[str, Any]]] = {cid: [] for cid in charts}
    for i, (label, members) in enumerate(groups.items()):
        for cid, per_run in _curves(members, keys, weight).items():
            per_run = [points for points in per_run if points]
            if per_run:
                data[cid].extend(band_traces(label, colour_of(i), per_run, SWEEP_MAX_POINTS,
                                             markers=not cid.startswith(("train", "metric"))))
    return [chart(cid, c.title, c.x, c.y, data[cid], c.percent) for cid, c in charts.items() if data[cid]]


def _curves(members: list[Run], keys: list[str], weight: float) -> Curves:
    """Each chart's curve of each run of one variant (the train loss smoothed with `weight`)."""
    curves: Curves = {
        "train_loss": [dict(zip(r.journal.steps, ema(r.journal.losses, weight))) for r in members],
        "test_accuracy": [{e["epoch"]: finite(e["test_accuracy"]) for e in r.journal.evaluations} for r in members],
        "test_loss": [{e["epoch"]: finite(e["test_loss"]) for e in r.journal.evaluations} for r in members],
    }
    for n, key in enumerate(keys):
        curves[f"metric_{n}"] = [dict(zip(*r.journal.series[key])) for r in members if key in r.journal.series]
    return curves
