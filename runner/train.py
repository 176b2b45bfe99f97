"""Training and evaluation: pure torch, talking to the world only through the Logger protocol.

One function per phase, as in pytorch/examples' mnist: `train_one_epoch`, `evaluate`, `fit`.
`fit` can stop cleanly between two steps (`should_stop`), hands its whole state to a `checkpoint`
callback at each epoch end and at such a stop, and continues bitwise-identically from that state.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from runner import data, models, steps, system
from runner.errors import UserError
from runner.insight import NOTHING, Insight
from runner.loggers import Logger
from runner.spec import Experiment, OptimSpec, TrainSpec

LossFn = steps.LossFn


class DeviceError(UserError):
    """The spec asks for a device this machine does not have."""


class Stopped(Exception):
    """Training stopped between two steps because `should_stop` said so; state was checkpointed."""

    def __init__(self, reason: str, step: int) -> None:
        super().__init__(f"stopped by {reason} after step {step}")
        self.reason, self.step = reason, step
        self.run_dir: object = None  # set by whoever knows where the checkpoint went


class Diverged(Exception):
    """A training loss became NaN or infinite; the message names the step and the likely cause."""


@dataclass
class State:
    """Everything needed to continue a run exactly where it stopped."""

    epoch: int = 1  # the epoch in progress
    batch: int = 0  # batches of it already done
    step: int = 0  # global steps done
    epoch_rng: torch.Tensor | None = None  # batch-order generator state at the start of `epoch`
    loss_sum: float = 0.0  # this epoch's train losses so far, for its mean
    loss_count: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def pick_device(spec: TrainSpec) -> torch.device:
    """auto: cuda, then mps, then cpu; anything else must exist here, and suit the spec."""
    device = _device(spec.device)
    if spec.cuda_graphs and device.type != "cuda":
        raise DeviceError(f"train.cuda_graphs needs a CUDA device, and this run is on {device}; "
                          "set it to false or train.device to cuda.")
    return device


def _device(name: str) -> torch.device:
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


def loss_function(kind: str, classes: int) -> LossFn:
    """loss(logits, targets, reduction="mean"|"sum") for a spec's `loss`."""
    if kind == "cross_entropy":  # softmax + log + NLL, on the logits
        return F.cross_entropy

    def mse(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        # Probabilities regressed onto one-hot targets: the tutorial's "regression" reading.
        onehot = F.one_hot(targets, classes).to(logits.dtype)
        per_sample = (logits.softmax(dim=1) - onehot).pow(2).mean(dim=1)
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    return mse


def make_optimizer(spec: OptimSpec, parameters: Any, capturable: bool = False) -> torch.optim.Optimizer:
    if spec.name in ("adam", "adamw"):  # capturable: its step count lives on the device, as a CUDA graph needs
        kind = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
        return kind(parameters, lr=spec.lr, weight_decay=spec.weight_decay, capturable=capturable)
    return torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                           weight_decay=spec.weight_decay)


Schedule = torch.optim.lr_scheduler.LRScheduler


def make_schedule(spec: OptimSpec, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                  epochs: int) -> Schedule | None:
    """The learning-rate schedule, stepped once per training step; None when the rate is constant."""
    from torch.optim import lr_scheduler as s

    total = steps_per_epoch * epochs
    warm = min(round(spec.warmup_epochs * steps_per_epoch), total - 1)
    if spec.schedule == "onecycle":  # its own warm-up; momentum left as the spec sets it
        return s.OneCycleLR(optimizer, max_lr=spec.lr, total_steps=total, pct_start=warm / total if warm else 0.3,
                            cycle_momentum=False)
    if spec.schedule == "none" and not warm:
        return None
    main: Schedule = {
        "none": lambda: s.LambdaLR(optimizer, lambda _: 1.0),
        "step": lambda: s.StepLR(optimizer, step_size=spec.step_epochs * steps_per_epoch, gamma=spec.gamma),
        "cosine": lambda: s.CosineAnnealingLR(optimizer, T_max=max(total - warm, 1)),
    }[spec.schedule]()
    if not warm:
        return main
    ramp = s.LinearLR(optimizer, start_factor=0.01, total_iters=warm)
    return s.SequentialLR(optimizer, [ramp, main], milestones=[warm])


