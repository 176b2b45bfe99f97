"""A run killed with `kill -9` after steps past its last checkpoint reached the journal: `--resume`
cuts the journal back to that checkpoint and trains those steps again, so the journal holds every
step, evaluation and ending once, and the run ends bitwise as one never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from helpers import ROOT, make_tiny_mnist, run_cli, tiny_spec

STEPS, EPOCHS = 300, 3  # steps per epoch (1,500 tiny images at batch 5), epochs
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # each run: two share the two cores, and torch's threads would spin
TIMING = {"logging", "train_seconds", "eval_seconds", "samples_per_second", "wall_seconds", "run_dir", "peaks", "provenance"}


def start(spec: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", str(spec), "--logger", "null", "--no-report",
                             "--out", str(out)], cwd=ROOT, env={**os.environ, **ONE_THREAD},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def steps(records: list[dict[str, Any]]) -> list[int]:
    return [r["step"] for r in records if r["event"] == "train_loss"]


def checkpointed(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def kill_past_a_checkpoint(process: subprocess.Popen, out: Path) -> None:
    """`kill -9` the run once its journal holds steps after its last checkpoint. The run is frozen
    (SIGSTOP) while that is checked, so what is checked is what it leaves behind."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "checkpoint.pt").exists():
            process.send_signal(signal.SIGSTOP)
            if not os.WIFSTOPPED(os.waitpid(process.pid, os.WUNTRACED)[1]):
                break  # it ended meanwhile
            if steps(events(out))[-1] > checkpointed(out)["state"]["step"]:
                process.kill()
                process.wait()
                return
            process.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("the run ended before steps past a checkpoint could be seen")


def without_time(records: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "t"} for r in records if r["event"] in kinds]


def test_a_run_killed_past_its_checkpoint_resumes_with_a_whole_journal(tmp_path: Path) -> None:
    data_root = make_tiny_mnist(tmp_path / "data", train=STEPS * 5, test=100)
    spec = tiny_spec(tmp_path, data_root, data={"batch_size": 5}, train={"epochs": EPOCHS, "log_every": 1})
    out, reference = tmp_path / "run", tmp_path / "reference"
    uninterrupted = start(spec, reference)  # alongside: the machine has two cores
    kill_past_a_checkpoint(start(spec, out), out)

    before = (out / "metrics.jsonl").read_bytes()
    kept = checkpointed(out)
    done = kept["state"]["step"]
    assert done >= STEPS and steps(events(out))[-1] > done  # steps past the checkpoint are in the journal
    assert "close" not in {e["event"] for e in events(out)}  # killed: nothing said how it ended

    resumed = run_cli("--resume", str(out), "--logger", "null", "--no-report", env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr
    _, stderr = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, stderr

    records = events(out)
    kinds = [r["event"] for r in records]
    assert kinds[0] == "start" and kinds.count("start") == 1
    assert kinds[-1] == "close" and kinds.count("close") == 1 and records[-1]["summary"]["status"] == "finished"
    assert steps(records) == list(range(1, EPOCHS * STEPS + 1))  # each step once, in order
    assert [r["epoch"] for r in records if r["event"] == "evaluation"] == list(range(1, EPOCHS + 1))
    assert [r["epoch"] for r in records if r["event"] == "predictions"] == list(range(1, EPOCHS + 1))
    assert (out / "metrics.jsonl").read_bytes()[:kept["journal_bytes"]] == before[:kept["journal_bytes"]]

    # bitwise the uninterrupted run: every event's numbers, the summary, the weights
    alike = ("images", "train_loss", "metrics", "evaluation", "predictions")
    assert without_time(records, alike) == without_time(events(reference), alike)
    a, b = (json.loads((d / "summary.json").read_text()) for d in (out, reference))
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    weights, expected = torch.load(out / "model.pt"), torch.load(reference / "model.pt")
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
