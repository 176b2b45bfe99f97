"""VisdomLogger: a run's live Visdom dashboard, sent from a background thread.

The Logger methods only record events in memory (under a lock) and return; the sender thread
(dashboards.visdom.sender: pacing, backoff, login, env creation, saving) sends what changed, so a
training step never waits on HTTP and the request count does not grow with the step count. The env
is saved to the server's env folder at each epoch end and at close, so a restarted server shows the
run again.

Line windows stay small however long the run (dashboards.visdom.windows): each trace holds at most
MAX_POINTS points, the recent ones as they came and the past as a min/max envelope, and a window is
sent whole, replacing what the server holds, at most every PLOT_EVERY seconds and at close. So every
point is taken into account on the server, whose work per send and memory stay flat, and a browser
draws the env in about a second; the journal keeps every step. After any failure (server down,
restarted, a window closed in the browser) every window is sent again. A server that never answers
costs one warning and a line at close; the run's journal can rebuild the dashboard later
(`python -m runner replay RUN_DIR`).

Visdom's client only builds the messages here (`send=False`: plot layout, PNG encoding); the HTTP is
ours (dashboards.visdom.connection), so we choose the timeouts, see status codes, and count requests.

What reaches the server is bounded and inert (docs/SECURITY.md): every text pane is HTML-escaped, the
env name is reduced to a safe file name, at most MAX_IMAGES images of at most MAX_IMAGE_SIDE pixels a
side are sent, and the spec pane is cut at MAX_TEXT_CHARS. With VISDOM_USERNAME and VISDOM_PASSWORD
set (or `username`/`password` given) the sender logs in first, keeps the session cookie, and logs in
again after any failure (a restarted server may sign cookies with a new secret).

Windows of the env (one env per run, its old windows cleared first):
    run          status (running, finished, stopped early, failed, stopped, diverged), progress, speed, device, run
                 directory, logging cost; refreshed every RUN_PANE_EVERY seconds while running. It
                 also carries the run's lease: who writes this env, and when it last said so
    train_loss   line: loss per global step, and its debiased moving average (`visdom.smoothing`)
    test         line: test loss and test accuracy per epoch, one chart with a legend
                 (every line window holds at most MAX_POINTS points per trace, as above)
    metric_NAME  line per other metric the loop reports, e.g. metric_lr: the learning rate per step
                 (a single trace, named, no legend; a constant one drawn against zero, not on Plotly's
                 unit range around it); names with a '/' share their group's window, a trace each
                 (`train/loss` and `train/kl`: metric_train, legend loss and kl), each trace at its
                 own steps (dashboards.visdom.windows.Scalars)
    images       the fixed test batch as a grid of images, grey or colour
    predictions  predicted vs true class names for that batch, wrong ones marked
    spec         the experiment's resolved spec first, then the rest of the start info (device,
                 dataset and its classes, run directory)
and, as the insight events come, the windows of dashboards.visdom.insight: confusion, per_class,
mistakes and mistake_captions, dist_TENSOR (weights and gradients as percentile bands), grad_norm,
activations_mean/_std/_zeros, system and system_memory; and as a tracked run's events come
(runner.track: a loop of one's own, epoch 0, no train_loss), media_NAME (its latest images of that
name, titled with the step) and text_NAME (its latest text of that name, escaped). A tracked run's
pane counts steps and steps/s, with no epochs and no ETA.
The run pane's and the predictions' HTML, the image grids, and the lease are dashboards.visdom.panes'.
"""

from __future__ import annotations

import html
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TextIO

from dashboards.charts import Ema

# READ_TIMEOUT is re-exported: a request's longest wait is part of what this logger promises.
from dashboards.visdom.connection import READ_TIMEOUT, Refused  # noqa: F401
from dashboards.visdom.names import MAX_ENV_CHARS, safe_env  # noqa: F401 - safe_env: imported from here elsewhere
from dashboards.visdom.insight import Insight, number
from dashboards.visdom.panes import (  # noqa: F401 - MAX_IMAGE_SIDE: what this logger promises
    IMAGES_PER_ROW,
    MAX_IMAGE_SIDE,
    MAX_MEDIA_SIDE,
    Progress,
    image_grid,
    predictions_html,
    run_pane_html,
    text_html,
)
from dashboards.visdom.sender import PACE, Say, Sender, finite
from dashboards.visdom.windows import Message, Pane, Plot, Points, Scalars, points
from runner.loggers import BaseLogger, Info, Pixels
from runner.loggers.base import Matrix

