"""What a comparison learned, as both media show it: parallel coordinates with a line per finished run
and the importance bars (dashboards.parallel), read back from a real Visdom server's comparison env
and from a sweep's report; the note in their place with one variant or without Optuna."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import windows
from dashboards import parallel
from dashboards.visdom import server as servers
from dashboards.visdom.compare import ComparisonBoard
from helpers import run_cli, tiny_spec
from runner.sweeps import importance

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

SPACE = {"optim.lr": {"loguniform": [0.001, 0.5]}, "train.epochs": {"randint": [1, 5]},
         "optim.momentum": {"uniform": [0.0, 0.9]}, "model.activation": {"choice": ["relu", "<b>selu</b>"]}}


def dimensions(figure: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (trace,) = figure["data"]
    assert trace["type"] == "parcoords"
    return {d["label"]: d for d in trace["dimensions"]}


def test_parallel_coordinates_draw_one_line_per_finished_run() -> None:
    target = importance.Target(SPACE, "test_loss", maximize=False)
    trials = [({"optim.lr": lr, "train.epochs": e, "optim.momentum": m, "model.activation": a}, loss)
              for lr, e, m, a, loss in ((0.01, 1, 0.0, "relu", 0.5), (0.1, 3, 0.5, "<b>selu</b>", 0.2),
                                        (0.001, 5, 0.9, "relu", 0.9), (0.5, 2, 0.1, "<b>selu</b>", 0.3))]
    figure = parallel.parallel_figure(target, trials)
    dims = dimensions(figure)
    assert list(dims) == ["lr (log scale)", "epochs", "momentum", "activation", "test loss"]  # the metric last
    assert all(len(d["values"]) == 4 for d in dims.values())
    lr = dims["lr (log scale)"]
    assert lr["values"] == pytest.approx([-2, -1, -3, -0.30103], abs=1e-5) and lr["range"] == [-3, pytest.approx(-0.30103)]
    assert lr["ticktext"] == ["0.001", "0.01", "0.1", "0.5"]
    assert dims["epochs"] == {"label": "epochs", "values": [1, 3, 5, 2], "range": [1, 5]}
    activation = dims["activation"]  # a categorical axis, its values escaped as tick labels
    assert activation["values"] == [0, 1, 0, 1] and activation["tickvals"] == [0, 1]
    assert activation["ticktext"] == ["relu", "&lt;b&gt;selu&lt;/b&gt;"]
    line = figure["data"][0]["line"]
    assert line["color"] == [0.5, 0.2, 0.9, 0.3] and line["reversescale"] is True  # the lowest loss brightest
    assert "annotations" not in figure["layout"]

    same = parallel.parallel_figure(importance.Target(SPACE), [(values, 1.0) for values, _ in trials])
    assert dimensions(same)["test accuracy"]["range"] == [0.95, 1.0]  # all at 100%: not stretched past it
    assert (same["data"][0]["line"]["cmin"], same["data"][0]["line"]["cmax"]) == (0.95, 1.0)

    empty = parallel.parallel_figure(importance.Target(SPACE), [])
    assert all(d["values"] == [] for d in dimensions(empty).values())
    assert empty["layout"]["annotations"][0]["text"] == "No variant has finished yet."
    assert empty["data"][0]["line"]["reversescale"] is False


def test_importance_bars_put_the_largest_on_top_or_say_why_there_are_none() -> None:
    figure = parallel.importance_figure({"optim.lr": 0.7, "model.<i>x</i>": 0.3}, "", "test_accuracy")
    (bar,) = figure["data"]
    assert bar["y"] == ["model.&lt;i&gt;x&lt;/i&gt;", "optim.lr"] and bar["x"] == [0.3, 0.7]  # plotly's top is last
    note = parallel.importance_figure({}, "No importance: <because>.", "test_accuracy")
    assert [t["x"] for t in note["data"]] == [[]] and note["layout"]["annotations"][0]["text"] == "No importance: &lt;because&gt;."


def finished_trials(out: Path) -> tuple[importance.Target, list[importance.Trial]]:
    """The grid's runs as their directories hold them: spec.json's values, summary.json's accuracy."""
    runs = [(json.loads((d / "spec.json").read_text()), json.loads((d / "summary.json").read_text()))
            for d in sorted(out.iterdir()) if (d / "summary.json").is_file()]
    flats = [{"model.activation": s["model"]["activation"], "optim.lr": s["optim"]["lr"]} for s, _ in runs]
    target = importance.Target({"model.activation": {"choice": ["relu", "selu"]}, "optim.lr": {"choice": [0.1, 0.01]}})
    return target, importance.trials(target, [(f, summary["test_accuracy"]) for f, (_, summary) in zip(flats, runs)])


