"""What a report is made from: a run directory read back into memory.

A run is its spec.json, its metrics.jsonl journal replayed through `runner.loggers.replay` into a
`Journal` (a Logger that keeps every event), and its summary.json. A damaged journal is read up to
the damage and the report says so (`Run.notes`); a missing spec or summary falls back on what the
journal's start and end events carry, so copied or half-written run directories still report.

Of the insight events (journals from before them have none, and their reports are as they were) the
Journal keeps the last confusion matrix and the last mistakes, every tensor's gradient norm, the
activations of each epoch and every system sample, and of the weights' histograms their percentiles
(dashboards.distributions), thinned to at most KEEP_SNAPSHOTS steps so a long run stays small.

A tracked run (runner.track: a loop of one's own; `Run.tracked`) has `metrics` events (every value,
in `series`, of its first MAX_NAMES names, as a run records them; of later names, from a journal by
hand or an older version, only how many values and the first names), and keeps of its `media` events the latest images of each name and of its `text`
events the last KEEP_TEXTS texts of each name.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from dashboards.distributions import MAX_SNAPSHOTS, Bands, layer_rows, percentiles, thin
from runner import runs
from runner.loggers import BaseLogger, Info, JournalError, replay
from runner.track import MAX_NAMES

REPORT = "report.html"  # a report's file name in its run or sweep directory
KEEP_SNAPSHOTS = 2 * MAX_SNAPSHOTS  # layers events kept (thinned as they come); a chart strides over them
KEEP_TEXTS = 20  # a tracked run's texts kept per name, the latest

Series = tuple[list[int], list[float | None]]  # (steps or epochs, values)


def finite(value: Any) -> float | None:
    """A number as a float, or None (a gap on a chart) for NaN, inf or anything not a number."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class Journal(BaseLogger):
    """A Logger that keeps every event it is given: what a report draws."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.pixels: list[Any] = []
        self.epochs: list[int] = []  # per train step
        self.steps: list[int] = []
        self.losses: list[float | None] = []
        self.evaluations: list[dict[str, Any]] = []
        self.series: dict[str, tuple[list[int], list[float | None]]] = {}  # metrics events: key -> (steps, values)
        self.left_out = 0  # values of names past the first MAX_NAMES, not kept
        self.left_out_names: list[str] = []  # the first of those names
        self.last_predictions: dict[str, Any] | None = None
        # insight events
        self.last_confusion: dict[str, Any] | None = None  # the last: {"epoch", "step", "matrix"}
        self.last_mistakes: dict[str, Any] | None = None  # the last: epoch, pixels, predicted, truth, confidence
        self.tensors: list[str] = []  # weight tensors in the order the first layers event gives them
        self.snapshots: list[tuple[int, dict[str, tuple[Bands | None, Bands | None]]]] = []  # (step, percentiles)
        self.grad_norms: dict[str, Series] = {}
        self.layer_outputs: list[tuple[int, dict[str, Any]]] = []  # (epoch, {layer: {"kind", "mean", "std", "zeros"}})
        self.system_series: dict[str, Series] = {}  # a system value's key -> (steps, values)
        # a tracked run's events
        self.latest_media: dict[str, dict[str, Any]] = {}  # name -> {"step", "pixels", "count"}, the latest
        self.texts: dict[str, list[dict[str, Any]]] = {}  # name -> its last KEEP_TEXTS {"step", "text"}
        self.closed = False
        self.summary: dict[str, Any] | None = None

    def start(self, info: Info) -> None:
        self.info = dict(info)

    def images(self, pixels: Sequence[Any]) -> None:
        self.pixels = list(pixels)

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        self.epochs += [epoch] * len(steps)
        self.steps += steps
        self.losses += [finite(v) for v in losses]

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        self.evaluations.append({"epoch": epoch, "step": step, "test_loss": test_loss,
                                 "test_accuracy": test_accuracy})

    def metrics(self, epoch: int, step: int, values: Info) -> None:
        for key, value in values.items():
            series = self.series.get(str(key))
            if series is None:
                if len(self.series) >= MAX_NAMES:  # a journal by hand, or from before the limit
                    self.left_out += 1
                    if len(self.left_out_names) < 10 and str(key) not in self.left_out_names:
                        self.left_out_names.append(str(key))
                    continue
                series = self.series[str(key)] = ([], [])
            series[0].append(step)
            series[1].append(finite(value) if isinstance(value, (int, float)) else None)

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        self.last_predictions = {"epoch": epoch, "predicted": list(predicted), "truth": list(truth)}

    def confusion(self, epoch: int, step: int, matrix: Sequence[Sequence[int]]) -> None:
        counts = [[c if isinstance(c, int) else finite(c) or 0 for c in row] for row in matrix]
        self.last_confusion = {"epoch": epoch, "step": step, "matrix": counts}

    def mistakes(self, epoch: int, step: int, pixels: Sequence[Any], predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None:
        self.last_mistakes = {"epoch": epoch, "pixels": list(pixels), "predicted": list(predicted),
                              "truth": list(truth), "confidence": list(confidence)}

    def layers(self, epoch: int, step: int, layers: Info) -> None:
        rows = layer_rows(layers)
        self.tensors += [name for name in rows if name not in self.tensors]
        self.snapshots.append((step, {name: (percentiles(row.get("weight")), percentiles(row.get("grad")))
                                      for name, row in rows.items()}))
        self.snapshots = thin(self.snapshots, KEEP_SNAPSHOTS)
        for name, row in rows.items():
            xs, ys = self.grad_norms.setdefault(name, ([], []))
            xs.append(step)
            ys.append(finite(row.get("grad_norm")))

    def activations(self, epoch: int, step: int, layers: Info) -> None:
        self.layer_outputs.append((epoch, dict(layer_rows(layers))))

    def system(self, epoch: int, step: int, values: Info) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                xs, ys = self.system_series.setdefault(str(key), ([], []))
                xs.append(step)
                ys.append(finite(value))

    def media(self, epoch: int, step: int, name: str, pixels: Sequence[Any]) -> None:
        count = self.latest_media.get(str(name), {}).get("count", 0)
        self.latest_media[str(name)] = {"step": step, "pixels": list(pixels), "count": count + 1}

    def text(self, epoch: int, step: int, name: str, text: str) -> None:
        kept = self.texts.setdefault(str(name), [])
        kept.append({"step": step, "text": str(text)})
        del kept[:-KEEP_TEXTS]

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        self.closed = True
        self.summary = None if summary is None else dict(summary)


@dataclass
class Run:
    """What a run directory holds, read back."""

    path: Path
    spec: dict[str, Any]
    journal: Journal
    summary: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # what could not be read

    @property
    def name(self) -> str:
        if self.tracked:  # its spec is a config, whose "name" (if any) is the config's own
            return str(self.journal.info.get("name") or (self.summary or {}).get("name") or self.path.name)
        return str(self.spec.get("name") or self.journal.info.get("name") or self.path.name)

    @property
    def tracked(self) -> bool:
        """A loop of one's own (runner.track): its spec is a config, its events metrics, media and text."""
        return self.journal.info.get("tracked") is True or (self.summary or {}).get("tracked") is True

    @property
    def status(self) -> str:
        if self.summary is not None:
            return str(self.summary.get("status", "finished"))
        if self.journal.losses and self.journal.losses[-1] is None:
            return "diverged"
        return "stopped" if self.journal.closed else "unfinished"


