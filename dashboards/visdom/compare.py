"""ComparisonBoard: one Visdom env comparing the runs of a sweep, live while they train or rebuilt
from their journals (`python -m runner compare`), through the same Logger events either way.

Windows of the env (its old windows are closed first):
    train_loss      train loss vs step, a point every SMOOTH steps: the run's smoothed loss there (the
                    debiased moving average the run's own dashboard draws, weight `visdom.smoothing`),
                    or the mean of those SMOOTH steps when the run turns smoothing off. A run never
                    has more than MAX_POINTS (dashboards.charts) of them: when it reaches that many,
                    neighbours merge in pairs (the later smoothed value, or the mean of both means)
                    and its points are twice as far apart from then on
    test_accuracy   test accuracy vs epoch
    test_loss       test loss vs epoch
    results         the results table, as the console prints it
    parallel        parallel coordinates of the finished runs: an axis per key the comparison varies
                    and one for its metric, a line per run (dashboards.parallel); absent while no key varies
    importance      each varied key's importance for the metric (runner.sweeps.importance), or why
                    there is none yet

One trace per variant, named by its label (what differs). Runs sharing a label differ only in their
seed: they are drawn as their mean, with a shaded band from their minimum to their maximum.

The varied keys and the metric come from the runs' own start events (their specs), and for a search
from the sweep.json next to their run directories (its space, metric and mode); a run counts as
finished when its close event says so, with the metric its summary holds. Both windows are rebuilt
whole when a run finishes, Optuna's importance on the sender thread, never on the training thread.

Each chart is small (points per epoch, or at most MAX_POINTS per run), so every send replaces a whole window:
the sender thread (dashboards.visdom.sender, shared with the run dashboard) re-sends the windows that
changed, at most every `flush_interval` seconds, and after a failure sends them all again, so the
server ends up with the whole comparison once it answers. The env is saved to the server's env
folder whenever the results table changes and at close.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence, TextIO

from dashboards import parallel
from dashboards.charts import (
    COMPARISON,
    MAX_POINTS,
    Chart,
    Ema,
    colour_of,
    legend_below,
    percent_axis,
    seed_columns,
    seed_traces,
    smoothing_weight,
)
from dashboards.visdom.sender import Say, Sender
from dashboards.visdom.sender import finite as _finite
from runner import status
from runner.loggers import ClosingLogger, Info
from runner.status import FINISHED
from runner.sweeps import importance
from runner.sweeps.variants import flatten

SMOOTH = 20  # steps per point of the train loss chart, until a run has MAX_POINTS of them
CHARTS: dict[str, Chart] = {  # window id -> its chart (dashboards.charts.COMPARISON)
    **COMPARISON,
    "train_loss": replace(COMPARISON["train_loss"],
                          title=f"train loss (smoothed, a point every {SMOOTH} steps or more)"),
}
LEARNED = {"parallel": "parallel coordinates of the finished runs", "importance": "what mattered"}  # id -> title


@dataclass
class _Run:
    """One run's curves: chart id -> {x: y}."""

    name: str
    label: str
    points: dict[str, dict[float, float | None]] = field(default_factory=lambda: {w: {} for w in CHARTS})
    block: list[tuple[int, float]] = field(default_factory=list)  # train steps not yet averaged
    ema: Ema | None = None  # the run's smoothing, once its start event says which
    every: int = SMOOTH  # train steps per point of the train loss chart
    flat: dict[str, Any] | None = None  # its spec as dotted keys, once its start event says
    folder: Path | None = None  # the directory holding its run directory (a sweep's sweep.json)
    final: Info | None = None  # its summary, once it has finished

    def thin(self) -> None:
        """Merge the train loss chart's points in pairs: the later smoothed value, or the mean of both
        block means (blocks of equal length: the chart holds an even number of whole blocks)."""
        items = list(self.points["train_loss"].items())
        self.points["train_loss"] = {
            x: y if self.ema is not None else None if y is None or y0 is None else (y0 + y) / 2
            for (_, y0), (x, y) in zip(items[::2], items[1::2])}
        self.every *= 2