def test_a_grid_shows_its_lines_and_importances_live_in_results_md_and_in_its_report(
        tmp_path: Path, tiny_mnist: Path, visdom_server: servers.Server) -> None:
    pytest.importorskip("optuna")
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1},
                     sweep={"model.activation": ["relu", "selu"], "optim.lr": [0.1, 0.01]})
    out = tmp_path / "sweep"
    result = run_cli(str(spec), "--out", str(out), env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 0, result.stderr
    target, trials = finished_trials(out)
    assert len(trials) == 4
    expected = importance.importances(trials, target)

    held = windows(visdom_server.port, "tiny_sweep")
    dims = dimensions(held["parallel"]["content"])
    assert list(dims) == ["activation", "lr", "test accuracy"]
    assert all(len(d["values"]) == 4 for d in dims.values())  # a line per run
    assert dims["lr"]["ticktext"] == ["0.1", "0.01"] and sorted(dims["lr"]["values"]) == [0, 0, 1, 1]
    assert sorted(dims["test accuracy"]["values"]) == sorted(value for _, value in trials)
    (bar,) = held["importance"]["content"]["data"]
    assert dict(zip(bar["y"], bar["x"])) == pytest.approx(expected)

    section = (out / "results.md").read_text().split("## What mattered for test_accuracy")[1]
    for key, value in expected.items():
        assert f"| {key} | {value:.3f} |" in section

    assert (out / "report.html").is_file(), result.stdout + result.stderr
    page = (out / "report.html").read_text()
    figures = {f["id"]: f for f in json.loads(re.search(
        r'<script type="application/json" id="figures">(.*?)</script>', page, re.S).group(1))}
    assert dimensions(figures["parallel"]) == dims
    assert figures["importance"]["data"] == held["importance"]["content"]["data"]
    assert 'class=learned id="parallel"' in page and f"<td>{max(expected, key=expected.get)}</td>" in page


def start(board: ComparisonBoard, name: str, run_dir: Path, lr: float, hidden: list[int], summary: dict,
          seed: int = 0) -> None:
    with board.run(name, f"lr={lr}") as logger:
        logger.start({"spec": {"name": name, "seed": seed, "optim": {"lr": lr}, "model": {"hidden": hidden}},
                      "run_dir": str(run_dir)})
        logger.evaluation(1, 10, summary.get("test_loss", 1.0), summary.get("test_accuracy", 0.0))
        logger.close(summary)


def test_a_search_board_takes_its_space_and_metric_from_sweep_json(tmp_path: Path,
                                                                    visdom_server: servers.Server) -> None:
    optuna = pytest.importorskip("optuna")
    space = {"optim.lr": {"loguniform": [0.001, 0.5]}, "model.hidden": {"choice": [[16], [48, 24]]}}
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"name": "s", "variants": [], "search": {"source": "s.json", "spec": {"search": {
            "space": space, "metric": "test_loss", "mode": None}}}}))
    # the third and the last differ in their seed only: a line each
    runs = [(0.002, [16], 0.9), (0.3, [48, 24], 0.1), (0.05, [16], 0.4), (0.2, [48, 24], 0.15), (0.01, [16], 0.7),
            (0.05, [16], 0.45)]
    with ComparisonBoard("search", port=visdom_server.port, flush_interval=0.05, out=io.StringIO()) as board:
        for n, (lr, hidden, loss) in enumerate(runs):
            start(board, f"s-{n}", tmp_path / f"s-{n}", lr, hidden, {"status": "finished", "test_loss": loss}, seed=n)
        start(board, "s-late", tmp_path / "s-late", 0.4, [16], {"status": "stopped early", "test_loss": 0.05})
        board.results(["variant"], [[f"s-{n}"] for n in range(7)])
    held = windows(visdom_server.port, "search")
    dims = dimensions(held["parallel"]["content"])
    assert list(dims) == ["lr (log scale)", "hidden", "test loss"]
    assert dims["test loss"]["values"] == [loss for _, _, loss in runs]  # the one stopped early is no line
    assert held["parallel"]["content"]["data"][0]["line"]["reversescale"] is True

    study = optuna.create_study(direction="minimize")
    distributions = {"optim.lr": optuna.distributions.FloatDistribution(0.001, 0.5, log=True),
                     "model.hidden": optuna.distributions.CategoricalDistribution(["16", "48,24"])}
    for lr, hidden, loss in runs:
        study.add_trial(optuna.trial.create_trial(
            params={"optim.lr": lr, "model.hidden": ",".join(map(str, hidden))}, distributions=distributions,
            value=loss))
    (bar,) = held["importance"]["content"]["data"]
    assert dict(zip(bar["y"], bar["x"])) == pytest.approx(optuna.importance.get_param_importances(study))


