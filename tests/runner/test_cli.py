"""`python -m runner` end to end, as a user runs it: run directory, journal, summary, replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import ROOT, run_cli, tiny_spec
from runner.loggers import NullLogger, replay

SUMMARY_KEYS = {"test_accuracy", "test_loss", "epochs", "steps", "train_seconds", "wall_seconds", "device",
                "torch_version"}


def test_a_run_leaves_spec_journal_summary_and_weights(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist)
    out = tmp_path / "run"
    result = run_cli(str(spec), "--logger", "console", "--set", "train.epochs=3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= summary.keys()
    assert (summary["epochs"], summary["steps"], summary["device"]) == (3, 36, "cpu")
    assert 0 < summary["train_seconds"] < summary["wall_seconds"]
    assert summary["torch_version"] == torch.__version__
    resolved = json.loads((out / "spec.json").read_text())
    assert resolved["train"]["epochs"] == 3 and resolved["optim"]["momentum"] == 0.0  # defaults written out
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["event"] == "train_loss"] == list(range(1, 37))
    assert [r["epoch"] for r in lines if r["event"] == "evaluation"] == [1, 2, 3]
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "close"
    assert lines[-1]["summary"]["test_accuracy"] == summary["test_accuracy"]
    state = torch.load(out / "model.pt")
    assert state["0.weight"].shape == (32, 784)
    # the console shows each epoch and the final table, plainly when piped
    assert result.stdout.count("test accuracy") >= 3 and f"{summary['test_accuracy']:.2%}" in result.stdout


def test_default_run_directory_is_named_after_the_experiment(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist)
    before = set((ROOT / "runs").glob("tiny-*"))
    result = run_cli(str(spec), "--logger", "null", "--set", "train.epochs=1")
    created = set((ROOT / "runs").glob("tiny-*")) - before
    try:
        assert result.returncode == 0, result.stderr
        assert len(created) == 1 and (created.pop() / "summary.json").exists()
    finally:
        import shutil
        for path in set((ROOT / "runs").glob("tiny-*")) - before:
            shutil.rmtree(path)


def test_the_journal_replays_every_event(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--out", str(out)).returncode == 0
    logger = NullLogger()
    replay(out / "metrics.jsonl", logger)
    names = [name for name, _ in logger.calls if name != "system"]  # the machine's load: whenever it is sampled
    epoch = ["train_loss", "evaluation", "predictions", "confusion", "mistakes", "activations"]  # insight's after
    assert [n for n in names if n != "metrics"] == ["start", "images", *epoch, *epoch, "close"]
    # The learning rate of each chunk's last step (log_every 4), replayed after that epoch's steps.
    assert names[3:6] == ["metrics"] * 3
    sampled = [s["step"] for s in logger.named("system")]
    assert len(sampled) >= 2 and sampled[0] == 0 and sampled[-1] == 24  # at the start and at the end
    assert [(c["step"], c["values"]) for c in logger.named("metrics")] == [(s, {"lr": 0.1}) for s in range(4, 25, 4)]
    steps = [s for c in logger.named("train_loss") for s in c["steps"]]
    assert steps == list(range(1, 25))
    assert logger.named("close")[0]["summary"]["steps"] == 24


def test_a_torn_last_line_is_ignored(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--out", str(out)).returncode == 0
    journal = out / "metrics.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:10]) + "\n" + lines[10][:15])
    logger = NullLogger()
    assert replay(journal, logger) == 10


def test_missing_data_says_to_run_make_data(tmp_path: Path) -> None:
    result = run_cli(str(tiny_spec(tmp_path, tmp_path / "nowhere")), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "train-images-idx3-ubyte is missing" in result.stderr and "make data" in result.stderr
    assert not (tmp_path / "run").exists()


def test_replay_of_something_that_is_not_a_run(tmp_path: Path) -> None:
    result = run_cli("replay", str(tmp_path), "--logger", "console")
    assert result.returncode == 2 and "is not a run directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("damage, words", [
    ("spec.json", "spec.json cannot be read"),
    ("garbage line", "line 3: not a JSON line"),
    ("unknown event", "line 3: not an event of this runner"),
    ("event without fields", "line 3: its evaluation event lacks a field"),
])
def test_replay_of_a_damaged_run_names_the_damage(tmp_path: Path, tiny_mnist: Path, damage: str, words: str) -> None:
    out = tmp_path / "run"
    assert run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--out", str(out)).returncode == 0
    journal = out / "metrics.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    bad = {"garbage line": "\x00not json\n", "unknown event": '["train_loss", 1]\n',
           "event without fields": '{"event": "evaluation", "epoch": 1}\n'}
    if damage == "spec.json":
        (out / "spec.json").write_text("{")
    else:
        journal.write_text("".join(lines[:2]) + bad[damage] + "".join(lines[2:]))
    result = run_cli("replay", str(out), "--logger", "console")
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("variable, value", [("VISDOM_PORT", "abc"), ("VISDOM_PORT", "70000"),
                                             ("VISDOM_SERVER", "http://[bad")])
def test_a_bad_dashboard_address_is_refused_before_training(tmp_path: Path, tiny_mnist: Path, variable: str,
                                                            value: str) -> None:
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--out", str(tmp_path / "run"), env={variable: value})
    assert result.returncode == 2 and variable in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_real_mnist_one_epoch_smoke(tmp_path: Path, real_mnist: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("experiments/relu.json", "--logger", "null", "--set", "train.epochs=1",
                     "--set", "optim.momentum=0.9", "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 300 and summary["test_accuracy"] > 0.9
