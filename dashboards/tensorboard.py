"""TensorBoardLogger: a run's events as TensorBoard event files, so `tensorboard --logdir runs/` shows
every run. It owns one directory (`make` puts it at RUN_DIR/tensorboard) and nothing else.

What is written, by tag:
    train/loss       scalar at every train step (not a subsample)
    train/<name>     scalar per other metric the loop reports, e.g. train/lr, at the chunk's last step
    test/loss        scalar per epoch, at the epoch's last step
    test/accuracy    scalar per epoch, at the epoch's last step
    spec             text: the resolved spec as JSON, at step 0
    samples          images: the fixed test batch, once
    predictions      text: predicted vs true class per sample, per epoch, at the epoch's last step
    summary          text: how the run ended (its summary without the per-epoch history), at the last step
and of the insight events, each at its own step:
    confusion        text: the confusion matrix as a table (true classes down, predicted across)
    class_accuracy/<class>   scalar per class and evaluation
    mistakes         images: the most confident mistakes; text: their captions, 'Sneaker ✗ (Sandal) 0.97'
    weights/<tensor>, gradients/<tensor>   histograms (TensorBoard's own distributions and histograms
                     tabs), from the event's bins as they are (`add_histogram_raw`)
    grad_norm/<tensor>       scalar
    activations/<layer>/mean, .../std, .../zeros   scalars per evaluation
    system/<key>     scalars: cpu_percent, rss_mb, and on a GPU its memory and utilisation

torch's SummaryWriter queues each event and writes it on its own thread, so a call here costs the
building of one small protobuf; a writer that fails (disk full, directory gone) is reported once and
dropped, and training goes on: the journal still holds every event, and `python -m runner replay
RUN_DIR --logger tensorboard` rebuilds the directory from it. NaN and inf are written as they are;
TensorBoard stores them and leaves them out of the chart.

Whoever makes this logger feeds it a run's whole history (a resumed run's loggers first get the
journal replayed up to the checkpoint; `replay` feeds all of it), so event files already in the
directory would only hold the same points again, or points past a checkpoint that no longer count:
they are deleted when the logger is made. That folder must be the run's own: a link there (to a
folder of someone's own event files) or a file of that name is refused before anything is deleted.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TextIO

import numpy as np

from dashboards.charts import class_accuracy, mistake_caption
from dashboards.distributions import layer_rows
from runner.errors import UserError
from runner.loggers import BaseLogger, Info, Pixels
from runner.loggers.registry import Place

if TYPE_CHECKING:
    from runner.spec import Experiment

SUBDIR = "tensorboard"  # inside a run directory
EVENT_FILES = "events.out.tfevents.*"
FLUSH_SECONDS = 5  # how stale the live view may get; the writer's thread flushes, not training
MAX_QUEUE = 1000  # events waiting for the writer's thread before a call would wait on the disk
INSTALL_HINT = ("`--logger tensorboard` needs the tensorboard package: `make install-extras` or "
                "`.venv/bin/pip install tensorboard`")


def check() -> None:
    """Refuse `--logger tensorboard` up front when the tensorboard package is missing."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise UserError(f"{INSTALL_HINT}.")


def make(experiment: Experiment, place: Place) -> TensorBoardLogger:
    """The logger the registry makes for `--logger tensorboard`: RUN_DIR/tensorboard.

    A sweep's variant has its run directory inside the sweep's, so TensorBoard shows it as
    `<sweep>/<variant>/tensorboard`. Without a run directory (no caller does that today) the events
    go to runs/tensorboard/<experiment name>, replacing those of the last such run of that name.
    """
    run_dir = place.run_dir
    if run_dir is None:
        return TensorBoardLogger(Path("runs") / SUBDIR / re.sub(r"[^A-Za-z0-9._-]", "_", experiment.name))
    return TensorBoardLogger(run_dir / SUBDIR)


