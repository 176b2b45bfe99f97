"""Long runs on the real Visdom server: every line window stays within its bound of points per trace,
while every event is taken into account (the envelope's extremes are the true extremes of everything
fed, the last point is the last step, and the logger counts every event delivered).

Events are synthetic numbers driven straight into the logger and the comparison board, many more
than a window holds; the server's state is read back with `Visdom.get_window_data`.
"""

from __future__ import annotations

import io
import math
from typing import Any

import pytest

from dashboard_helpers import windows
from dashboards.charts import MAX_POINTS
from dashboards.visdom import server as servers
from dashboards.visdom.compare import SMOOTH, ComparisonBoard
from dashboards.visdom.logger import VisdomLogger
from dashboards.visdom.windows import RECENT
from runner.smoothing import ema

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

STEPS = 200_000  # train steps fed, a hundred times what a trace may hold
CHUNK = 20  # steps per train_loss call, as the loop's log_every
EPOCHS = 2_500  # evaluations fed: the per-epoch window is bounded too
LOW, HIGH, GAP = 12_345, 150_007, 99_999  # steps of the lowest and highest loss, and of a NaN


def loss(step: int) -> float:
    """A noisy falling curve, with one spike down and one up long before the recent points."""
    if step == LOW:
        return -5.0
    if step == HIGH:
        return 50.0
    return 2.0 / math.sqrt(step) + ((step * 7919) % 1000) / 1000


def curve(window: dict[str, Any]) -> list[tuple[str, list[float], list[float | None]]]:
    return [(t["name"], t["x"], t["y"]) for t in window["content"]["data"]]


def assert_envelope(xs: list[float], ys: list[float | None], fed_x: list[int], fed_y: list[float | None]) -> None:
    """At most MAX_POINTS points in x order; the extremes, the gaps' presence and the recent points as fed."""
    assert len(xs) == len(ys) <= MAX_POINTS
    assert xs == sorted(xs) and set(xs) <= set(fed_x)
    values = [y for y in fed_y if y is not None]
    assert min(y for y in ys if y is not None) == pytest.approx(min(values))
    assert max(y for y in ys if y is not None) == pytest.approx(max(values))
    assert (None in ys) == (None in fed_y)
    assert xs[-RECENT:] == fed_x[-RECENT:] and ys[-RECENT:] == pytest.approx(fed_y[-RECENT:])


def test_a_long_run_keeps_each_trace_bounded_and_takes_every_event_into_account(
        visdom_server: servers.Server) -> None:
    out = io.StringIO()
    steps = list(range(1, STEPS + 1))
    losses = [math.nan if s == GAP else loss(s) for s in steps]
    with VisdomLogger("long", "http://localhost", visdom_server.port, flush_interval=0.05, out=out) as logger:
        logger.start({"name": "long", "spec": {}})
        for start in range(0, STEPS, CHUNK):
            chunk = steps[start:start + CHUNK]
            logger.train_loss(1 + start * EPOCHS // STEPS, chunk, losses[start:start + CHUNK])
            logger.metrics(1, chunk[-1], {"lr": 0.1 / (1 + start)})
        for epoch in range(1, EPOCHS + 1):
            logger.evaluation(epoch, STEPS, 1 / epoch, 1 - 1 / (epoch + 1))
        logger.close({"status": "finished"})

    held = windows(visdom_server.port, "long")
    fed = [None if math.isnan(v) else v for v in losses]
    (raw, xs, ys), (smooth, sxs, sys) = curve(held["train_loss"])
    assert (raw, smooth) == ("train loss", "smoothed (0.6)")
    assert_envelope(xs, ys, steps, fed)
    assert LOW in xs and HIGH in xs  # the spikes, at their own steps
    assert_envelope(sxs, sys, steps, ema(fed, 0.6))
    assert (xs[-1], ys[-1]) == (STEPS, pytest.approx(loss(STEPS)))
    lr_steps = steps[CHUNK - 1::CHUNK]
    ((_, lxs, lys),) = curve(held["metric_lr"])
    assert_envelope(lxs, lys, lr_steps, [0.1 / (1 + s - CHUNK) for s in lr_steps])
    epochs = list(range(1, EPOCHS + 1))
    (_, txs, tys), (_, axs, ays) = curve(held["test"])
    assert_envelope(txs, tys, epochs, [1 / e for e in epochs])
    assert_envelope(axs, ays, epochs, [1 - 1 / (e + 1) for e in epochs])

    stats = logger.stats()
    points = STEPS + STEPS // CHUNK + EPOCHS
    assert stats.events == stats.delivered == points + 1  # and the spec pane
    assert stats.failures == 0
    assert out.getvalue().splitlines()[-1].startswith(f"visdom: {stats.events} of {stats.events} events delivered")


def test_a_long_comparison_keeps_each_trace_bounded_and_exact(visdom_server: servers.Server) -> None:
    """Mean of each block when a run does not smooth, the smoothed value at each point when it does; the
    points merge in pairs as the run grows, and seeds still line up."""
    steps = list(range(1, STEPS + 1))
    with ComparisonBoard("long_sweep", port=visdom_server.port, flush_interval=0.05, out=io.StringIO()) as board:
        for name, offset in (("raw-seed_0", 0.0), ("raw-seed_1", 2.0)):
            with board.run(name, "raw") as logger:  # no start event: no smoothing, block means
                for start in range(0, STEPS, 1000):
                    logger.train_loss(1, steps[start:start + 1000], [s + offset for s in steps[start:start + 1000]])
                logger.close({})
        with board.run("smooth", "smooth") as logger:
            logger.start({"spec": {"visdom": {"smoothing": 0.9}}})
            logger.train_loss(1, steps, [loss(s) for s in steps])
            logger.close({})
    held = curve(windows(visdom_server.port, "long_sweep")["train_loss"])
    assert [name for name, _, _ in held] == ["raw min", "raw max", "raw (mean of 2 seeds)", "smooth"]
    for _, xs, ys in held:
        assert len(xs) <= MAX_POINTS and xs[-1] == STEPS and xs == sorted(xs)
        every = xs[1] - xs[0]
        assert every > SMOOTH and all(b - a == every for a, b in zip(xs, xs[1:]))  # merged, evenly spread
    (_, xs, low), (_, _, high), (_, _, mean) = held[:3]
    assert low == pytest.approx([x - (every - 1) / 2 for x in xs])  # the mean of the steps (x - every, x]
    assert high == [y + 2 for y in low] and mean == [y + 1 for y in low]
    _, xs, smooth = held[3]
    smoothed = ema([loss(s) for s in steps], 0.9)
    assert smooth == pytest.approx([smoothed[x - 1] for x in xs])