def train_one_epoch(step: steps.Step, split: data.Split, batch_size: int, generator: torch.Generator, state: State,
                    log_every: int, logger: Logger, should_stop: Callable[[], str | None] = lambda: None,
                    lr_hint: str = "", optimizer: torch.optim.Optimizer | None = None,
                    schedule: Schedule | None = None, insight: Insight | None = None) -> str | None:
    """Steps over `split` from `state.batch` on, updating `state`; returns why it stopped early, if it did.

    The schedule, if any, moves the learning rate after every step; the rate each chunk's last step
    used goes to the logger as the metric `lr`. `insight` looks at the model after every step and
    sends what it saw with each chunk.
    """
    pending: list[torch.Tensor] = []  # losses still on the device: no host sync per step
    lr = optimizer.param_groups[0]["lr"] if optimizer is not None else None

    def flush() -> None:
        losses = torch.stack(pending).tolist()  # one device-to-host copy per chunk
        pending.clear()
        logger.train_loss(state.epoch, list(range(state.step - len(losses) + 1, state.step + 1)), losses)
        if lr is not None:
            logger.metrics(state.epoch, state.step, {"lr": float(lr)})
        if insight is not None:
            insight.flush(logger, state.epoch, state.step)
        bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
        if bad is not None:
            step = state.step - len(losses) + 1 + bad
            raise Diverged(f"the training loss became {losses[bad]} at step {step} (epoch {state.epoch}); "
                           f"the run stopped there. The usual cause is a learning rate too high for this model"
                           f"{lr_hint}: try one ten times smaller. Everything up to that step is in the journal.")
        state.loss_sum += sum(losses)
        state.loss_count += len(losses)

    # Resuming mid-epoch: the same order, from the first batch not yet done.
    for x, y in data.batches(split, batch_size, generator, skip=state.batch):
        pending.append(step(x, y))
        if schedule is not None:
            lr = optimizer.param_groups[0]["lr"]  # type: ignore[union-attr]
            schedule.step()
        state.step += 1
        state.batch += 1
        if insight is not None:
            insight.look(state.epoch, state.step)
        if len(pending) == log_every:
            flush()
        reason = should_stop()
        if reason:
            if pending:
                flush()
            return reason
    if pending:
        flush()
    return None


def evaluate(model: nn.Module, loss_fn: LossFn, split: data.Split, batch_size: int,
             insight: Insight | None = None) -> tuple[float, float, torch.Tensor, torch.Tensor | None]:
    """(mean loss per sample, accuracy, predictions, their probabilities) over the whole split, in
    order; the probabilities only when `insight` wants them (else None), and its activations are
    those of the first batch."""
    insight = insight or Insight(NOTHING, model, 0)
    model.eval()
    total = torch.zeros((), device=split.x.device)
    predictions, confidences = [], []
    with torch.inference_mode():
        for i, (x, y) in enumerate(data.batches(split, batch_size)):
            with insight.first_batch() if i == 0 else contextlib.nullcontext():
                logits = model(x)
            total += loss_fn(logits, y, reduction="sum")
            if insight.wants_confidence:  # the probability of the prediction: exp(max logit - logsumexp)
                top, predicted = logits.float().max(dim=1)
                predictions.append(predicted)
                confidences.append(top - logits.float().logsumexp(dim=1))
            else:
                predictions.append(logits.argmax(dim=1))
    predicted = torch.cat(predictions)
    correct = (predicted == split.y).sum()
    model.train()
    return total.item() / len(split), correct.item() / len(split), predicted, \
        torch.cat(confidences).exp() if confidences else None


def _what(spec: Experiment) -> str:
    """How a message names the model: a person's own by its target."""
    model = spec.model
    return f"model.target {model.target!r}" if model.kind == "python" else f"the {model.kind} model"  # type: ignore[union-attr]


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so wall-clock timings mean what they say."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


Built = tuple[nn.Module, torch.Tensor]  # a model fresh from its init, and the global RNG state after it


def build_model(spec: Experiment, dataset: data.Dataset) -> Built:
    """The spec's model sized for the dataset, initialised from the spec's seed and checked on one batch.

    Raises models.ModelError for a model that cannot be built or does not map the images to one logit
    per class; call it before anything is written, so such a spec changes nothing on disk.
    """
    torch.manual_seed(spec.seed)
    model = models.build(spec.model, dataset.info)
    rng = torch.get_rng_state()  # what training draws from next (dropout), as if nothing came between
    models.check_logits(model, dataset.train.x[:spec.data.batch_size].cpu(), dataset.info, _what(spec))
    return model, rng


