"""VisdomLogger against the real Visdom server: what the server holds, outages, absent and hung servers.

Events are synthetic numbers driven straight into the logger; the server's state is read back with
`Visdom.get_window_data`, so every assertion is about what a browser would show.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from dashboards.visdom import server as servers
from dashboard_helpers import delivered, wait_until, windows
from dashboards.visdom.logger import READ_TIMEOUT, VisdomLogger
from helpers import tiny_spec
from runner.smoothing import ema

# The test's own Visdom client (used to read back) warns through a deprecated logging call.
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

ENV = "test_run"
INFO = {"name": "tiny <script>alert('x')</script>", "spec": {"model": {"activation": "<b>relu</b>"}},
        "device": "cpu", "run_dir": "/tmp/runs/tiny-1"}


def digits(n: int) -> list[list[list[list[int]]]]:
    """n grey images [1][28][28]."""
    return [[[[(k * 37 + r * c) % 256 for c in range(28)] for r in range(28)]] for k in range(n)]


class Feed:
    """Synthetic training events with numbers we can check: loss at step s is 1/(s+1)."""

    def __init__(self, logger: VisdomLogger) -> None:
        self.logger = logger
        self.step = 0
        self.epoch = 0

    def epochs(self, n: int, steps: int = 40, chunk: int = 10, pause: float = 0.0) -> None:
        for _ in range(n):
            self.epoch += 1
            for _ in range(steps // chunk):
                xs = list(range(self.step, self.step + chunk))
                self.step += chunk
                self.logger.train_loss(self.epoch, xs, [1 / (s + 1) for s in xs])
                time.sleep(pause)
            self.logger.evaluation(self.epoch, self.step, 1 / self.epoch, 0.5 + self.epoch / 100)
            # samples 0, 3, 6, ... are wrong: predicted one more than the truth
            truth = [k % 10 for k in range(16)]
            self.logger.predictions(self.epoch, [(t + (k % 3 == 0)) % 10 for k, t in enumerate(truth)], truth)


def traces(window: dict[str, Any]) -> dict[str, tuple[list, list]]:
    return {t["name"]: (t["x"], t["y"]) for t in window["content"]["data"]}


def assert_complete(port: int, feed: Feed) -> None:
    """Every point exactly once, in order; every pane present and showing the last epoch."""
    held = windows(port, ENV)
    assert set(held) == {"run", "train_loss", "test", "images", "predictions", "spec"}
    loss = traces(held["train_loss"])
    assert list(loss) == ["train loss", "smoothed (0.6)"]
    (xs, ys), (smooth_xs, smoothed) = loss.values()
    assert xs == smooth_xs == list(range(feed.step))
    assert ys == pytest.approx([1 / (s + 1) for s in xs])
    assert smoothed == pytest.approx(ema(ys, 0.6))
    test = traces(held["test"])
    assert list(test) == ["test loss", "test accuracy"]
    epochs = list(range(1, feed.epoch + 1))
    assert test["test loss"] == (epochs, pytest.approx([1 / e for e in epochs]))
    assert test["test accuracy"] == (epochs, pytest.approx([0.5 + e / 100 for e in epochs]))
    assert held["images"]["type"] == "image"
    assert held["images"]["content"]["src"].startswith("data:image/png;base64,")
    assert held["predictions"]["type"] == "text"
    assert f"epoch {feed.epoch}</b>: 10 of 16 right" in held["predictions"]["content"]
    assert held["spec"]["type"] == "text"


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


def test_server_holds_every_event_and_text_is_escaped(visdom_server: Any, out: io.StringIO) -> None:
    from visdom import Visdom

    stale = Visdom(port=visdom_server.port, env=ENV, use_incoming_socket=False, raise_exceptions=True)
    stale.text("left over from an earlier run under this name", win="old", env=ENV)

    with VisdomLogger(ENV, "http://localhost", visdom_server.port, flush_interval=0.05, out=out) as logger:
        logger.start(INFO)
        logger.images(digits(16))
        feed = Feed(logger)
        feed.epochs(3, steps=100, chunk=1, pause=0.002)  # 300 calls over about a second
        logger.close({"test_accuracy": 0.53})

    assert_complete(visdom_server.port, feed)  # also: the stale window is gone
    held = windows(visdom_server.port, ENV)
    spec = held["spec"]["content"]
    assert "<script>" not in spec and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in spec
    assert "&lt;b&gt;relu&lt;/b&gt;" in spec
    assert held["predictions"]["content"].count("&#10007;") == 1 + 6  # the legend, then 6 wrong
    assert held["train_loss"]["title"] == "train loss"

    stats = logger.stats()
    assert stats.events == stats.delivered == 300 + 3 + 1 + 3 + 1  # points, pane updates
    assert stats.failures == 0
    # coalesced: a few requests per flush, not one per call
    assert stats.requests <= 2 + 5 * stats.flushes and stats.requests < 60
    lines = out.getvalue().splitlines()
    assert lines[0] == f"visdom: live dashboard at {visdom_server.url}/env/{ENV}"
    assert lines[-1].startswith(f"visdom: {stats.events} of {stats.events} events delivered")


def test_a_window_is_replaced_whole_and_never_diffed(visdom_server: Any, out: io.StringIO,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A line window that grows is sent whole each time, never through Visdom's `update`, whose
    server diffs the old window against the new one (about 0.1 ms of the server's CPU per point, on
    the cores training needs); a window still held is checked with one cheap `win_exists` a round."""
    from dashboards.visdom import logger as visdom_logger
    from dashboards.visdom.connection import Connection

    monkeypatch.setattr(visdom_logger, "PLOT_EVERY", 0.0)
    endpoints: list[str] = []
    request = Connection.request
    monkeypatch.setattr(Connection, "request", lambda self, endpoint, body: (endpoints.append(endpoint),
                                                                             request(self, endpoint, body))[1])
    with VisdomLogger(ENV, "http://localhost", visdom_server.port, flush_interval=0.05, out=out) as logger:
        logger.start(INFO)
        logger.images(digits(8))
        feed = Feed(logger)
        for _ in range(3):  # three sends of a longer train_loss window
            feed.epochs(1)
            wait_until(lambda: delivered(logger))
    assert_complete(visdom_server.port, feed)
    assert "update" not in endpoints
    assert endpoints.count("events") >= 3 * 2 and "win_exists" in endpoints