class _RunLogger(ClosingLogger):
    """The Logger of one run: its events become points on the board's charts."""

    def __init__(self, board: "ComparisonBoard", run: _Run) -> None:
        self._board, self._run = board, run

    def start(self, info: Info) -> None:
        weight = smoothing_weight(info.get("spec") or {})
        if weight > 0:
            self._run.ema = Ema(weight)
        with self._board._lock:
            self._run.flat = flatten(dict(info.get("spec") or {}))
            self._run.folder = Path(info["run_dir"]).parent if info.get("run_dir") else None

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        with self._board._lock:
            ema = self._run.ema
            smoothed = ema.extend([_finite(v) for v in losses]) if ema is not None else losses
            for step, loss in zip(steps, smoothed):
                self._run.block.append((step, float("nan") if loss is None else loss))
                if len(self._run.block) == self._run.every:
                    self._average()

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        with self._board._lock:
            self._run.points["test_accuracy"][epoch] = _finite(test_accuracy)
            self._run.points["test_loss"][epoch] = _finite(test_loss)
            self._board._changed("test_accuracy", "test_loss")

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        with self._board._lock:
            if self._run.block:  # the last, shorter block
                self._average()
            if summary is not None and status.read(summary.get("status", FINISHED)) == FINISHED:
                self._run.final = summary
                self._board._changed(*LEARNED)

    def _average(self) -> None:
        block = self._run.block
        value = block[-1][1] if self._run.ema is not None else sum(v for _, v in block) / len(block)
        points, whole = self._run.points["train_loss"], len(block) == self._run.every
        points[block[-1][0]] = _finite(value)
        block.clear()
        if whole and len(points) == MAX_POINTS:  # not after the last, shorter block
            self._run.thin()
        self._board._changed("train_loss")


