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
    metric_NAME     one per name of the runs' `metrics` events (the runner's learning rate, a tracked
                    run's `train/loss`, ...), vs step: runs that log the same name meet on one chart.
                    At most MAX_POINTS points a run, as the train loss: a point per value, then, once
                    a run has that many, neighbours merged in pairs (their mean) and a point per two
                    values from then on, and so on
    results         the results table, as the console prints it
    parallel        parallel coordinates of the finished runs: an axis per key the comparison varies
                    and one for its metric, a line per run (dashboards.parallel); absent while no key varies
    importance      each varied key's importance for the metric (runner.sweeps.importance), or why
                    there is none yet

One trace per variant, named by its label (what differs); a run without a chart's values (a tracked
run has no test accuracy) is not on that chart, and a chart no run has values for is not drawn.
Runs sharing a label differ only in their seed: they are drawn as their mean, with a shaded band
from their minimum to their maximum.

The varied keys and the metric come from the runs' own start events (their specs), and for a search
from the sweep.json next to their run directories (its space, metric and mode); a run counts as
finished when its close event says so, with the metric its summary holds. Both windows are rebuilt
whole when a run finishes, Optuna's importance on the sender thread, never on the training thread.
Tracked runs (runner.track) have no such metric and are left out of both.

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
    metric_title,
    percent_axis,
    seed_columns,
    seed_traces,
    smoothing_weight,
)
from dashboards.visdom.names import safe_env
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
MAX_METRIC_CHARTS = 100  # metric_NAME windows; later names are left out (the journals keep them)


@dataclass
class _Curve:
    """One run's curve on a chart of steps, at most MAX_POINTS points: a point per `every` values (their
    mean, or the last of a smoothed curve), `every` doubling whenever the curve reaches MAX_POINTS."""

    every: int = 1  # values per point
    smoothed: bool = False  # values of a moving average: a block is drawn as its last value
    points: dict[float, float | None] = field(default_factory=dict)
    block: list[tuple[float, float]] = field(default_factory=list)  # values not yet drawn

    def add(self, x: float, y: float | None) -> bool:
        """One value; True when it made a point."""
        self.block.append((x, float("nan") if y is None else y))
        if len(self.block) < self.every:
            return False
        self._draw()
        return True

    def end(self) -> bool:
        """The last, shorter block; True when there was one."""
        if not self.block:
            return False
        self._draw()
        return True

    def _draw(self) -> None:
        block = self.block
        value = block[-1][1] if self.smoothed else sum(v for _, v in block) / len(block)
        whole = len(block) == self.every
        self.points[block[-1][0]] = _finite(value)
        block.clear()
        if whole and len(self.points) == MAX_POINTS:  # not after the last, shorter block
            self._thin()

    def _thin(self) -> None:
        """Merge the points in pairs: the later smoothed value, or the mean of both block means (blocks
        of equal length: the curve holds an even number of whole blocks)."""
        items = list(self.points.items())
        self.points = {x: y if self.smoothed else None if y is None or y0 is None else (y0 + y) / 2
                       for (_, y0), (x, y) in zip(items[::2], items[1::2])}
        self.every *= 2


@dataclass
class _Run:
    """One run's curves: chart id -> {x: y}."""

    name: str
    label: str
    points: dict[str, dict[float, float | None]] = field(default_factory=lambda: {"test_accuracy": {},
                                                                                   "test_loss": {}})
    curves: dict[str, _Curve] = field(default_factory=dict)  # the train loss's and each metric's chart
    ema: Ema | None = None  # the run's smoothing, once its start event says which
    flat: dict[str, Any] | None = None  # its spec as dotted keys, once its start event says (not a tracked run's)
    folder: Path | None = None  # the directory holding its run directory (a sweep's sweep.json)
    final: Info | None = None  # its summary, once it has finished
    tracked: bool = False  # a loop of one's own (runner.track): no test metric

    def of(self, win: str) -> dict[float, float | None]:
        """Its points on chart `win` (none yet: empty)."""
        curve = self.curves.get(win)
        return curve.points if curve is not None else self.points.get(win, {})


