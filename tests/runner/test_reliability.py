"""Nothing computed is lost: checkpoints, resume, interrupts, divergence, refused run directories."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import ROOT, run_cli, tiny_spec
from runner import data, runs, train
from runner.loggers import NullLogger
from runner.spec import Experiment

CPU = torch.device("cpu")
EPOCHS = 150  # of 12 steps: long enough to be interrupted, short enough to rerun
TIMING = {"logging", "train_seconds", "eval_seconds", "samples_per_second", "wall_seconds", "run_dir", "peaks", "provenance"}


def experiment(root: Path, **train_spec: Any) -> Experiment:
    return Experiment.model_validate({
        "name": "r", "data": {"root": str(root), "verify": False, "batch_size": 50, "test_batch_size": 64},
        "model": {"hidden": [32]}, "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        "train": {"epochs": 3, "log_every": 5, **train_spec}})


def stop_at(step: int) -> Any:
    """A should_stop that asks for a stop right after global step `step`."""
    calls = {"n": 0}

    def should_stop() -> str | None:
        calls["n"] += 1
        return "SIGINT" if calls["n"] == step else None
    return should_stop


@pytest.mark.parametrize("stop_step", [7, 12, 30])  # mid-epoch, at an epoch's end, in the last epoch
def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tiny_mnist: Path, stop_step: int) -> None:
    spec = experiment(tiny_mnist)
    dataset = data.load(spec.data, CPU)
    model, expected = train.fit(spec, dataset, CPU, NullLogger())

    checkpoints: list[dict] = []
    should_stop = stop_at(stop_step)
    with pytest.raises(train.Stopped) as stopped:
        train.fit(spec, dataset, CPU, NullLogger(), checkpoint=checkpoints.append, should_stop=should_stop)
    assert stopped.value.step == stop_step
    assert checkpoints[-1]["state"]["step"] == stop_step
    logger = NullLogger()
    resumed_model, results = train.fit(spec, dataset, CPU, logger, resume=checkpoints[-1])
    assert {k: v for k, v in results.items() if k not in TIMING} == \
        {k: v for k, v in expected.items() if k not in TIMING}
    for a, b in zip(model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)
    assert [s for c in logger.named("train_loss") for s in c["steps"]] == list(range(stop_step + 1, 37))


def test_divergence_stops_with_the_step_and_the_cause(tiny_mnist: Path) -> None:
    spec = experiment(tiny_mnist).model_copy(update={"optim": experiment(tiny_mnist).optim.model_copy(
        update={"lr": 1e6})})
    logger = NullLogger()
    with pytest.raises(train.Diverged) as diverged:
        train.fit(spec, data.load(spec.data, CPU), CPU, logger)
    message = str(diverged.value)
    assert "at step" in message and "optim.lr is 1000000.0" in message and "learning rate" in message
    logged = [s for c in logger.named("train_loss") for s in c["steps"]]
    assert logged and logged == list(range(1, len(logged) + 1))  # everything up to the bad step was logged


def test_divergence_on_the_command_line(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--set", "optim.lr=1e6",
                     "--out", str(out))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "became nan" in result.stderr.lower() or "became inf" in result.stderr.lower()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert sum('"train_loss"' in line for line in lines) >= 1
    summary = json.loads((out / "summary.json").read_text())  # the run directory says how it ended
    assert summary["status"] == "diverged" and "became" in summary["error"] and "\n" not in summary["error"]


NAN_AT = '''
from torch import nn


class NanAt(nn.Module):
    """A linear model whose logits are NaN at its `at`-th training step, and only there."""

    def __init__(self, in_shape, classes, at):
        super().__init__()
        self.linear = nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], classes)
        self.at, self.steps = at, 0

    def forward(self, x):
        logits = self.linear(x.flatten(1))
        if self.training:
            self.steps += 1
            if self.steps == self.at:
                return logits * float("nan")
        return logits
'''


def test_a_nan_loss_ends_the_run_as_diverged_and_keeps_the_checkpoint_before_it(tmp_path: Path,
                                                                                 tiny_mnist: Path) -> None:
    """A NaN (not an inf from a huge learning rate): exit 3 naming the step, a whole journal with one
    ending, and the last epoch's checkpoint untouched (12 steps an epoch: step 30 is in epoch 3)."""
    (tmp_path / "nan_at.py").write_text(NAN_AT)
    spec = json.loads(tiny_spec(tmp_path, tiny_mnist, train={"epochs": 3}).read_text())
    spec["model"] = {"kind": "python", "target": "nan_at:NanAt", "args": {"at": 30}}
    (tmp_path / "tiny.json").write_text(json.dumps(spec))
    out = tmp_path / "run"
    result = run_cli(str(tmp_path / "tiny.json"), "--logger", "null", "--no-report", "--out", str(out))
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    said = "the training loss became nan at step 30 (epoch 3)"
    assert said in result.stderr and "learning rate" in result.stderr and "optim.lr is 0.1" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["error"].startswith(said) and "\n" not in summary["error"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["event"] for r in records]
    assert kinds[0] == "start" and kinds.count("start") == 1
    assert kinds[-1] == "close" and kinds.count("close") == 1 and records[-1]["summary"]["status"] == "diverged"
    losses = [(r["step"], r["loss"]) for r in records if r["event"] == "train_loss"]
    assert [step for step, _ in losses] == list(range(1, 33))  # to the end of the chunk (log_every 4) holding it
    assert math.isnan(losses[29][1]) and all(math.isfinite(loss) for _, loss in losses[:29])
    assert [r["epoch"] for r in records if r["event"] == "evaluation"] == [1, 2]
    kept = torch.load(out / "checkpoint.pt", weights_only=True)  # epoch 2's, not overwritten by NaN weights
    assert kept["state"]["step"] == 24 and kept["state"]["epoch"] == 3
    assert all(torch.isfinite(w).all() for w in kept["model"].values())
    upto = [json.loads(line) for line in (out / "metrics.jsonl").read_bytes()[:kept["journal_bytes"]].splitlines()]
    assert [r["step"] for r in upto if r["event"] == "train_loss"] == list(range(1, 25))
    # it holds the journal up to its epoch's end: the evaluation's events, the insight after them
    assert [r["event"] for r in upto[-5:]] == ["evaluation", "predictions", "confusion", "mistakes", "activations"]
    assert all(r["epoch"] == 2 for r in upto[-5:])
    assert not (out / "model.pt").exists()