class ComparisonBoard(Sender):
    """The comparison env on a Visdom server; never blocks or fails the runs it shows."""

    what = "comparison"

    def __init__(self, env: str, server: str | None = None, port: int | None = None, *,
                 flush_interval: float = 0.5, close_timeout: float = 10.0, out: TextIO | Say | None = None) -> None:
        # Credentials come from VISDOM_USERNAME and VISDOM_PASSWORD only.
        self._runs: list[_Run] = []
        self._table: tuple[list[str], list[list[str]]] = ([], [])
        self._search: importance.Target | None = None  # the search the runs' sweep.json records, once read
        self._versions = {w: 0 for w in (*CHARTS, "results", *LEARNED)}  # bumped on every change
        self._sent = {w: 0 for w in self._versions}  # the version the server holds
        super().__init__(env, server, port, flush_interval=flush_interval, close_timeout=close_timeout, pace=1,
                         out=out, thread_name="visdom-compare")
        self._start_sender()

    def run(self, name: str, label: str) -> ClosingLogger:
        """A Logger for one run; runs with the same label are seeds of one variant. A run of a name
        already here starts again from nothing (a retried trial: its journal is replayed into it)."""
        run = _Run(name, label)
        with self._lock:
            kept = [r for r in self._runs if r.name != name]
            if len(kept) < len(self._runs):
                self._changed(*CHARTS, *LEARNED)
            self._runs = [*kept, run]
        return _RunLogger(self, run)

    def results(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        header, rows = list(header), [list(r) for r in rows]
        if "status" not in header:  # the console leaves it out when every run finished; the board always shows it
            header, rows = [*header, "status"], [[*r, FINISHED] for r in rows]
        with self._lock:
            self._table = (header, rows)
            self._changed("results")
        self.save()

    def __enter__(self) -> "ComparisonBoard":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def where(self) -> dict[str, Any]:
        """What sweep.json records of the comparison: its env (a resumed sweep draws on it again)."""
        return {"env": self.env}

    def close(self) -> None:
        """Send what is left, for at most `close_timeout` seconds, and say where it is. Never raises."""
        if self._sender_closed:
            return
        self._close_sender()
        with self._lock:
            behind = [w for w in self._versions if self._sent[w] != self._versions[w]]
        if behind or not self._reachable:
            self._say(f"visdom: the comparison at {self.url} is incomplete; `python -m runner compare` on the "
                      "sweep directory rebuilds it from the runs' journals")
        else:
            self._say(f"visdom: comparison at {self.url}")

    def figures(self, *windows: str) -> dict[str, dict[str, Any] | None]:
        """Charts (all unless named) as Plotly data and layout: what the server is sent. The `parallel` and
        `importance` windows only when named (None for `parallel` while no key varies)."""
        with self._lock:
            groups: dict[str, list[_Run]] = {}
            for run in self._runs:
                groups.setdefault(run.label, []).append(run)
            figures: dict[str, dict[str, Any] | None] = {win: _figure(win, groups) for win in windows or CHARTS
                                                         if win in CHARTS}
        for win in set(windows) & set(LEARNED):
            figures[win] = self._learned_figure(win)
        return figures

    def learned(self) -> tuple[importance.Target, list[importance.Trial]]:
        """The keys the runs vary (a search's own space, when its sweep.json is found next to their
        directories) and each finished run's values and metric: one per run, seeds too."""
        with self._lock:
            started = [r for r in self._runs if r.flat is not None]
            folders = [r.folder for r in started if r.folder is not None]
            finished = [(r.flat, r.final) for r in started if r.final is not None]
        if self._search is None:  # a search's record does not change: read once found
            self._search = importance.recorded(folders)
        target = self._search or importance.of_grid([r.flat for r in started if r.flat is not None])
        return target, importance.trials(target, [(flat, final.get(target.metric)) for flat, final in finished])

    def _learned_figure(self, win: str) -> dict[str, Any] | None:
        """The parallel coordinates (None while no key varies), or the importance chart."""
        target, trials = self.learned()
        if win == "parallel":
            return parallel.parallel_figure(target, trials) if target.keys else None
        try:
            found, note = importance.explain(trials, target)
        except Exception as exc:  # noqa: BLE001 - a window of the board never stops the sender
            found, note = {}, f"No importance: Optuna failed on these runs ({type(exc).__name__}: {exc})."
        return parallel.importance_figure(found, note, target.metric)

    def _changed(self, *windows: str) -> None:  # under the lock
        for w in windows:
            self._versions[w] += 1

    # ----- sender thread -----

    def _send_changes(self) -> bool:
        sent_any = False
        for win in self._versions:
            with self._lock:
                version = self._versions[win]
            if version in (0, self._sent[win]):  # nothing drawn yet, or nothing new
                continue
            if win not in CHARTS and self._versions["train_loss"] > self._sent["train_loss"]:
                continue  # the charts first (Visdom lays windows out in the order they appear), if any
            message = self._table_message() if win == "results" else self._chart_message(win)
            if message is not None:
                self._post(message, "events")
                sent_any = True
            self._sent[win] = version
        return sent_any

    def _resend_all(self) -> None:  # under the lock
        self._sent = {w: -1 for w in self._versions}

    def _chart_message(self, win: str) -> dict[str, Any] | None:
        figure = self.figures(win)[win]
        if figure is None:
            return None
        title = CHARTS[win].title if win in CHARTS else LEARNED[win]
        size = {"width": 900, "height": 480} if win == "parallel" else {"width": 600, "height": 460}
        if win == "importance":  # a bar per key
            size["height"] = figure["layout"]["height"] + 40
        return {"data": figure["data"], "layout": figure["layout"], "win": win, "eid": self.env,
                "opts": {"title": title, **size}}

    def _table_message(self) -> dict[str, Any]:
        with self._lock:
            header, rows = self._table
        pad = 'style="padding:3px 12px;text-align:left"'
        cells = "".join(f"<th {pad}>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td {pad}>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        text = f'<table style="border-collapse:collapse"><tr>{cells}</tr>{body}</table>'
        return {"data": [{"content": text, "type": "text"}], "win": "results", "eid": self.env,
                "opts": {"title": "results", "width": 900, "height": 90 + 26 * len(rows)}}


def _figure(win: str, groups: dict[str, list[_Run]]) -> dict[str, Any]:
    chart = CHARTS[win]
    data: list[dict[str, Any]] = []
    for i, (label, runs) in enumerate(groups.items()):
        xs, columns = seed_columns([run.points[win] for run in runs])
        data += seed_traces(label, colour_of(i), xs, columns, len(runs), markers=win != "train_loss")
    layout = {"title": chart.title, "showlegend": True, "xaxis": {"title": chart.x},
              "yaxis": {"title": chart.y, **percent_axis(chart.percent)},
              "legend": legend_below(), "margin": {"l": 70, "r": 20, "t": 50, "b": 40}}
    return {"data": data, "layout": layout}
