"""The run's journal (metrics.jsonl): every event the loop sends, one JSON line each (one line per
train step), and `replay`, which feeds a journal's events to any logger later (the dashboard of a
run made with no server up, `report`, `compare`, a resumed run's fresh loggers).

The start event carries the journal's `format`; journals written before it was recorded read as
format 1, and a journal from a newer runner is refused with a message saying so.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from runner.errors import UserError
from runner.loggers.base import EVENTS, BaseLogger, Info, Logger, each_event, plain

CHUNK = 1 << 20  # bytes read at a time when looking for a journal's last whole line
FORMAT = 1  # of the journal's lines; raise it when an event changes meaning, and read the old ones


@each_event("_record")
class JsonlLogger(BaseLogger):
    """The run's journal: one JSON object per line, one line per train step; replayable.

    Each event is one write(2) of whole lines to an unbuffered descriptor, so a process killed at any
    moment (even by a second Ctrl-C) leaves only whole lines behind. `keep` bytes of an existing
    journal are kept (a resumed run continues it); anything after them is cut.
    """

    def __init__(self, path: Path, keep: int = 0) -> None:
        self.path = path
        try:  # never through a link: the journal is the run directory's own file
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise JournalError(f"{path} cannot be opened as the run's journal ({exc.strerror}); a journal must be a "
                               "file of the run directory, not a link.") from None
        keep = self._whole_lines(keep)
        os.ftruncate(self._fd, keep)
        self.position = os.lseek(self._fd, keep, os.SEEK_SET)
        self._t0 = time.monotonic()

    def _whole_lines(self, keep: int) -> int:
        """`keep`, or less where the journal on disk is shorter (cut mid-line by a full disk or an
        interrupted copy): up to its last whole line, never padded."""
        size = os.fstat(self._fd).st_size
        if keep <= size:
            return keep
        whole = 0
        for end in range(size, 0, -CHUNK):  # backwards, a chunk at a time: a journal may be large
            start = max(end - CHUNK, 0)
            newline = os.pread(self._fd, end - start, start).rfind(b"\n")
            if newline >= 0:
                whole = start + newline + 1
                break
        print(f"warning: {self.path} is shorter than its checkpoint says ({size} of {keep} bytes); keeping its "
              f"first {whole} bytes of whole lines and dropping {size - whole} bytes of a cut one.", file=sys.stderr)
        return whole

    def _write(self, records: list[dict[str, Any]]) -> None:
        """The records as whole lines; on a failed write (a full disk) the journal is cut back to its
        last whole line before the error goes on, so it stays a journal a resume can continue."""
        t = round(time.monotonic() - self._t0, 4)
        self._write_text("".join(json.dumps({**r, "t": t}) + "\n" for r in records))

    def _write_text(self, text: str) -> None:
        blob = memoryview(text.encode())
        written = 0
        try:
            while written < len(blob):  # one write(2), unless the disk takes only part of it
                written += os.write(self._fd, blob[written:])
        except OSError:
            os.ftruncate(self._fd, self.position)
            os.lseek(self._fd, self.position, os.SEEK_SET)
            raise
        self.position += written

    def start(self, info: Info) -> None:
        self._write([{"event": "start", "format": FORMAT, "info": dict(info)}])

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        self._write([{"event": "train_loss", "epoch": epoch, "step": s, "loss": v} for s, v in zip(steps, losses)])

    def metrics_of_steps(self, calls: Sequence[tuple[int, int, Mapping[str, float]]]) -> None:
        """Several `metrics` events (epoch, step, values) as one write(2): a tracked run's chunk. The
        lines are those `_write` makes, put together around one json.dumps a step (of its values):
        a fast loop's steps each pay for this."""
        t = json.dumps(round(time.monotonic() - self._t0, 4))
        dumps = json.dumps
        self._write_text("".join(
            f'{{"event": "metrics", "epoch": {e if type(e) is int else dumps(e)}, "step": '
            f'{s if type(s) is int else dumps(s)}, "values": {dumps(v if type(v) is dict else dict(v))}, "t": {t}}}\n'
            for e, s, v in calls))

    def _record(self, name: str, args: tuple[Any, ...]) -> None:
        """Every other event: one line of its fields by name (base.EVENTS)."""
        self._write([{"event": name, **{field: plain(value) for field, value in zip(EVENTS[name], args)}}])

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        if self._fd >= 0:
            try:
                self._write([{"event": "close", "summary": None if summary is None else dict(summary)}])
            except OSError as exc:  # a full disk: the journal ends with the events before it
                print(f"warning: {self.path}: its close event could not be written ({exc.strerror})",
                      file=sys.stderr)
            finally:
                os.close(self._fd)
                self._fd = -1


class JournalError(UserError):
    """A journal line that is not an event of this runner; the message names the line."""


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
        written = record.pop("format", 1)
        if written != FORMAT:
            raise JournalError(f"{path}, line {number}: a journal of format {written!r}; this runner reads format "
                               f"{FORMAT}. Read it with the version of the runner that wrote it.")
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
