"""The Logger protocol the training loop talks to, and the loggers that need no dashboard.

The loop only ever calls these seven methods with plain numbers, lists and dicts, so every
logger (and the journal that records the calls) sees exactly the same events:

    start(info)                              once: run name, resolved spec, device, run dir, and
                                             `dataset`: {name, shape [C, H, W], classes [names]}
    images(pixels)                           once: the fixed test batch, uint8 [N][C][H][W]
    train_loss(epoch, steps, losses)         per chunk of steps (the loop syncs in chunks)
    metrics(epoch, step, values)             per chunk: other scalars by name, e.g. {"lr": 0.01}
    evaluation(epoch, step, test_loss, test_accuracy)      per epoch
    predictions(epoch, predicted, truth)     per epoch, for the fixed test batch (class indices)
    close(summary)                           once, always; summary is None when the run failed

`BaseLogger` gives each method a do-nothing default, so a backend implements only what it shows
and a new event reaches every backend without touching them. `JsonlLogger` writes the events one
JSON line each (one line per train step), so a journal can be replayed into any logger later.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

Info = Mapping[str, Any]
Pixels = Sequence[Sequence[Sequence[Sequence[int]]]]  # uint8 [N][C][H][W]


@runtime_checkable
class Logger(Protocol):
    def start(self, info: Info) -> None: ...

    def images(self, pixels: Pixels) -> None: ...

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None: ...

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None: ...

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None: ...

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None: ...

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

    def close(self, summary: Info | None) -> None:
        self._closed = True


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

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        for logger in self.loggers:  # every logger gets its close, even if one fails
            try:
                logger.close(summary)
            except Exception as exc:  # noqa: BLE001 - a logger's failure must not hide the others
                print(f"warning: {type(logger).__name__} failed to close: {exc}", file=sys.stderr)


class JsonlLogger(BaseLogger):
    """The run's journal: one JSON object per line, one line per train step; replayable.

    Each event is one write(2) of whole lines to an unbuffered descriptor, so a process killed at any
    moment (even by a second Ctrl-C) leaves only whole lines behind. `keep` bytes of an existing
    journal are kept (a resumed run continues it); anything after them is cut.
    """

    def __init__(self, path: Path, keep: int = 0) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, keep)
        self.position = os.lseek(self._fd, keep, os.SEEK_SET)
        self._t0 = time.monotonic()

    def _write(self, records: list[dict[str, Any]]) -> None:
        t = round(time.monotonic() - self._t0, 4)
        blob = "".join(json.dumps({**r, "t": t}) + "\n" for r in records).encode()
        self.position += os.write(self._fd, blob)

    def start(self, info: Info) -> None:
        self._write([{"event": "start", "info": dict(info)}])

    def images(self, pixels: Pixels) -> None:
        self._write([{"event": "images", "pixels": pixels}])

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        self._write([{"event": "train_loss", "epoch": epoch, "step": s, "loss": v} for s, v in zip(steps, losses)])

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        self._write([{"event": "metrics", "epoch": epoch, "step": step, "values": dict(values)}])

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        self._write([{"event": "evaluation", "epoch": epoch, "step": step, "test_loss": test_loss,
                      "test_accuracy": test_accuracy}])

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        self._write([{"event": "predictions", "epoch": epoch, "predicted": list(predicted), "truth": list(truth)}])

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        if self._fd >= 0:
            self._write([{"event": "close", "summary": None if summary is None else dict(summary)}])
            os.close(self._fd)
            self._fd = -1


class JournalError(Exception):
    """A journal line that is not an event of this runner; the message names the line."""


EVENTS = {"start", "images", "train_loss", "metrics", "evaluation", "predictions", "close"}


def replay(path: Path, logger: Logger, limit: int | None = None) -> int:
    """Feed a journal's events (of its first `limit` bytes) to `logger`, train steps regrouped per
    epoch (with the metrics logged among them after them); returns the number of events read. Only a
    torn last line is skipped silently."""
    events = 0
    run: tuple[int, list[int], list[float]] | None = None  # consecutive train steps of one epoch
    metrics: list[dict[str, Any]] = []  # metrics events among them

    def flush_run() -> None:
        nonlocal run
        if run is not None:
            logger.train_loss(*run)
            run = None
        for record in metrics:
            logger.metrics(**record)
        metrics.clear()

    with open(path, "rb") as f:
        lines = f.read(limit).splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:  # not JSON, or not UTF-8
            if number == len(lines) and not line.endswith(b"\n"):
                break  # a torn last line from a killed process: everything before it stands
            raise JournalError(f"{path}, line {number}: not a JSON line; the journal is damaged there.") from None
        if not line.endswith(b"\n"):
            break
        if not isinstance(record, dict) or record.get("event") not in EVENTS:
            raise JournalError(f"{path}, line {number}: not an event of this runner (events are "
                               f"{', '.join(sorted(EVENTS))}).")
        events += 1
        event = record.pop("event")
        record.pop("t", None)
        try:
            if event == "train_loss":
                if run is None or run[0] != record["epoch"]:
                    flush_run()
                    run = (record["epoch"], [], [])
                run[1].append(record["step"])
                run[2].append(record["loss"])
                continue
            if event == "metrics" and run is not None and run[0] == record["epoch"]:
                metrics.append({"epoch": record["epoch"], "step": record["step"], "values": record["values"]})
                continue
            flush_run()
            if event == "images" and _depth(record["pixels"]) == 3:  # journals from before colour: grey
                record["pixels"] = [[image] for image in record["pixels"]]
            getattr(logger, event)(**record)
        except (KeyError, TypeError) as exc:
            raise JournalError(f"{path}, line {number}: its {event} event lacks a field it needs ({exc}).") from None
    flush_run()
    return events


def _depth(nested: Any) -> int:
    """How many list levels `nested` has, judged by its first elements."""
    depth = 0
    while isinstance(nested, list) and nested:
        nested, depth = nested[0], depth + 1
    return depth
