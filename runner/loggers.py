"""The Logger protocol the training loop talks to, and the loggers that need no dashboard.

The loop only ever calls these six methods with plain numbers, lists and dicts, so every
logger (and the journal that records the calls) sees exactly the same events:

    start(info)                              once: run name, resolved spec, device, run dir
    images(pixels)                           once: the fixed test batch, uint8 [N][28][28]
    train_loss(epoch, steps, losses)         per chunk of steps (the loop syncs in chunks)
    evaluation(epoch, step, test_loss, test_accuracy)      per epoch
    predictions(epoch, predicted, truth)     per epoch, for the fixed test batch
    close(summary)                           once, always; summary is None when the run failed

`JsonlLogger` writes these events one JSON line each (one line per train step), so a journal can
be replayed into any logger later.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Mapping, Protocol, Sequence, runtime_checkable

Info = Mapping[str, Any]


@runtime_checkable
class Logger(Protocol):
    def start(self, info: Info) -> None: ...

    def images(self, pixels: Sequence[Sequence[Sequence[int]]]) -> None: ...

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None: ...

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None: ...

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None: ...

    def close(self, summary: Info | None) -> None: ...


class ClosingLogger:
    """Context-manager behaviour shared by every logger: `close` runs once, even on errors."""

    _closed = False

    def __enter__(self) -> "ClosingLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close(None)

    def close(self, summary: Info | None) -> None:
        self._closed = True


class NullLogger(ClosingLogger):
    """Draws nothing; records every call as (method, kwargs) so tests can assert on them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def start(self, info: Info) -> None:
        self.calls.append(("start", {"info": dict(info)}))

    def images(self, pixels: Sequence[Sequence[Sequence[int]]]) -> None:
        self.calls.append(("images", {"pixels": pixels}))

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        self.calls.append(("train_loss", {"epoch": epoch, "steps": list(steps), "losses": list(losses)}))

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