def start_long_run(tmp_path: Path, tiny_mnist: Path, out: Path) -> subprocess.Popen:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": EPOCHS, "log_every": 1})
    return subprocess.Popen([sys.executable, "-m", "runner", str(spec), "--logger", "console", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(journal: Path, process: subprocess.Popen, count: int = 30, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count('"train_loss"') >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"no training steps in {journal} (exit {process.poll()})")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_saves_and_the_run_resumes(tmp_path: Path, tiny_mnist: Path, sig: int, code: int) -> None:
    out = tmp_path / "run"
    process = start_long_run(tmp_path, tiny_mnist, out)
    wait_for_steps(out / "metrics.jsonl", process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert f"python -m runner --resume {out}" in stderr and "Traceback" not in stderr
    assert (out / "checkpoint.pt").exists() and not (out / "summary.json").exists()
    [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]  # every line whole

    resumed = run_cli("--resume", str(out), "--logger", "null")
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "reference"
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": EPOCHS, "log_every": 1})
    assert run_cli(str(spec), "--logger", "null", "--out", str(reference)).returncode == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    assert torch.equal(torch.load(out / "model.pt")["0.weight"], torch.load(reference / "model.pt")["0.weight"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["event"] == "train_loss"]
    assert steps == list(range(1, EPOCHS * 12 + 1))  # the journal holds every step exactly once across both sessions


def test_a_second_ctrl_c_quits_at_once_leaving_a_valid_journal(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    process = start_long_run(tmp_path, tiny_mnist, out)
    wait_for_steps(out / "metrics.jsonl", process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line)


def test_checkpoints_are_replaced_atomically(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--out", str(out)).returncode == 0
    payload = torch.load(out / "checkpoint.pt", weights_only=True)
    assert payload["format"] == runs.CHECKPOINT_FORMAT and payload["state"]["epoch"] == 3
    assert not list(out.glob("*.tmp"))


def finished_run(tmp_path: Path, tiny_mnist: Path) -> Path:
    out = tmp_path / "finished"
    assert run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--out", str(out)).returncode == 0
    return out


@pytest.mark.parametrize("case", ["missing", "a file", "not a run", "finished", "no checkpoint", "other format",
                                  "damaged checkpoint", "checkpoint without its keys", "spec with resume",
                                  "out holds a run", "out is a file", "out holds your files"])
def test_unusable_run_directories_are_refused_and_left_alone(case: str, tmp_path: Path, tiny_mnist: Path) -> None:
    run = finished_run(tmp_path, tiny_mnist)
    args = ["--resume", str(run)]
    words = {"missing": "no such directory", "a file": "a file, not a directory",
             "not a run": "not a run directory", "finished": "already finished",
             "checkpoint without its keys": "lacks ['journal_bytes'", "out is a file": "cannot make the run directory",
             "no checkpoint": "before its first checkpoint", "other format": "has format 99",
             "damaged checkpoint": "cannot be read", "spec with resume": "give no SPEC",
             "out holds a run": "already holds a run", "out holds your files": "not a run of this runner"}[case]
    if case == "missing":
        args = ["--resume", str(tmp_path / "nope")]
    elif case == "a file":
        args = ["--resume", str(run / "summary.json")]
    elif case == "out is a file":
        args = [str(tiny_spec(tmp_path, tiny_mnist)), "--out", str(run / "summary.json" / "x")]
    elif case == "not a run":
        args = ["--resume", str(tmp_path)]
    elif case not in ("finished", "a file", "out is a file"):
        (run / "summary.json").unlink()
    if case == "no checkpoint":
        (run / "checkpoint.pt").unlink()
    elif case == "other format":
        torch.save({"format": 99}, run / "checkpoint.pt")
    elif case == "checkpoint without its keys":
        payload = torch.load(run / "checkpoint.pt", weights_only=True)
        del payload["journal_bytes"]
        torch.save(payload, run / "checkpoint.pt")
    elif case == "damaged checkpoint":
        (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    elif case == "spec with resume":
        args = ["experiments/relu.json", "--resume", str(run)]
    elif case == "out holds a run":
        args = [str(tiny_spec(tmp_path, tiny_mnist)), "--out", str(run)]
    elif case == "out holds your files":  # a folder of the person's own: never written into
        (run / "metrics.jsonl").unlink()
        (run / "checkpoint.pt").unlink()
        args = [str(tiny_spec(tmp_path, tiny_mnist)), "--out", str(run)]
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    result = run_cli(*args, "--logger", "null")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert words in result.stderr, result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_a_resume_never_pads_a_cut_journal_nor_follows_a_link(tmp_path: Path, tiny_mnist: Path) -> None:
    """A journal cut mid-line (a full disk, an interrupted copy) loses only its cut line; a journal that
    is a link to a file elsewhere is refused and that file left alone."""
    run = finished_run(tmp_path, tiny_mnist)
    (run / "summary.json").unlink()  # resumable from its last checkpoint again
    journal = run / "metrics.jsonl"
    cut = journal.read_bytes()[: len(journal.read_bytes()) // 2 + 7]
    journal.write_bytes(cut)
    result = run_cli("--resume", str(run), "--logger", "null", "--no-report")
    assert result.returncode == 0, result.stderr
    assert "is shorter than its checkpoint says" in result.stderr
    text = journal.read_bytes()
    assert b"\x00" not in text and text.startswith(cut[: cut.rfind(b"\n") + 1])
    assert all(json.loads(line) for line in text.splitlines())
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("a file of mine\n" * 100)
    (run / "summary.json").unlink()
    journal.unlink()
    journal.symlink_to(elsewhere)
    linked = run_cli("--resume", str(run), "--logger", "null", "--no-report")
    assert linked.returncode == 2 and "not a link" in linked.stderr and "Traceback" not in linked.stderr
    assert elsewhere.read_text() == "a file of mine\n" * 100


def test_a_checkpoint_of_another_model_is_refused_before_anything_changes(tmp_path: Path, tiny_mnist: Path) -> None:
    run = finished_run(tmp_path, tiny_mnist)
    (run / "summary.json").unlink()
    other = tmp_path / "other"
    spec = tiny_spec(tmp_path, tiny_mnist)
    assert run_cli(str(spec), "--logger", "null", "--set", "model.hidden=[8]", "--out", str(other)).returncode == 0
    (run / "checkpoint.pt").write_bytes((other / "checkpoint.pt").read_bytes())
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in run.iterdir()}
    result = run_cli("--resume", str(run), "--logger", "null")
    assert result.returncode == 2 and "weights of another model" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in run.iterdir()} == before
