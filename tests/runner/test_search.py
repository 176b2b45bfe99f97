"""Searches on the local executor (Optuna, one variant after another), and the bad input a search or
the Ray executor refuses with exit 2 before anything runs."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import ROOT, run_cli, tiny_spec
from runner import spec as specs

SPACE = {"optim.lr": {"loguniform": [0.001, 0.5]}, "model.hidden": {"choice": [[16], [48, 24]]}}


def rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def journal(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_local_search_draws_its_samples_and_asha_stops_some_early(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 4},
                     search={"space": SPACE, "samples": 8, "scheduler": "asha", "grace_period": 1,
                             "reduction_factor": 2})
    out = tmp_path / "search"
    result = run_cli(str(spec), "--logger", "null", "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    table = rows(out)
    assert len(table) == 8
    statuses = [r["status"] for r in table]
    assert "stopped early" in statuses and "finished" in statuses
    plan = json.loads((out / "sweep.json").read_text())
    assert plan["search"]["spec"]["search"]["samples"] == 8
    names = [v["name"] for v in plan["variants"]]
    assert names == [f"tiny-{n:03d}" for n in range(1, 9)]
    for variant in plan["variants"]:
        lr, hidden = variant["point"]["optim.lr"], variant["point"]["model.hidden"]
        assert 0.001 <= lr <= 0.5 and hidden in ([16], [48, 24])
        resolved = json.loads((out / variant["name"] / "spec.json").read_text())
        assert resolved["optim"]["lr"] == lr and resolved["model"]["hidden"] == hidden
        summary = json.loads((out / variant["name"] / "summary.json").read_text())
        evaluations = [e for e in journal(out / variant["name"]) if e["event"] == "evaluation"]
        if variant["status"] == "stopped early":
            assert summary["status"] == "stopped early" and summary["stopped_early"] == len(evaluations) < 4
        else:
            assert summary["status"] == "finished" and len(evaluations) == 4
        closed = journal(out / variant["name"])[-1]
        assert closed["event"] == "close" and closed["summary"]["status"] == summary["status"]

    # The same seed draws the same points.
    again = tmp_path / "again"
    assert run_cli(str(spec), "--logger", "null", "--out", str(again), "--no-report").returncode == 0
    assert [v["point"] for v in json.loads((again / "sweep.json").read_text())["variants"]] == \
        [v["point"] for v in plan["variants"]]


def test_a_tpe_search_by_test_loss_runs(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1},
                     search={"space": {"optim.lr": {"uniform": [0.001, 0.3]}}, "samples": 4, "searcher": "tpe",
                             "metric": "test_loss"})
    out = tmp_path / "tpe"
    result = run_cli(str(spec), "--logger", "null", "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    assert len(rows(out)) == 4 and all(r["status"] == "finished" for r in rows(out))


def test_a_resumed_search_learns_from_the_draws_already_trained() -> None:
    from runner import status
    from runner.sweeps import search
    from runner.sweeps.results import Result

    experiment = specs.parse({"name": "x", "search": {"space": SPACE, "searcher": "tpe"}}, "x.json")
    done = [({"optim.lr": 0.01 * (i + 1), "model.hidden": [16]}, 0.5 + i / 100) for i in range(3)]
    drawer = search.LocalSearch(experiment, done)
    assert type(drawer.study.sampler).__name__ == "TPESampler"
    known = drawer.study.trials
    assert [t.value for t in known] == [0.5, 0.51, 0.52]
    assert [t.params["model.hidden"] for t in known] == [0, 0, 0]  # choices as their index
    point = drawer.ask("x-004")
    assert set(point) == set(SPACE) and point["model.hidden"] in ([16], [48, 24])
    drawer.tell("x-004", Result("x-004", "", 0, status.FINISHED, test_accuracy=0.9))
    assert drawer.study.trials[-1].value == 0.9


def test_the_most_resources_a_search_can_draw_is_what_the_cluster_must_hold() -> None:
    from runner.sweeps import search

    space = {**SPACE, "train.gpus": {"choice": [0, 0.5, 0.25]}, "train.cpus": {"uniform": [1, 3.5]}}
    experiment = specs.parse({"name": "x", "train": {"cpus": 2}, "search": {"space": space}}, "x.json")
    most = search.most_resources(experiment)
    assert (most.train.cpus, most.train.gpus) == (3.5, 0.5)
    plain = specs.parse({"name": "x", "train": {"cpus": 2}, "search": {"space": SPACE}}, "x.json")
    assert search.most_resources(plain) is plain


def test_a_stopped_local_search_resumes_and_draws_the_rest(tmp_path: Path) -> None:
    from helpers import make_tiny_mnist

    root = make_tiny_mnist(tmp_path / "data", train=3000, test=100)
    spec = tiny_spec(tmp_path, root, data={"root": str(root), "verify": False, "batch_size": 10},
                     train={"epochs": 3, "device": "cpu", "log_every": 20, "samples": 8},
                     search={"space": {"optim.lr": {"loguniform": [0.01, 0.2]}}, "samples": 4})
    out = tmp_path / "search"
    process = subprocess.Popen([sys.executable, "-m", "runner", str(spec), "--logger", "null", "--no-report",
                                "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 120
    while not (out / "tiny-002" / "checkpoint.pt").exists() and time.monotonic() < deadline \
            and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "variant(s) not run yet" in stderr and f"--resume {out}" in stderr
    before = {v["name"]: v for v in json.loads((out / "sweep.json").read_text())["variants"]}
    assert before["tiny-001"]["status"] == "finished" and before["tiny-002"]["status"] == "stopped"

    result = run_cli("--resume", str(out), "--logger", "null", "--no-report")
    assert result.returncode == 0, result.stderr
    after = json.loads((out / "sweep.json").read_text())["variants"]
    assert [v["name"] for v in after] == ["tiny-001", "tiny-002", "tiny-003", "tiny-004"]
    assert all(v["status"] == "finished" for v in after)
    assert after[1]["point"] == before["tiny-002"]["point"]  # the stopped draw went on, not a new one
    steps = [e["step"] for e in journal(out / "tiny-002") if e["event"] == "train_loss"]
    assert steps == list(range(1, 3 * 300 + 1))


def test_dry_run_describes_the_search(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, search={"space": SPACE, "samples": 5})
    result = run_cli(str(spec), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "a search of 5 variants by test_accuracy (max)" in result.stdout
    assert 'optim.lr: loguniform [0.001, 0.5]' in result.stdout


@pytest.mark.parametrize("search, names", [
    ({"space": SPACE, "sample": 4}, ["search.sample", "not a known key"]),
    ({"space": {"optim.lrr": {"uniform": [0.1, 1]}}}, ["optim.lrr", "did you mean optim.lr"]),
    ({"space": {"optim.lr": {"uniform": [0.5, 0.5]}}}, ["optim.lr", "the range [0.5, 0.5] is empty"]),
    ({"space": {"optim.lr": {"uniform": [0.5, 0.1]}}}, ["optim.lr", "is empty"]),
    ({"space": {"model.hidden": {"choice": []}}}, ["model.hidden", "lists no values"]),
    ({"space": {"optim.lr": {"loguniform": [0, 1]}}}, ["optim.lr", "loguniform needs bounds above 0"]),
    ({"space": {"optim.lr": {"loguniform": [-1, 1]}}}, ["optim.lr", "loguniform needs bounds above 0"]),
    ({"space": {"optim.lr": {"normal": [0, 1]}}}, ["optim.lr", "must be one distribution"]),
    ({"space": {"optim.lr": {"uniform": [-1, 1]}}}, ["search.space.optim.lr", "reaches -1"]),
    ({"space": {"name": {"choice": ["a", "b"]}}}, ["name cannot be searched"]),
    ({"space": SPACE, "scheduler": "hyperband"}, ["search.scheduler", "none", "asha"]),
])
def test_bad_searches_are_refused_with_one_paragraph(tmp_path: Path, tiny_mnist: Path, search: dict,
                                                      names: list[str]) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, search=search)
    result = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_sweep_and_a_search_together_are_refused() -> None:
    with pytest.raises(specs.SpecError, match="a sweep .* or a search .*, not both"):
        specs.parse({"name": "x", "sweep": {"seed": [0, 1]}, "search": {"space": SPACE}}, "x.json")


def test_executor_ray_without_ray_installed_is_refused(tmp_path: Path, tiny_mnist: Path) -> None:
    # Ray cannot be uninstalled for one test: an import hook makes it missing for this process.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys

        class HideRay:
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, HideRay())
    """))
    spec = tiny_spec(tmp_path, tiny_mnist, sweep={"seed": [0, 1]})
    result = run_cli(str(spec), "--executor", "ray", "--out", str(tmp_path / "out"),
                     env={"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 2, result.stderr
    assert "--executor ray needs Ray Tune, which is not installed" in result.stderr
    assert "make install" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_is_refused(tmp_path: Path, tiny_mnist: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tiny_spec(tmp_path, tiny_mnist, sweep={"seed": [0, 1]})
    started = time.monotonic()
    result = run_cli(str(spec), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out",
                     str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"--ray-address 127.0.0.1:{port}: no Ray cluster answered within 10 s" in result.stderr
    assert time.monotonic() - started < 12
    assert "ray start --head" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
    bad = run_cli(str(spec), "--executor", "ray", "--ray-address", "nowhere", "--out", str(tmp_path / "out"))
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--max-concurrent", "0"], "--max-concurrent 0: give at least 1"),
    (["--ray-address", "127.0.0.1:6379"], "only --executor ray uses"),
    (["--max-concurrent", "2"], "only --executor ray runs"),
])
def test_executor_options_that_do_not_fit_are_refused(tmp_path: Path, tiny_mnist: Path, args: list[str],
                                                      message: str) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, sweep={"seed": [0, 1]})
    result = run_cli(str(spec), *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
