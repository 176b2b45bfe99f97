"""The TensorBoard logger on a real (tiny) run, read back with TensorBoard's own event reader.

A run trained through `runner.session.execute` with only this logger attached writes its journal
(metrics.jsonl) and RUN_DIR/tensorboard; every scalar TensorBoard reads must be the journal's, step
for step, to float32 (TensorBoard stores simple values as float32). Replaying the journal must give
the same scalars, and replaying into the run directory must replace its event files, not add to them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import make_tiny_mnist, tiny_spec
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dashboards import tensorboard
from runner import runs, session, spec
from runner.loggers import replay
from runner.loggers.registry import Place

STEPS_PER_EPOCH = 12  # 600 tiny digits in batches of 50
EPOCHS = 2


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar point TensorBoard reads from `log_dir`, by tag: (step, value), in order."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def journal(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The journal's records, by event."""
    events: dict[str, list[dict[str, Any]]] = {}
    for line in (run_dir / runs.JOURNAL).read_text().splitlines():
        record = json.loads(line)
        events.setdefault(record["event"], []).append(record)
    return events


def f32(values: list[float]) -> list[float]:
    """Values as TensorBoard keeps them."""
    return [float(np.float32(v)) for v in values]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[spec.Experiment, Path, dict[str, Any]]:
    """One real run with the TensorBoard logger as the registry makes it: (experiment, run dir, summary).

    A cosine schedule makes the learning rate move, and log_every 5 makes chunks of 5, 5 and 2 steps."""
    tmp = tmp_path_factory.mktemp("tensorboard")
    data_root = make_tiny_mnist(tmp / "data")
    experiment = spec.load(tiny_spec(tmp, data_root, optim={"schedule": "cosine"},
                                     train={"epochs": EPOCHS, "log_every": 5}))
    summary = session.execute(experiment, lambda run_dir: [tensorboard.make(experiment, Place(run_dir))], out=tmp / "run")
    return experiment, tmp / "run", summary


