"""A run report's sections for the insight events, the same views as the live dashboard's
(dashboards.visdom.insight), from the same shared facts (dashboards.charts, dashboards.distributions):

    Classes                the last epoch's confusion matrix as a heatmap (counts, the share of the
                           true class on hover) and each class's accuracy as bars
    Mistakes               the last epoch's most confident mistakes, each captioned
                           'Sneaker ✗ (Sandal) 0.97'
    Weights and gradients  each tensor's gradient norm over steps (log axis), then per tensor (at most
                           MAX_TENSORS) its weights and gradients over steps as percentile bands
    Activations            per layer over epochs: the output's mean, spread and fraction of zeros
    System                 CPU and GPU load, and memory, over steps

A section appears only when the journal holds its events, so a journal from before them reports as it
did. Every text taken from the run is escaped.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Sequence

from dashboards.charts import (
    ACTIVATION_CHARTS,
    SYSTEM_CHARTS,
    colour_of,
    confusion_figure,
    envelope,
    layer_label,
    mistake_caption,
    per_class_figure,
)
from dashboards.distributions import MAX_SNAPSHOTS, figure, tensors
from dashboards.report.data import Journal, Run, finite
from dashboards.report.figures import chart, short, stride
from dashboards.report.page import chart_grid, png

MAX_MISTAKES = 100  # as many as insight.mistakes allows
IMAGE_BOX = 84  # CSS pixels of the longer side of a mistake's image, as the samples'

Figure = dict[str, Any]
Section = tuple[str, str]


def classes_of(j: Journal) -> list[Any]:
    dataset = j.info.get("dataset")
    classes = dataset.get("classes") if isinstance(dataset, dict) else None
    return list(classes) if isinstance(classes, list) else []


def insight_sections(run: Run) -> tuple[list[Section], list[Figure]]:
    """The sections the journal has events for, and the figures they place (ids unique on the page)."""
    j = run.journal
    sections: list[Section] = []
    figures: list[Figure] = []
    for name, make in (("Classes", _classes), ("Mistakes", _mistakes), ("Weights and gradients", _layers),
                       ("Activations", _activations), ("System", _system)):
        body, figs = make(j)
        if body:
            sections.append((name, body))
            figures += figs
    return sections, figures


def _classes(j: Journal) -> tuple[str, list[Figure]]:
    if j.last_confusion is None or not j.last_confusion["matrix"]:
        return "", []
    matrix, epoch = j.last_confusion["matrix"], j.last_confusion["epoch"]
    figures = []
    for fid, make in (("confusion", confusion_figure), ("per_class", per_class_figure)):
        data, layout = make(matrix, classes_of(j), epoch)
        figures.append({"id": fid, "data": data, "layout": layout})
    right = sum(row[i] for i, row in enumerate(matrix) if i < len(row))
    total = sum(sum(row) for row in matrix)
    head = (f"<p>After epoch {html.escape(str(epoch))}, over the whole test set: {right:,.0f} of {total:,.0f} right; "
            "true classes down, predicted across, the share of the true class on hover.</p>")
    return head + chart_grid(figures), figures


def _mistakes(j: Journal) -> tuple[str, list[Figure]]:
    m = j.last_mistakes
    if m is None:
        return "", []
    if not m["pixels"]:
        return (f"<p>No mistakes after epoch {html.escape(str(m['epoch']))}: every test image was classified "
                "right.</p>"), []
    classes = classes_of(j)

    def name(label: Any) -> str:
        return str(classes[label]) if isinstance(label, int) and 0 <= label < len(classes) else str(label)

    confidence = list(m["confidence"]) + [None] * len(m["pixels"])
    cells = []
    for i, (image, guess, true) in enumerate(zip(m["pixels"][:MAX_MISTAKES], m["predicted"], m["truth"])):
        try:
            data, width, height = png(image)
        except (ValueError, TypeError, IndexError) as exc:
            return f"<p class=note>The mistakes cannot be drawn ({html.escape(str(exc))}).</p>", []
        scale = max(1, IMAGE_BOX // max(width, height))
        caption = html.escape(mistake_caption(name(guess), name(true), confidence[i]))
        cells.append(f'<figure><img alt="mistake {i}" width={width * scale} height={height * scale} '
                     f'src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                     f'<figcaption class="bad">{caption}</figcaption></figure>')
    head = (f"<p>The test set's {len(cells)} most confident mistakes after epoch {html.escape(str(m['epoch']))}, "
            "most confident first: predicted &#10007; (true) and the probability the model gave its prediction.</p>")
    return head + '<div class="samples mistakes">' + "".join(cells) + "</div>", []


def _lines(fid: str, title: str, xtitle: str, ytitle: str, series: Sequence[tuple[str, Sequence[Any],
           Sequence[float | None]]], percent: bool = False, log: bool = False, markers: bool = False) -> Figure:
    """A chart of one line per (name, xs, ys), long ones as a min/max envelope."""
    data = []
    for n, (name, xs, ys) in enumerate(series):
        xs, ys = envelope(list(xs), list(ys))
        few = len(xs) < 20  # a few samples (a short run's system load) are drawn as points too
        data.append({"type": "scatter", "mode": "lines+markers" if markers or few else "lines",
                     "name": html.escape(name), "x": xs, "y": short(ys), "line": {"color": colour_of(n)}})
    return chart(fid, title, xtitle, ytitle, data, percent, log)


def _layers(j: Journal) -> tuple[str, list[Figure]]:
    if not j.tensors:
        return "", []
    drawn, left_out = tensors(j.tensors)
    figures = [_lines("grad_norm", "gradient norm per tensor", "step", "norm",
                      [(name, *j.grad_norms[name]) for name in drawn if name in j.grad_norms], log=True)]
    keep = [j.snapshots[i] for i in stride(j.snapshots, MAX_SNAPSHOTS)]
    steps = [step for step, _ in keep]
    for n, name in enumerate(drawn):
        bands = [snapshot.get(name, (None, None)) for _, snapshot in keep]
        data, layout = figure(name, steps, [w for w, _ in bands], [g for _, g in bands])
        figures.append({"id": f"dist_{n}", "data": data, "layout": layout})
    head = ("<p>Each weight tensor's values (blue) and gradients (orange) over steps: the median, and bands "
            "holding 38%, 68%, 87% and all of them (TensorBoard's distributions).</p>")
    if left_out:
        head += (f"<p class=note>{len(left_out)} more tensors are not drawn: "
                 f"{html.escape(', '.join(left_out[:20]))}{' ...' if len(left_out) > 20 else ''}.</p>")
    return head + chart_grid(figures), figures


def _activations(j: Journal) -> tuple[str, list[Figure]]:
    if not j.layer_outputs:
        return "", []
    names = tensors(list(dict.fromkeys(name for _, layers in j.layer_outputs for name in layers)))[0]
    epochs = [epoch for epoch, _ in j.layer_outputs]
    last = j.layer_outputs[-1][1]
    figures = []
    for key, (title, ytitle, percent) in ACTIVATION_CHARTS.items():
        series = [(layer_label(name, last.get(name)), epochs,
                   [finite((layers.get(name) or {}).get(key)) for _, layers in j.layer_outputs]) for name in names]
        figures.append(_lines(f"activations_{key}", title, "epoch", ytitle, series, percent, markers=True))
    head = ("<p>Each layer's output on the first test batch after each epoch: its mean, its spread, and the "
            "fraction of zeros (units a ReLU leaves dead).</p>")
    return head + chart_grid(figures), figures


def _system(j: Journal) -> tuple[str, list[Figure]]:
    figures = []
    for fid, (title, ytitle, keys) in SYSTEM_CHARTS.items():
        series = [(label, *j.system_series[key]) for key, label in keys if key in j.system_series]
        if series:
            figures.append(_lines("system_load" if fid == "system" else fid, title, "step", ytitle, series))
    return (chart_grid(figures), figures) if figures else ("", [])
