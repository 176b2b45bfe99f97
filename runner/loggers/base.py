"""The Logger protocol the training loop talks to, its do-nothing base, and the loggers that need no
backend: NullLogger (records calls, for tests) and FanOut (one event to several loggers).

The loop only ever calls these methods with plain numbers, lists and dicts, so every logger (and
the journal that records the calls) sees exactly the same events:

    start(info)                              once: run name, resolved spec, device, run dir, and
                                             `dataset`: {name, shape [C, H, W], classes [names]}
    images(pixels)                           once: the fixed test batch, uint8 [N][C][H][W]
    train_loss(epoch, steps, losses)         per chunk of steps (the loop syncs in chunks)
    metrics(epoch, step, values)             per chunk: other scalars by name, e.g. {"lr": 0.01}
    evaluation(epoch, step, test_loss, test_accuracy)      per epoch
    predictions(epoch, predicted, truth)     per epoch, for the fixed test batch (class indices)
    close(summary)                           once, always; summary is None when the run failed

and what the spec's `insight` section asks for (runner.insight computes it; old journals lack it):

    confusion(epoch, step, matrix)           per epoch: counts over the whole test set, matrix[true][predicted]
    mistakes(epoch, step, pixels, predicted, truth, confidence)
                                             per epoch: the most confident wrong predictions of the test set,
                                             uint8 [N][C][H][W], their classes and the probability the model
                                             gave its (wrong) prediction, most confident first
    layers(epoch, step, layers)              every `insight.every` steps, per weight tensor (named as in
                                             named_parameters): {name: {"shape": [...], "weight": Hist,
                                             "grad": Hist or None, "grad_norm": float or None}}, where
                                             Hist = {"min": float, "max": float, "counts": [int, ...]} over
                                             equal bins from min to max
    activations(epoch, step, layers)         per epoch, on the first test batch: {module name: {"kind": class
                                             name, "mean": float, "std": float, "zeros": fraction}}
    system(epoch, step, values)              every `insight.system` seconds: {"cpu_percent", "rss_mb", and on
                                             a GPU "device_allocated_mb", "device_reserved_mb", and
                                             "device_utilisation" where NVML answers}

and what a loop of one's own sends through the tracking API (runner.track), besides `metrics`
(any names; the part before a `/` groups them into one chart) with epoch 0:

    media(epoch, step, name, pixels)         named images at a step, uint8 [N][C][H][W]
    text(epoch, step, name, text)            a named text at a step

`BaseLogger` gives each method a do-nothing default, so a backend implements only what it shows
and a new event reaches every backend without touching them. Its `where()` is how a backend tells
the run where it shows it (the dashboard's address): the run records it in summary.json.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

Info = Mapping[str, Any]
Pixels = Sequence[Sequence[Sequence[Sequence[int]]]]  # uint8 [N][C][H][W]
Matrix = Sequence[Sequence[int]]
# The insight events after the loop's own: name -> its fields after (epoch, step), in order.
INSIGHT_EVENTS = {"confusion": ("matrix",), "mistakes": ("pixels", "predicted", "truth", "confidence"),
                  "layers": ("layers",), "activations": ("layers",), "system": ("values",)}
TRACKED_EVENTS = {"media": ("name", "pixels"), "text": ("name", "text")}  # the tracking API's own


@runtime_checkable
class Logger(Protocol):
    def start(self, info: Info) -> None: ...

    def images(self, pixels: Pixels) -> None: ...

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None: ...

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None: ...

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None: ...

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None: ...

    def confusion(self, epoch: int, step: int, matrix: Matrix) -> None: ...

    def mistakes(self, epoch: int, step: int, pixels: Pixels, predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None: ...

    def layers(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None: ...

    def activations(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None: ...

    def system(self, epoch: int, step: int, values: Mapping[str, float]) -> None: ...

    def media(self, epoch: int, step: int, name: str, pixels: Pixels) -> None: ...

    def text(self, epoch: int, step: int, name: str, text: str) -> None: ...

    def close(self, summary: Info | None) -> None: ...


class BaseLogger:
    """Every event a no-op by default, and context-manager behaviour: `close` runs once, even on errors."""

    _closed = False

    def __enter__(self) -> "BaseLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close(None)

    def start(self, info: Info) -> None:
        pass

    def images(self, pixels: Pixels) -> None:
        pass

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        pass

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        pass

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        pass

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        pass

    def confusion(self, epoch: int, step: int, matrix: Matrix) -> None:
        pass

    def mistakes(self, epoch: int, step: int, pixels: Pixels, predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None:
        pass

    def layers(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        pass

    def activations(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        pass

    def system(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        pass

    def media(self, epoch: int, step: int, name: str, pixels: Pixels) -> None:
        pass

    def text(self, epoch: int, step: int, name: str, text: str) -> None:
        pass

    def close(self, summary: Info | None) -> None:
        self._closed = True

    def where(self) -> dict[str, Any]:
        """Where this logger shows the run, for summary.json (e.g. {"visdom_env": ..., "visdom_url": ...})."""
        return {}


ClosingLogger = BaseLogger  # the name earlier loggers use


class NullLogger(BaseLogger):
    """Draws nothing; records every call as (method, kwargs) so tests can assert on them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def start(self, info: Info) -> None:
        self.calls.append(("start", {"info": dict(info)}))

    def images(self, pixels: Pixels) -> None:
        self.calls.append(("images", {"pixels": pixels}))

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        self.calls.append(("train_loss", {"epoch": epoch, "steps": list(steps), "losses": list(losses)}))

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self.calls.append(("metrics", {"epoch": epoch, "step": step, "values": dict(values)}))

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        self.calls.append(
            ("evaluation", {"epoch": epoch, "step": step, "test_loss": test_loss, "test_accuracy": test_accuracy})
        )

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        self.calls.append(("predictions", {"epoch": epoch, "predicted": list(predicted), "truth": list(truth)}))

    def confusion(self, epoch: int, step: int, matrix: Matrix) -> None:
        self.calls.append(("confusion", {"epoch": epoch, "step": step, "matrix": [list(r) for r in matrix]}))

    def mistakes(self, epoch: int, step: int, pixels: Pixels, predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None:
        self.calls.append(("mistakes", {"epoch": epoch, "step": step, "pixels": pixels, "predicted": list(predicted),
                                        "truth": list(truth), "confidence": list(confidence)}))

    def layers(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        self.calls.append(("layers", {"epoch": epoch, "step": step, "layers": dict(layers)}))

    def activations(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        self.calls.append(("activations", {"epoch": epoch, "step": step, "layers": dict(layers)}))

    def system(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self.calls.append(("system", {"epoch": epoch, "step": step, "values": dict(values)}))

    def media(self, epoch: int, step: int, name: str, pixels: Pixels) -> None:
        self.calls.append(("media", {"epoch": epoch, "step": step, "name": name, "pixels": pixels}))

    def text(self, epoch: int, step: int, name: str, text: str) -> None:
        self.calls.append(("text", {"epoch": epoch, "step": step, "name": name, "text": text}))

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        self.calls.append(("close", {"summary": None if summary is None else dict(summary)}))

    def named(self, method: str) -> list[dict[str, Any]]:
        """The kwargs of every call to `method`, in order."""
        return [kwargs for name, kwargs in self.calls if name == method]


class FanOut(BaseLogger):
    """Sends every event to several loggers, in order."""

    def __init__(self, *loggers: Logger) -> None:
        self.loggers = loggers

    def where(self) -> dict[str, Any]:
        return {k: v for logger in self.loggers if isinstance(logger, BaseLogger) for k, v in logger.where().items()}

    def start(self, info: Info) -> None:
        for logger in self.loggers:
            logger.start(info)

    def images(self, pixels: Pixels) -> None:
        for logger in self.loggers:
            logger.images(pixels)

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        for logger in self.loggers:
            logger.train_loss(epoch, steps, losses)

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        for logger in self.loggers:
            logger.metrics(epoch, step, values)

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        for logger in self.loggers:
            logger.evaluation(epoch, step, test_loss, test_accuracy)

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        for logger in self.loggers:
            logger.predictions(epoch, predicted, truth)

    def confusion(self, epoch: int, step: int, matrix: Matrix) -> None:
        for logger in self.loggers:
            logger.confusion(epoch, step, matrix)

    def mistakes(self, epoch: int, step: int, pixels: Pixels, predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None:
        for logger in self.loggers:
            logger.mistakes(epoch, step, pixels, predicted, truth, confidence)

    def layers(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.layers(epoch, step, layers)

    def activations(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.activations(epoch, step, layers)

    def system(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        for logger in self.loggers:
            logger.system(epoch, step, values)

    def media(self, epoch: int, step: int, name: str, pixels: Pixels) -> None:
        for logger in self.loggers:
            logger.media(epoch, step, name, pixels)

    def text(self, epoch: int, step: int, name: str, text: str) -> None:
        for logger in self.loggers:
            logger.text(epoch, step, name, text)

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        for logger in self.loggers:  # every logger gets its close, even if one fails
            try:
                logger.close(summary)
            except Exception as exc:  # noqa: BLE001 - a logger's failure must not hide the others
                print(f"warning: {type(logger).__name__} failed to close: {exc}", file=sys.stderr)


def logging_cost(loggers: Sequence[Logger], train_thread_seconds: float, train_seconds: float) -> dict[str, Any]:
    """summary.json's `logging`: the training thread's time in logger calls, and the senders' cost."""
    costs = [logger.cost() for logger in loggers if callable(getattr(logger, "cost", None))]
    return {"train_thread_seconds": round(train_thread_seconds, 4),
            "sender_cpu_seconds": round(sum(c.sender_cpu_seconds for c in costs), 4),
            "requests": sum(c.requests for c in costs), "bytes": sum(c.bytes for c in costs),
            "overhead": round(train_thread_seconds / train_seconds, 5) if train_seconds > 0 else 0.0}
