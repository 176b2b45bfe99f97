"""VisdomLogger: a run's live Visdom dashboard, sent from a background thread.

The Logger methods only record events in memory (under a lock) and return; a sender thread wakes
every `flush_interval` seconds and sends each window's new points as ONE append request, so a
training step never waits on HTTP and the request count does not grow with the step count.

Every window's full history stays in memory. After any failure (server down, restarted, a window
closed in the browser) every window is re-sent whole, replacing what the server holds, so in the end
each window holds every point exactly once. A server that never answers costs one warning and a
line at close; the run's journal can rebuild the dashboard later (`python -m runner replay RUN_DIR`).

Visdom's client only builds the messages here (`send=False`: plot layout, PNG encoding); the HTTP is
ours (dashboards.connection), so we choose the timeouts, see status codes, and count requests.

What reaches the server is bounded and inert (docs/SECURITY.md): every text pane is HTML-escaped, the
env name is reduced to a safe file name, at most MAX_IMAGES images of at most MAX_IMAGE_SIDE pixels a
side are sent, and the spec pane is cut at MAX_TEXT_CHARS. With VISDOM_USERNAME and VISDOM_PASSWORD
set (or `username`/`password` given) the sender logs in first, keeps the session cookie, and logs in
again after any failure (a restarted server may sign cookies with a new secret).

Windows of the env (one env per run, its old windows cleared first):
    train_loss   line: loss per global step
    test         line: test loss and test accuracy per epoch, one chart with a legend
    metric_NAME  line per other metric the loop reports, e.g. metric_lr: the learning rate per step
    images       the fixed test batch as a grid of images, grey or colour
    predictions  predicted vs true class names for that batch, wrong ones marked
    spec         the run's resolved spec
"""

from __future__ import annotations

import html
import json
import math
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TextIO
from urllib.parse import quote

import requests

# READ_TIMEOUT is re-exported: a request's longest wait is part of what this logger promises.
from dashboards.connection import READ_TIMEOUT, Connection, LoginRefused  # noqa: F401
from runner.loggers import BaseLogger, Info, Pixels

MAX_RETRY_DELAY = 2.0  # while the server is away; a refused connection is cheap, so retry often
# Visdom's server diffs the whole window on every append (deepcopy + jsonpatch), so an append costs
# it time in proportion to the points already there, and the server usually shares the machine's
# cores with training. After a flush that took d seconds the sender waits at least PACE * d, which
# keeps the server's share of one core near 1 / PACE (2%) however long the curve grows.
PACE = 50
IMAGES_PER_ROW = 8  # the image grid and the prediction table share this layout
MAX_IMAGES = 100  # as many as a spec may ask for (train.samples); more are dropped
MAX_IMAGE_SIDE = 64  # pixels; MNIST's are 28. Larger images are not sent at all
MAX_TEXT_CHARS = 50_000  # the spec pane, before escaping
MAX_ENV_CHARS = 100

Message = tuple[dict[str, Any], str]  # (JSON body, endpoint), as visdom's client builds them


@dataclass(frozen=True)
class DeliveryStats:
    events: int  # points and pane updates received from the training loop
    delivered: int  # of those, how many the server is known to hold now
    requests: int  # HTTP requests sent, answered or not
    failures: int  # requests that failed
    flushes: int  # sender rounds that sent anything
    logins: int = 0  # logins the server accepted


@dataclass
class _Plot:
    """A line chart; `sent` leading points are on the server, the rest go out as one append."""

    win: str
    opts: dict[str, Any]
    xs: list[float] = field(default_factory=list)
    ys: list[list[float | None]] = field(default_factory=list)  # one list per trace
    sent: int = 0  # 0 also means "server state unknown": the next send replaces the whole window


@dataclass
class _Pane:
    """An image or text window: only its latest content matters, so it is always sent whole."""

    win: str
    build: Callable[[Any], Message]
    content: Any = None
    updates: int = 0
    sent: int = 0  # `updates` as of the last successful send


