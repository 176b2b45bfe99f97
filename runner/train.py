"""Training and evaluation: pure torch, talking to the world only through the Logger protocol.

One function per phase, as in pytorch/examples' mnist: `train_one_epoch`, `evaluate`, `fit`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from runner import data, models
from runner.loggers import Logger
from runner.spec import Experiment, OptimSpec

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DeviceError(Exception):
    """The spec asks for a device this machine does not have."""


def pick_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu; anything else must exist here."""
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise DeviceError(f"train.device is {name!r} but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s); use auto or cpu.")
    if device.type == "mps" and not has_mps:
        raise DeviceError(f"train.device is {name!r} but MPS is not available here; use auto or cpu.")
    return device


def loss_function(kind: str) -> Callable[..., torch.Tensor]:
    """loss(logits, targets, reduction) for a spec's `loss`."""
    if kind == "cross_entropy":  # softmax + log + NLL, on the logits
        return F.cross_entropy

    def mse(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        # Probabilities regressed onto one-hot targets: the tutorial's "regression" reading.
        onehot = F.one_hot(targets, models.CLASSES).to(logits.dtype)
        per_sample = (logits.softmax(dim=1) - onehot).pow(2).mean(dim=1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    return mse


def make_optimizer(spec: OptimSpec, parameters: Any) -> torch.optim.Optimizer:
    if spec.name == "adam":
        return torch.optim.Adam(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, split: data.Split,
                    batch_size: int, generator: torch.Generator, epoch: int, first_step: int, log_every: int,
                    logger: Logger) -> tuple[int, float]:
    """One pass over `split`; returns (last global step, mean train loss)."""
    model.train()
    pending: list[torch.Tensor] = []  # losses still on the device: no host sync per step
    step, total, count = first_step, 0.0, 0

    def flush() -> None:
        nonlocal total, count
        losses = torch.stack(pending).tolist()  # one device-to-host copy per chunk
        logger.train_loss(epoch, list(range(step - len(losses) + 1, step + 1)), losses)
        total, count = total + sum(losses), count + len(losses)
        pending.clear()

    for x, y in data.batches(split, batch_size, generator):
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        pending.append(loss.detach())
        if len(pending) == log_every:
            flush()
    if pending:
        flush()
    return step, total / max(count, 1)


def evaluate(model: nn.Module, loss_fn: Callable[..., torch.Tensor], split: data.Split,
             batch_size: int) -> tuple[float, float, torch.Tensor]:
    """(mean loss per sample, accuracy, predictions) over the whole split, in order."""
    model.eval()
    total = torch.zeros((), device=split.x.device)
    predictions = []
    with torch.inference_mode():
        for x, y in data.batches(split, batch_size):
            logits = model(x)
            total += loss_fn(logits, y, reduction="sum")
            predictions.append(logits.argmax(dim=1))
    predicted = torch.cat(predictions)
    correct = (predicted == split.y).sum()
    model.train()
    return total.item() / len(split), correct.item() / len(split), predicted


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit(spec: Experiment, dataset: data.Dataset, device: torch.device, logger: Logger) -> tuple[
        nn.Module, dict[str, Any]]:
    """Train and evaluate as the spec says; returns the model and the run's results."""
    torch.manual_seed(spec.seed)
    generator = torch.Generator().manual_seed(spec.seed)
    model = models.build(spec.model).to(device)
    optimizer = make_optimizer(spec.optim, model.parameters())
    loss_fn = loss_function(spec.loss)
    shown = min(spec.train.samples, len(dataset.test))
    logger.images(data.denormalise(dataset.test.x[:shown]).tolist())
    truth = dataset.test.y[:shown].tolist()

    step, train_seconds, eval_seconds, history = 0, 0.0, 0.0, []
    for epoch in range(1, spec.train.epochs + 1):
        _sync(device)
        started = time.perf_counter()
        step, train_loss = train_one_epoch(model, optimizer, loss_fn, dataset.train, spec.data.batch_size,
                                           generator, epoch, step, spec.train.log_every, logger)
        _sync(device)
        train_seconds += time.perf_counter() - started
        started = time.perf_counter()
        test_loss, accuracy, predicted = evaluate(model, loss_fn, dataset.test, spec.data.test_batch_size)
        eval_seconds += time.perf_counter() - started
        history.append({"epoch": epoch, "train_loss": train_loss, "test_loss": test_loss, "test_accuracy": accuracy})
        logger.evaluation(epoch, step, test_loss, accuracy)
        logger.predictions(epoch, predicted[:shown].tolist(), truth)

    last = history[-1]
    return model, {
        "test_accuracy": last["test_accuracy"],
        "test_loss": last["test_loss"],
        "best_test_accuracy": max(h["test_accuracy"] for h in history),
        "train_loss": last["train_loss"],
        "epochs": spec.train.epochs,
        "steps": step,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "samples_per_second": spec.train.epochs * len(dataset.train) / train_seconds if train_seconds else None,
        "history": history,
    }