def test_one_variant_or_no_optuna_leaves_the_note_in_place_of_importances(
        tmp_path: Path, visdom_server: servers.Server, monkeypatch: pytest.MonkeyPatch) -> None:
    with ComparisonBoard("one", port=visdom_server.port, flush_interval=0.05, out=io.StringIO()) as board:
        start(board, "only", tmp_path / "only", 0.1, [16], {"status": "finished", "test_accuracy": 0.9})
        board.results(["variant"], [["only"]])
    held = windows(visdom_server.port, "one")
    assert "parallel" not in held  # no key varies: no axes to draw
    assert [t["x"] for t in held["importance"]["content"]["data"]] == [[]]  # no bar
    assert held["importance"]["content"]["layout"]["annotations"][0]["text"].replace("<br>", " ") == \
        "No importance: it needs two finished variants or more, and there is 1."

    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails, as in the base install
    with ComparisonBoard("bare", port=visdom_server.port, flush_interval=0.05, out=io.StringIO()) as board:
        for n, (lr, accuracy) in enumerate(((0.1, 0.9), (0.01, 0.8), (0.001, 0.5))):
            start(board, f"r{n}", tmp_path / f"r{n}", lr, [16], {"status": "finished", "test_accuracy": accuracy})
        board.results(["variant"], [["r0"], ["r1"], ["r2"]])
    held = windows(visdom_server.port, "bare")
    assert all(len(d["values"]) == 3 for d in dimensions(held["parallel"]["content"]).values())
    note = held["importance"]["content"]["layout"]["annotations"][0]["text"]
    assert "install the extras (`make install-extras`)" in note.replace("<br>", " ")

    from dashboards.report.sweep import learned_html
    from runner import status
    from runner.sweeps.results import Result
    from runner.sweeps.variants import Variant

    results = [Result.of(Variant(f"r{lr}", "s.json", {"name": f"r{lr}", "optim.lr": lr}), status.FINISHED,
                         {"test_accuracy": acc, "best_test_accuracy": acc, "test_loss": 1.0, "train_seconds": 1.0})
               for lr, acc in ((0.1, 0.9), (0.01, 0.8))]
    text, figures = learned_html(tmp_path, results)
    assert [f["id"] for f in figures] == ["parallel"] and text.count("install the extras") == 1
