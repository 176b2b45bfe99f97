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

`EVENTS` is the one table of these events and their fields; `BaseLogger` gives each method a
do-nothing default, so a backend implements only what it shows and a new event reaches every
backend without touching them, and the plumbing that only carries events (NullLogger, FanOut, the
journal, the Ray relay) is written once over the table (`each_event`), not once per event. Its `where()` is how a backend tells
the run where it shows it (the dashboard's address): the run records it in summary.json.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

Info = Mapping[str, Any]
Pixels = Sequence[Sequence[Sequence[Sequence[int]]]]  # uint8 [N][C][H][W]
Matrix = Sequence[Sequence[int]]
# The insight events after the loop's own: name -> its fields after (epoch, step), in order.
INSIGHT_EVENTS = {"confusion": ("matrix",), "mistakes": ("pixels", "predicted", "truth", "confidence"),
                  "layers": ("layers",), "activations": ("layers",), "system": ("values",)}
TRACKED_EVENTS = {"media": ("name", "pixels"), "text": ("name", "text")}  # the tracking API's own
# Every event, in the order a run sends them: name -> the fields its method takes, in order. The
# plumbing (NullLogger, FanOut, the journal, the Ray trials' Link) is generic over this table
# (`each_event`), so a new event is one entry here plus the backends that draw it.
EVENTS: dict[str, tuple[str, ...]] = {
    "start": ("info",), "images": ("pixels",), "train_loss": ("epoch", "steps", "losses"),
    "metrics": ("epoch", "step", "values"), "evaluation": ("epoch", "step", "test_loss", "test_accuracy"),
    "predictions": ("epoch", "predicted", "truth"),
    **{name: ("epoch", "step", *fields) for name, fields in {**INSIGHT_EVENTS, **TRACKED_EVENTS}.items()},
    "close": ("summary",),
}


def each_event(handle: str) -> Callable[[type], type]:
    """A class decorator: each event of EVENTS the class does not define itself becomes a method that
    calls `self.<handle>(name, args)`, the call's arguments in the table's order (keywords too)."""
    def decorate(cls: type) -> type:
        for name, fields in EVENTS.items():
            if name not in cls.__dict__:
                setattr(cls, name, _forward(name, fields, handle))
        return cls

    return decorate


def _forward(name: str, fields: tuple[str, ...], handle: str) -> Callable[..., None]:
    def event(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            try:
                args = (*args, *(kwargs.pop(f) for f in fields[len(args):]))
            except KeyError as exc:
                raise TypeError(f"{name}() lacks its argument {exc}") from None
        if len(args) != len(fields) or kwargs:
            raise TypeError(f"{name}() takes {', '.join(fields)}; got {len(args)} arguments"
                            + (f" and {', '.join(kwargs)}" if kwargs else ""))
        getattr(self, handle)(name, args)

    event.__name__ = event.__qualname__ = name
    event.__doc__ = f"The {name} event ({', '.join(fields)}), as every event of EVENTS."
    return event


def plain(value: Any) -> Any:
    """A field's value as the plumbing keeps it: a mapping as a dict, a sequence (not text) as a list,
    one level deep (what it holds is the loop's plain numbers already)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return list(value)
    return value


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


@each_event("_record")
class NullLogger(BaseLogger):
    """Draws nothing; records every call as (method, kwargs) so tests can assert on them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        self.calls.append((name, {field: plain(value) for field, value in zip(EVENTS[name], args)}))

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        self._record("close", (summary,))

    def named(self, method: str) -> list[dict[str, Any]]:
        """The kwargs of every call to `method`, in order."""
        return [kwargs for name, kwargs in self.calls if name == method]


@each_event("_fan")
class FanOut(BaseLogger):
    """Sends every event to several loggers, in order."""

    def __init__(self, *loggers: Logger) -> None:
        self.loggers = loggers

    def where(self) -> dict[str, Any]:
        return {k: v for logger in self.loggers if isinstance(logger, BaseLogger) for k, v in logger.where().items()}

    def _fan(self, name: str, args: tuple[Any, ...]) -> None:
        for logger in self.loggers:
            getattr(logger, name)(*args)

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
