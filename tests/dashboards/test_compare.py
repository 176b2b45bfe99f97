"""The comparison env on the real Visdom server: one trace per variant live, the same charts again
from the runs' journals, seeds as a mean with a band, and what happens without a server."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import windows
from dashboards.visdom import server as servers
from dashboards.visdom.compare import SMOOTH, ComparisonBoard
from helpers import run_cli, tiny_spec

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

CHARTS = ("train_loss", "test_accuracy", "test_loss")


def traces(window: dict[str, Any]) -> list[tuple[str, list[Any], list[Any]]]:
    return [(t["name"], t["x"], t["y"]) for t in window["content"]["data"]]


def test_a_sweep_draws_one_trace_per_variant_and_compare_draws_the_same(
        tmp_path: Path, tiny_mnist: Path, visdom_server: servers.Server) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, sweep={"model.activation": ["relu", "selu"], "optim.lr": [0.1, 0.05]})
    out = tmp_path / "sweep"
    result = run_cli(str(spec), "--out", str(out), env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 0, result.stderr
    # one comparison env per sweep, grouped under the experiment with its variants' envs
    assert f"visdom: comparison at http://localhost:{visdom_server.port}/env/tiny_sweep" in result.stderr

    labels = {f"activation={a}, lr={lr}" for a in ("relu", "selu") for lr in ("0.1", "0.05")}
    live = windows(visdom_server.port, "tiny_sweep")
    # the variants' learning rates (their `metrics` events) meet on a chart of their own too
    assert set(live) == {*CHARTS, "metric_lr", "results", "parallel", "importance"}
    for chart in (*CHARTS, "metric_lr"):
        assert {name for name, _, _ in traces(live[chart])} == labels
    for name, _, ys in traces(live["metric_lr"]):
        assert set(ys) == {0.1 if "lr=0.1" in name else 0.05}
    summaries = {json.loads((run / "spec.json").read_text())["name"]: json.loads((run / "summary.json").read_text())
                 for run in out.iterdir() if run.is_dir()}
    assert len(summaries) == 4
    for name, xs, ys in traces(live["test_accuracy"]):
        summary = summaries["tiny-" + name.replace("=", "_").replace(", ", "-")]
        assert xs == [1, 2] and ys == [h["test_accuracy"] for h in summary["history"]]
    for name, xs, ys in traces(live["train_loss"]):
        # 24 steps: the mean of steps 1-20, then of 21-24
        assert xs == [SMOOTH, 24] and len(ys) == 2
    table = live["results"]["content"]
    for summary in summaries.values():
        assert f"{summary['test_accuracy']:.2%}" in table and f"{summary['test_loss']:.4f}" in table
    # every variant also has its own env, as a single run has
    for name, summary in summaries.items():
        assert summary["visdom_env"] == "tiny_sweep-" + name.removeprefix("tiny-")
        assert "train_loss" in windows(visdom_server.port, summary["visdom_env"])

    # compare, from the journals alone, into a cleared env: the same charts and table come back
    from visdom import Visdom

    Visdom(port=visdom_server.port, use_incoming_socket=False).close(None, env="tiny_sweep")
    assert windows(visdom_server.port, "tiny_sweep") == {}
    board_env = {"VISDOM_PORT": str(visdom_server.port)}
    result = run_cli("compare", str(out), env=board_env)
    assert result.returncode == 0, result.stderr
    rebuilt = windows(visdom_server.port, "tiny_sweep")
    for chart in CHARTS:
        assert traces(rebuilt[chart]) == traces(live[chart])
    assert rebuilt["results"]["content"] == live["results"]["content"]
    # the run directories given one by one make the same charts too
    runs = sorted(str(p) for p in out.iterdir() if p.is_dir())
    result = run_cli("compare", *runs, "--env", "by_hand", env=board_env)
    assert result.returncode == 0, result.stderr
    by_hand = windows(visdom_server.port, "by_hand")
    for chart in CHARTS:
        assert sorted(traces(by_hand[chart])) == sorted(traces(live[chart]))


def feed(board: ComparisonBoard, name: str, label: str, losses: list[float], accuracies: list[float]) -> None:
    with board.run(name, label) as logger:
        logger.train_loss(1, list(range(1, len(losses) + 1)), losses)
        for epoch, accuracy in enumerate(accuracies, 1):
            logger.evaluation(epoch, epoch * 10, 1 - accuracy, accuracy)
        logger.close({"name": name})


def test_seeds_are_drawn_as_their_mean_with_a_min_max_band(visdom_server: servers.Server) -> None:
    out = io.StringIO()
    with ComparisonBoard("seeds", port=visdom_server.port, flush_interval=0.05, out=out) as board:
        feed(board, "a-seed_0", "lr=0.1", [1.0] * 25, [0.5, 0.7])
        feed(board, "a-seed_1", "lr=0.1", [3.0] * 25, [0.7, 0.9])
        feed(board, "b", "lr=<b>0.01</b>", [2.0] * 25, [0.6, 0.8])
        board.results(["variant"], [["lr=<b>0.01</b>"]])
    held = windows(visdom_server.port, "seeds")
    accuracy = traces(held["test_accuracy"])
    assert [name for name, _, _ in accuracy] == ["lr=0.1 min", "lr=0.1 max", "lr=0.1 (mean of 2 seeds)",
                                                 "lr=<b>0.01</b>"]
    assert [ys for _, _, ys in accuracy] == [[0.5, 0.7], [0.7, 0.9], [0.6, 0.8], [0.6, 0.8]]
    band = held["test_accuracy"]["content"]["data"][1]
    assert band["fill"] == "tonexty" and band["showlegend"] is False
    loss = traces(held["train_loss"])
    assert loss[2] == ("lr=0.1 (mean of 2 seeds)", [SMOOTH, 25], [2.0, 2.0])
    assert "&lt;b&gt;0.01&lt;/b&gt;" in held["results"]["content"] and "<b>0.01" not in held["results"]["content"]
    assert "visdom: comparison at" in out.getvalue()


def test_no_server_costs_one_warning_and_never_blocks() -> None:
    out = io.StringIO()
    started = time.monotonic()
    board = ComparisonBoard("nowhere", port=servers.free_port(), flush_interval=0.05, close_timeout=2, out=out)
    feed(board, "a", "a", [1.0] * 50, [0.5])
    board.close()
    assert time.monotonic() - started < 5
    said = out.getvalue()
    assert said.count("no dashboard server") == 1 and "is incomplete" in said
    assert [t["y"] for t in board.figures()["train_loss"]["data"]] == [[1.0, 1.0, 1.0]]


def test_a_sweep_where_every_variant_fails_still_shows_its_table(tmp_path: Path, tiny_mnist: Path,
                                                                 visdom_server: servers.Server) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, sweep={"data.root": [str(tmp_path / "a"), str(tmp_path / "b")]})
    result = run_cli(str(spec), "--out", str(tmp_path / "sweep"), env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 1, result.stderr
    held = windows(visdom_server.port, "tiny_sweep")
    assert "results" in held and held["results"]["content"].count("failed") == 2
