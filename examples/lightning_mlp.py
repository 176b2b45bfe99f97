"""The tutorial's 784-200-200-10 MLP on real MNIST as a LightningModule, its Trainer logging into a
tracked run through `runner.adapters.lightning.RunnerLogger`.

    python examples/lightning_mlp.py                       # live on the dashboard (`make visdom` first)
    python examples/lightning_mlp.py --epochs 1 --logger null

The module's hyperparameters (`save_hyperparameters`) become the run's spec.json; train/loss is
logged every `--log-every` steps, test/loss and test/accuracy once an epoch; how `fit` ended is the
run's status. Needs Lightning (`pip install -e '.[test]'`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere, installed or not

from runner import data  # noqa: E402
from runner.adapters.lightning import RunnerLogger  # noqa: E402
from runner.spec import DataSpec  # noqa: E402


class MLP(pl.LightningModule):
    """784-200-200-10 with ReLU, cross entropy on the logits, SGD."""

    def __init__(self, hidden: int = 200, lr: float = 0.01, batch_size: int = 200) -> None:
        super().__init__()
        self.save_hyperparameters()  # the run's spec.json
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("test/loss", F.cross_entropy(logits, y))  # averaged over the epoch's batches
        self.log("test/accuracy", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders(root: str, batch_size: int, limit: int | None = None) -> tuple[DataLoader, DataLoader]:
    """Train and test loaders over the whole normalised dataset in memory, a batch taken by one index
    operation (no per-sample transforms)."""
    dataset = data.load(DataSpec(root=root, train_limit=limit), torch.device("cpu"))
    train, test = TensorDataset(dataset.train.x, dataset.train.y), TensorDataset(dataset.test.x, dataset.test.y)
    shuffled = BatchSampler(RandomSampler(train, generator=torch.Generator().manual_seed(0)), batch_size, False)
    return (DataLoader(train, sampler=shuffled, batch_size=None),
            DataLoader(test, sampler=BatchSampler(SequentialSampler(test), 1000, False), batch_size=None))


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--logger", default="visdom", help="visdom (the live dashboard), tensorboard or null")
    parser.add_argument("--out", help="the run directory (default runs/lightning-mlp-<timestamp>)")
    parser.add_argument("--log-every", type=int, default=10, help="Lightning's log_every_n_steps")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    parser.add_argument("--data", default=str(ROOT / "data"), help="where `make data` put MNIST")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    pl.seed_everything(0, verbose=False)
    model = MLP(lr=args.lr)
    train, test = loaders(args.data, model.hparams.batch_size, args.limit)
    logger = RunnerLogger("lightning-mlp", logger=args.logger, out=args.out)
    trainer = pl.Trainer(max_epochs=args.epochs, logger=logger, log_every_n_steps=args.log_every,
                         enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, train, test)
    print(f"{logger.log_dir}: test accuracy {trainer.callback_metrics['test/accuracy']:.4f} after {args.epochs} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
