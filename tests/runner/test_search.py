"""Searches on the local executor (Optuna, one variant after another), and the bad input a search or
the Ray executor refuses with exit 2 before anything runs."""

from __future__ import annotations

import csv
import json
import os
import socket
import textwrap
from pathlib import Path

import pytest

from helpers import run_cli, tiny_spec
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
    assert "stopped early" in statuses and "ok" in statuses
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


def test_tpe_learns_from_the_results(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1},
                     search={"space": {"optim.lr": {"uniform": [0.001, 0.3]}}, "samples": 4, "searcher": "tpe",
                             "metric": "test_loss"})
    out = tmp_path / "tpe"
    result = run_cli(str(spec), "--logger", "null", "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stderr
    assert len(rows(out)) == 4 and all(r["status"] == "ok" for r in rows(out))


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


def test_an_unreachable_ray_address_is_refused_within_the_timeout(tmp_path: Path, tiny_mnist: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = tiny_spec(tmp_path, tiny_mnist, sweep={"seed": [0, 1]})
    result = run_cli(str(spec), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out",
                     str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"--ray-address 127.0.0.1:{port}: no Ray cluster answered within 10 s" in result.stderr
    assert "ray start --head" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
    bad = run_cli(str(spec), "--executor", "ray", "--ray-address", "nowhere", "--out", str(tmp_path / "out"))
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--max-concurrent", "0"], "--max-concurrent 0: give at least 1"),
    (["--ray-address", "127.0.0.1:6379"], "only --executor ray uses"),
])
def test_executor_options_that_do_not_fit_are_refused(tmp_path: Path, tiny_mnist: Path, args: list[str],
                                                      message: str) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, sweep={"seed": [0, 1]})
    result = run_cli(str(spec), *args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
