"""The framework adapters on the tracking API: a Lightning Trainer with `RunnerLogger` and an ignite
Engine with `attach` train for real (tiny generated MNIST) and leave a run directory whose journal
holds exactly what the framework logged, whose spec.json holds the hyperparameters, whose summary
says how training ended, and whose report names the metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import ROOT, run_cli
from runner import data, runs, track
from runner.errors import UserError
from runner.loggers import NullLogger, replay
from runner.spec import DataSpec


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread (conftest)


def tiny(root: Path) -> data.Dataset:
    return data.load(DataSpec(root=str(root), verify=False), torch.device("cpu"))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def journal(run_dir: Path) -> NullLogger:
    events = NullLogger()
    replay(run_dir / runs.JOURNAL, events)
    return events


def logged(run_dir: Path) -> list[tuple[int, str, float]]:
    """(step, name, value) of every scalar in the journal, in order."""
    return [(m["step"], name, value) for m in journal(run_dir).named("metrics") for name, value in m["values"].items()]


def by_step(values: list[tuple[int, str, float]]) -> dict[tuple[int, str], float]:
    table: dict[tuple[int, str], float] = {}
    for step, name, value in values:
        assert table.setdefault((step, name), value) == value, (step, name)
    return table


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / runs.SUMMARY).read_text())


def reported(run_dir: Path, names: set[str]) -> None:
    done = run_cli("report", str(run_dir), timeout=120)
    assert done.returncode == 0, done.stderr
    page = (run_dir / "report.html").read_text()
    assert all(name in page for name in names), names


# ----- Lightning -----

def lightning_module(fail_at: int | None = None) -> Any:
    pl = pytest.importorskip("lightning.pytorch")

    class Classifier(pl.LightningModule):
        def __init__(self, lr: float = 0.1, width: int = 32, activation: type = nn.ReLU) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = mlp()

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            if fail_at is not None and self.global_step == fail_at:
                raise RuntimeError(f"boom at step {fail_at}")
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch: Any, index: int) -> None:
            x, y = batch
            logits = self.net(x)
            self.log("val/loss", F.cross_entropy(logits, y))
            self.log("val/accuracy", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return Classifier()


def recording_logger() -> Any:
    """A second Lightning logger beside ours: what the Trainer logged, call by call."""
    from lightning.pytorch.loggers.logger import Logger

    class Recording(Logger):
        name, version = "recording", 0

        def __init__(self) -> None:
            super().__init__()
            self.metrics: list[tuple[int, str, float]] = []
            self.statuses: list[str] = []

        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            self.metrics += [(step, name, value) for name, value in metrics.items()]

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass

        def finalize(self, status: str) -> None:
            self.statuses.append(status)

    return Recording()


def Live() -> Any:
    from lightning.pytorch.callbacks import Callback

    class Started(Callback):
        def __init__(self) -> None:
            self.started: list[bool] = []

        def on_train_start(self, trainer: Any, module: Any) -> None:
            self.started.append((Path(trainer.loggers[0].log_dir) / runs.JOURNAL).exists())

    return Started()


def fit(root: Path, out: Path, module: Any, epochs: int = 2) -> tuple[Any, Any]:
    pl = pytest.importorskip("lightning.pytorch")
    from runner.adapters.lightning import RunnerLogger

    dataset = tiny(root)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(dataset.train.x, dataset.train.y),
                                         batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0))
    test = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(dataset.test.x, dataset.test.y), batch_size=100)
    ours, recording = RunnerLogger("tiny-lightning", config={"data": "tiny"}, out=out, logger="null"), recording_logger()
    live = Live()  # the run has started (its dashboard shows it) when training starts
    trainer = pl.Trainer(max_epochs=epochs, logger=[ours, recording], log_every_n_steps=1, accelerator="cpu",
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[live])
    try:
        with ours:  # the run ends with the block (in a script it would end at the exit)
            trainer.fit(module, loader, test)
    finally:
        assert live.started == [True]
        assert ours.version == out.name and ours.log_dir == str(out) and ours.save_dir == str(out.parent)
        assert os.path.join(ours.save_dir, ours.name, ours.version) == str(out)  # where Lightning's callbacks write
    return ours, recording


def test_a_lightning_trainer_leaves_a_run_of_what_it_logged(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    ours, recording = fit(tiny_mnist, out, lightning_module())
    # every value at its step (one value a name a step: `epoch` comes with both the train and val calls)
    assert len(recording.metrics) > 48 and by_step(logged(out)) == by_step(recording.metrics)
    assert {name for _, name, _ in recording.metrics} == {"train/loss", "val/loss", "val/accuracy", "epoch"}
    assert [s for s, name, _ in recording.metrics if name == "train/loss"] == list(range(24))  # 12 steps an epoch
    spec = json.loads((out / runs.SPEC).read_text())
    assert spec == {"data": "tiny", "lr": 0.1, "width": 32, "activation": "ReLU"}  # a class by its name
    assert journal(out).named("start")[0]["info"]["spec"] == spec
    done = summary(out)
    assert done["status"] == "finished" and done["steps"] == 23 and "hyperparameters" not in done
    assert done["last"]["val/accuracy"] == [v for _, n, v in recording.metrics if n == "val/accuracy"][-1]
    assert ours.experiment is not None and ours.experiment.finished and ours.experiment.run_dir == out
    reported(out, {"train/loss", "val/loss", "val/accuracy"})


def test_an_exception_in_training_step_ends_the_run_failed(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="boom at step 3"):
        fit(tiny_mnist, out, lightning_module(fail_at=3))
    done = summary(out)
    assert done["status"] == "failed" and done["error"] == "RuntimeError: boom at step 3"
    assert [s for s, name, _ in logged(out) if name == "train/loss"] == [0, 1, 2]  # the steps before, kept
    assert not runs._held  # the directory let go


def test_the_logger_outside_a_trainer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("lightning.pytorch")
    from runner.adapters.lightning import RunnerLogger

    with RunnerLogger("by-hand", out=tmp_path / "run", logger="null") as logger:
        assert not (tmp_path / "run").exists()  # nothing until the run starts
        logger.experiment.summary["note"] = "started by its first use"  # the stand-in starts it
        logger.log_hyperparams({"lr": 0.5, "schedule": {"kind": "cosine"}, "bad": float("inf")})  # after the start
        logger.log_metrics({"loss": 1.5}, step=7)
        logger.finalize("success")  # as a `fit` ends: written, and open for a `test`
        assert logged(tmp_path / "run") == [(7, "loss", 1.5)] and not (tmp_path / "run" / runs.SUMMARY).exists()
        logger.log_metrics({"loss": 2.5}, step=8)
    logger.log_metrics({"loss": 9.0}, step=9)  # after the end: dropped, one warning
    logger.log_metrics({"loss": 9.0}, step=10)
    done = summary(tmp_path / "run")
    assert json.loads((tmp_path / "run" / runs.SPEC).read_text()) == {}
    assert done["hyperparameters"] == {"lr": 0.5, "schedule": {"kind": "cosine"}, "bad": "inf"}
    assert done["note"] == "started by its first use" and done["status"] == "finished"
    assert logged(tmp_path / "run") == [(7, "loss", 1.5), (8, "loss", 2.5)]
    assert capsys.readouterr().err.count("has ended") == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "../up"}, "name is '../up'"),
    ({"name": "ok", "config": {"f": object()}}, "cannot be written as JSON"),
    ({"name": "ok", "every": 0}, "every (0) must be"),
    ({"name": "ok", "logger": "printer"}, "unknown 'printer'"),
    ({"name": "ok", "loger": "null"}, "not loger"),
])
def test_what_cannot_make_a_run_is_refused_when_the_logger_is_made(tmp_path: Path, kwargs: dict, message: str) -> None:
    pytest.importorskip("lightning.pytorch")
    from runner.adapters.lightning import RunnerLogger

    with pytest.raises((UserError, TypeError)) as caught:
        RunnerLogger(**{"out": tmp_path / "run", **kwargs})
    assert message in str(caught.value) and not (tmp_path / "run").exists()


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from runner.adapters.lightning import RunnerLogger

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = RunnerLogger("other-rank", config={"lr": 0.1}, out=tmp_path / "run", logger="null")
    logger.log_hyperparams({"width": 8})
    logger.log_graph(nn.Linear(2, 2))
    logger.log_metrics({"loss": 1.0}, step=1)
    logger.experiment.log({"loss": 2.0}, step=2)  # Lightning's do-nothing stand-in
    logger.finalize("success")
    assert not (tmp_path / "run").exists() and logger._run is None
    monkeypatch.setattr(rank_zero_only, "rank", 0)  # the same calls on rank 0 do write
    with logger:  # the run ends with the block (a finalize("success") keeps it open for a test after fit)
        logger.log_metrics({"loss": 1.0}, step=1)
        logger.finalize("success")
    assert logged(tmp_path / "run") == [(1, "loss", 1.0)]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"


# ----- ignite -----

def test_an_ignite_engine_leaves_a_run_of_its_output_and_metrics(tiny_mnist: Path, tmp_path: Path) -> None:
    pytest.importorskip("ignite")
    from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
    from ignite.metrics import Accuracy, Loss

    from runner.adapters.ignite import attach

    dataset = tiny(tiny_mnist)
    model = mlp()
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy)
    evaluator = create_supervised_evaluator(model, metrics={"loss": Loss(F.cross_entropy), "accuracy": Accuracy()})
    losses, scores = [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED(every=3), lambda e: losses.append(
        (e.state.iteration, "train/loss", e.state.output)))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run(list(data.batches(dataset.test, 100))))
    evaluator.add_event_handler(Events.COMPLETED, lambda e: scores.extend(
        (trainer.state.iteration, f"test/{name}", value) for name, value in e.state.metrics.items()))
    out = tmp_path / "run"
    with track.run("tiny-ignite", config={"lr": 0.1}, out=out, logger="null") as run:
        attach(trainer, run, Events.ITERATION_COMPLETED(every=3), output_transform=lambda loss: {"loss": loss})
        attach(evaluator, run, Events.COMPLETED, tag="test",
               global_step_transform=lambda engine, event: trainer.state.iteration)
        trainer.run(list(data.batches(dataset.train, 50)), max_epochs=2)
    values = logged(out)
    assert [v for v in values if v[1] == "train/loss"] == losses and len(losses) == 8  # 24 iterations, every 3rd
    assert [v for v in values if v[1].startswith("test/")] == scores and [s for s, *_ in scores] == [12, 12, 24, 24]
    assert json.loads((out / runs.SPEC).read_text()) == {"lr": 0.1}
    assert summary(out)["status"] == "finished"
    reported(out, {"train/loss", "test/loss", "test/accuracy"})


def test_ignite_defaults_steps_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("ignite")
    from ignite.engine import Engine, Events

    from runner.adapters.ignite import attach

    outputs = {1: 0.5, 2: torch.tensor([0.25]), 3: (torch.ones(2), torch.zeros(2)), 4: {"a": 1.0, "b": {"c": 2}}}
    engine = Engine(lambda e, batch: outputs[e.state.iteration])
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: e.state.metrics.update(m=e.state.iteration * 10))
    out = tmp_path / "run"
    with pytest.raises(ZeroDivisionError):
        with track.run("defaults", out=out, logger="null") as run:
            attach(engine, run)  # the output where it is a number or dict, every metric, at the iteration
            attach(engine, run, Events.EPOCH_COMPLETED, tag="epoch", metric_names=["m", "missing"])
            handle = attach(engine, run, Events.ITERATION_COMPLETED, tag="removed")
            handle.remove()
            engine.run([0, 1], max_epochs=2)
            1 / 0
    assert by_step(logged(out)) == {(1, "train/output"): 0.5, (1, "train/m"): 10.0, (2, "train/output"): 0.25,
                                    (2, "train/m"): 20.0, (1, "epoch/m"): 20.0, (3, "train/m"): 30.0,
                                    (4, "train/a"): 1.0, (4, "train/b/c"): 2.0, (4, "train/m"): 40.0,
                                    (1, "epoch/output"): 0.25, (2, "epoch/m"): 40.0, (2, "epoch/a"): 1.0,
                                    (2, "epoch/b/c"): 2.0}  # the tuple of iteration 3 left out; epochs at the epoch
    assert summary(out)["status"] == "failed" and "not a number" not in capsys.readouterr().err


# ----- both -----

def test_the_frameworks_are_imported_by_the_adapters_only_and_named_when_missing() -> None:
    code = textwrap.dedent("""
        import sys
        from runner import track
        import runner.adapters
        print(sorted(m for m in ("lightning", "ignite", "pytorch_lightning") if m in sys.modules))
        for name in ("lightning", "ignite"):
            sys.modules[name] = None  # as if not installed
            try:
                __import__(f"runner.adapters.{name}")
            except ImportError as exc:
                print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, lightning, ignite = done.stdout.strip().splitlines()
    assert first == "[]"
    assert "runner.adapters.lightning needs Lightning" in lightning and "'.[test]'" in lightning
    assert "runner.adapters.ignite needs pytorch-ignite" in ignite and "'.[test]'" in ignite