def read_run(run_dir: Path) -> Run:
    notes: list[str] = []
    journal = Journal()
    try:
        if not stat.S_ISREG(os.lstat(run_dir / runs.JOURNAL).st_mode):  # a FIFO would hang, a link lead out
            raise OSError(errno.EINVAL, "not a regular file")
        replay(run_dir / runs.JOURNAL, journal)
    except JournalError as exc:
        notes.append(f"{exc} The report shows the events before that line.")
        line = re.search(r", line (\d+):", str(exc))
        if line:  # replay stops at the damage with the last steps unsent: read just the lines before it
            with open(run_dir / runs.JOURNAL, "rb") as f:
                limit = sum(map(len, f.read().splitlines(keepends=True)[:int(line.group(1)) - 1]))
            journal = Journal()
            replay(run_dir / runs.JOURNAL, journal, limit=limit)
    except OSError as exc:
        notes.append(f"{run_dir / runs.JOURNAL} cannot be read: {exc.strerror}.")
    spec = _read_json(run_dir / runs.SPEC, notes)
    if not isinstance(spec, dict):
        spec = dict(journal.info.get("spec") or {})
    summary = _read_json(run_dir / runs.SUMMARY, notes if (run_dir / runs.SUMMARY).exists() else None)
    if not isinstance(summary, dict):
        summary = journal.summary
    return Run(run_dir, spec, journal, summary, notes)


def _read_json(path: Path, notes: list[str] | None) -> Any:
    """The file's JSON, read bounded (MAX_JSON bytes, a regular file, never through a link)."""
    from runner.lab.reading import MAX_JSON, read_file

    data, why = read_file(path, MAX_JSON)
    try:
        if data is None:
            raise OSError(why or "no such file")
        return json.loads(data.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        if notes is not None:
            notes.append(f"{path.name} cannot be read ({why or type(exc).__name__}).")
        return None


def epoch_means(j: Journal) -> dict[int, float]:
    """The mean train loss of each epoch, from every step the journal holds (exact)."""
    sums: dict[int, list[float]] = {}
    for epoch, loss in zip(j.epochs, j.losses):
        if loss is not None:
            sums.setdefault(epoch, []).append(loss)
    return {epoch: math.fsum(v) / len(v) for epoch, v in sums.items()}
