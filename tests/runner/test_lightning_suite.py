"""`RunnerLogger` held to what Lightning asks of every logger (its tests/tests_pytorch/loggers/test_all.py):
fit then test logged at the expected keys and steps, the logger and a Trainer holding it pickled, the
tuner leaving it in place, `ddp_spawn` on two CPU processes with rank zero alone writing. And the run
it leaves: fit and test are one run, ended once (at the `with` block's end, or when the script exits),
its checkpoints inside it and nothing written beside it."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import ROOT
from runner import runs, status
from runner.lab import index
from runner.loggers import NullLogger, replay

pl = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.demos.boring_classes import BoringModel  # noqa: E402
from lightning.pytorch.loggers.logger import DummyExperiment  # noqa: E402

from runner.adapters.lightning import RunnerLogger  # noqa: E402

FIT_TEST = [(0, ["epoch", "train_some_val"]), (0, ["early_stop_on", "epoch", "val_loss"]),
            (1, ["epoch", "test/acc", "test_loss"])]  # test_all's, with a test value of a grouped name beside


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread (conftest)


class FitTest(BoringModel):
    """test_all's model: one value a training step, two at the validation's end, the test's at its end."""

    def __init__(self, lr: float = 0.1, batch_size: int = 1, fail_test: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        loss = self.step(batch)
        self.log("train_some_val", loss)
        return {"loss": loss}

    def on_validation_epoch_end(self) -> None:
        self.log_dict({"early_stop_on": torch.tensor(1), "val_loss": torch.tensor(0.5)})

    def on_test_epoch_end(self) -> None:
        if self.hparams.fail_test:
            raise RuntimeError("boom in test")
        self.log_dict({"test_loss": torch.tensor(2.0), "test/acc": torch.tensor(0.75)})


class History(RunnerLogger):
    """test_all's StoreHistoryLogger: what the Trainer gave log_metrics, call by call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        self.history.append((step, metrics))


class RankZeroLoggerCheck(pl.Callback):
    """test_all's: rank zero has the run, every other rank Lightning's do-nothing stand-in."""

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        is_dummy = isinstance(trainer.logger.experiment, DummyExperiment)
        if trainer.is_global_zero:
            assert not is_dummy
        else:
            assert is_dummy
            assert pl_module.logger.experiment.something(foo="bar") is None


def trainer(logger: Any, root: Path, **options: Any) -> Any:
    """test_all's Trainer: one epoch of one training and one validation batch (and one test batch)."""
    return pl.Trainer(**{"default_root_dir": root, "max_epochs": 1, "logger": logger, "limit_train_batches": 1,
                         "limit_val_batches": 1, "limit_test_batches": 1, "log_every_n_steps": 1,
                         "accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False,
                         **options})


def journal(run_dir: Path) -> NullLogger:
    events = NullLogger()
    replay(run_dir / runs.JOURNAL, events)
    return events


def logged(run_dir: Path) -> dict[tuple[int, str], float]:
    return {(m["step"], name): value for m in journal(run_dir).named("metrics") for name, value in m["values"].items()}


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / runs.SUMMARY).read_text())


def listed(root: Path) -> dict[str, str]:
    """What `python -m runner runs ROOT` shows: each run's status."""
    return {Path(row["run"]).name: row["status"] for row in index.listing([root], use_index=False)[0]}


# ----- test_all's cases -----

def test_fit_then_test_is_one_run_with_the_metrics_at_their_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    monkeypatch.chdir(tmp_path)  # the default place: runs/fit-test-<timestamp>
    with History("fit-test", logger="null") as logger:
        fitting = trainer(logger, tmp_path / "root")
        fitting.fit(FitTest())
        run = Path(logger.log_dir)
        assert listed(tmp_path / "runs") == {run.name: status.RUNNING}  # between fit and test: open
        fitting.test()
    assert [(step, sorted(values)) for step, values in logger.history] == FIT_TEST
    events = journal(run)
    assert len(events.named("start")) == 1 and len(events.named("close")) == 1
    assert {key for key in logged(run)} == {(step, name) for step, names in FIT_TEST for name in names}
    done = summary(run)
    assert done["status"] == "finished" and done["steps"] == 1 and events.named("close")[0]["summary"] == done
    assert done["last"]["test_loss"] == 2.0 and done["last"]["test/acc"] == 0.75 and done["last"]["val_loss"] == 0.5
    assert "hyperparameters" not in done  # the test's hyperparameters are the fit's, already in spec.json
    assert listed(tmp_path / "runs") == {run.name: status.FINISHED}
    # ModelCheckpoint's checkpoint is the run's: inside it, nothing beside it
    assert os.listdir(tmp_path / "runs") == [run.name]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["epoch=0-step=1.ckpt"]
    assert done["checkpoint"] == str(run / "checkpoints" / "epoch=0-step=1.ckpt")


