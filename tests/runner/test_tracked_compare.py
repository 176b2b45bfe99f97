"""`compare` and a comparison's report with tracked runs (runner.track): overlaid by metric name with each
other and with the runner's own runs, on the real Visdom server, and in the results table."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

from dashboards.charts import MAX_POINTS
from dashboards.visdom import server as servers
from helpers import run_cli, tiny_spec
from runner import track

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


@pytest.fixture
def visdom(tmp_path: Path) -> Iterator[servers.Server]:
    with servers.running(home=tmp_path / "visdom") as server:
        yield server


def windows(port: int, env: str) -> dict[str, Any]:
    from visdom import Visdom

    viz = Visdom(server="http://localhost", port=port, use_incoming_socket=False, raise_exceptions=True)
    return json.loads(viz.get_window_data(env=env))


def traces(window: dict[str, Any]) -> dict[str, tuple[list, list]]:
    return {t["name"]: (t["x"], t["y"]) for t in window["content"]["data"]}


def tracked_run(run_dir: Path, lr: float, steps: int = 300) -> Path:
    with track.run("ae", config={"lr": lr, "width": 64}, out=run_dir, logger="null") as run:
        for step in range(1, steps + 1):
            run.log({"train/loss": lr / step, "lr": lr}, step=step)
            if step % 10 == 0:
                run.log({"train/kl": float(step)}, step=step)
    return run_dir


def test_two_tracked_runs_are_overlaid_by_metric_name(tmp_path: Path, visdom: servers.Server) -> None:
    a, b = tracked_run(tmp_path / "a", 1e-3, steps=5000), tracked_run(tmp_path / "b", 1e-2, steps=5000)
    result = run_cli("compare", str(a), str(b), "--env", "cmp", "--out", str(tmp_path / "table"),
                     env={"VISDOM_PORT": str(visdom.port)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    held = windows(visdom.port, "cmp")
    # a chart per metric name; no train loss, test or what-mattered charts: no run has their values
    assert set(held) == {"metric_train_loss", "metric_train_kl", "metric_lr", "results"}
    assert held["metric_train_loss"]["title"] == "train/loss" and held["metric_lr"]["title"] == "learning rate"
    loss = traces(held["metric_train_loss"])
    assert list(loss) == ["lr=0.001", "lr=0.01"]  # labelled by what differs in their configs
    for xs, _ in loss.values():
        assert len(xs) <= MAX_POINTS and xs[-1] == 5000  # bounded, and drawn to the last step
    kl = traces(held["metric_train_kl"])
    assert kl["lr=0.001"] == (list(range(10, 5001, 10)), [float(s) for s in range(10, 5001, 10)])
    assert traces(held["metric_lr"])["lr=0.01"][1][-1] == pytest.approx(1e-2)
    table = held["results"]["content"]
    assert "n/a" in table and "last values" in table and "train/loss 2e-06" in table
    assert "lr=0.001" in result.stdout and "n/a" in result.stdout

    with open(tmp_path / "table" / "results.csv", newline="") as f:
        rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert rows["lr=0.01"]["test_accuracy"] == "" and rows["lr=0.01"]["status"] == "finished"
    assert json.loads(rows["lr=0.01"]["last"]) == {"train/loss": 1e-2 / 5000, "lr": 1e-2, "train/kl": 5000.0}
    markdown = (tmp_path / "table" / "results.md").read_text()
    assert "| lr=0.001 | n/a | n/a | n/a |" in markdown and "What mattered" not in markdown


def test_a_tracked_run_meets_a_runner_run_on_the_names_both_log(tmp_path: Path, tiny_mnist: Path,
                                                                 visdom: servers.Server) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"log_every": 1})
    assert run_cli(str(spec), "--out", str(tmp_path / "tiny"), "--logger", "null").returncode == 0
    tracked_run(tmp_path / "ae", 0.05)
    result = run_cli("compare", str(tmp_path / "tiny"), str(tmp_path / "ae"), "--env", "mixed",
                     env={"VISDOM_PORT": str(visdom.port)})
    assert result.returncode == 0, result.stderr
    held = windows(visdom.port, "mixed")
    assert {"train_loss", "test_accuracy", "test_loss", "metric_lr", "metric_train_loss", "metric_train_kl",
            "results"} <= set(held)
    lr = traces(held["metric_lr"])
    assert list(lr) == ["tiny", "ae"]  # each kind labelled among its own: one run each, by its name
    assert lr["tiny"][0] == list(range(1, 25)) and lr["tiny"][1] == [0.1] * 24  # log_every 1, 24 steps
    assert lr["ae"][0] == list(range(1, 301)) and lr["ae"][1] == [0.05] * 300
    for chart in ("train_loss", "test_accuracy", "test_loss"):  # the runner's own: the tracked run has none
        assert list(traces(held[chart])) == ["tiny"]
    assert list(traces(held["metric_train_loss"])) == ["ae"]
    summary = json.loads((tmp_path / "tiny" / "summary.json").read_text())
    cells = re.findall(r"<td[^>]*>(.*?)</td>", held["results"]["content"])
    assert cells[:6] == ["tiny", f"{summary['test_accuracy']:.2%}", f"{summary['best_test_accuracy']:.2%}",
                         f"{summary['test_loss']:.4f}", f"{summary['train_seconds']:.1f}", ""]
    assert cells[7:11] == ["ae", "n/a", "n/a", "n/a"] and cells[12].startswith("train/loss 0.0001667, lr 0.05")


def test_a_comparison_report_of_tracked_runs_has_a_chart_per_metric_name(tmp_path: Path) -> None:
    from dashboards.report.sweep import sweep_report

    tracked_run(tmp_path / "runs" / "a", 1e-3)
    tracked_run(tmp_path / "runs" / "b", 1e-2)
    text = sweep_report(tmp_path / "runs")
    blob = re.search(r'<script type="application/json" id="figures">(.*?)</script>', text, re.S)
    assert blob is not None
    charts = {f["layout"]["title"]["text"]: [d["name"] for d in f["data"]] for f in json.loads(blob.group(1))}
    assert charts == {"learning rate": ["lr=0.001", "lr=0.01"], "train/kl": ["lr=0.001", "lr=0.01"],
                      "train/loss": ["lr=0.001", "lr=0.01"]}
    assert "<h2>What mattered</h2>" not in text and ">n/a<" in text and "last values" in text
