"""Sweeps and comparisons: variants and their names, failures that stay alone, Ctrl-C, the results
table against each run's summary, `--dry-run` and `compare` (console side; the dashboard side is in
tests/dashboards/test_compare.py)."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, run_cli, tiny_spec
from runner import spec as specs
from runner.executors.local import Local
from runner.sweeps import record
from runner.sweeps.plan import plan as make_plan
from runner.__main__ import main

GRID = {"model.activation": ["relu", "selu"], "optim.lr": [0.1, 0.05]}


def results_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_sweep_is_the_product_of_its_values_named_after_what_varies() -> None:
    experiment = specs.parse({"name": "act", "model": {"hidden": [16, 8]},
                              "sweep": {"model.activation": ["relu", "selu"], "model.hidden": [[16, 8]],
                                        "optim.lr": [0.1, 1e-3], "seed": [0, 1]}}, "act.json")
    plan = make_plan([(experiment, "act.json")])
    assert len(plan.variants) == 8 and plan.name == "act"
    first = plan.variants[0]
    # model.hidden has one value: it varies nothing, so it names nothing
    assert first.name == "act-activation_relu-lr_0.1-seed_0"
    assert first.label == "activation=relu, lr=0.1"  # the seed is left out: seeds of a variant share a label
    assert {v.label for v in plan.variants} == {f"activation={a}, lr={lr}" for a in ("relu", "selu")
                                                 for lr in ("0.1", "0.001")}
    for v in plan.variants:
        assert v.experiment is not None and v.experiment.sweep is None and v.experiment.name == v.name
        assert re.fullmatch(specs.NAME_PATTERN, v.name)
    assert [v.experiment.seed for v in plan.variants[:2]] == [0, 1]
    assert plan.variants[-1].experiment.optim.lr == 1e-3 and plan.variants[-1].experiment.model.activation == "selu"


def test_several_specs_are_one_comparison_labelled_by_what_differs() -> None:
    paths = [ROOT / "experiments" / f"{name}.json" for name in ("relu", "adam", "momentum")]
    plan = make_plan([(specs.load(p), str(p)) for p in paths])
    assert plan.name == "relu-vs-adam-vs-momentum"
    # Only what departs from the usual value is named; the one that departs from nothing keeps its name.
    assert [v.label for v in plan.variants] == ["relu", "optim=adam, lr=0.001", "momentum=0.9"]
    shipped = make_plan([(specs.load(ROOT / "experiments" / "activations.json"), "activations.json")])
    assert [v.label for v in shipped.variants] == [f"activation={a}" for a in
                                                   ("relu", "leaky_relu", "selu", "softplus")]
    assert shipped.variants[2].name == "activations-activation_selu"


@pytest.mark.parametrize("sweep_value, words", [
    ({"model.actvation": ["relu"]}, ["sweep", "model.actvation", "did you mean model.activation"]),
    ({"model.activation": []}, ["sweep", "model.activation", "no values"]),
    ({"model.activation": "selu"}, ["sweep", "model.activation", "must be a list", '["selu"]']),
    ({"optim": [{"lr": 0.1}]}, ["sweep", "optim is a section"]),
    ({"name": ["a", "b"]}, ["sweep", "name cannot be swept"]),
    ({"optim.lr": [0.1, 0.1]}, ["sweep", "optim.lr", "twice"]),
    ([["model.activation", "relu"]], ["sweep", "must map dotted keys to lists"]),
])
def test_a_bad_sweep_declaration_is_one_paragraph_and_exit_2(tmp_path: Path, sweep_value: object,
                                                             words: list[str]) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "sweep": sweep_value}))
    result = run_cli(str(path), "--dry-run")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr


def test_dry_run_lists_variants_and_trains_nothing_without_importing_torch(tmp_path: Path) -> None:
    spec = tmp_path / "act.json"
    spec.write_text(json.dumps({"name": "act", "sweep": {"model.activation": ["relu", "swish"],
                                                         "optim.lr": [0.1, 0.05]}}))
    out = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", str(spec), "--dry-run",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert not re.search(r"\|\s+torch\b", result.stderr), "--dry-run imported torch"
    lines = result.stdout.splitlines()
    assert lines[0] == "act: 4 variants"
    assert [line.split()[0] for line in lines[1:] if not line.startswith("    ")] == [
        "act-activation_relu-lr_0.1", "act-activation_relu-lr_0.05", "act-activation_swish-lr_0.1",
        "act-activation_swish-lr_0.05"]
    assert result.stdout.count("invalid: ") == 2 and "model.activation" in result.stdout
    assert result.returncode == 2  # an invalid variant: a dry run says the sweep would not run cleanly
    assert not out.exists()


def test_a_failing_variant_fails_alone(tmp_path: Path, tiny_mnist: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1}, sweep={
        "model.activation": ["relu", "swish"], "optim.lr": [0.1, 1e6], "data.root": [str(tiny_mnist), "nowhere"]})
    out = tmp_path / "sweep"
    assert main([str(spec), "--logger", "null", "--out", str(out)]) == 1
    rows = {(r["variant"]): r for r in results_csv(out)}
    assert len(rows) == 8
    # labels follow the order of the schema: data before model before optim
    ok = rows[f"root={tiny_mnist}, activation=relu, lr=0.1"]
    assert ok["status"] == "finished" and float(ok["test_accuracy"]) > 0.5
    diverged = rows[f"root={tiny_mnist}, activation=relu, lr=1000000.0"]
    assert diverged["status"] == "failed" and "became nan" in diverged["error"]
    assert (out / diverged["name"] / "metrics.jsonl").exists()  # its journal up to the bad step is kept
    no_data = rows["root=nowhere, activation=relu, lr=0.1"]
    assert no_data["status"] == "failed" and "nowhere/MNIST/raw" in no_data["error"] and "missing" in no_data["error"]
    invalid = [r for r in rows.values() if "swish" in r["variant"]]
    assert len(invalid) == 4
    for row in invalid:
        assert row["status"] == "failed" and "model.activation" in row["error"] and "'relu'" in row["error"]
    assert list(rows)[0] == ok["variant"]  # the table is sorted by final accuracy, failures last
    shown = capsys.readouterr().out
    assert "failed" in shown and "swish" in shown and "became nan" in shown
    assert "## Errors" in (out / "results.md").read_text()


def test_the_table_holds_each_runs_summary(tmp_path: Path, tiny_mnist: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sweep"
    assert main([str(tiny_spec(tmp_path, tiny_mnist, sweep=GRID)), "--logger", "console", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    run_dirs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in run_dirs] == ["tiny-activation_relu-lr_0.05", "tiny-activation_relu-lr_0.1",
                                          "tiny-activation_selu-lr_0.05", "tiny-activation_selu-lr_0.1"]
    rows = results_csv(out)
    markdown = (out / "results.md").read_text()
    assert [float(r["test_accuracy"]) for r in rows] == sorted((float(r["test_accuracy"]) for r in rows),
                                                                reverse=True)
    for row in rows:
        summary = json.loads((out / row["name"] / "summary.json").read_text())
        assert row["status"] == "finished" and Path(row["run_dir"]) == out / row["name"]
        for key in ("test_accuracy", "best_test_accuracy", "test_loss", "train_seconds"):
            assert float(row[key]) == summary[key]
        cells = [row["variant"], f"{summary['test_accuracy']:.2%}", f"{summary['best_test_accuracy']:.2%}",
                 f"{summary['test_loss']:.4f}", f"{summary['train_seconds']:.1f}"]
        assert "| " + " | ".join(cells) + " |" in markdown
        assert all(cell in printed for cell in cells[1:4])
    # `compare` on the sweep directory rebuilds the same table from the runs on disk
    assert main(["compare", str(out), "--logger", "console", "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "results.md").read_text() == markdown


def test_ctrl_c_stops_the_sweep_after_checkpointing_the_current_variant(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 200, "log_every": 1},
                     sweep={"model.activation": ["relu", "selu", "tanh"]})
    out = tmp_path / "sweep"
    process = subprocess.Popen([sys.executable, "-m", "runner", str(spec), "--logger", "console", "--out", str(out)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "tiny-activation_relu" / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal.read_text().count('"train_loss"') >= 30):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and f"Continue the sweep with: python -m runner --resume {out}" in stderr
    assert (journal.parent / "checkpoint.pt").exists() and not (journal.parent / "summary.json").exists()
    assert [(r["variant"], r["status"]) for r in results_csv(out)] == [
        ("activation=relu", "stopped"), ("activation=selu", "not run"), ("activation=tanh", "not run")]
    assert not (out / "tiny-activation_selu").exists()
    assert "stopped" in stdout  # the table is printed all the same


def test_compare_refuses_what_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(tmp_path), "--logger", "console"]) == 2
    assert "is neither a run directory" in capsys.readouterr().err


def test_compare_keeps_two_sweeps_of_the_same_spec_apart(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1}, sweep={"model.activation": ["relu", "selu"]})
    for out, seed in (("a", 0), ("b", 1)):
        assert main([str(spec), "--logger", "null", "--set", f"seed={seed}", "--out", str(tmp_path / out)]) == 0
    gathered = record.gather([tmp_path / "a", tmp_path / "b"])
    assert len(gathered.plan.variants) == 4
    assert len(set(gathered.journals.values())) == 4  # each variant replays its own journal
    assert {str(r.run_dir) for r in gathered.results} == {str(tmp_path / d / n) for d in "ab"
                                                     for n in ("tiny-activation_relu", "tiny-activation_selu")}


def test_a_stopped_sweep_resumes_to_the_table_of_an_uninterrupted_one(tmp_path: Path, tiny_mnist: Path) -> None:
    """Ctrl-C in the second variant, then --resume SWEEP_DIR: the first is not rerun, the second goes on
    from its checkpoint, the third runs; every number ends as in a sweep never stopped."""
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 60, "log_every": 1},
                     sweep={"model.activation": ["relu", "selu", "tanh"]})
    whole = tmp_path / "whole"
    assert main([str(spec), "--logger", "null", "--out", str(whole), "--no-report"]) == 0
    out = tmp_path / "sweep"
    process = subprocess.Popen([sys.executable, "-m", "runner", str(spec), "--logger", "null", "--out", str(out),
                                "--no-report"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / "tiny-activation_selu" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (journal.exists() and journal.read_text().count('"evaluation"') >= 2):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    first = (out / "tiny-activation_relu" / "summary.json").stat().st_mtime_ns
    result = run_cli("--resume", str(out), "--logger", "null", "--no-report")
    assert result.returncode == 0, result.stderr
    assert "resuming 2 of 3 variants" in result.stdout
    assert (out / "tiny-activation_relu" / "summary.json").stat().st_mtime_ns == first  # not rerun
    numbers = ("variant", "status", "test_accuracy", "best_test_accuracy", "test_loss")
    assert [{k: r[k] for k in numbers} for r in results_csv(out)] == \
        [{k: r[k] for k in numbers} for r in results_csv(whole)]
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    steps = [e["step"] for e in events if e["event"] == "train_loss"]
    assert steps == list(range(1, 60 * 12 + 1))  # every step of the resumed variant exactly once
    again = run_cli("--resume", str(out), "--logger", "null")
    assert again.returncode == 2 and "every variant of this sweep has finished" in again.stderr


def test_the_live_table_marks_the_variant_that_is_training(tmp_path: Path, tiny_mnist: Path) -> None:
    from runner.loggers import NullLogger

    tables: list[list[list[str]]] = []

    class Board:
        def run(self, name: str, label: str) -> NullLogger:
            return NullLogger()

        def results(self, header: list[str], rows: list[list[str]]) -> None:
            tables.append([dict(zip(header, row)).get("status", "finished") for row in rows])

        def close(self) -> None:
            pass

    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1}, sweep={"optim.lr": [0.1, 0.05]})
    plan = make_plan([(specs.load(spec), str(spec))])
    results, stopped = Local().run(plan, record.sweep_dir("tiny", tmp_path / "sweep"), lambda v, d: [NullLogger()],
                                   Board(), lambda: None, say=lambda line: None)
    assert stopped is None and [r.status for r in results] == ["finished", "finished"]
    assert tables[0] == ["not run", "not run"]
    assert sorted(tables[1]) == ["not run", "running"] and sorted(tables[3]) == ["finished", "running"]
    assert tables[-1] == ["finished", "finished"]


def test_a_resumed_comparison_of_several_specs_is_not_shown_in_one_spec_s_own_env(tmp_path: Path) -> None:
    """A spec's own visdom.env names its runs; the comparison of it with another spec is named for
    the sweep, when the comparison is planned and when it is read back to resume."""
    from runner import status

    own = tmp_path / "a.json"
    own.write_text(json.dumps({"name": "a", "visdom": {"env": "envA"}}))
    other = tmp_path / "b.json"
    other.write_text(json.dumps({"name": "b"}))
    plan = make_plan([(specs.load(own), str(own)), (specs.load(other), str(other))])
    assert plan.dashboard.env is None
    out = record.sweep_dir(plan.name, tmp_path / "sweep")
    record.write(out, plan, [record.Result.of(v, status.NOT_RUN) for v in plan.variants])
    resumed = record.resume(out)
    assert resumed.plan.dashboard.env is None and resumed.plan.where == {}
    single = make_plan([(specs.load(own), str(own))])
    assert single.dashboard.env == "envA"