def test_the_logger_and_a_trainer_holding_it_pickle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    logger = RunnerLogger("pickled", out=tmp_path / "run", logger="null")
    _ = logger.experiment  # test_all: an experiment that cannot be pickled must be left out of the state
    logger.log_metrics({"a": 1})
    logger.save()
    pickle.dumps(logger)
    held = trainer(logger, tmp_path / "root")
    held.fit(FitTest())  # a Trainer that has used it, too
    copy = pickle.loads(pickle.dumps(held))
    copy.logger.log_metrics({"acc": 1.0})  # a copy does not write into the run of another process
    assert copy.logger.name == logger.name and copy.logger.save_dir == logger.save_dir
    assert copy.logger.log_dir == logger.log_dir
    logger.experiment.finish()
    assert (1, "a") in logged(tmp_path / "run") and "acc" not in summary(tmp_path / "run")["last"]
    assert summary(tmp_path / "run")["status"] == "finished"
    assert "could not be started" in capsys.readouterr().err


@pytest.mark.parametrize("method, options", [("lr_find", {"num_training": 4}),
                                             ("scale_batch_size", {"steps_per_trial": 1, "max_trials": 2})])
def test_the_tuner_leaves_the_logger_in_place(tmp_path: Path, method: str, options: dict[str, Any]) -> None:
    from lightning.pytorch.tuner.tuning import Tuner

    model = FitTest()
    with RunnerLogger("tuned", out=tmp_path / "run", logger="null") as logger:
        tuned = trainer(logger, tmp_path / "root", limit_train_batches=4)
        getattr(Tuner(tuned), method)(model, **options)
        assert tuned.logger is logger and model.logger is logger
        tuned.fit(model)  # the tuning's trial fits leave the run to this one
    done = summary(tmp_path / "run")
    assert done["status"] == "finished" and {"train_some_val", "val_loss"} <= set(done["last"])
    assert len(journal(tmp_path / "run").named("close")) == 1


def loopback_only() -> bool:
    return sorted(name for _, name in socket.if_nameindex()) == ["lo"]


@pytest.mark.parametrize("strategy", ["ddp_spawn", "ddp_fork"])
def test_ddp_on_two_processes_writes_from_rank_zero_alone(tmp_path: Path, strategy: str) -> None:
    if not loopback_only():  # gloo listens on the host's addresses: only where nothing else can reach them
        if os.environ.get("RUNNER_LOOPBACK_ONLY"):
            pytest.fail("make test runs the suite in a loopback-only network namespace, and this one is not")
        pytest.skip("ddp runs only in a loopback-only network namespace: use `make test`")
    logger = RunnerLogger(strategy, out=tmp_path / "run", logger="null")
    spawned = trainer(logger, tmp_path / "root", strategy=strategy, devices=2, max_steps=1,
                      callbacks=[RankZeroLoggerCheck()])
    spawned.fit(FitTest())
    run = tmp_path / "run"
    events = journal(run)  # one process wrote it, and ended it as it exited
    assert len(events.named("start")) == 1 and len(events.named("close")) == 1
    assert set(logged(run)) == {(0, "train_some_val"), (0, "epoch"), (0, "early_stop_on"), (0, "val_loss")}
    assert summary(run)["status"] == "finished"
    assert sorted(os.listdir(tmp_path)) == ["run"] and (run / "checkpoints" / "epoch=0-step=1.ckpt").is_file()


# ----- as a person's script runs it -----

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    sys.path[:0] = [sys.argv[2], str(Path(sys.argv[2]).parent)]
    from test_lightning_suite import FitTest, trainer
    from runner.adapters.lightning import RunnerLogger

    root = Path(sys.argv[1])

    def one(name, test=True, fail_test=False):
        logger = RunnerLogger(name, out=root / name, logger="null")
        fitting = trainer(logger, root / "default", enable_checkpointing=False)
        model = FitTest(fail_test=fail_test)
        fitting.fit(model)
        if test:
            try:
                fitting.test(model)
            except RuntimeError as exc:
                print("test failed:", exc)

    one("fit-test")
    one("fit-alone", test=False)
    one("fit-failed-test", fail_test=True)
""")


def test_a_script_that_fits_then_tests_leaves_one_run_ended_once(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(Path(__file__).parent)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "test failed: boom in test"
    assert sorted(os.listdir(tmp_path)) == ["fit-alone", "fit-failed-test", "fit-test"]
    for name, ended, test_values in (("fit-test", "finished", True), ("fit-alone", "finished", False),
                                     ("fit-failed-test", "failed", False)):
        run = tmp_path / name
        assert len(journal(run).named("close")) == 1, name
        assert summary(run)["status"] == ended and summary(run)["steps"] == (1 if test_values else 0), name
        assert ((1, "test_loss") in logged(run)) == test_values and (0, "val_loss") in logged(run), name
    assert summary(tmp_path / "fit-failed-test")["error"] == "RuntimeError: boom in test"
    assert summary(tmp_path / "fit-test")["last"]["test_loss"] == 2.0
