"""The Lightning logger and the ignite handler on the live dashboard: a real Visdom server holds the
run's env, its charts grouped by name, every value the framework logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dashboard_helpers import windows
from dashboards.visdom import server as servers
from runner import data, runs, track
from runner.spec import DataSpec


def traces(held: dict[str, Any], win: str) -> dict[str, tuple[list, list]]:
    return {t["name"]: (t["x"], t["y"]) for t in held[win]["content"]["data"]}


def batches(root: Path) -> torch.utils.data.DataLoader:
    """The tiny training set in order, 12 batches of 50 (Lightning reads a list as several loaders)."""
    train = data.load(DataSpec(root=str(root), verify=False), torch.device("cpu")).train
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train.x, train.y), batch_size=50)


def test_a_lightning_fit_and_an_ignite_run_are_live_on_the_dashboard(tiny_mnist: Path, tmp_path: Path,
                                                                     visdom_server: servers.Server,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    pytest.importorskip("ignite")
    from ignite.engine import Events, create_supervised_trainer

    from runner.adapters.ignite import attach
    from runner.adapters.lightning import RunnerLogger

    monkeypatch.setenv("VISDOM_PORT", str(visdom_server.port))
    torch.manual_seed(0)
    train = batches(tiny_mnist)

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            loss = F.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    lightning_dir = tmp_path / "lightning"
    with RunnerLogger("live-lightning", out=lightning_dir, logger="visdom") as logger:  # the run ends with the block
        pl.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, accelerator="cpu", enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False).fit(Classifier(), train)

    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy)
    ignite_dir = tmp_path / "ignite"
    with track.run("live-ignite", out=ignite_dir, logger="visdom") as run:
        attach(trainer, run, Events.ITERATION_COMPLETED, output_transform=lambda loss: {"loss": loss})
        trainer.run(train, max_epochs=1)

    for run_dir, steps in ((lightning_dir, list(range(12))), (ignite_dir, list(range(1, 13)))):
        summary = json.loads((run_dir / runs.SUMMARY).read_text())
        assert summary["status"] == "finished" and summary["visdom_url"].endswith(summary["visdom_env"])
        held = windows(visdom_server.port, summary["visdom_env"])
        xs, ys = traces(held, "metric_train")["loss"]
        logged = [m for m in _metrics(run_dir) if "train/loss" in m["values"]]
        assert xs == [m["step"] for m in logged] == steps
        assert ys == pytest.approx([m["values"]["train/loss"] for m in logged])
        assert "run" in held and "finished" in held["run"]["content"]


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / runs.JOURNAL).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "metrics"]
