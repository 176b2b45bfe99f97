"""Line windows of the live dashboard that stay small however long the run.

A `Trace` holds at most MAX_POINTS points (dashboards.charts): the last RECENT points as they came
(recent detail), and everything before them as a min/max envelope, the report's method
(dashboards.charts.Bucket): buckets of `size` consecutive points, fewer than BUCKETS of them; when
they reach BUCKETS, neighbours merge in pairs and `size` doubles. So the lowest and the highest value
ever fed, every gap and the last point are always drawn, and a run of up to RECENT + BUCKETS points
is drawn exactly, point for point.

A `Plot` is one window of such traces: fed the same x values (`add`: the train loss and its
smoothing; test loss and accuracy), or each its own (`add_to`: the scalars of one group, `train/loss`
every step and `train/kl` every 10). A window may gain traces as new names appear (`trace`): its
`shape` then changes and the next send makes the window whole again, with its new legend. It counts
what it was fed (`count`) and what the server took (`sent`); its whole content (`snapshot` under the
lock, then `points` per trace) is what a send replaces the window with, so server work per send is
bounded and nothing piles up on the server however many steps the run has.

`Scalars` lays the `metrics` events out in such windows: one per group of names (the part before the
first '/': `train/loss` and `train/kl` are the traces `loss` and `kl` of the window `train`), a name
without '/' alone in its own (the learning rate: titled "learning rate", no legend). At most
MAX_SCALAR_WINDOWS windows and MAX_TRACES traces each; names past them are left out (the journal
keeps them). Plain Python, memory only.

A `Pane` is a window whose latest content is all that matters (an image grid, a text, a figure such
as the confusion matrix): it is always sent whole, at most every `every` seconds while the run goes.
"""

from __future__ import annotations

from collections import deque
import html
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from dashboards.charts import MAX_POINTS, Bucket, flat_range, metric_group, metric_title
from dashboards.visdom.names import safe_env