def fit(spec: Experiment, dataset: data.Dataset, device: torch.device, logger: Logger, *,
        resume: dict[str, Any] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] = lambda _: None,
        should_stop: Callable[[], str | None] = lambda: None, built: Built | None = None,
        go_on: Callable[[dict[str, Any]], bool] = lambda _: True) -> tuple[nn.Module, dict[str, Any]]:
    """Train and evaluate as the spec says; returns the model and the run's results.

    `resume` is a dict that `checkpoint` was given earlier; `built` what build_model returned (made
    here if not given). After each epoch's checkpoint `go_on` gets that epoch's results (epoch,
    train_loss, test_loss, test_accuracy, train_seconds); when it says no, training ends there and
    the results say `stopped_early` (a search's scheduler gave up on the run). Raises Stopped (after
    checkpointing) when `should_stop` returns a reason, Diverged when a loss is not finite.
    """
    model, rng = built or build_model(spec, dataset)
    torch.set_rng_state(rng)
    generator = torch.Generator().manual_seed(spec.seed)
    info = dataset.info
    model, dataset, optimizer, schedule, state = _prepare(spec, model, dataset, device, resume)
    loss_fn = loss_function(spec.loss, len(info.classes))
    step = steps.make(model, optimizer, loss_fn, device, compile=spec.train.compile,
                      cuda_graphs=spec.train.cuda_graphs, batch_size=spec.data.batch_size)
    shown = min(spec.train.samples, len(dataset.test))
    if resume is None:
        logger.images(data.denormalise(dataset.test.x[:shown], info).tolist())
    truth = dataset.test.y[:shown].tolist()

    def save() -> None:
        checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": None if schedule is None else schedule.state_dict(),
                    "torch_rng": torch.get_rng_state(), "state": vars(state).copy()})

    lr_hint = f" (optim.lr is {spec.optim.lr})"
    with system.sampler(spec.insight.system, device) as sampler, \
            Insight(spec.insight, model, len(info.classes), sampler).around(logger, state) as insight:
        while state.epoch <= spec.train.epochs:
            if state.epoch_rng is None:
                state.epoch_rng = generator.get_state()
            generator.set_state(state.epoch_rng)
            _sync(device)
            started = time.perf_counter()
            try:
                model.train()
                reason = train_one_epoch(step, dataset.train, spec.data.batch_size, generator, state,
                                         spec.train.log_every, logger, should_stop, lr_hint, optimizer, schedule,
                                         insight)
            finally:
                _sync(device)
                state.train_seconds += time.perf_counter() - started
            if reason:
                save()
                raise Stopped(reason, state.step)
            _evaluate_epoch(model, loss_fn, dataset, spec.data.test_batch_size, state, logger, truth, insight)
            state.epoch, state.batch, state.loss_sum, state.loss_count = state.epoch + 1, 0, 0.0, 0
            state.epoch_rng = generator.get_state()  # where the next epoch's batch order starts
            save()
            if state.epoch <= spec.train.epochs and not go_on({**state.history[-1], "step": state.step,
                                                              "train_seconds": state.train_seconds}):
                break

    return model, {**_results(state, len(dataset.train), spec.train.epochs), "peaks": system.peaks(device, sampler)}


def _evaluate_epoch(model: nn.Module, loss_fn: LossFn, dataset: data.Dataset, batch_size: int, state: State,
                    logger: Logger, truth: list[int], insight: Insight) -> None:
    """The epoch's evaluation: timed, in the history, and to the logger with the fixed batch's
    predictions, then what `insight` makes of the same pass."""
    started = time.perf_counter()
    test = dataset.test
    test_loss, accuracy, predicted, confidence = evaluate(model, loss_fn, test, batch_size, insight)
    state.history.append({"epoch": state.epoch, "train_loss": state.loss_sum / max(state.loss_count, 1),
                          "test_loss": test_loss, "test_accuracy": accuracy})
    logger.evaluation(state.epoch, state.step, test_loss, accuracy)
    logger.predictions(state.epoch, predicted[:len(truth)].tolist(), truth)
    insight.evaluated(logger, state.epoch, state.step, test.y, predicted, confidence,
                      lambda indices: data.denormalise(test.x[indices], dataset.info).tolist())
    state.eval_seconds += time.perf_counter() - started


def _prepare(spec: Experiment, model: nn.Module, dataset: data.Dataset, device: torch.device,
             resume: dict[str, Any] | None) -> tuple[nn.Module, data.Dataset, torch.optim.Optimizer, Any, State]:
    """The model on the device (channels-last if asked, the data too), its optimizer and schedule, and
    the position: fresh, or all of it as the checkpoint `resume` left it."""
    memory_format = torch.channels_last if spec.train.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    if spec.train.channels_last:
        dataset = data.Dataset(*(data.Split(s.x.contiguous(memory_format=memory_format), s.y)
                                 for s in (dataset.train, dataset.test)), dataset.info)
    optimizer = make_optimizer(spec.optim, model.parameters(), capturable=spec.train.cuda_graphs)
    steps_per_epoch = -(-len(dataset.train) // spec.data.batch_size)
    schedule = make_schedule(spec.optim, optimizer, steps_per_epoch, spec.train.epochs)
    state = State()
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if schedule is not None:
            schedule.load_state_dict(resume["schedule"])
        torch.set_rng_state(resume["torch_rng"])
        state = State(**resume["state"])
    return model, dataset, optimizer, schedule, state


def _results(state: State, train_size: int, epochs: int) -> dict[str, Any]:
    """What a run that trained to its end (or was stopped early) reports."""
    last = state.history[-1]
    return {
        "test_accuracy": last["test_accuracy"],
        "test_loss": last["test_loss"],
        "best_test_accuracy": max(h["test_accuracy"] for h in state.history),
        "train_loss": last["train_loss"],
        "epochs": len(state.history),
        "steps": state.step,
        "train_seconds": state.train_seconds,
        "eval_seconds": state.eval_seconds,
        "samples_per_second": len(state.history) * train_size / state.train_seconds,
        "history": state.history,
        **({"stopped_early": len(state.history)} if len(state.history) < epochs else {}),
    }