def test_every_train_step_is_there_with_its_loss(run: tuple[spec.Experiment, Path, dict[str, Any]]) -> None:
    _, run_dir, summary = run
    scalars = read_scalars(run_dir / tensorboard.SUBDIR)
    recorded = journal(run_dir)["train_loss"]

    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH
    assert [step for step, _ in scalars["train/loss"]] == [r["step"] for r in recorded] == list(
        range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    assert [value for _, value in scalars["train/loss"]] == f32([r["loss"] for r in recorded])


def test_every_evaluation_is_there(run: tuple[spec.Experiment, Path, dict[str, Any]]) -> None:
    _, run_dir, summary = run
    scalars = read_scalars(run_dir / tensorboard.SUBDIR)
    recorded = journal(run_dir)["evaluation"]

    steps = [STEPS_PER_EPOCH * epoch for epoch in range(1, EPOCHS + 1)]
    assert [step for step, _ in scalars["test/loss"]] == [r["step"] for r in recorded] == steps
    assert [step for step, _ in scalars["test/accuracy"]] == steps
    assert [v for _, v in scalars["test/loss"]] == f32([h["test_loss"] for h in summary["history"]])
    assert [v for _, v in scalars["test/accuracy"]] == f32([h["test_accuracy"] for h in summary["history"]])
    assert [v for _, v in scalars["test/loss"]] == f32([r["test_loss"] for r in recorded])
    assert scalars["test/accuracy"][-1][1] == f32([summary["test_accuracy"]])[0]


def test_the_learning_rate_is_there(run: tuple[spec.Experiment, Path, dict[str, Any]]) -> None:
    _, run_dir, _ = run
    scalars = read_scalars(run_dir / tensorboard.SUBDIR)
    recorded = journal(run_dir)["metrics"]

    assert [step for step, _ in scalars["train/lr"]] == [r["step"] for r in recorded] == [5, 10, 12, 17, 22, 24]
    assert [v for _, v in scalars["train/lr"]] == f32([r["values"]["lr"] for r in recorded])
    assert len({v for _, v in scalars["train/lr"]}) > 1  # the schedule moved it: not one value repeated


def test_spec_samples_and_predictions_are_written(run: tuple[spec.Experiment, Path, dict[str, Any]]) -> None:
    experiment, run_dir, _ = run
    accumulator = EventAccumulator(str(run_dir / tensorboard.SUBDIR), size_guidance={"tensors": 0, "images": 0})
    accumulator.Reload()

    (spec_text,) = accumulator.Tensors("spec/text_summary")
    text = spec_text.tensor_proto.string_val[0].decode()
    assert json.loads(text.removeprefix("```json\n").removesuffix("\n```")) == experiment.model_dump(mode="json")
    (samples,) = accumulator.Images("samples")
    assert samples.width > 28 and samples.height >= 28  # the 8 digits in one grid
    predictions = accumulator.Tensors("predictions/text_summary")
    assert [p.step for p in predictions] == [STEPS_PER_EPOCH * epoch for epoch in range(1, EPOCHS + 1)]
    assert predictions[-1].tensor_proto.string_val[0].decode().startswith(f"epoch {EPOCHS}: ")
    (ending,) = accumulator.Tensors("summary/text_summary")
    assert '"status": "finished"' in ending.tensor_proto.string_val[0].decode()


def test_replaying_the_journal_gives_the_same_scalars(run: tuple[spec.Experiment, Path, dict[str, Any]],
                                                      tmp_path: Path) -> None:
    _, run_dir, _ = run
    live = read_scalars(run_dir / tensorboard.SUBDIR)

    with tensorboard.TensorBoardLogger(tmp_path / "replayed") as logger:
        replay(run_dir / runs.JOURNAL, logger)

    assert read_scalars(tmp_path / "replayed") == live
    assert {"train/loss", "train/lr", "test/loss", "test/accuracy"} <= set(live)
    assert {"class_accuracy/0", "activations/1/zeros"} <= set(live)  # and the insight events' (test_insight_views)


def test_replaying_into_the_run_directory_replaces_its_events(tmp_path: Path) -> None:
    """As `python -m runner replay RUN_DIR --logger tensorboard` does: each point once, not twice."""
    experiment = spec.load(tiny_spec(tmp_path, make_tiny_mnist(tmp_path / "data"), train={"epochs": 1}))
    session.execute(experiment, lambda run_dir: [tensorboard.make(experiment, Place(run_dir))], out=tmp_path / "run")
    log_dir = tmp_path / "run" / tensorboard.SUBDIR
    live = read_scalars(log_dir)

    with tensorboard.make(experiment, Place(tmp_path / "run")) as logger:
        replay(tmp_path / "run" / runs.JOURNAL, logger)

    assert len(list(log_dir.glob(tensorboard.EVENT_FILES))) == 1
    assert read_scalars(log_dir) == live
    assert len(live["train/loss"]) == STEPS_PER_EPOCH


def test_non_finite_values_and_late_calls_do_not_break_it(tmp_path: Path) -> None:
    logger = tensorboard.TensorBoardLogger(tmp_path)
    with logger:
        logger.train_loss(1, [1, 2, 3], [0.5, math.nan, math.inf])
        logger.evaluation(1, 3, math.nan, 0.1)
    logger.close(None)  # a second close does nothing
    logger.train_loss(2, [4], [0.25])  # after close: dropped, no new event file

    scalars = read_scalars(tmp_path)
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert math.isnan(scalars["train/loss"][1][1]) and math.isinf(scalars["train/loss"][2][1])
    assert math.isnan(scalars["test/loss"][0][1])
    assert len(list(tmp_path.glob(tensorboard.EVENT_FILES))) == 1
    assert logger.failure is None


def test_the_cli_takes_several_kinds_and_replays_into_tensorboard(tmp_path: Path) -> None:
    """`--logger null,tensorboard`: event files and nothing on the console; `--logger console,tensorboard`
    adds the console; `replay --logger tensorboard` writes the same scalars from the journal alone."""
    from helpers import run_cli

    spec_path = tiny_spec(tmp_path, make_tiny_mnist(tmp_path / "data"), train={"epochs": 1})
    quiet = run_cli(str(spec_path), "--logger", "null,tensorboard", "--out", str(tmp_path / "quiet"), "--no-report")
    assert quiet.returncode == 0, quiet.stderr
    assert "epoch" not in quiet.stdout  # no console
    summary = json.loads((tmp_path / "quiet" / "summary.json").read_text())
    assert summary["tensorboard_dir"] == str(tmp_path / "quiet" / "tensorboard")
    steps = [e["step"] for e in journal(tmp_path / "quiet")["train_loss"]]
    assert [s for s, _ in read_scalars(tmp_path / "quiet" / "tensorboard")["train/loss"]] == steps
    shown = run_cli(str(spec_path), "--logger", "console,tensorboard", "--out", str(tmp_path / "shown"),
                    "--no-report")
    assert shown.returncode == 0 and "run directory" in shown.stdout
    assert (tmp_path / "shown" / "tensorboard").is_dir()
    (tmp_path / "quiet" / "tensorboard").rename(tmp_path / "first")
    replayed = run_cli("replay", str(tmp_path / "quiet"), "--logger", "null,tensorboard")
    assert replayed.returncode == 0, replayed.stderr
    assert read_scalars(tmp_path / "quiet" / "tensorboard") == read_scalars(tmp_path / "first")
    bad = run_cli(str(spec_path), "--logger", "console,wandb", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--logger 'console,wandb': unknown 'wandb'" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_tensorboard_folder_that_is_a_link_is_never_written_through(tmp_path: Path) -> None:
    """RUN/tensorboard made a link to a folder of one's own: `replay --logger tensorboard` and `--resume`
    with it refuse (exit 2, one paragraph) and neither delete the event files found there nor write any."""
    import signal
    import subprocess
    import sys

    from helpers import ROOT, run_cli

    data_root = make_tiny_mnist(tmp_path / "data")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "events.out.tfevents.1.mine").write_bytes(b"my own events")
    before = {p.name: p.read_bytes() for p in mine.iterdir()}

    done = tmp_path / "done"
    assert run_cli(str(tiny_spec(tmp_path, data_root, train={"epochs": 1})), "--logger", "null", "--out",
                   str(done), "--no-report").returncode == 0
    (done / tensorboard.SUBDIR).symlink_to(mine)
    replayed = run_cli("replay", str(done), "--logger", "null,tensorboard")
    assert replayed.returncode == 2 and "link" in replayed.stderr and "Traceback" not in replayed.stderr, replayed.stderr

    stopped = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "runner", str(tiny_spec(tmp_path, data_root, train={
        "epochs": 100, "log_every": 1})), "--logger", "null", "--out", str(stopped)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (stopped / runs.CHECKPOINT).exists():
        assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    (stopped / tensorboard.SUBDIR).symlink_to(mine)
    kept = (stopped / runs.JOURNAL).read_bytes()
    resumed = run_cli("--resume", str(stopped), "--logger", "null,tensorboard")
    assert resumed.returncode == 2 and "link" in resumed.stderr and "Traceback" not in resumed.stderr, resumed.stderr
    assert (stopped / runs.JOURNAL).read_bytes() == kept

    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
