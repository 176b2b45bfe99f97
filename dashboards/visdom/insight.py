"""The windows a run's env adds for the insight events (runner.loggers.base): what the model gets wrong,
what its weights, gradients and activations do, and what the machine is doing.

    confusion         heatmap of the latest confusion matrix: true classes down, predicted across,
                      counts in the cells, the share of the true class on hover (dashboards.charts)
    per_class         each class's accuracy at the latest epoch, as bars
    mistakes          the test set's most confident mistakes as an image grid, like `images`
    mistake_captions  their captions laid out like the grid: 'Sneaker ✗ (Sandal) 0.97'
    dist_TENSOR       per weight tensor (at most MAX_TENSORS, in the model's order): its weights and
                      its gradients over steps as TensorBoard's distributions, percentile bands
                      (dashboards.distributions), weights on top and gradients below on one step
                      axis: one window per tensor, not two, and each kind keeps its own scale
    grad_norm         each tensor's gradient norm over steps, a line each, log y axis: vanishing or
                      exploding gradients at a glance
    activations_mean, activations_std, activations_zeros
                      per layer over epochs, a line each: the output's mean, its spread, and the
                      fraction of zeros (dead ReLUs), measured on the first test batch
    system            CPU % (and the GPU's utilisation when NVML answers) over steps
    system_memory     the process's RSS (and the GPU memory allocated and reserved) over steps, in MB
The run pane shows the latest system values (dashboards.visdom.panes).

Bounded however long the run: the line windows are dashboards.visdom.windows' Plots; a tensor keeps
at most MAX_SNAPSHOTS histograms, halved (every other one, the newest kept) whenever it outgrows them,
so the recent steps stay at full detail; the distributions are sent at most every DIST_EVERY seconds.
The Logger methods of VisdomLogger call these under its lock and only record; percentiles and
messages are made on the sender thread. Every name drawn is escaped.
"""

from __future__ import annotations

import html
import re
from typing import Any, Mapping, Sequence

from dashboards.charts import ACTIVATION_CHARTS, SYSTEM_CHARTS, confusion_figure, layer_label, per_class_figure
from dashboards.distributions import MAX_SNAPSHOTS, Bands, figure, layer_rows, percentiles, tensors, thin
from dashboards.visdom.panes import IMAGES_PER_ROW, Progress, image_grid, mistakes_html
from dashboards.visdom.sender import finite
from dashboards.visdom.windows import Message, Pane, Plot

MAX_MISTAKES = 100  # as many as a spec may ask for (insight.mistakes)
DIST_EVERY = 5.0  # seconds between sends of a distribution window while the run goes