def _summary_writer() -> type:
    """torch's SummaryWriter, imported only when this logger is made."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch raises this itself when tensorboard is missing
        raise ImportError(INSTALL_HINT) from exc
    return SummaryWriter


def _check_own(log_dir: Path) -> None:
    """UserError unless `log_dir` is missing or a plain folder: its event files are deleted and written."""
    if log_dir.is_symlink() or (log_dir.exists() and not log_dir.is_dir()):
        what = f"a link to {os.readlink(log_dir)}" if log_dir.is_symlink() else "not a folder"
        raise UserError(f"{log_dir} is {what}; the TensorBoard logger deletes and writes the event files of the "
                        f"run's own {SUBDIR} folder only, never through a link. Move it away (or delete it) and "
                        "try again: the journal holds every event, so nothing is lost.")


class TensorBoardLogger(BaseLogger):
    """One run's TensorBoard event files in `log_dir`; every event goes to the writer's queue."""

    def __init__(self, log_dir: Path, out: TextIO | None = None) -> None:
        writer_class = _summary_writer()
        self.log_dir = Path(log_dir)
        self._out = out
        _check_own(self.log_dir)
        for old in self.log_dir.glob(EVENT_FILES):  # see the module docstring: the history comes again
            if old.is_file() or old.is_symlink():  # a link itself, never what it points to
                old.unlink()
        self._writer: Any = writer_class(log_dir=str(self.log_dir), max_queue=MAX_QUEUE, flush_secs=FLUSH_SECONDS)
        self._classes: list[str] | None = None
        self._step = 0  # the last global step seen: predictions and the summary are shown there
        self.failure: str | None = None

    def _write(self, method: str, *args: Any, **kwargs: Any) -> None:
        """One writer call; a failing writer is reported once and dropped, training goes on."""
        if self._writer is None:
            return
        try:
            getattr(self._writer, method)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - logging must never kill training
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        self.failure = f"{type(exc).__name__}: {exc}"
        print(f"warning: TensorBoard logging to {self.log_dir} stopped ({self.failure}); the run goes on, and "
              f"its journal keeps every event: `python -m runner replay RUN_DIR --logger tensorboard` writes "
              f"them again.", file=self._out or sys.stderr)
        writer, self._writer = self._writer, None
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - it already failed; its error was reported
            pass

    def start(self, info: Info) -> None:
        classes = (info.get("dataset") or {}).get("classes")
        self._classes = [str(c) for c in classes] if isinstance(classes, list) else None
        self._write("add_text", "spec", _code(info.get("spec", {})), global_step=0)

    def images(self, pixels: Pixels) -> None:
        batch = np.asarray(pixels, dtype=np.uint8)
        if batch.ndim == 4 and len(batch):
            self._write("add_images", "samples", batch, global_step=0, dataformats="NCHW")

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        for step, loss in zip(steps, losses):
            self._write("add_scalar", "train/loss", float(loss), global_step=step)
        if steps:
            self._step = steps[-1]

    def metrics(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self._write("add_scalar", f"train/{name}", float(value), global_step=step)
        self._step = max(self._step, step)

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        self._write("add_scalar", "test/loss", float(test_loss), global_step=step)
        self._write("add_scalar", "test/accuracy", float(test_accuracy), global_step=step)
        self._step = step

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        text = _predictions_markdown(epoch, predicted, truth, self._classes)
        self._write("add_text", "predictions", text, global_step=self._step)

    def confusion(self, epoch: int, step: int, matrix: Sequence[Sequence[int]]) -> None:
        names = [self._name(i) for i in range(len(matrix))]
        self._write("add_text", "confusion", _confusion_markdown(epoch, matrix, names), global_step=step)
        for name, accuracy in zip(names, class_accuracy(matrix)):
            if accuracy is not None:
                self._write("add_scalar", f"class_accuracy/{_tag(name)}", accuracy, global_step=step)

    def mistakes(self, epoch: int, step: int, pixels: Pixels, predicted: Sequence[int], truth: Sequence[int],
                 confidence: Sequence[float]) -> None:
        batch = np.asarray(pixels, dtype=np.uint8)
        if batch.ndim == 4 and len(batch):
            self._write("add_images", "mistakes", batch, global_step=step, dataformats="NCHW")
        rows = [f"| {i} | {_cell(mistake_caption(self._name(p), self._name(t), c))} |"
                for i, (p, t, c) in enumerate(zip(predicted, truth, confidence))]
        head = [f"epoch {epoch}: the {len(rows)} most confident mistakes", "",
                "| image | predicted ✗ (true) confidence |", "|---|---|"]
        text = "\n".join([*head, *rows]) if rows else f"epoch {epoch}: no mistakes"
        self._write("add_text", "mistakes", text, global_step=step)

    def layers(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        for name, row in layer_rows(layers).items():
            for kind, hist in (("weights", row.get("weight")), ("gradients", row.get("grad"))):
                raw = _raw_histogram(hist)
                if raw is not None:
                    self._write("add_histogram_raw", f"{kind}/{name}", global_step=step, **raw)
            if isinstance(row.get("grad_norm"), (int, float)):
                self._write("add_scalar", f"grad_norm/{name}", float(row["grad_norm"]), global_step=step)

    def activations(self, epoch: int, step: int, layers: Mapping[str, Any]) -> None:
        for name, row in layer_rows(layers).items():
            for key in ("mean", "std", "zeros"):
                if isinstance(row.get(key), (int, float)):
                    self._write("add_scalar", f"activations/{name}/{key}", float(row[key]), global_step=step)

    def system(self, epoch: int, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._write("add_scalar", f"system/{key}", float(value), global_step=step)

    def _name(self, label: Any) -> str:
        known = self._classes is not None and isinstance(label, int) and 0 <= label < len(self._classes)
        return self._classes[label] if known else str(label)  # type: ignore[index]

    def close(self, summary: Info | None) -> None:
        """Write the summary, flush and close; only the first call does anything."""
        if self._closed:
            return
        super().close(summary)
        if summary is not None:
            ending = {key: value for key, value in summary.items() if key != "history"}
            self._write("add_text", "summary", _code(ending), global_step=self._step)
        self._write("close")  # flushes the queue; SummaryWriter would reopen on a later write, we don't
        self._writer = None

    def where(self) -> dict[str, Any]:
        """For summary.json: the directory `tensorboard --logdir` should be pointed at (or above)."""
        return {"tensorboard_dir": str(self.log_dir)}


def _code(data: Any) -> str:
    """`data` as pretty JSON in a Markdown code block (JSON has no line that could end the block)."""
    return "```json\n" + json.dumps(data, indent=2, default=str) + "\n```"


def _predictions_markdown(epoch: int, predicted: Sequence[int], truth: Sequence[int],
                          classes: list[str] | None) -> str:
    """A Markdown table, one row per sample, the wrong ones marked; names escaped for a table cell."""

    def name(label: int) -> str:
        known = classes is not None and 0 <= label < len(classes)
        return html.escape(classes[label] if known else str(label)).replace("|", "&#124;")  # type: ignore[index]

    right = sum(p == t for p, t in zip(predicted, truth))
    rows = [f"| {i} | {name(p)} | {name(t)} | {'' if p == t else '✗'} |"
            for i, (p, t) in enumerate(zip(predicted, truth))]
    return "\n".join([f"epoch {epoch}: {right} of {len(rows)} right", "",
                      "| sample | predicted | true | |", "|---|---|---|---|", *rows])


def _cell(text: str) -> str:
    """Text for a Markdown table cell: escaped, its pipes too."""
    return html.escape(text).replace("|", "&#124;")


def _tag(name: str) -> str:
    """A class name as one level of a tag (a '/' would nest it)."""
    return re.sub(r"[^\w.-]", "_", name)


def _confusion_markdown(epoch: int, matrix: Sequence[Sequence[int]], names: list[str]) -> str:
    """The matrix as a Markdown table: a row per true class, a column per predicted one."""
    head = "| true \\ predicted | " + " | ".join(_cell(n) for n in names) + " |"
    rows = [f"| {_cell(name)} | " + " | ".join(str(c) for c in row) + " |" for name, row in zip(names, matrix)]
    return "\n".join([f"epoch {epoch}: confusion matrix over the test set", "", head,
                      "|" + "---|" * (len(names) + 1), *rows])


def _raw_histogram(hist: Any) -> dict[str, Any] | None:
    """`add_histogram_raw`'s arguments for a {"min", "max", "counts"} histogram: its bins' right edges
    and counts; the sum and the sum of squares from the bins' middles (TensorBoard shows neither)."""
    try:
        low, high, counts = float(hist["min"]), float(hist["max"]), [float(c) for c in hist["counts"]]
    except (TypeError, KeyError, ValueError):
        return None
    total = sum(counts)
    if not counts or total <= 0 or not np.isfinite([low, high]).all() or high < low:
        return None
    width = (high - low) / len(counts)
    middles = [low + (i + 0.5) * width for i in range(len(counts))]
    return {"min": low, "max": high, "num": total, "sum": sum(c * m for c, m in zip(counts, middles)),
            "sum_squares": sum(c * m * m for c, m in zip(counts, middles)),
            "bucket_limits": [low + (i + 1) * width for i in range(len(counts))], "bucket_counts": counts}