def test_a_chunk_of_steps_draws_what_its_steps_one_by_one_draw(visdom_server: Any, out: io.StringIO) -> None:
    """A tracked run hands its values over in chunks (`metrics_of_steps`: one lock, one extend of each
    trace); the server then holds what the same steps given one by one make, past RECENT points too."""
    calls = [(0, s, {"train/loss": 1 / s, **({"train/kl": s / 10, "lr": 0.1} if s % 10 == 0 else {})})
             for s in range(1, 801)]
    feeds = {"one_by_one": lambda logger: [logger.metrics(*call) for call in calls],
             "chunked": lambda logger: [logger.metrics_of_steps(calls[i:i + 20]) for i in range(0, len(calls), 20)]}
    for env, feed in feeds.items():
        with VisdomLogger(env, "http://localhost", visdom_server.port, flush_interval=0.05, out=out) as logger:
            logger.start({"name": "t", "tracked": True})
            feed(logger)
    one, chunked = windows(visdom_server.port, "one_by_one"), windows(visdom_server.port, "chunked")
    assert set(one) == set(chunked) == {"run", "spec", "metric_train", "metric_lr"}
    for win in ("metric_train", "metric_lr"):
        assert chunked[win]["content"]["data"] == one[win]["content"]["data"]
    assert traces(chunked["metric_train"])["kl"][0] == list(range(10, 801, 10))


def test_outage_is_backfilled_exactly_once(visdom_server: Any, out: io.StringIO) -> None:
    port, home = visdom_server.port, visdom_server.home
    logger = VisdomLogger(ENV, "http://localhost", port, flush_interval=0.05, out=out)
    restarted: servers.Server | None = None
    try:
        logger.start(INFO)
        logger.images(digits(8))
        feed = Feed(logger)
        feed.epochs(2)
        # delivered, and the round that did it over: the outage below is the first failure seen
        wait_until(lambda: delivered(logger) and "live dashboard" in out.getvalue())

        visdom_server.stop()
        feed.epochs(2, pause=0.02)  # the sender fails and keeps retrying meanwhile
        wait_until(lambda: logger.stats().failures > 0)  # a window is sent at most every second
        assert logger.stats().delivered < logger.stats().events

        restarted = servers.start(port, home)
        feed.epochs(2)
        logger.close(None)
        assert_complete(port, feed)
        assert logger.stats().delivered == logger.stats().events
    finally:
        if restarted is not None:
            restarted.stop()
    text = out.getvalue()
    assert text.count("lost the server") == 1 and text.count("is back") == 1


