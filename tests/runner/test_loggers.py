"""Every logger honours the same contract: the same events in, close exactly once, no surprises."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable, Sequence

import pytest
from rich.console import Console

from runner.loggers import BaseLogger, FanOut, JsonlLogger, Logger, NullLogger, replay
from runner.loggers.console import ConsoleLogger

INFO = {"name": "contract", "spec": {"description": "d", "data": {"batch_size": 10}, "train": {"epochs": 2}},
        "device": "cpu", "run_dir": "runs/contract", "steps_per_epoch": 4, "visdom_env": None}
SUMMARY = {"name": "contract", "test_accuracy": 0.5, "test_loss": 1.0, "epochs": 2, "steps": 8,
           "train_seconds": 0.1, "wall_seconds": 0.2, "device": "cpu"}


def send_events(logger: Logger) -> None:
    logger.start(INFO)
    logger.images([[[[0] * 28] * 28]] * 2)
    for epoch in (1, 2):
        first = (epoch - 1) * 4 + 1
        logger.train_loss(epoch, [first, first + 1], [2.0, 1.5])
        logger.train_loss(epoch, [first + 2, first + 3], [1.2, 1.0])
        logger.metrics(epoch, first + 3, {"lr": 0.1 / epoch})
        logger.evaluation(epoch, first + 3, 0.9, 0.6)
        logger.predictions(epoch, [1, 2], [1, 3])


LOGGERS: dict[str, Callable[[Path], Logger]] = {
    "null": lambda tmp: NullLogger(),
    "jsonl": lambda tmp: JsonlLogger(tmp / "metrics.jsonl"),
    "console-plain": lambda tmp: ConsoleLogger(Console(file=io.StringIO(), force_terminal=False)),
    "console-tty": lambda tmp: ConsoleLogger(Console(file=io.StringIO(), force_terminal=True)),
    "fan-out": lambda tmp: FanOut(NullLogger(), JsonlLogger(tmp / "fan.jsonl")),
}


@pytest.mark.parametrize("make", LOGGERS.values(), ids=LOGGERS.keys())
@pytest.mark.parametrize("summary", [SUMMARY, None], ids=["finished", "failed"])
def test_contract(make: Callable[[Path], Logger], summary: dict | None, tmp_path: Path) -> None:
    logger = make(tmp_path)
    assert isinstance(logger, Logger)
    with logger:  # type: ignore[attr-defined]
        send_events(logger)
        if summary is not None:
            logger.close(summary)
    if isinstance(logger, NullLogger):
        assert [name for name, _ in logger.calls].count("close") == 1


def test_context_manager_closes_on_error(tmp_path: Path) -> None:
    journal = tmp_path / "metrics.jsonl"
    with pytest.raises(RuntimeError):
        with JsonlLogger(journal) as logger:
            logger.start(INFO)
            raise RuntimeError("training blew up")
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["event"] for r in lines] == ["start", "close"] and lines[-1]["summary"] is None


def test_console_prints_epochs_and_results(tmp_path: Path) -> None:
    out = io.StringIO()
    with ConsoleLogger(Console(file=out, force_terminal=False, width=120)) as logger:
        send_events(logger)
        logger.close(SUMMARY)
    text = out.getvalue()
    assert "epoch   1/2" in text and "test accuracy 60.00%" in text and "50.00%" in text


def test_fan_out_closes_every_logger_even_if_one_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    class Broken(NullLogger):
        def close(self, summary: dict | None) -> None:
            raise OSError("disk full")

    last = NullLogger()
    with FanOut(Broken(), last):
        pass
    assert last.named("close") == [{"summary": None}]
    assert "Broken failed to close: disk full" in capsys.readouterr().err


def test_a_backend_implements_only_what_it_shows(tmp_path: Path) -> None:
    """BaseLogger's defaults: a logger of one method takes every event, including ones added later."""
    class LossOnly(BaseLogger):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
            self.losses += losses

    only = LossOnly()
    with FanOut(only, NullLogger()) as logger:
        send_events(logger)
    assert only.losses == [2.0, 1.5, 1.2, 1.0] * 2 and only._closed


def test_journals_of_grey_images_replay_as_one_channel(tmp_path: Path) -> None:
    """Journals written before colour hold images [N][H][W]; replay hands loggers [N][1][H][W]."""
    journal = tmp_path / "metrics.jsonl"
    journal.write_text(json.dumps({"event": "images", "pixels": [[[1, 2], [3, 4]]] * 3}) + "\n"
                       + json.dumps({"event": "images", "pixels": [[[[1, 2], [3, 4]]]] * 3}) + "\n")
    logger = NullLogger()
    replay(journal, logger)
    assert [c["pixels"] for c in logger.named("images")] == [[[[[1, 2], [3, 4]]]] * 3] * 2


def test_a_journal_records_its_format_and_one_from_a_newer_runner_is_refused(tmp_path: Path) -> None:
    from runner.loggers import FORMAT, JournalError

    path = tmp_path / "metrics.jsonl"
    with JsonlLogger(path) as journal:
        send_events(journal)
    start = json.loads(path.read_text().splitlines()[0])
    assert start["event"] == "start" and start["format"] == FORMAT
    older = tmp_path / "older.jsonl"  # journals written before the format was recorded read as format 1
    older.write_text("\n".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "format"})
                               for line in path.read_text().splitlines()) + "\n")
    assert replay(older, NullLogger()) == replay(path, NullLogger())
    newer = tmp_path / "newer.jsonl"
    newer.write_text(path.read_text().replace(f'"format": {FORMAT}', f'"format": {FORMAT + 1}', 1))
    with pytest.raises(JournalError, match=f"format {FORMAT + 1}"):
        replay(newer, NullLogger())


def test_a_chunk_of_steps_writes_the_lines_of_its_metrics_events(tmp_path: Path) -> None:
    """`metrics_of_steps` (a tracked run's chunk, built for speed) writes, but for the time, the very
    lines that one `metrics` event per step writes: NaN, infinities, ints and non-ASCII names too."""
    calls = [(0, 1, {"train/loss": 0.25, "train/l1": 1}), (0, 2, {"train/loss": float("nan"), "é": float("-inf")}),
             (3, 10**12, {"a b": 1e-300})]
    one, chunk = JsonlLogger(tmp_path / "one.jsonl"), JsonlLogger(tmp_path / "chunk.jsonl")
    for call in calls:
        one.metrics(*call)
    chunk.metrics_of_steps(calls)
    for logger in (one, chunk):
        logger.close(None)

    def lines(path: Path) -> list[str]:
        return [json.dumps({k: v for k, v in json.loads(line).items() if k != "t"})
                for line in path.read_text().splitlines()]

    assert lines(tmp_path / "chunk.jsonl") == lines(tmp_path / "one.jsonl")
    assert [line.split(', "t": ')[0] for line in (tmp_path / "chunk.jsonl").read_text().splitlines()] == \
        [line.split(', "t": ')[0] for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    assert len(lines(tmp_path / "chunk.jsonl")) == len(calls) + 1  # and the close event