class _RunLogger(ClosingLogger):
    """The Logger of one run: its events become points on the board's charts."""

    def __init__(self, board: "ComparisonBoard", run: _Run) -> None:
        self._board, self._run = board, run

    def start(self, info: Info) -> None:
        spec = info.get("spec") if isinstance(info.get("spec"), dict) else {}
        tracked = bool(info.get("tracked"))
        weight = 0.0 if tracked or not isinstance(spec.get("visdom", {}), dict) else smoothing_weight(spec)
        with self._board._lock:
            self._run.ema = Ema(weight) if weight > 0 else None
            self._run.tracked = tracked
            self._run.flat = None if tracked else flatten(dict(spec))
            self._run.folder = Path(info["run_dir"]).parent if info.get("run_dir") else None

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        with self._board._lock:
            run = self._run
            curve = run.curves.get("train_loss")
            if curve is None:
                curve = run.curves["train_loss"] = _Curve(SMOOTH, smoothed=run.ema is not None)
            smoothed = run.ema.extend([_finite(v) for v in losses]) if run.ema is not None else losses
            if any([curve.add(step, loss) for step, loss in zip(steps, smoothed)]):
                self._board._changed("train_loss")

    def metrics(self, epoch: int, step: int, values: Info) -> None:
        with self._board._lock:
            for name, value in values.items():
                win = self._board._metric_chart(str(name))
                if win is not None:
                    number = _finite(value) if isinstance(value, (int, float)) else None
                    if self._run.curves.setdefault(win, _Curve()).add(step, number):
                        self._board._changed(win)

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        with self._board._lock:
            self._run.points["test_accuracy"][epoch] = _finite(test_accuracy)
            self._run.points["test_loss"][epoch] = _finite(test_loss)
            self._board._changed("test_accuracy", "test_loss")

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        with self._board._lock:
            for win, curve in self._run.curves.items():
                if curve.end():
                    self._board._changed(win)
            if summary is not None and status.read(summary.get("status", FINISHED)) == FINISHED:
                self._run.final = summary
                if not self._run.tracked:
                    self._board._changed(*LEARNED)


class ComparisonBoard(Sender):
    """The comparison env on a Visdom server; never blocks or fails the runs it shows."""

    what = "comparison"

    def __init__(self, env: str, server: str | None = None, port: int | None = None, *,
                 flush_interval: float = 0.5, close_timeout: float = 10.0, out: TextIO | Say | None = None) -> None:
        # Credentials come from VISDOM_USERNAME and VISDOM_PASSWORD only.
        self._runs: list[_Run] = []
        self._table: tuple[list[str], list[list[str]]] = ([], [])
        self._search: importance.Target | None = None  # the search the runs' sweep.json records, once read
        self._charts: dict[str, Chart] = dict(CHARTS)  # and a metric_NAME chart per name, as they come
        self._metrics: dict[str, str | None] = {}  # a metrics name -> its chart (None: past MAX_METRIC_CHARTS)
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
                self._changed(*self._charts, *LEARNED)
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
            figures: dict[str, dict[str, Any] | None] = {win: _figure(win, self._charts[win], groups)
                                                         for win in windows or self._charts if win in self._charts}
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

    def _metric_chart(self, name: str) -> str | None:  # under the lock
        """The chart of a metrics name, made on its first value (None past MAX_METRIC_CHARTS)."""
        if name in self._metrics:
            return self._metrics[name]
        win = None
        if len(self._charts) - len(CHARTS) < MAX_METRIC_CHARTS:
            win = base = f"metric_{safe_env(name)}"
            n = 1
            while win in self._versions:  # names that read the same once made safe keep apart
                n += 1
                win = f"{base}-{n}"
            self._charts[win] = Chart(metric_title(name), "step", name)
            self._versions[win] = 0
        self._metrics[name] = win
        return win

    # ----- sender thread -----

    def _send_changes(self) -> bool:
        sent_any = False
        with self._lock:  # events may add charts meanwhile
            charts = list(self._charts)
        for win in [*charts, "results", *LEARNED]:
            with self._lock:
                version = self._versions[win]
            if version in (0, self._sent.get(win, 0)):  # nothing drawn yet, or nothing new
                continue
            if win not in charts and self._versions["train_loss"] > self._sent["train_loss"]:
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
        with self._lock:
            title = self._charts[win].title if win in self._charts else LEARNED[win]
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


def _figure(win: str, chart: Chart, groups: dict[str, list[_Run]]) -> dict[str, Any]:
    """A chart: a trace (or a seed band) per variant that has its values, each variant in its own colour
    on every chart."""
    data: list[dict[str, Any]] = []
    for i, (label, runs) in enumerate(groups.items()):
        curves = [run.of(win) for run in runs if run.of(win)]
        if not curves:  # a run without this chart's values (a tracked run's test accuracy)
            continue
        xs, columns = seed_columns(curves)
        data += seed_traces(label, colour_of(i), xs, columns, len(curves), markers=chart.x == "epoch")
    layout = {"title": chart.title, "showlegend": True, "xaxis": {"title": chart.x},
              "yaxis": {"title": chart.y, **percent_axis(chart.percent)},
              "legend": legend_below(), "margin": {"l": 70, "r": 20, "t": 50, "b": 40}}
    return {"data": data, "layout": layout}
