"""The examples run as a person runs them (`python examples/NAME.py`), offline on the real MNIST, and
leave a finished run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT
from runner import runs
from runner.loggers import NullLogger, replay


def example(name: str, *args: str) -> subprocess.CompletedProcess:
    # One thread: on a CPU shared with other work, torch's threads waiting on each other cost more than they give.
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def journal(run_dir: Path) -> NullLogger:
    events = NullLogger()
    replay(run_dir / runs.JOURNAL, events)
    return events


def test_the_autoencoder_trains_and_leaves_a_finished_run(real_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = example("autoencoder.py", "--steps", "300", "--every", "100", "--batch-size", "64", "--logger", "null",
                   "--out", str(out), "--data", str(real_mnist))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out}: test loss")
    assert json.loads((out / runs.SPEC).read_text()) == {"steps": 300, "batch_size": 64, "lr": 1e-3, "width": 256,
                                                         "code": 32, "seed": 0}
    summary = json.loads((out / runs.SUMMARY).read_text())
    assert summary["status"] == "finished" and summary["steps"] == 300
    events = journal(out)
    train = [m for m in events.named("metrics") if "train/loss" in m["values"]]
    assert [m["step"] for m in train] == list(range(1, 301))
    assert all(set(m["values"]) >= {"train/loss", "train/l1", "train/psnr"} for m in train)
    assert train[-1]["values"]["train/loss"] < 0.6 * train[0]["values"]["train/loss"]  # it learns
    tests = [m for m in events.named("metrics") if "test/loss" in m["values"]]
    assert [m["step"] for m in tests] == [100, 200, 300]
    assert summary["best_test_loss"] == min(m["values"]["test/loss"] for m in tests)
    media = events.named("media")
    assert [(m["name"], m["step"], len(m["pixels"])) for m in media] == [("reconstructions", s, 16)
                                                                         for s in (100, 200, 300)]


@pytest.mark.parametrize("name", ["lightning_mlp.py", "ignite_mlp.py"])
def test_the_framework_examples_train_the_tutorial_mlp(real_mnist: Path, tmp_path: Path, name: str) -> None:
    pytest.importorskip("lightning" if name.startswith("lightning") else "ignite")
    out = tmp_path / "run"
    done = example(name, "--epochs", "2", "--limit", "3000", "--lr", "0.1", "--logger", "null", "--out", str(out),
                   "--data", str(real_mnist))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / runs.SUMMARY).read_text())
    assert summary["status"] == "finished"
    assert 0.7 < summary["last"]["test/accuracy"] <= 1 and "train/loss" in summary["last"]
    assert json.loads((out / runs.SPEC).read_text())["lr"] == 0.1
