"""What the spec's `insight` section asks to see of a run beyond its loss, computed beside training
and sent as the Logger's insight events (runner.loggers.base):

- per class, at each evaluation, from the evaluation pass already made (no second pass over the test
  set): the confusion matrix over the whole test set and the most confident mistakes (`Classes`);
- inside the network: every `insight.every` steps, each weight tensor's histogram, its gradient's and
  the gradient's norm (`Layers`), and at each evaluation each layer's output statistics on the first
  test batch (`Activations`: forward hooks on that batch only);
- the machine: a background thread sampling CPU, memory and the GPU (runner.system).

Everything is computed on the device without reading it back (no host sync): histograms are built with
a scatter into BINS equal bins between the tensor's own minimum and maximum, and the numbers of a look
are stacked into one tensor that is read when the loop next reads its losses (`Layers.flush`, once per
`train.log_every` steps). Nothing here draws from a random generator or changes the model, so a run
with insight on is bitwise the run with it off.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from runner.loggers import Logger
from runner.spec import InsightSpec

BINS = 32  # of a weight or gradient histogram: enough for percentile bands, 66 numbers a tensor


def weight_tensors(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The tensors whose histograms are watched: every trainable parameter of two or more dimensions
    (weight matrices and kernels, not biases or norm scales), named as in named_parameters; all of
    them for a model that has none such."""
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    return [(name, p) for name, p in trainable if p.dim() >= 2] or trainable


def _histogram(t: torch.Tensor) -> torch.Tensor:
    """[min, max, count per bin...] of a tensor, on its device, without a host sync."""
    t = t.detach().reshape(-1).float()
    lo, hi = torch.aminmax(t)
    scale = BINS / (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)
    scaled = ((t - lo) * scale).nan_to_num_(0).clamp_(0, BINS - 1)  # in range before the cast: inf too
    if t.device.type == "cpu":  # bincount of int32 is the fastest there; on a GPU it reads its input's range back
        counts = torch.bincount(scaled.int(), minlength=BINS).float()
    else:  # int64 counts: float ones would stop counting at 2**24 in a bin
        index = scaled.long()
        counts = torch.zeros(BINS, dtype=torch.int64, device=t.device).index_add_(
            0, index, torch.ones((), dtype=torch.int64, device=t.device).expand_as(index)).float()
    return torch.cat([torch.stack([lo, hi]), counts])


def _decode(row: list[float]) -> dict[str, Any]:
    return {"min": row[0], "max": row[1], "counts": [round(c) for c in row[2:]]}


class Layers:
    """Every `every` steps, each weight tensor's and gradient's histogram and the gradient's norm."""

    def __init__(self, model: nn.Module, every: int) -> None:
        self.tensors, self.every = weight_tensors(model), every
        self.pending: list[tuple[int, int, torch.Tensor, torch.Tensor | None, list[bool]]] = []

    def look(self, epoch: int, step: int) -> None:
        if step % self.every or not self.tensors:
            return
        with torch.no_grad():
            weights = [p for _, p in self.tensors]
            has_grad = [p.grad is not None and not p.grad.is_sparse for p in weights]  # sparse: not drawn
            grads = [p.grad for p, present in zip(weights, has_grad) if present]
            rows = torch.stack([_histogram(t) for t in weights + grads])
            norms = torch.stack(torch._foreach_norm([g.float() for g in grads])) if grads else None
            self.pending.append((epoch, step, rows, norms, has_grad))

    def flush(self, logger: Logger) -> None:
        """The looks taken since the last flush, to the logger (one device-to-host copy each)."""
        for epoch, step, rows, norms, has_grad in self.pending:
            numbers = torch.cat([rows.flatten(), norms if norms is not None else rows.new_zeros(0)]).tolist()
            width, count = BINS + 2, len(rows)
            weights = [numbers[i * width:(i + 1) * width] for i in range(len(self.tensors))]
            grads = iter([numbers[i * width:(i + 1) * width] for i in range(len(self.tensors), count)])
            norm = iter(numbers[count * width:])
            layers = {}
            for (name, p), row, present in zip(self.tensors, weights, has_grad):
                layers[name] = {"shape": list(p.shape), "weight": _decode(row),
                                "grad": _decode(next(grads)) if present else None,
                                "grad_norm": next(norm) if present else None}
            logger.layers(epoch, step, layers)
        self.pending.clear()