def number(value: Any) -> float | None:
    """A finite float, or None (a gap) for anything else."""
    return finite(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def figure_message(env: str, win: str, title: str, data: list[dict[str, Any]], layout: dict[str, Any],
                   width: int = 520, height: int | None = None) -> Message:
    """A raw Plotly figure as visdom's `plotlyplot` posts it, replacing whatever the window holds; `title`
    is the window's own (escaped), steady while the figure's says which epoch it shows."""
    return {"data": data, "layout": layout, "win": win, "eid": env,
            "opts": {"title": title, "width": width, "height": height or int(layout.get("height", 340)) + 40}}, "events"


class Snapshot:
    """One `layers` event's histograms of one tensor; its percentiles are made once, by the sender."""

    __slots__ = ("step", "weight", "grad", "_bands")

    def __init__(self, step: int, weight: Any, grad: Any) -> None:
        self.step, self.weight, self.grad = step, weight, grad
        self._bands: tuple[Bands | None, Bands | None] | None = None

    def bands(self) -> tuple[Bands | None, Bands | None]:
        if self._bands is None:
            self._bands = (percentiles(self.weight), percentiles(self.grad))
        return self._bands


class Insight:
    """The insight windows of one env. Its plots and panes go into the logger's own lists, so they are
    sent, counted and re-sent after an outage with the others (see the module docstring)."""

    def __init__(self, env: str, viz: Any, plots: list[Plot], panes: list[Pane], progress: Progress) -> None:
        self._env, self._viz = env, viz
        self._plots, self._panes, self._progress = plots, panes, progress
        self.classes: list[str] | None = None
        self._confusion = Pane("confusion", self._confusion_message)
        self._per_class = Pane("per_class", self._per_class_message)
        self._mistakes = Pane("mistakes", self._mistakes_message)
        self._captions = Pane("mistake_captions", self._captions_message)
        self._snapshots: dict[str, list[Snapshot]] = {}  # per tensor drawn, oldest first
        self._dist: dict[str, Pane] = {}
        self._left_out: list[str] = []  # tensors past MAX_TENSORS
        self._lines: dict[str, tuple[Plot, list[str]]] = {}  # window -> (its plot, the key of each trace)
        self._system_seen = False

    # ----- events, under the logger's lock -----

    def confusion(self, epoch: int, step: int, matrix: Sequence[Sequence[int]]) -> None:
        content = (epoch, [[int(c) for c in row] for row in matrix], self.classes)
        self._set(self._confusion, content)
        self._set(self._per_class, content)

    def mistakes(self, epoch: int, pixels: Any, predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None:
        self._set(self._mistakes, (epoch, pixels[:MAX_MISTAKES]))
        self._set(self._captions, (epoch, list(predicted[:MAX_MISTAKES]), list(truth[:MAX_MISTAKES]),
                                   list(confidence[:MAX_MISTAKES]), self.classes))

    def layers(self, step: int, layers: Mapping[str, Any]) -> None:
        rows = layer_rows(layers)
        if not rows:
            return
        if not self._snapshots:
            drawn, self._left_out = tensors(list(rows))
            for name in drawn:
                self._snapshots[name] = []
                self._dist[name] = Pane(f"dist_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}", self._dist_message,
                                        every=DIST_EVERY)
                self._panes.append(self._dist[name])
            self._line("grad_norm", {"title": "gradient norm per tensor", "xlabel": "step", "ylabel": "norm",
                                     "ytype": "log"}, drawn, drawn)
        for name, snapshots in self._snapshots.items():
            row = rows.get(name) or {}
            snapshots.append(Snapshot(step, row.get("weight"), row.get("grad")))
            self._snapshots[name] = thin(snapshots, MAX_SNAPSHOTS)
            self._set(self._dist[name], (name, list(self._snapshots[name]), self._left_out))
        self._add("grad_norm", step, {name: (rows.get(name) or {}).get("grad_norm") for name in self._snapshots})

    def activations(self, epoch: int, layers: Mapping[str, Any]) -> None:
        rows = layer_rows(layers)
        if not rows:
            return
        if "activations_mean" not in self._lines:
            drawn, _ = tensors(list(rows))
            legend = [layer_label(name, rows[name]) for name in drawn]
            for key, (title, ylabel, percent) in ACTIVATION_CHARTS.items():
                self._line(f"activations_{key}", {"title": title, "xlabel": "epoch", "ylabel": ylabel,
                                                  **({"ytickformat": ".0%"} if percent else {})}, drawn, legend)
        for key in ACTIVATION_CHARTS:
            self._add(f"activations_{key}", epoch, {name: (row or {}).get(key) for name, row in rows.items()})

    def system(self, step: int, values: Mapping[str, Any]) -> None:
        self._progress.system = dict(values)
        if not self._system_seen:  # the first sample says which values this machine has
            self._system_seen = True
            for win, (title, ylabel, keys) in SYSTEM_CHARTS.items():
                present = [(key, label) for key, label in keys if number(values.get(key)) is not None]
                if present:
                    self._line(win, {"title": title, "xlabel": "step", "ylabel": ylabel},
                               [key for key, _ in present], [label for _, label in present])
        for win in SYSTEM_CHARTS:
            self._add(win, step, values)

    def _set(self, pane: Pane, content: Any) -> None:
        if pane not in self._panes:  # a window appears with its first content
            self._panes.append(pane)
        pane.content = content
        pane.updates += 1

    def _line(self, win: str, opts: dict[str, Any], keys: list[str], legend: list[str]) -> None:
        plot = Plot.of(win, {**opts, "legend": [html.escape(name) for name in legend]}, traces=len(keys))
        self._lines[win] = (plot, keys)
        self._plots.append(plot)

    def _add(self, win: str, x: int, values: Mapping[str, Any]) -> None:
        if win in self._lines:
            plot, keys = self._lines[win]
            plot.add([x], *([number(values.get(key))] for key in keys))

    # ----- messages, on the sender thread -----

    def _confusion_message(self, content: tuple[int, list[list[int]], list[str] | None]) -> Message:
        epoch, matrix, classes = content
        data, layout = confusion_figure(matrix, classes, epoch)
        return figure_message(self._env, "confusion", "confusion matrix", data, layout,
                              width=max(520, int(layout["height"])))

    def _per_class_message(self, content: tuple[int, list[list[int]], list[str] | None]) -> Message:
        epoch, matrix, classes = content
        data, layout = per_class_figure(matrix, classes, epoch)
        return figure_message(self._env, "per_class", "accuracy per class", data, layout,
                              width=max(520, min(1200, 40 * len(matrix))))

    def _mistakes_message(self, content: tuple[int, Any]) -> Message:
        epoch, pixels = content
        if not len(pixels):  # the grid of an earlier epoch must not stay up
            return self._viz.text(f"<b>epoch {html.escape(str(epoch))}</b>: no mistakes, every test image is "
                                  "classified right", win="mistakes", env=self._env,
                                  opts={"title": "most confident mistakes", "width": 520, "height": 80})
        return image_grid(self._viz, self._env, "mistakes", "most confident mistakes", pixels)

    def _captions_message(self, content: tuple[int, list[int], list[int], list[float], list[str] | None]) -> Message:
        epoch, predicted, truth, confidence, classes = content
        rows = -(-len(truth) // IMAGES_PER_ROW)
        longest = max((len(c) for c in classes or ()), default=1)
        opts = {"title": "mistakes: predicted ✗ (true) confidence",
                "width": max(520, min(1400, 100 + IMAGES_PER_ROW * (16 * longest + 60))), "height": 90 + 26 * rows}
        return self._viz.text(mistakes_html(epoch, predicted, truth, confidence, classes), win="mistake_captions",
                              env=self._env, opts=opts)

    def _dist_message(self, content: tuple[str, list[Snapshot], list[str]]) -> Message:
        name, snapshots, left_out = content
        bands = [s.bands() for s in snapshots]
        data, layout = figure(name, [s.step for s in snapshots], [w for w, _ in bands], [g for _, g in bands])
        if left_out:
            layout["title"]["text"] += f" ({len(left_out)} more tensors not drawn)"
        return figure_message(self._env, self._dist[name].win, f"{html.escape(name)}: weights and gradients", data,
                              layout)

