"""An MLP autoencoder on real MNIST in a plain loop of one's own, watched with `runner.track`.

    python examples/autoencoder.py                          # live on the dashboard (`make visdom` first)
    python examples/autoencoder.py --steps 500 --logger null

Every step logs three scalars (train/loss, the binary cross entropy per image; train/l1, the mean
absolute pixel error; train/psnr); every `--every` steps the test set's loss and L1 and a grid of
eight test digits above their reconstructions. The run directory (runs/autoencoder-<timestamp>/ or
`--out`) is a run like the runner's: `python -m runner report RUN_DIR` makes its page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from anywhere, installed or not

from runner import data, track  # noqa: E402
from runner.spec import DataSpec  # noqa: E402


def pixels(root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's train and test images as [N, 784] floats in 0..1, read by the runner (sha256 checked)."""
    dataset = data.load(DataSpec(root=root), torch.device("cpu"))
    mean, std = dataset.info.mean[0], dataset.info.std[0]
    return (dataset.train.x * std + mean).flatten(1), (dataset.test.x * std + mean).flatten(1)


def autoencoder(width: int, code: int) -> nn.Module:
    """784 -> width -> code -> width -> 784; the last layer gives logits of the pixels."""
    return nn.Sequential(nn.Linear(784, width), nn.ReLU(), nn.Linear(width, code), nn.ReLU(),
                         nn.Linear(code, width), nn.ReLU(), nn.Linear(width, 784))


def batches(x: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled batches, epoch after epoch, for as long as they are asked for."""
    while True:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - batch_size + 1, batch_size):
            yield x[order[start:start + batch_size]]


def losses(logits: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Binary cross entropy summed over an image's pixels (mean over images), the mean absolute pixel
    error, and the PSNR in dB."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    error = torch.sigmoid(logits.detach()) - x
    return bce, error.abs().mean(), -10 * torch.log10(error.square().mean())


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    loss, l1, psnr = losses(model(x), x)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"train/loss": loss.detach(), "train/l1": l1, "train/psnr": psnr}  # tensors: the run reads them later


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    loss, l1, psnr = losses(model(x), x)
    return {"test/loss": loss.item(), "test/l1": l1.item(), "test/psnr": psnr.item()}


@torch.no_grad()
def reconstructions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The digits above their reconstructions, [2N, 1, 28, 28] in 0..1."""
    return torch.cat([x, torch.sigmoid(model(x))]).view(-1, 1, 28, 28)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    parser.add_argument("--logger", default="visdom", help="visdom (the live dashboard), tensorboard or null")
    parser.add_argument("--out", help="the run directory (default runs/autoencoder-<timestamp>)")
    parser.add_argument("--every", type=int, default=500, help="steps between test scores and reconstructions")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--code", type=int, default=32, help="width of the code in the middle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(ROOT / "data"), help="where `make data` put MNIST")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.manual_seed(args.seed)
    train_x, test_x = pixels(args.data)
    model = autoencoder(args.width, args.code)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    config = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "width", "code", "seed")}
    shown = test_x[:8]
    with track.run("autoencoder", config=config, logger=args.logger, out=args.out) as run:
        for step, x in zip(range(1, args.steps + 1), batches(train_x, args.batch_size,
                                                              torch.Generator().manual_seed(args.seed))):
            run.log(train_step(model, optimizer, x), step=step)
            if step % args.every == 0 or step == args.steps:
                scores = evaluate(model, test_x)
                run.log(scores, step=step)
                run.images("reconstructions", reconstructions(model, shown), step=step)
                run.summary["best_test_loss"] = min(scores["test/loss"], run.summary.get("best_test_loss", 1e9))
    print(f"{run.run_dir}: test loss {scores['test/loss']:.2f}, L1 {scores['test/l1']:.4f}, "
          f"PSNR {scores['test/psnr']:.1f} dB after {args.steps} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