_UNSAFE_RUN = re.compile(r"(?:[^A-Za-z0-9_.-]|\.{2,})+")


def safe_env(name: str) -> str:
    """An env name that is also a safe file name: Visdom saves env E as `<env_path>/E.json`.

    Runs of anything but letters, digits, '_', '-' and single dots ('/', '..', spaces, markup)
    become one '_'; no leading dot or dash; at most MAX_ENV_CHARS. Names the spec accepts are kept.
    """
    safe = _UNSAFE_RUN.sub("_", name).lstrip("._-")[:MAX_ENV_CHARS]
    return safe or "run"


METRIC_TITLES = {"lr": "learning rate"}


class VisdomLogger(BaseLogger):
    """Live dashboard on a Visdom server; never blocks or stops training (see the module docstring)."""

    def __init__(self, env: str, server: str | None = None, port: int | None = None, *,
                 username: str | None = None, password: str | None = None,
                 flush_interval: float = 0.25, close_timeout: float = 10.0, out: TextIO = sys.stderr) -> None:
        try:
            from visdom import Visdom
        except ImportError as exc:
            raise ImportError(f"the Visdom dashboard needs the visdom package ({exc}); run `make install`, "
                              "or pick another logger with `--logger console`") from exc
        self._conn = Connection(server, port, username=username, password=password)
        self.env = safe_env(env)
        self.base = self._conn.base
        self.url = f"{self.base}/env/{quote(self.env)}"
        self._flush_interval = flush_interval
        self._close_timeout = close_timeout
        self._out = out
        if self.env != env:
            self._say(f"visdom: env {env!r} is shown as {self.env!r}")
        self.username = self._conn.username
        if self._conn.half_login:
            self._say("visdom: only one of VISDOM_USERNAME and VISDOM_PASSWORD is set; sending no login.")
        # send=False: no request, no socket; each plotting call just returns (message, endpoint).
        self._viz = Visdom(server=self._conn.server, port=self._conn.port, env=self.env, send=False,
                           use_incoming_socket=False, raise_exceptions=True)

        self._lock = threading.Lock()
        self._plots = [
            _Plot("train_loss", {"title": "train loss", "xlabel": "step", "ylabel": "loss"}, ys=[[]]),
            _Plot("test", {"title": "test", "xlabel": "epoch", "legend": ["test loss", "test accuracy"]},
                  ys=[[], []]),
        ]
        self._loss, self._test = self._plots
        self._images = _Pane("images", self._image_message)
        self._predictions = _Pane("predictions", self._predictions_message)
        self._spec = _Pane("spec", self._spec_message)
        self._panes = [self._images, self._predictions, self._spec]
        self._run_dir: str | None = None
        self._classes: list[str] | None = None  # class names by label, from the start info

        # Touched by the sender thread only (stats() reads the counters).
        self._env_ready = False  # the env exists and last run's windows are closed
        self._logged_in = False  # the session holds a cookie the server accepted (or needs none)
        self._logins = 0
        self._login_noted = False
        self._reachable: bool | None = None  # None until the first answer or failure
        self._refusals = 0  # failed rounds in a row where the server answered with an error
        self._failures = 0
        self._flushes = 0
        self._reported = False  # close has printed its line: a late sender stays silent

        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visdom-sender", daemon=True)
        self._thread.start()

    # ----- Logger methods: training thread, memory only -----

    def start(self, info: Info) -> None:
        self._run_dir = str(info.get("run_dir")) if info.get("run_dir") else None
        classes = (info.get("dataset") or {}).get("classes")
        self._classes = [str(c) for c in classes] if isinstance(classes, list) else None
        text = json.dumps(dict(info), indent=2, default=str)
        if len(text) > MAX_TEXT_CHARS:
            text = text[:MAX_TEXT_CHARS] + f"\n... (cut at {MAX_TEXT_CHARS} characters)"
        self._set(self._spec, f"<pre>{html.escape(text)}</pre>")

    def images(self, pixels: Pixels) -> None:
        if len(pixels):  # train.samples may be 0: nothing to show
            # Turned into a PNG by the sender, off the training thread; checked for size there too.
            self._set(self._images, pixels[:MAX_IMAGES])

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        with self._lock:
            self._loss.xs.extend(steps)
            self._loss.ys[0].extend(_finite(v) for v in losses)

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        with self._lock:
            for name, value in values.items():
                win = f"metric_{safe_env(name)}"
                plot = next((p for p in self._plots if p.win == win), None)
                if plot is None:
                    title = METRIC_TITLES.get(name, name)
                    plot = _Plot(win, {"title": title, "xlabel": "step", "ylabel": title},
                                 ys=[[]])
                    self._plots.append(plot)
                plot.xs.append(step)
                plot.ys[0].append(_finite(value))

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        with self._lock:
            self._test.xs.append(epoch)
            self._test.ys[0].append(_finite(test_loss))
            self._test.ys[1].append(_finite(test_accuracy))

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        # The table follows the image grid, so it is capped like it; HTML made by the sender.
        self._set(self._predictions, (epoch, list(predicted[:MAX_IMAGES]), list(truth[:MAX_IMAGES]), self._classes))

    def close(self, summary: Info | None) -> None:
        """Drain for at most `close_timeout` seconds, then report once. Never raises."""
        if self._closed:
            return
        super().close(summary)
        try:
            self._conn.deadline = time.monotonic() + self._close_timeout
            self._closing.set()
            self._thread.join(self._close_timeout)
            self._reported = True
            self._say(self._report())
        except Exception as exc:  # noqa: BLE001 - a dashboard must never fail the run at the end
            self._say(f"visdom: close failed: {exc!r}")

    def stats(self) -> DeliveryStats:
        with self._lock:
            events = sum(len(p.xs) for p in self._plots) + sum(p.updates for p in self._panes)
            delivered = sum(p.sent for p in self._plots) + sum(p.sent for p in self._panes)
        return DeliveryStats(events, delivered, self._conn.requests, self._failures, self._flushes, self._logins)

    def _set(self, pane: _Pane, content: Any) -> None:
        with self._lock:
            pane.content = content
            pane.updates += 1

    # ----- sender thread -----

    def _run(self) -> None:
        try:
            self._send_until_closed()
        finally:
            self._conn.close()

    def _send_until_closed(self) -> None:
        delay = 0.0  # first round at once: a missing server is reported right away
        while True:
            closing = self._closing.wait(delay)
            if closing and self._conn.deadline is not None and time.monotonic() >= self._conn.deadline:
                return
            started = time.monotonic()
            try:
                self._flush()
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, training goes on
                self._failures += 1
                unreachable = self._failed(exc)
                # At close an unreachable server will not come back in the seconds we have; a refusal
                # (a window or the env gone) is usually mended by re-sending everything once.
                if closing and (unreachable or self._refusals > 1):
                    return
                delay = min(MAX_RETRY_DELAY, max(2 * delay, self._flush_interval))
                continue
            self._refusals = 0
            if self._reachable is not True:
                self._found()
            if closing:
                return
            delay = max(self._flush_interval, PACE * (time.monotonic() - started))

    def _flush(self) -> None:
        """Send the server what it lacks; raises at the first failure."""
        sent_any = False
        if self._conn.login_body is not None and not self._logged_in:
            self._logins += self._conn.login()
            self._logged_in = True
        if not self._env_ready:
            # env/<name> creates the env if missing (closing windows of an unknown env is a 500);
            # closing every window makes a rerun under the same name start from a clean dashboard.
            self._conn.post({"eid": self.env}, f"env/{quote(self.env)}")
            self._conn.post({"eid": self.env, "win": None}, "close")
            self._env_ready = sent_any = True
        with self._lock:
            plots = list(self._plots)  # metrics may add a window meanwhile
        for plot in plots:
            with self._lock:
                n, start = len(plot.xs), plot.sent
                xs, ys = plot.xs[start:n], [trace[start:n] for trace in plot.ys]
            if n == start:
                continue
            self._conn.post(*(self._append_message(plot, xs, ys) if start else self._plot_message(plot, xs, ys)))
            with self._lock:
                plot.sent = n
            sent_any = True
        for pane in self._panes:
            with self._lock:
                updates, content = pane.updates, pane.content
            if updates == pane.sent:
                continue
            try:
                message = pane.build(content)
            except Exception as exc:  # noqa: BLE001 - odd content must not hold up the other windows
                self._note(f"visdom: cannot draw the {pane.win} window: {exc!r}")
                with self._lock:
                    pane.sent = updates
                continue
            self._conn.post(*message)
            with self._lock:
                pane.sent = updates
            sent_any = True
        self._flushes += sent_any

    def _failed(self, exc: Exception) -> bool:
        """After any failure the server's state is unknown: every window is re-sent whole next time.

        Says so once per outage; returns whether the server was unreachable.
        """
        with self._lock:
            for item in (*self._plots, *self._panes):
                item.sent = 0
        self._logged_in = False  # a restarted server may sign cookies with a new secret: log in again
        if isinstance(exc, LoginRefused):
            self._refusals += 1
            if not self._login_noted:
                self._login_noted = True
                self._note(f"visdom: the server at {self.base} refused the login of {self.username!r}; check "
                           "VISDOM_USERNAME and VISDOM_PASSWORD. Training goes on without the dashboard.")
            return False
        if not isinstance(exc, requests.RequestException):
            # The server answered but refused (a restart we did not see, a window closed in the
            # browser): re-sending mends that silently. Only a refusal that persists is news.
            self._refusals += 1
            if self._refusals == 2:
                hint = "its log may say why"
                if getattr(exc, "status", 0) == 400 and self._conn.login_body is None:
                    hint = "it may require a login: set VISDOM_USERNAME and VISDOM_PASSWORD"
                self._note(f"visdom: the server at {self.base} refuses updates ({exc}); training goes on, {hint}.")
            return False
        if self._reachable is None:
            self._note(f"visdom: no dashboard server at {self.base} ({_reason(exc)}); start one with "
                      "`make visdom`. Training goes on; the dashboard fills in once the server is up.")
        elif self._reachable:
            self._note(f"visdom: lost the server at {self.base} ({_reason(exc)}); training goes on, "
                      "the dashboard is re-sent when the server returns.")
        self._reachable = False
        return True

    def _found(self) -> None:
        if self._reachable is False:
            self._note(f"visdom: the server at {self.base} is back; dashboard re-sent: {self.url}")
        else:
            self._note(f"visdom: live dashboard at {self.url}")
        self._reachable = True

    def _report(self) -> str:
        s = self.stats()
        line = f"visdom: {s.delivered} of {s.events} events delivered to {self.url} in {s.requests} requests"
        if s.delivered < s.events:
            run_dir = self._run_dir or "RUN_DIR"
            line += (f"; {s.events - s.delivered} not delivered: `python -m runner replay {run_dir}` "
                     "rebuilds the dashboard from the run's journal")
        return line

    def _say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def _note(self, line: str) -> None:
        """The sender's news; after close's report (a request that outlived close) it is stale."""
        if not self._reported:
            self._say(line)

    # ----- messages -----

    def _plot_message(self, plot: _Plot, xs: list[float], ys: list[list[float | None]]) -> Message:
        """The whole chart: creates the window, or replaces whatever the server holds under its id."""
        import numpy as np

        y = np.array(ys, dtype=float).T  # None -> nan, which visdom sends as null (a gap)
        return self._viz.line(Y=y[:, 0] if y.shape[1] == 1 else y, X=np.array(xs, dtype=float),
                              win=plot.win, env=self.env, opts=dict(plot.opts))

    def _append_message(self, plot: _Plot, xs: list[float], ys: list[list[float | None]]) -> Message:
        # Only x and y: too little for the server to build a window from, so an append to a window
        # it lacks (restart, closed in the browser) fails with a 500 instead of creating one that
        # holds only these points; the failure makes us re-send the window whole.
        data = [{"x": xs, "y": trace} for trace in ys]  # traces in the order the whole send made them
        return {"win": plot.win, "eid": self.env, "append": True, "data": data}, "update"

    def _image_message(self, pixels: Pixels) -> Message:
        import numpy as np

        # Sizes first, before numpy allocates anything for them.
        side = max((len(row) for image in pixels for channel in image for row in (channel, *channel)), default=0)
        if side > MAX_IMAGE_SIDE:
            raise ValueError(f"images up to {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels are sent, these have "
                             f"a side of {side}")
        # uint8 0..255 [N, C, H, W], grey or colour; small images doubled in size so they are legible.
        a = np.asarray(pixels, dtype=np.float32)
        if a.ndim != 4 or a.shape[1] not in (1, 3):
            raise ValueError(f"expected N images of 1 or 3 channels of H x W pixels, got an array of shape {a.shape}")
        a = np.clip(a, 0, 255) / 255.0
        if side <= 32:
            a = a.repeat(2, axis=2).repeat(2, axis=3)
        # Visdom sizes the pane to the image exactly and its frame then clips the edges: leave room.
        cell = a.shape[-1] + 2 * 2  # the grid pads each image by 2
        columns, rows = min(IMAGES_PER_ROW, len(a)), -(-len(a) // IMAGES_PER_ROW)
        opts = {"title": "test batch", "width": columns * cell + 40, "height": rows * cell + 40}
        return self._viz.images(a, nrow=IMAGES_PER_ROW, padding=2, win="images", env=self.env, opts=opts)

    def _spec_message(self, text: str) -> Message:
        return self._viz.text(text, win="spec", env=self.env, opts={"title": "spec", "width": 420, "height": 420})

    def _predictions_message(self, content: tuple[int, list[int], list[int], list[str] | None]) -> Message:
        epoch, predicted, truth, classes = content
        rows = -(-len(truth) // IMAGES_PER_ROW)
        longest = max((len(c) for c in classes or ()), default=1)
        # Room for the whole table, which the default text pane would hide behind scroll bars.
        opts = {"title": "predictions", "width": max(520, min(1400, 100 + IMAGES_PER_ROW * 16 * longest)),
                "height": 90 + 26 * rows}
        return self._viz.text(_predictions_html(epoch, predicted, truth, classes), win="predictions", env=self.env,
                              opts=opts)


def _finite(v: float) -> float | None:
    # NaN or inf is not JSON the browser can parse; None becomes null, a gap in the line.
    v = float(v)
    return v if math.isfinite(v) else None


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def _predictions_html(epoch: int, predicted: list[int], truth: list[int], classes: list[str] | None = None) -> str:
    """A table laid out like the image grid: each cell is the predicted class, wrong ones red with the
    true class ("Sneaker ✗ (Sandal)")."""
    def name(label: int) -> str:
        known = classes is not None and 0 <= label < len(classes)
        return html.escape(classes[label] if known else str(label))  # type: ignore[index]

    right = sum(p == t for p, t in zip(predicted, truth))
    cells = [f"<td>{name(p)}</td>" if p == t else
             f'<td style="color:#d00;font-weight:bold">{name(p)} &#10007; ({name(t)})</td>'
             for p, t in zip(predicted, truth)]
    rows = "".join(f"<tr>{''.join(cells[i:i + IMAGES_PER_ROW])}</tr>" for i in range(0, len(cells), IMAGES_PER_ROW))
    return (f"<b>epoch {html.escape(str(epoch))}</b>: {right} of {len(truth)} right; cells follow the test batch "
            "image, wrong ones read predicted &#10007; (true)"
            f'<table style="text-align:center;white-space:nowrap;border-collapse:separate;border-spacing:10px 4px">'
            f"{rows}</table>")
