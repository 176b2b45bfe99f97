"""ConsoleLogger: what a person sees in the terminal. A rich progress bar (epoch, step, loss,
samples/s) and one line per epoch on a TTY; the same epoch lines, plain, when piped; a final table.
"""

from __future__ import annotations

import time
from typing import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from runner.loggers import BaseLogger, Info


class ConsoleLogger(BaseLogger):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self._progress: Progress | None = None
        self._task = None
        self._batch_size = 1
        self._epochs = 1
        self._epoch_started = time.perf_counter()
        self._epoch_first_step = 0

    def start(self, info: Info) -> None:
        spec = info["spec"]
        self._batch_size, self._epochs = spec["data"]["batch_size"], spec["train"]["epochs"]
        self.console.print(f"[bold]{info['name']}[/bold] on {info['device']}: {spec.get('description', '')}".rstrip(": "))
        self.console.print(f"run directory: {info['run_dir']}")
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:,.0f} samples/s"),
                TimeRemainingColumn(), console=self.console, transient=True)
            self._task = self._progress.add_task("train", total=info["steps_per_epoch"], epoch=1,
                                                 epochs=self._epochs, loss=float("nan"), rate=0.0)
            self._progress.start()
        self._epoch_started = time.perf_counter()

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        if self._progress is None or self._task is None:
            return
        self._epoch_first_step = self._epoch_first_step or steps[0]
        done = steps[-1] - self._epoch_first_step + 1
        rate = done * self._batch_size / max(time.perf_counter() - self._epoch_started, 1e-9)
        self._progress.update(self._task, completed=done, epoch=epoch, loss=losses[-1], rate=rate)

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        seconds = time.perf_counter() - self._epoch_started
        self.console.print(f"epoch {epoch:>3}/{self._epochs}  step {step:>6}  test loss {test_loss:.4f}  "
                           f"test accuracy {test_accuracy:.2%}  ({seconds:.1f} s)")
        if self._progress is not None and self._task is not None:
            self._progress.reset(self._task)  # passing fields here would replace them all
            self._progress.update(self._task, epoch=min(epoch + 1, self._epochs))
        self._epoch_first_step = 0
        self._epoch_started = time.perf_counter()

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if summary is None:
            return
        table = Table(title=f"{summary['name']} results", show_header=True)
        for column in ("test accuracy", "test loss", "epochs", "steps", "train s", "wall s", "device"):
            table.add_column(column, justify="right")
        table.add_row(f"{summary['test_accuracy']:.2%}", f"{summary['test_loss']:.4f}", str(summary["epochs"]),
                      str(summary["steps"]), f"{summary['train_seconds']:.1f}", f"{summary['wall_seconds']:.1f}",
                      str(summary["device"]))
        self.console.print(table)
