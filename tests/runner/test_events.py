"""The event table (runner.loggers.base.EVENTS) against everything that carries events: the Logger
protocol and BaseLogger take each event with the table's fields, and NullLogger, FanOut, the journal
(written and replayed) and the Ray trials' Link carry every one of them, so a new event that one of
them forgets, or a field spelled differently in one place, fails here."""

from __future__ import annotations

import inspect
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner.executors.ray.relay import Link
from runner.loggers import BaseLogger, FanOut, JsonlLogger, Logger, NullLogger, replay
from runner.loggers.base import EVENTS
from runner.loggers.console import ConsoleLogger

PIXELS = [[[[0, 255], [128, 7]]], [[[1, 2], [3, 4]]]]  # uint8 [N=2][C=1][H=2][W=2]
LAYER = {"shape": [2, 2], "weight": {"min": -1.0, "max": 1.0, "counts": [1, 3]},
         "grad": {"min": -0.5, "max": 0.5, "counts": [2, 2]}, "grad_norm": 0.7}
# One call of each event as the loop or the tracking API makes it, in the table's order.
SAMPLES: dict[str, tuple[Any, ...]] = {
    "start": ({"name": "events", "spec": {"data": {"batch_size": 2}, "train": {"epochs": 1}}, "device": "cpu",
               "run_dir": "runs/events",
               "steps_per_epoch": 2, "dataset": {"name": "mnist", "shape": [1, 2, 2], "classes": ["0", "1"]}},),
    "images": (PIXELS,),
    "train_loss": (1, [1, 2], [0.75, 0.5]),
    "metrics": (1, 2, {"lr": 0.01}),
    "evaluation": (1, 2, 0.4, 0.875),
    "predictions": (1, [0, 1], [0, 0]),
    "confusion": (1, 2, [[3, 1], [0, 4]]),
    "mistakes": (1, 2, PIXELS[:1], [1], [0], [0.9]),
    "layers": (1, 2, {"0.weight": LAYER}),
    "activations": (1, 2, {"0": {"kind": "Linear", "mean": 0.1, "std": 1.0, "zeros": 0.0}}),
    "system": (1, 2, {"cpu_percent": 50.0, "rss_mb": 300.0}),
    "media": (0, 2, "reconstructions", PIXELS),
    "text": (0, 2, "notes", "<b>escaped</b> by whoever draws it"),
    "close": ({"name": "events", "status": "finished", "test_accuracy": 0.875, "test_loss": 0.4, "epochs": 1,
               "steps": 2, "train_seconds": 0.1, "wall_seconds": 0.2, "device": "cpu"},),
}


def expected() -> list[tuple[str, dict[str, Any]]]:
    return [(name, dict(zip(EVENTS[name], args))) for name, args in SAMPLES.items()]


def send(logger: Any) -> None:
    for name, args in SAMPLES.items():
        getattr(logger, name)(*args)


def test_every_event_has_a_sample_and_the_protocol_takes_the_tables_fields() -> None:
    assert list(SAMPLES) == list(EVENTS)
    for name, fields in EVENTS.items():
        for cls in (Logger, BaseLogger):
            parameters = list(inspect.signature(getattr(cls, name)).parameters)
            assert parameters == ["self", *fields], (cls.__name__, name)


def test_null_fan_out_and_the_journal_carry_every_event(tmp_path: Path) -> None:
    null = NullLogger()
    send(FanOut(null, JsonlLogger(tmp_path / "metrics.jsonl")))
    assert null.calls == expected()
    replayed = NullLogger()
    assert replay(tmp_path / "metrics.jsonl", replayed) == len(EVENTS) + 1  # a line per train step
    assert replayed.calls == expected()


def test_events_by_keyword_as_replay_sends_them_and_wrong_calls_are_refused() -> None:
    null = NullLogger()
    for name, fields in expected():
        getattr(null, name)(**fields)
    assert null.calls == expected()
    with pytest.raises(TypeError, match="takes epoch, step, values"):
        null.metrics(1, 2)
    with pytest.raises(TypeError, match="lacks its argument 'values'"):
        null.metrics(1, step=2)
    with pytest.raises(TypeError, match="takes epoch, step, values"):
        null.metrics(1, 2, {}, values={})


def test_the_ray_link_relays_every_event_but_close() -> None:
    """What a trial's Link sends, replayed as the driver does (`getattr(logger, name)(*args)`)."""
    class Sent(Link):
        def send(self, kind: str, payload: Any, wait: bool = False) -> None:
            self.sent.append((kind, payload))

    link = Sent(relay=None, trial_id="t", key="k")
    link.sent = []
    send(link)
    assert all(kind == "event" for kind, _ in link.sent)
    driver = NullLogger()
    for _, (name, args) in link.sent:
        getattr(driver, name)(*args)
    assert driver.calls == expected()[:-1]  # the trial's end is its own message, not an event


@pytest.mark.parametrize("kind", ["console", "tensorboard"])
def test_a_backend_takes_every_event_by_keyword_as_replay_gives_them(kind: str, tmp_path: Path) -> None:
    if kind == "console":
        logger: BaseLogger = ConsoleLogger(Console(file=io.StringIO(), force_terminal=True))
    else:
        from dashboards.tensorboard import TensorBoardLogger
        logger = TensorBoardLogger(tmp_path / "tensorboard")
    for name, fields in expected():
        getattr(logger, name)(**fields)
    assert getattr(logger, "failure", None) is None