def test_an_env_lost_with_its_server_is_refilled_and_saved_again(visdom_server: Any, out: io.StringIO) -> None:
    port, home = visdom_server.port, visdom_server.home
    logger = VisdomLogger(ENV, "http://localhost", port, flush_interval=0.05, out=out)
    restarted: servers.Server | None = None
    try:
        logger.start(INFO)
        feed = Feed(logger)
        feed.epochs(2)
        wait_until(lambda: delivered(logger) and (home / "envs" / f"{ENV}.json").exists())
        visdom_server.stop()
        (home / "envs" / f"{ENV}.json").unlink()  # the server comes back without this env
        restarted = servers.start(port, home)
        feed.epochs(1)
        logger.close(None)
        saved = json.loads((home / "envs" / f"{ENV}.json").read_text())["jsons"]
        assert saved["train_loss"]["content"]["data"][0]["x"] == list(range(feed.step))
        assert saved["test"]["content"]["data"][0]["x"] == [1, 2, 3]
    finally:
        if restarted is not None:
            restarted.stop()


def test_a_save_asked_during_a_flush_follows_the_points_sent_after_it(visdom_server: Any, out: io.StringIO) -> None:
    """The run ends (and asks for a save) while the sender is still sending an older snapshot: the
    env on the server's disk must still end with every point, so a save follows the last send."""
    logger = VisdomLogger(ENV, "http://localhost", visdom_server.port, flush_interval=0.05, out=out)
    send, held = logger._send_changes, threading.Event()

    def send_then_hold() -> bool:
        sent = send()
        if sent and not held.is_set():
            held.set()
            logger._closing.wait(10)  # close() is asked while this flush is under way
        return sent

    logger._send_changes = send_then_hold  # type: ignore[method-assign]
    logger.start(INFO)
    feed = Feed(logger)
    feed.epochs(1)
    assert held.wait(10)
    feed.epochs(1)  # points the held flush does not carry, and the epoch's save
    logger.close(None)
    saved = json.loads((visdom_server.home / "envs" / f"{ENV}.json").read_text())["jsons"]
    assert saved["train_loss"]["content"]["data"][0]["x"] == list(range(feed.step))
    assert saved["test"]["content"]["data"][0]["x"] == [1, 2]