RECENT = 500  # the last points of a trace, kept as they came
# A bucket draws at most 3 points (a gap, the lowest, the highest), the bucket being filled 3 more;
# even, so that merging in pairs leaves no bucket of the old size behind.
BUCKETS = 2 * ((MAX_POINTS - RECENT - 3) // 6)
MAX_SCALAR_WINDOWS = 100  # windows of `metrics` names in one env
MAX_TRACES = 20  # traces of one group's window

Message = tuple[dict[str, Any], str]  # (JSON body, endpoint), as visdom's client builds them
Points = tuple[list[float], list[float | None]]
Snapshot = tuple[list[Bucket], list[tuple[float, float | None]]]


class Trace:
    """One line of a chart: recent points as they came, the past as a min/max envelope."""

    __slots__ = ("recent", "past", "filling", "filled", "size")

    def __init__(self) -> None:
        self.recent: deque[tuple[float, float | None]] = deque()
        self.past: list[Bucket] = []  # full buckets of `size` points, oldest first
        self.filling: Bucket | None = None  # the bucket that the points leaving `recent` go to
        self.filled = 0  # points in it
        self.size = 1

    def extend(self, xs: Sequence[float], ys: Sequence[float | None]) -> None:
        recent = self.recent
        recent.extend(zip(xs, ys))
        while len(recent) > RECENT:
            self._retire(*recent.popleft())

    def _retire(self, x: float, y: float | None) -> None:
        if self.filling is None:
            self.filling, self.filled = Bucket(x), 0
        self.filling.add(x, y)
        self.filled += 1
        if self.filled < self.size:
            return
        self.past.append(self.filling)
        self.filling = None
        if len(self.past) == BUCKETS:  # new buckets, not changed ones: a snapshot stays as it was
            self.past = [earlier.merged(later) for earlier, later in zip(self.past[::2], self.past[1::2])]
            self.size *= 2

    def snapshot(self) -> Snapshot:
        """What the chart will draw, taken quickly (under the caller's lock): full buckets, which never
        change, then the points of the bucket being filled and the recent points."""
        return list(self.past), [*(self.filling.points() if self.filling else ()), *self.recent]


def points(snapshot: Snapshot) -> Points:
    """A trace's points from its snapshot (at most MAX_POINTS): the envelope of the past, then the rest."""
    past, rest = snapshot
    xs: list[float] = []
    ys: list[float | None] = []
    for x, y in [p for bucket in past for p in bucket.points()] + rest:
        xs.append(x)
        ys.append(y)
    return xs, ys


@dataclass
class Plot:
    """A line window: its traces, how many points they were fed, and how many of those the server took."""

    win: str
    opts: dict[str, Any]
    traces: list[Trace] = field(default_factory=lambda: [Trace()])
    count: int = 0  # points fed: per x of `add` (all traces at once), per point of `add_to`
    sent: int = 0  # `count` as of the last send the server took; 0 also means "state unknown: create"
    sent_at: float = 0.0  # when that send was made (monotonic)
    keys: list[str] = field(default_factory=list)  # the name each trace of `trace` stands for
    shape: int = 0  # bumped when a trace is added: the window is then sent whole, with its legend
    sent_shape: int = 0  # `shape` as of the last whole send

    @classmethod
    def of(cls, win: str, opts: dict[str, Any], traces: int = 1) -> "Plot":
        return cls(win, opts, [Trace() for _ in range(traces)])

    def add(self, xs: Sequence[float], *ys: Sequence[float | None]) -> None:
        """Points at `xs`, one sequence of values per trace."""
        for trace, values in zip(self.traces, ys):
            trace.extend(xs, values)
        self.count += len(xs)

    def add_to(self, index: int, xs: Sequence[float], ys: Sequence[float | None]) -> None:
        """Points of one trace, at its own x values."""
        self.traces[index].extend(xs, ys)
        self.count += len(xs)

    def trace(self, key: str, legend: str) -> int:
        """The index of the trace standing for `key`, added (named `legend`) the first time: the opts
        are replaced, not changed, so a sender holding the old ones draws what it took."""
        if key in self.keys:
            return self.keys.index(key)
        if self.keys or len(self.traces) != 1 or self.count:  # the first key takes the plot's own trace
            self.traces.append(Trace())
        self.keys.append(key)
        self.opts = {**self.opts, "legend": [*self.opts.get("legend", ())[:len(self.keys) - 1], html.escape(legend)]}
        self.shape += 1
        return len(self.keys) - 1

    def snapshot(self) -> list[Snapshot]:
        """Each trace's snapshot; `points` turns them into what is sent, outside the lock."""
        return [trace.snapshot() for trace in self.traces]

    def y_axis(self, data: list[Points], opts: dict[str, Any] | None = None) -> dict[str, Any]:
        """The window's y axis (Plotly layout) for `data`: its title, type and tick format from the opts
        (`ylabel`, `ytype`, `ytickformat`), and for a flat curve a range around its value shown against
        zero (a constant learning rate), where Plotly would centre it on a unit range that reads as 0."""
        o = self.opts if opts is None else opts
        axis = {k: v for k, v in (("title", o.get("ylabel")), ("type", o.get("ytype")),
                                  ("tickformat", o.get("ytickformat"))) if v is not None}
        span = flat_range([y for _, ys in data for y in ys], percent="%" in str(o.get("ytickformat", "")),
                          log=o.get("ytype") == "log")
        return {**axis, "range": span} if span else {**axis, "autorange": True}


class Scalars:
    """The windows of the `metrics` events' names (see the module docstring). The plots go into the
    logger's own list, so they are sent, counted and re-sent after an outage with the others."""

    def __init__(self, plots: list[Plot]) -> None:
        self._plots = plots
        self._windows: dict[str, Plot] = {}  # a group, or a name without '/' (as "/name") -> its plot
        self.left_out: list[str] = []  # names past the limits, in the order they came

    def add(self, step: float, values: Mapping[str, Any], number: Callable[[Any], float | None]) -> list[str]:
        """Each value at `step`, in its window; returns the names newly left out (for one note)."""
        return self.add_steps([(step, values)], number)

    def add_steps(self, steps: Sequence[tuple[float, Mapping[str, Any]]], number: Callable[[Any], float | None]
                  ) -> list[str]:
        """The values of several steps, each trace extended once (a tracked run's chunk); as `add` of
        each step in turn."""
        columns: dict[str, tuple[list[float], list[float | None]]] = {}
        for step, values in steps:
            for name, value in values.items():
                xs, ys = columns.setdefault(str(name), ([], []))
                xs.append(step)
                ys.append(number(value))
        missed = []
        for name, (xs, ys) in columns.items():
            group, legend = metric_group(name)
            legend = legend if group is not None else metric_title(name)
            plot = self._windows.get(group if group is not None else "/" + name)
            if plot is None:
                plot = self._window(name, group)
            if plot is None or (name not in plot.keys and len(plot.keys) >= MAX_TRACES):
                if name not in self.left_out:
                    self.left_out.append(name)
                    missed.append(name)
                continue
            plot.add_to(plot.trace(name, legend), xs, ys)
        return missed

    def _window(self, name: str, group: str | None) -> Plot | None:
        if len(self._windows) >= MAX_SCALAR_WINDOWS:
            return None
        taken = {p.win for p in self._plots}
        win = base = f"metric_{safe_env(group if group is not None else name)}"
        n = 1
        while win in taken:  # names that read the same once made safe ("a b" and "a_b") keep apart
            n += 1
            win = f"{base}-{n}"
        if group is None:  # one trace, named after the metric, and no legend (the title says it)
            title = metric_title(name)
            opts = {"title": title, "xlabel": "step", "ylabel": title, "showlegend": False}
        else:
            opts = {"title": group, "xlabel": "step", "showlegend": True}
        plot = Plot.of(win, opts)
        self._windows[group if group is not None else "/" + name] = plot
        self._plots.append(plot)
        return plot


@dataclass(eq=False)
class Pane:
    """An image, text or figure window: only its latest content matters, so it is always sent whole."""

    win: str
    build: Callable[[Any], Message]  # content -> the message, made on the sender thread
    content: Any = None
    updates: int = 0
    sent: int = 0  # `updates` as of the last successful send
    every: float = 0.0  # seconds between sends while the run goes; at close at once
    sent_at: float = 0.0  # when that send was made (monotonic)