def watched_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs `Activations` describes: leaf modules with parameters of their own
    (Linear, Conv2d, ...) and activation functions (ReLU, SELU, ...). Functions called inside a
    forward (F.relu) are not modules, so are not seen."""
    activation = nn.modules.activation
    return [(name or type(module).__name__, module) for name, module in model.named_modules()
            if not any(True for _ in module.children())
            and (any(True for _ in module.parameters(recurse=False)) or type(module).__module__ == activation.__name__)]


class Activations:
    """Each watched module's output on one batch: mean, standard deviation, fraction of exact zeros."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = watched_modules(model)
        self.stats: list[torch.Tensor] = []
        self.device = next((p.device for p in model.parameters()), torch.device("cpu"))

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self.stats = []
        handles = [module.register_forward_hook(self._hook) for _, module in self.modules]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.numel():
            o = output.detach().float()
            self.stats.append(torch.stack([o.mean(), o.std() if o.numel() > 1 else o.new_zeros(()),
                                           (o == 0).float().mean()]).to(self.device))
        else:  # a module whose output is not one tensor: a row of NaN keeps the names in step
            self.stats.append(torch.full((3,), float("nan"), device=self.device))

    def read(self) -> dict[str, dict[str, Any]]:
        if len(self.stats) != len(self.modules):  # a module called more or less than once: order unknown
            return {}
        rows = torch.stack(self.stats).tolist()
        return {name: {"kind": type(module).__name__, "mean": mean, "std": std, "zeros": zeros}
                for (name, module), (mean, std, zeros) in zip(self.modules, rows)}


class Classes:
    """The confusion matrix and the most confident mistakes, from an evaluation's predictions."""

    def __init__(self, classes: int, confusion: bool, mistakes: int) -> None:
        self.classes, self.confusion, self.mistakes = classes, confusion, mistakes

    def send(self, logger: Logger, epoch: int, step: int, truth: torch.Tensor, predicted: torch.Tensor,
             confidence: torch.Tensor | None, images: Any) -> None:
        """`images(indices)`: those test images as uint8 pixel lists."""
        c = self.classes
        if self.confusion:
            counts = torch.bincount(truth.long() * c + predicted.long(), minlength=c * c)[:c * c]
            logger.confusion(epoch, step, counts.view(c, c).tolist())
        if self.mistakes and confidence is not None:
            wrong = confidence.where(predicted != truth, torch.full_like(confidence, -1.0))
            values, indices = wrong.topk(min(self.mistakes, len(wrong)))
            keep = values >= 0
            values, indices = values[keep], indices[keep]
            logger.mistakes(epoch, step, images(indices), predicted[indices].tolist(), truth[indices].tolist(),
                            values.tolist())


class Insight:
    """The parts the spec turns on, for one run's model; `sampler` (runner.system), if any, is the
    machine's."""

    def __init__(self, spec: InsightSpec, model: nn.Module, classes: int, sampler: Any = None) -> None:
        self.layers = Layers(model, spec.every) if spec.layers else None
        self.activations = Activations(model) if spec.activations else None
        self.classes = Classes(classes, spec.classes, spec.mistakes) if spec.classes or spec.mistakes else None
        self.wants_confidence = bool(spec.mistakes)
        self.sampler = sampler
        self.sampled_at: int | None = None  # the step of the last system event

    def look(self, epoch: int, step: int) -> None:
        """After each training step (most of them: one modulo)."""
        if self.layers is not None and not step % self.layers.every:
            self.layers.look(epoch, step)

    def flush(self, logger: Logger, epoch: int, step: int) -> None:
        """Whenever the loop reads its losses: the looks since the last time, and the newest sample
        of the machine."""
        if self.layers is not None:
            self.layers.flush(logger)
        sample = self.sampler.take() if self.sampler is not None else None
        if sample:
            logger.system(epoch, step, sample)
            self.sampled_at = step

    @contextlib.contextmanager
    def around(self, logger: Logger, state: Any) -> Iterator["Insight"]:
        """Around the training loop: the machine's load at its start and at its end (`state`'s epoch and
        step then), whatever insight.system is; at the end only where no sample went at that step."""
        if self.sampler is not None:
            logger.system(state.epoch, state.step, self.sampler.now(start=True))
        try:
            yield self
        except BaseException:
            with contextlib.suppress(Exception):  # the loop's own error goes on, whatever the end's is
                self._end(logger, state)
            raise
        self._end(logger, state)

    def _end(self, logger: Logger, state: Any) -> None:
        if self.sampler is not None and self.sampled_at != state.step:
            epoch = state.epoch if state.batch else max(state.epoch - 1, 1)  # after an epoch: that epoch
            logger.system(epoch, state.step, self.sampler.now())
            self.sampled_at = state.step

    def first_batch(self) -> contextlib.AbstractContextManager[None]:
        """Around the evaluation's first forward pass."""
        return self.activations.watching() if self.activations is not None else contextlib.nullcontext()

    def evaluated(self, logger: Logger, epoch: int, step: int, truth: torch.Tensor, predicted: torch.Tensor,
                  confidence: torch.Tensor | None, images: Any) -> None:
        """After an evaluation: its per-class events and the activations of its first batch."""
        if self.classes is not None:
            self.classes.send(logger, epoch, step, truth, predicted, confidence, images)
        if self.activations is not None:
            stats = self.activations.read()
            if stats:
                logger.activations(epoch, step, stats)


NOTHING = InsightSpec(classes=False, mistakes=0, layers=False, activations=False, system=0)
