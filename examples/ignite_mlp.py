"""The tutorial's 784-200-200-10 MLP on real MNIST trained by ignite's engines, logged into a tracked
run with `runner.adapters.ignite.attach`.

    python examples/ignite_mlp.py                          # live on the dashboard (`make visdom` first)
    python examples/ignite_mlp.py --epochs 1 --logger null

train/loss every `--log-every` iterations; test/loss and test/accuracy (ignite's metrics) after each
epoch, at the trainer's iteration so both charts share one axis. Needs pytorch-ignite
(`pip install -e '.[test]'`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy, Loss
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere, installed or not

from runner import data, track  # noqa: E402
from runner.adapters.ignite import attach  # noqa: E402
from runner.spec import DataSpec  # noqa: E402


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


class Shuffled:
    """A split's mini-batches, reshuffled each time ignite starts an epoch (taken by index from the
    tensors in memory: no per-sample transforms)."""

    def __init__(self, split: data.Split, batch_size: int, seed: int) -> None:
        self.split, self.batch_size, self.generator = split, batch_size, torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return data.batches(self.split, self.batch_size, self.generator)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--logger", default="visdom", help="visdom (the live dashboard), tensorboard or null")
    parser.add_argument("--out", help="the run directory (default runs/ignite-mlp-<timestamp>)")
    parser.add_argument("--log-every", type=int, default=10, help="iterations between train/loss points")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--limit", type=int, help="train on the first N images only")
    parser.add_argument("--data", default=str(ROOT / "data"), help="where `make data` put MNIST")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.manual_seed(0)
    dataset = data.load(DataSpec(root=args.data, train_limit=args.limit), torch.device("cpu"))
    model = mlp(200)
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=args.lr), F.cross_entropy)
    evaluator = create_supervised_evaluator(model, metrics={"loss": Loss(F.cross_entropy), "accuracy": Accuracy()})
    config = {"hidden": 200, "lr": args.lr, "batch_size": 200, "epochs": args.epochs}
    with track.run("ignite-mlp", config=config, logger=args.logger, out=args.out) as run:
        attach(trainer, run, Events.ITERATION_COMPLETED(every=args.log_every),
               output_transform=lambda loss: {"loss": loss})
        attach(evaluator, run, Events.COMPLETED, tag="test",
               global_step_transform=lambda engine, event: trainer.state.iteration)

        @trainer.on(Events.EPOCH_COMPLETED)
        def test(engine: Engine) -> None:
            evaluator.run(list(data.batches(dataset.test, 1000)))

        trainer.run(Shuffled(dataset.train, 200, seed=0), max_epochs=args.epochs)
    print(f"{run.run_dir}: test accuracy {evaluator.state.metrics['accuracy']:.4f} after {args.epochs} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