MAX_IMAGES = 100  # as many as a spec may ask for (train.samples); more are dropped
MAX_TEXT_CHARS = 50_000  # the spec pane, before escaping
RUN_PANE_EVERY = 5.0  # seconds between refreshes of the run pane while the run goes
PLOT_EVERY = 1.0  # seconds between sends of one line window while the run goes; at close at once
SAVE_EVERY = 60.0  # seconds between saves of a tracked run's env (a runner's run saves at each epoch's end)
MAX_NAMED_PANES = 50  # media_NAME and text_NAME windows each; later names are left out (the journal has them)

_Pane = Pane  # the name earlier code used


@dataclass(frozen=True)
class DeliveryStats:
    events: int  # points and pane updates received from the training loop
    delivered: int  # of those, how many the server is known to hold now
    requests: int  # HTTP requests sent, answered or not
    failures: int  # requests that failed
    flushes: int  # sender rounds that sent anything
    logins: int = 0  # logins the server accepted


class VisdomLogger(Sender, BaseLogger):
    """Live dashboard on a Visdom server; never blocks or stops training (see the module docstring)."""

    def __init__(self, env: str, server: str | None = None, port: int | None = None, *,
                 username: str | None = None, password: str | None = None, smoothing: float = 0.6,
                 flush_interval: float = 0.25, close_timeout: float = 10.0, out: TextIO | Say | None = None
                 ) -> None:
        try:
            from visdom import Visdom
        except ImportError as exc:
            raise ImportError(f"the Visdom dashboard needs the visdom package ({exc}); run `make install`, "
                              "or pick another logger with `--logger console`") from exc
        self._plots = [
            Plot.of("train_loss", {"title": "train loss", "xlabel": "step", "ylabel": "loss",
                                   **({"legend": ["train loss", f"smoothed ({smoothing:g})"]} if smoothing else {})},
                    traces=2 if smoothing else 1),
            Plot.of("test", {"title": "test", "xlabel": "epoch", "legend": ["test loss", "test accuracy"]}, traces=2),
        ]
        self._loss, self._test = self._plots
        self._ema = Ema(smoothing) if smoothing else None
        self._progress = Progress()
        self._run_pane = Pane("run", self._run_message)
        self._images = Pane("images", self._image_message)
        self._predictions = Pane("predictions", self._predictions_message)
        self._spec = Pane("spec", self._spec_message)
        self._panes = [self._images, self._predictions, self._spec]
        self._scalars = Scalars(self._plots)
        self._named: dict[tuple[str, str], Pane] = {}  # ("media" or "text", name) -> its pane
        self._run_dir: str | None = None
        self._classes: list[str] | None = None  # class names by label, from the start info
        self._run_pane_sent_at = 0.0
        self._saved_at = time.monotonic()  # when a tracked run's env was last asked to be saved
        self._host, self._pid = socket.gethostname(), os.getpid()
        super().__init__(env, server, port, username=username, password=password, flush_interval=flush_interval,
                         close_timeout=close_timeout, pace=PACE, out=out, thread_name="visdom-sender")
        # send=False: no request, no socket; each plotting call just returns (message, endpoint).
        self._viz = Visdom(server=self._conn.server, port=self._conn.port, env=self.env, send=False,
                           use_incoming_socket=False, raise_exceptions=True)
        self._insight = Insight(self.env, self._viz, self._plots, self._panes, self._progress)
        self._start_sender()

    # ----- Logger methods: training thread, memory only -----

    def start(self, info: Info) -> None:
        self._run_dir = str(info.get("run_dir")) if info.get("run_dir") else None
        spec = info.get("spec") or {}
        with self._lock:
            p = self._progress
            p.name, p.device, p.run_dir = str(info.get("name", "")), str(info.get("device", "")), self._run_dir or ""
            p.epochs = int(spec.get("train", {}).get("epochs", 0) or 0)
            p.batch_size = int(spec.get("data", {}).get("batch_size", 0) or 0)
            p.steps_per_epoch = int(info.get("steps_per_epoch", 0) or 0)
            p.tracked = bool(info.get("tracked"))
            self._run_pane.updates += 1
        classes = (info.get("dataset") or {}).get("classes")
        self._classes = [str(c) for c in classes] if isinstance(classes, list) else None
        with self._lock:
            self._insight.classes = self._classes
        self._set(self._spec, spec_html(info))

    def images(self, pixels: Pixels) -> None:
        if len(pixels):  # train.samples may be 0: nothing to show
            # Turned into a PNG by the sender, off the training thread; checked for size there too.
            self._set(self._images, pixels[:MAX_IMAGES])

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        values = [finite(v) for v in losses]
        with self._lock:
            self._loss.add(steps, values, *([self._ema.extend(values)] if self._ema is not None else []))
            if steps:
                self._advance(epoch, steps[-1])

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self.metrics_of_steps([(epoch, step, values)])

    def metrics_of_steps(self, calls: Sequence[tuple[int, int, Mapping[str, float]]]) -> None:
        """Several `metrics` events (epoch, step, values), a tracked run's chunk: one lock, one extend
        of each trace."""
        if not calls:
            return
        epoch, step, _ = calls[-1]
        with self._lock:
            missed = self._scalars.add_steps([(s, v) for _, s, v in calls], number)  # no number: a gap
            tracked = self._progress.tracked
            if tracked:  # its only clock: a tracked run sends no train_loss
                self._advance(epoch, step)
        if tracked and time.monotonic() - self._saved_at > SAVE_EVERY:  # it has no epochs' ends to save at
            self._saved_at = time.monotonic()
            self.save()
        if missed:
            self._say(f"visdom: {', '.join(missed)} not drawn: a dashboard shows at most so many charts and "
                      "traces (the journal keeps every value)")

    def media(self, epoch: int, step: int, name: str, pixels: Pixels) -> None:
        if len(pixels):
            self._named_set("media", name, (name, step, pixels[:MAX_IMAGES]), self._media_message)

    def text(self, epoch: int, step: int, name: str, text: str) -> None:
        self._named_set("text", name, (name, step, str(text)[:MAX_TEXT_CHARS]), self._text_message)

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        with self._lock:
            self._test.add([epoch], [finite(test_loss)], [finite(test_accuracy)])
            self._advance(epoch, step)
            self._progress.rate_since = (time.monotonic(), step)  # the test pass is not training speed
            self._run_pane.updates += 1
        self.save()  # each epoch's end is kept on the server's disk

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        # The table follows the image grid, so it is capped like it; HTML made by the sender.
        self._set(self._predictions, (epoch, list(predicted[:MAX_IMAGES]), list(truth[:MAX_IMAGES]), self._classes))

    def confusion(self, epoch: int, step: int, matrix: Matrix) -> None:
        with self._lock:
            self._insight.confusion(epoch, step, matrix)

    def mistakes(self, epoch: int, step: int, pixels: Pixels, predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None:
        with self._lock:
            self._insight.mistakes(epoch, pixels, predicted, truth, confidence)

    def layers(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        with self._lock:
            self._insight.layers(step, layers)

    def activations(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        with self._lock:
            self._insight.activations(epoch, layers)

    def system(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        with self._lock:
            self._insight.system(step, values)
            self._run_pane.updates += 1

    def where(self) -> dict[str, Any]:
        """What summary.json records of the dashboard: the env and its exact address."""
        return {"visdom_env": self.env, "visdom_url": self.url}

    def close(self, summary: Info | None) -> None:
        """Mark the run's end on the dashboard, drain for at most `close_timeout` seconds, then report
        once. Never raises."""
        if self._closed:
            return
        BaseLogger.close(self, summary)
        try:
            with self._lock:
                self._end(summary)
            self._close_sender()
            self._say(self._report())
        except Exception as exc:  # noqa: BLE001 - a dashboard must never fail the run at the end
            self._say(f"visdom: close failed: {exc!r}")

    def stats(self) -> DeliveryStats:
        with self._lock:
            events = sum(p.count for p in self._plots) + sum(p.updates for p in self._panes)
            delivered = sum(p.sent for p in self._plots) + sum(p.sent for p in self._panes)
        return DeliveryStats(events, delivered, self._conn.requests, self._failures, self._flushes, self._logins)

    def _set(self, pane: Pane, content: Any) -> None:
        with self._lock:
            pane.content = content
            pane.updates += 1

    def _named_set(self, kind: str, name: str, content: Any, build: Any) -> None:
        """The latest `content` of a tracked run's media or text window of that name, made on first use."""
        with self._lock:
            pane = self._named.get((kind, name))
            if pane is None:
                if sum(k == kind for k, _ in self._named) >= MAX_NAMED_PANES:
                    return
                taken = {p.win for p in self._panes}
                win = base = f"{kind}_{safe_env(name)}"
                while win in taken:  # names that read the same once made safe keep apart
                    win = f"{win}-2" if win == base else f"{base}-{int(win.rsplit('-', 1)[1]) + 1}"
                pane = self._named[(kind, name)] = Pane(win, build, every=PLOT_EVERY)
                self._panes.append(pane)
            pane.content = content
            pane.updates += 1

    def _advance(self, epoch: int, step: int) -> None:  # under the lock
        p, now = self._progress, time.monotonic()
        if p.rate_since is None:
            p.rate_since = (now, step)
        elif now > p.rate_since[0] and step > p.rate_since[1]:
            p.rate = (step - p.rate_since[1]) / (now - p.rate_since[0])
        p.epoch, p.step = epoch, step

    def _end(self, summary: Info | None) -> None:  # under the lock
        p = self._progress
        p.ended = time.monotonic()
        summary = summary or {}
        p.status = str(summary.get("status", "finished" if summary else "failed"))
        p.detail = str(summary.get("reason") or summary.get("error") or "")
        if summary.get("stopped_early"):
            p.detail = f"by the search's scheduler after epoch {summary['stopped_early']}"
        p.resume = str(summary.get("resume") or "")
        overhead = (summary.get("logging") or {}).get("overhead")
        if isinstance(overhead, (int, float)):
            p.cost = f"logging cost {overhead:.1%} of training"
        self._run_pane.updates += 1

    # ----- sender thread -----

    def _send_changes(self) -> bool:
        sent_any = False
        with self._lock:
            running = self._progress.status == "running" and self._run_pane.updates > 0
            if running and time.monotonic() - self._run_pane_sent_at > RUN_PANE_EVERY:
                self._run_pane.updates += 1  # the heartbeat: elapsed time, speed and the lease move on
        self._checked = False  # no window asked about yet this round
        # The run pane first: Visdom places windows in the order they appear, and this one belongs on top.
        sent_any |= self._send_pane(self._run_pane)
        with self._lock:
            plots, panes = list(self._plots), list(self._panes)  # events may add windows meanwhile
        for plot in plots:
            sent_any |= self._send_plot(plot)
        for pane in panes:
            sent_any |= self._send_pane(pane)
        return sent_any

    def _send_plot(self, plot: Plot) -> bool:
        """The whole window, if it changed: at once when the server's state is unknown or the run is
        closing, else at most every PLOT_EVERY seconds."""
        closing = self._closing.is_set()
        with self._lock:
            n, sent, shape, opts = plot.count, plot.sent, plot.shape, plot.opts
            if n == sent or sent and not closing and time.monotonic() - plot.sent_at < PLOT_EVERY:
                return False
            snapshot = plot.snapshot()
        data = [points(trace) for trace in snapshot]  # off the lock: the training thread goes on
        if sent and not self._checked:
            # A window the server should hold: once a round, ask whether it still does. A restart no
            # request saw fail (the env lost or an older save back) or a window closed in the browser
            # then makes us send every window whole again.
            self._checked = True
            if self._post({"win": plot.win, "eid": self.env}, "win_exists") != "true":
                raise Refused(f"the {plot.win} window is gone", 404)
        # Always the whole window (events), which the server just stores: its `update` would diff the
        # old window against the new one, about 0.1 ms of its CPU per point (0.4 s for two traces of
        # 2,000), on the cores that training needs.
        self._post(*self._plot_message(plot, data, opts))
        with self._lock:
            plot.sent, plot.sent_at, plot.sent_shape = n, time.monotonic(), shape
        return True

    def _send_pane(self, pane: Pane) -> bool:
        with self._lock:
            updates, content = pane.updates, pane.content
        if updates == pane.sent or pane.every and pane.sent and not self._closing.is_set() \
                and time.monotonic() - pane.sent_at < pane.every:
            return False
        try:
            message = pane.build(content)
        except Exception as exc:  # noqa: BLE001 - odd content must not hold up the other windows
            self._note(f"visdom: cannot draw the {pane.win} window: {exc!r}")
            with self._lock:
                pane.sent = updates
            return False
        self._post(*message)
        with self._lock:
            pane.sent, pane.sent_at = updates, time.monotonic()
        if pane is self._run_pane:
            self._run_pane_sent_at = time.monotonic()
        return True

    def _resend_all(self) -> None:  # under the lock
        for item in (*self._plots, *self._panes, self._run_pane):
            item.sent = 0

    def _report(self) -> str:
        s = self.stats()
        line = f"visdom: {s.delivered} of {s.events} events delivered to {self.url} in {s.requests} requests"
        if s.delivered < s.events:
            run_dir = self._run_dir or "RUN_DIR"
            line += (f"; {s.events - s.delivered} not delivered: `python -m runner replay {run_dir}` "
                     "rebuilds the dashboard from the run's journal")
        return line

    # ----- messages -----

    def _run_message(self, _: Any) -> Message:
        with self._lock:
            p = Progress(**vars(self._progress))
        text = run_pane_html(p, time.monotonic(), {"pid": self._pid, "host": self._host, "run_dir": p.run_dir,
                                                   "beat": round(time.time(), 1), "status": p.status})
        height = 230 + 20 * bool(p.system) - 40 * p.tracked  # a tracked run's has no epochs, ETA or device
        return self._viz.text(text, win="run", env=self.env, opts={"title": "run", "width": 520, "height": height})

    def _plot_message(self, plot: Plot, data: list[Points], opts: dict[str, Any]) -> Message:
        """The whole chart: creates the window, or replaces whatever the server holds under its id."""
        import numpy as np

        # Visdom's client builds the window from each trace's first point; the traces' own x and y
        # (each its own envelope, at its own steps) then take their place. None is sent as null: a gap.
        first = np.array([[np.nan if not ys or ys[0] is None else ys[0] for _, ys in data]], dtype=float)
        x0 = next((xs[0] for xs, _ in data if xs), 0)
        message, endpoint = self._viz.line(Y=first[:, 0] if len(data) == 1 else first, X=np.array([x0]),
                                           win=plot.win, env=self.env, opts=dict(opts))
        for trace, (xs, ys) in zip(message["data"], data):
            trace["x"], trace["y"] = xs, ys
        message["layout"]["yaxis"] = plot.y_axis(data, opts)
        return message, endpoint

    def _image_message(self, pixels: Pixels) -> Message:
        return image_grid(self._viz, self.env, "images", "test batch", pixels)

    def _media_message(self, content: tuple[str, int, Pixels]) -> Message:
        name, step, pixels = content
        win = self._named[("media", name)].win
        return image_grid(self._viz, self.env, win, f"{name} (step {step:,})", pixels, max_side=MAX_MEDIA_SIDE)

    def _text_message(self, content: tuple[str, int, str]) -> Message:
        name, step, text = content
        lines = min(30, text.count("\n") + 1 + len(text) // 80)
        return self._viz.text(text_html(name, step, text), win=self._named[("text", name)].win, env=self.env,
                              opts={"title": f"{name} (step {step:,})", "width": 520, "height": 90 + 18 * lines})

    def _spec_message(self, text: str) -> Message:
        return self._viz.text(text, win="spec", env=self.env, opts={"title": "spec", "width": 420, "height": 420})

    def _predictions_message(self, content: tuple[int, list[int], list[int], list[str] | None]) -> Message:
        epoch, predicted, truth, classes = content
        rows = -(-len(truth) // IMAGES_PER_ROW)
        longest = max((len(c) for c in classes or ()), default=1)
        # Room for the whole table, which the default text pane would hide behind scroll bars.
        opts = {"title": "predictions", "width": max(520, min(1400, 100 + IMAGES_PER_ROW * 16 * longest)),
                "height": 90 + 26 * rows}
        return self._viz.text(predictions_html(epoch, predicted, truth, classes), win="predictions", env=self.env,
                              opts=opts)


def spec_html(info: Info) -> str:
    """The spec pane: the experiment's own spec first, then the rest of the start info, escaped, cut at
    MAX_TEXT_CHARS in all."""
    spec, rest = info.get("spec"), {k: v for k, v in info.items() if k != "spec"}
    parts = ([("spec", json.dumps(spec, indent=2, default=str))] if spec is not None else []) \
        + ([("run", json.dumps(rest, indent=2, default=str))] if rest else [])
    out, left = [], MAX_TEXT_CHARS
    for title, text in parts:
        if left <= 0:
            break
        if len(text) > left:
            text = text[:left] + f"\n... (cut at {MAX_TEXT_CHARS} characters)"
        left -= len(text)
        out.append(f"<b>{title}</b><pre>{html.escape(text)}</pre>")
    return "".join(out)
