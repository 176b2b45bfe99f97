"""ConsoleLogger: what a person sees in the terminal. A rich progress bar (epoch, step, loss,
samples/s) and one line per epoch on a TTY; the same epoch lines, plain, when piped; a final table.

Other parts of the run (the dashboard's sender) print through `note`: while the bar is live, rich
prints the line above it, so a message never lands inside the bar's line.
"""

from __future__ import annotations

import sys
import time
from typing import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from runner.loggers.base import BaseLogger, Info


class ConsoleLogger(BaseLogger):
    """One run's console. With `shared` (a Progress that variants training at once share, as on Ray)
    its bar is one row of it, named after the run, and its lines carry the run's name."""

    def __init__(self, console: Console | None = None, shared: Progress | None = None) -> None:
        self.console = shared.console if shared is not None else console or Console(highlight=False)
        self._shared = shared
        self._prefix = ""
        self._progress: Progress | None = None
        self._task = None
        self._batch_size = 1
        self._epochs = 1
        self._epoch_started = time.perf_counter()
        self._epoch_first_step = 0

    def start(self, info: Info) -> None:
        spec = info["spec"]
        self._batch_size, self._epochs = spec["data"]["batch_size"], spec["train"]["epochs"]
        if self._shared is not None:
            self._prefix = f"{info['name']}: "
            where = (info.get("node") or {}).get("host")
            self.console.print(f"[bold]{info['name']}[/bold] on {info['device']}{f' at {where}' if where else ''}, "
                               f"run directory {info['run_dir']}", markup=True)
            if self.console.is_terminal:
                self._progress = self._shared
                self._task = self._shared.add_task("train", total=info["steps_per_epoch"], epoch=1,
                                                   epochs=self._epochs, loss=DASH, rate=DASH, run=info["name"])
            self._epoch_started = time.perf_counter()
            return
        self.console.print(f"[bold]{info['name']}[/bold] on {info['device']}: {spec.get('description', '')}".rstrip(": "))
        self.console.print(f"run directory: {info['run_dir']}")
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} samples/s"),
                TimeRemainingColumn(), console=self.console, transient=True)
            # "–" until the first value arrives: no "loss nan" before the first step is read.
            self._task = self._progress.add_task("train", total=info["steps_per_epoch"], epoch=1,
                                                 epochs=self._epochs, loss=DASH, rate=DASH)
            self._progress.start()
        self._epoch_started = time.perf_counter()

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        if self._progress is None or self._task is None:
            return
        self._epoch_first_step = self._epoch_first_step or steps[0]
        done = steps[-1] - self._epoch_first_step + 1
        rate = done * self._batch_size / max(time.perf_counter() - self._epoch_started, 1e-9)
        self._progress.update(self._task, completed=done, epoch=epoch, loss=_number(losses[-1], ".4f"),
                              rate=_number(rate, ",.0f"))

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        seconds = time.perf_counter() - self._epoch_started
        self.console.print(f"{self._prefix}epoch {epoch:>3}/{self._epochs}  step {step:>6}  test loss {test_loss:.4f}  "
                           f"test accuracy {test_accuracy:.2%}  ({seconds:.1f} s)")
        if self._progress is not None and self._task is not None:
            self._progress.reset(self._task)  # passing fields here would replace them all
            self._progress.update(self._task, epoch=min(epoch + 1, self._epochs), loss=DASH, rate=DASH)
        self._epoch_first_step = 0
        self._epoch_started = time.perf_counter()

    def note(self, line: str) -> None:
        """Print a message from elsewhere (thread-safe): above the live bar on a TTY, else to stderr."""
        progress = self._progress
        if progress is not None and progress.live.is_started:
            progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        if self._shared is not None:
            if self._progress is not None and self._task is not None:
                self._shared.remove_task(self._task)
            self._progress = None
            return  # the sweep's table follows
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if summary is None or summary.get("status", "finished") not in ("finished", "stopped early"):
            return
        table = Table(title=f"{summary['name']} results", show_header=True)
        for column in ("test accuracy", "test loss", "epochs", "steps", "train s", "wall s", "device"):
            table.add_column(column, justify="right")
        table.add_row(f"{summary['test_accuracy']:.2%}", f"{summary['test_loss']:.4f}", str(summary["epochs"]),
                      str(summary["steps"]), f"{summary['train_seconds']:.1f}", f"{summary['wall_seconds']:.1f}",
                      str(summary["device"]))
        overhead = (summary.get("logging") or {}).get("overhead")
        self.console.print(table)
        if isinstance(overhead, (int, float)):
            self.console.print(f"logging cost {overhead:.1%} of training (time the training thread spent in the "
                               "dashboard, journal and console)")


DASH = "–"


def shared_progress(console: Console | None = None) -> Progress:
    """The progress display that variants training at the same time share, one row each."""
    return Progress(TextColumn("{task.fields[run]}"), TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                    BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                    TextColumn("{task.fields[rate]} samples/s"), TimeRemainingColumn(),
                    console=console or Console(highlight=False), transient=True)


def _number(value: float, spec: str) -> str:
    """A value for the bar, or "–" where there is none yet (NaN, inf)."""
    return format(value, spec) if value == value and abs(value) != float("inf") else DASH