def test_restart_between_flushes_is_noticed(visdom_server: Any, out: io.StringIO,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart no request saw fail: the next append is refused and everything is re-sent."""
    from dashboards.visdom import logger as visdom_logger

    monkeypatch.setattr(visdom_logger, "RUN_PANE_EVERY", 3600.0)  # no heartbeat of the run pane meanwhile
    port, home = visdom_server.port, visdom_server.home
    logger = VisdomLogger(ENV, "http://localhost", port, flush_interval=0.05, out=out)
    restarted: servers.Server | None = None
    try:
        logger.start(INFO)
        logger.images(digits(8))
        feed = Feed(logger)
        feed.epochs(1)
        # everything delivered, and the env saved (the epoch's end asks for a save)
        wait_until(lambda: delivered(logger) and logger._saved == logger._save_wanted)
        requests = logger.stats().requests
        visdom_server.stop()
        restarted = servers.start(port, home)
        assert logger.stats().requests == requests  # nothing was pending, so nothing was tried
        feed.epochs(1)
        logger.close(None)
        assert_complete(port, feed)
    finally:
        if restarted is not None:
            restarted.stop()


def test_window_closed_in_the_browser_comes_back_whole(visdom_server: Any, out: io.StringIO) -> None:
    from visdom import Visdom

    with VisdomLogger(ENV, "http://localhost", visdom_server.port, flush_interval=0.05, out=out) as logger:
        logger.start(INFO)
        logger.images(digits(8))
        feed = Feed(logger)
        feed.epochs(2)
        wait_until(lambda: delivered(logger))
        Visdom(port=visdom_server.port, use_incoming_socket=False, raise_exceptions=True).close("train_loss", ENV)
        feed.epochs(1)
    assert_complete(visdom_server.port, feed)


def test_no_server_warns_once_and_never_blocks(out: io.StringIO) -> None:
    port = servers.free_port()
    started = time.monotonic()
    logger = VisdomLogger(ENV, "localhost", port, flush_interval=0.05, close_timeout=5, out=out)
    logger.start(INFO)
    logger.images(digits(8))
    slowest = timed_feed(logger, epochs=3, pause=0.1)  # about a second: several retries
    logger.close(None)
    assert slowest < 0.05
    assert time.monotonic() - started < 4
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert f"no dashboard server at http://localhost:{port}" in lines[0] and "`make visdom`" in lines[0]
    assert lines[1].startswith("visdom: 0 of 14 events delivered")
    assert "`python -m runner replay /tmp/runs/tiny-1`" in lines[1]
    assert logger.stats().failures >= 3


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port that accepts connections and never answers, like a wedged server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def test_hung_server_bounds_close(hung_port: int, out: io.StringIO) -> None:
    logger = VisdomLogger(ENV, "http://127.0.0.1", hung_port, close_timeout=1.0, out=out)
    logger.start(INFO)
    slowest = timed_feed(logger, epochs=2, pause=0.01)
    started = time.monotonic()
    logger.close(None)
    assert slowest < 0.05  # a call that waited on the network would take seconds here
    assert time.monotonic() - started < 1.5
    assert "0 of 9 events delivered" in out.getvalue()
    logger.close(None)  # a second close is a no-op
    assert out.getvalue().count("events delivered") == 1


class HungServer:
    """A TCP server on 127.0.0.1 that accepts every connection, reads what it is sent and never
    answers: a wedged process, not a refused port. Lives at most `lifetime` seconds."""

    def __init__(self, lifetime: float = 60.0) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._end = time.monotonic() + lifetime
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hung-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._end:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.setblocking(False)
            self.connections.append(conn)  # held open, never answered
            for c in self.connections:  # drain, so a sender never blocks on a full buffer
                try:
                    c.recv(65536)
                except (BlockingIOError, OSError):
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in (*self.connections, self._listener):
            conn.close()


@pytest.fixture
def hung_server() -> Iterator[HungServer]:
    server = HungServer()
    try:
        yield server
    finally:
        server.close()


class TimedClose(VisdomLogger):
    close_seconds = 0.0

    def close(self, summary: Any) -> None:
        started = time.perf_counter()
        super().close(summary)
        self.close_seconds = max(self.close_seconds, time.perf_counter() - started)


def test_real_training_is_not_held_up_by_a_hung_server(tmp_path: Path, tiny_mnist: Path,
                                                      hung_server: HungServer) -> None:
    from runner import runs, session, spec

    experiment = spec.load(tiny_spec(tmp_path, tiny_mnist, train={"epochs": 3, "log_every": 1}))
    out = io.StringIO()
    logger = TimedClose(ENV, "http://127.0.0.1", hung_server.port, close_timeout=2, out=out)
    started = time.monotonic()
    summary = session.execute(experiment, lambda run_dir: [logger], out=tmp_path / "run")
    elapsed = time.monotonic() - started

    assert summary["steps"] == 36 and (tmp_path / "run" / "summary.json").exists()
    assert hung_server.connections  # the sender did reach it, and waited on it
    # One request to the hung server waits READ_TIMEOUT for an answer: a logger that sent from the
    # training thread would take at least that long to train.
    assert summary["train_seconds"] < READ_TIMEOUT / 2
    assert logger.close_seconds < 2 + 0.5  # close_timeout, and no longer
    assert elapsed < READ_TIMEOUT
    assert "0 of " in out.getvalue() and "python -m runner replay" in out.getvalue()
    assert (tmp_path / "run" / runs.JOURNAL).stat().st_size > 0  # what was not delivered is on disk


def timed_feed(logger: VisdomLogger, epochs: int, pause: float) -> float:
    """Feed events; the slowest single logger call, in seconds."""
    slowest = 0.0
    for epoch in range(1, epochs + 1):
        for method, args in (("train_loss", (epoch, [2 * epoch, 2 * epoch + 1], [0.5, float("nan")])),
                             ("evaluation", (epoch, 2 * epoch + 1, 0.4, 0.9)),
                             ("predictions", (epoch, [1, 2], [1, 3]))):
            t = time.perf_counter()
            getattr(logger, method)(*args)
            slowest = max(slowest, time.perf_counter() - t)
            time.sleep(pause)
    return slowest


def test_server_and_port_default_to_the_environment(monkeypatch: pytest.MonkeyPatch, out: io.StringIO) -> None:
    monkeypatch.setenv("VISDOM_SERVER", "127.0.0.2")
    monkeypatch.setenv("VISDOM_PORT", "9")
    with VisdomLogger("a/b", out=out, close_timeout=1) as logger:
        assert (logger.env, logger.base) == ("a_b", "http://127.0.0.2:9")
    monkeypatch.delenv("VISDOM_SERVER")
    monkeypatch.delenv("VISDOM_PORT")
    with VisdomLogger("a", out=out, close_timeout=1) as logger:
        assert logger.base == "http://localhost:8097"


def test_visdom_is_imported_only_when_a_logger_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import sys, dashboards.visdom.logger; print('visdom' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

    monkeypatch.setitem(sys.modules, "visdom", None)  # as if it were not installed
    with pytest.raises(ImportError, match="make install"):
        VisdomLogger(ENV)
