"""One run of one experiment, from a validated spec to a summary on disk: data on the device, the
run directory, the journal, checkpoints after each epoch, and a clean stop on Ctrl-C or SIGTERM.
The CLI uses it for single runs and resumes; sweeps use it once per variant.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from runner import data, runs, status, train
from runner.files import write_json
from runner.loggers import FanOut, JsonlLogger, Logger
from runner.loggers.base import logging_cost
from runner.loggers import replay as replay_journal
from runner.spec import Experiment


class StopOnSignal:
    """Ctrl-C or SIGTERM asks training to stop after the current step; a second one exits at once,
    after `last_words` (quick clean-ups, such as deleting temporary files).

    The journal is written one whole-line write(2) per event, so even the hard exit leaves it valid.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.last_words: list[Callable[[], None]] = []

    def __enter__(self) -> "StopOnSignal":
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            for clean_up in self.last_words:
                clean_up()
            os._exit(128 + signum)
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
              "(again to quit at once)", file=sys.stderr)

    def __call__(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name


class Timed:
    """A logger wrapper that adds up the time the training thread spends inside logger calls."""

    def __init__(self, inner: Logger) -> None:
        self.inner, self.seconds = inner, 0.0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name.startswith("_") or not callable(method):
            return method

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def first_line(exc: BaseException) -> str:
    """The first line of an error's message; the error's type leads it unless it is one of ours."""
    from runner import limits

    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, (train.Diverged, train.Stopped, limits.LimitError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_limits(experiment: Experiment, device: torch.device, info: Any, train_size: int, out: Path | None) -> None:
    """Refuse, before anything is allocated or written, a run this machine cannot hold; warn about
    one that would take hours."""
    from runner import limits, models

    count = limits.parameter_count(lambda: models.build(experiment.model, info))
    steps_per_epoch = -(-train_size // experiment.data.batch_size)
    if count is not None:  # else the allocation itself is watched (execute)
        limits.check_memory(count, device)
    limits.check_disk(out or Path("runs"), limits.run_bytes(count or 0, experiment.train.epochs * steps_per_epoch))
    warning = limits.long_run_warning(experiment.train.epochs, steps_per_epoch)
    if warning:
        print(warning, file=sys.stderr)


class Recorder:
    """The run directory's side of a run: its journal and loggers, its checkpoints and its summary.

    `execute` keeps one beside the training; the Ray executor keeps one per trial on the driver,
    fed with the events the trial sends, so a trial elsewhere needs neither the dashboard nor this
    filesystem. `logger` takes the events (timed: the logging cost); `start` adds what only this side
    knows (run directory, env) to the start info. `resume` (a checkpoint) keeps the journal up to it
    and replays that part into the fresh loggers first.
    """

    def __init__(self, experiment: Experiment, run_dir: Path, loggers: Sequence[Logger], device: Any,
                 resume: dict[str, Any] | None = None, started: float | None = None) -> None:
        """`device` None: the one the journal's start event names (a trial elsewhere, resumed);
        `started`: when the run's wall time began (perf_counter; default now)."""
        self.experiment, self.run_dir, self.loggers = experiment, run_dir, list(loggers)
        self.started = time.perf_counter() if started is None else started
        self.resume = resume
        self.checkpointed = resume["state"]["step"] if resume else None  # the step the last checkpoint holds
        self.held = contextlib.ExitStack()  # the run directory's lock, from here to the end
        try:
            self.held.enter_context(runs.lock(run_dir, runs.OWN))
            if resume is not None:  # it may have been finished by another resume meanwhile
                runs.check_resumable(run_dir)
            self.journal = JsonlLogger(run_dir / runs.JOURNAL, keep=resume["journal_bytes"] if resume else 0)
        except BaseException:
            FanOut(*self.loggers).close(None)  # their senders were started: stop them
            self.held.close()
            raise
        self.fanout = FanOut(self.journal, *self.loggers)
        self.logger = Timed(self.fanout)
        self.base = {"name": experiment.name, "device": str(device), "torch_version": torch.__version__,
                     "seed": experiment.seed, **self.fanout.where(), "run_dir": str(run_dir)}
        if device is None or resume is not None:  # what the journal's start event recorded
            started = _started(self.journal.path)
            self.base["device"] = self.base["device"] if device is not None else str(started.get("device", "unknown"))
            if isinstance(started.get("provenance"), dict):
                self.base["provenance"] = _brief(started["provenance"])

    def __enter__(self) -> "Recorder":
        """Closes the loggers however the run ends; a resumed run's loggers first get what the journal
        already holds."""
        self.fanout.__enter__()
        if self.resume is not None:
            try:
                replay_journal(self.journal.path, FanOut(*self.loggers), limit=self.resume["journal_bytes"])
            except BaseException:
                self.__exit__(*sys.exc_info())
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        with self.held:
            self.fanout.__exit__(*exc)

    def start(self, info: dict[str, Any]) -> None:
        """The start event: `info` (dataset, sizes, where it trains) with the run's own identity."""
        self.base["device"] = str(info.get("device", self.base["device"]))
        if isinstance(info.get("provenance"), dict):  # the summary's copy leaves the diffs to the journal
            self.base["provenance"] = _brief(info["provenance"])
        self.logger.start({**info, "name": self.experiment.name, "spec": self.experiment.model_dump(mode="json"),
                           "device": self.base["device"], "run_dir": str(self.run_dir),
                           "torch_version": self.base["torch_version"], **self.fanout.where()})

    def checkpoint(self, payload: dict[str, Any]) -> None:
        runs.save_checkpoint(self.run_dir, {**payload, "journal_bytes": self.journal.position})
        self.checkpointed = payload["state"]["step"]

    def ended(self, state: str, message: str, **extra: Any) -> dict[str, Any]:
        """Close a run that did not finish; its summary is written unless it can be resumed (stopped)."""
        summary = {**self.base, "status": state, "error": message, **extra,
                   "wall_seconds": time.perf_counter() - self.started}
        if state != status.STOPPED:
            _write_summary(self.run_dir, summary)
        self.fanout.close(summary)
        return summary

    def finished(self, results: dict[str, Any], save_weights: Callable[[Path], None]) -> dict[str, Any]:
        """Close a run that trained to its end (or was stopped early by a search): weights, summary."""
        save_weights(self.run_dir / runs.WEIGHTS)
        state = status.STOPPED_EARLY if results.get("stopped_early") else status.FINISHED
        summary = {**self.base, "status": state, **results, "wall_seconds": time.perf_counter() - self.started}
        summary["logging"] = logging_cost(self.loggers, self.logger.seconds, results["train_seconds"])
        write_json(self.run_dir / runs.SUMMARY, summary)
        self.fanout.close(summary)
        # The senders' part is known once they have drained; the run has finished whether or not it fits.
        summary["logging"] = logging_cost(self.loggers, self.logger.seconds, results["train_seconds"])
        _write_summary(self.run_dir, summary)
        return summary


def _write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """summary.json; on a full disk a warning instead (the journal's close event says how it ended)."""
    try:
        write_json(run_dir / runs.SUMMARY, summary)
    except OSError as exc:
        if not runs.disk_full(exc):
            raise
        print(f"warning: {run_dir / runs.SUMMARY} could not be written: the disk is full", file=sys.stderr)


def _started(journal: Path) -> dict[str, Any]:
    """The info of a journal's start event ({} when it cannot be read)."""
    import json

    try:
        with open(journal, encoding="utf-8") as f:
            info = json.loads(f.readline(1 << 24)).get("info", {})
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _brief(provenance: dict[str, Any]) -> dict[str, Any]:
    from runner.lab.provenance import brief

    return brief(provenance)


def start_info(dataset: data.Dataset, experiment: Experiment, device: Any) -> dict[str, Any]:
    """What the training side knows for the start event, and what made the run (runner.lab.provenance:
    commits, dirty trees and their diffs, versions, host, command line)."""
    from runner.lab import provenance

    return {"device": str(device), "dataset": dataset.info.describe(), "train_size": len(dataset.train),
            "test_size": len(dataset.test), "steps_per_epoch": -(-len(dataset.train) // experiment.data.batch_size),
            "provenance": provenance.collect(provenance.model_dirs(experiment.model))}


def _build(experiment: Experiment, dataset: data.Dataset, device: Any, out: Path | None, resume_dir: Path | None,
           resume: dict[str, Any] | None) -> train.Built:
    """The model, once the run is known to fit this machine (a new run) or its checkpoint to fit the
    model (a resumed one): before the run directory is made or its journal cut back, so input that
    fails here leaves nothing changed."""
    from runner import limits

    if resume is None:
        check_limits(experiment, device, dataset.info, len(dataset.train), out)
    try:
        built = train.build_model(experiment, dataset)  # so does a model that does not fit the data
    except Exception as exc:
        if limits.is_allocation_error(exc):  # memory the estimate did not see: nothing made yet either
            raise limits.LimitError(limits.allocation_message(exc, device)) from None
        raise
    if resume is not None:
        runs.check_fits(resume_dir or Path("."), resume, built[0])
    return built


def execute(experiment: Experiment, make_loggers: Callable[[Path], Sequence[Logger]],
            should_stop: Callable[[], str | None] = lambda: None, *,
            out: Path | None = None, resume_dir: Path | None = None, resume: dict[str, Any] | None = None,
            dataset: data.Dataset | None = None,
            go_on: Callable[[dict[str, Any]], bool] = lambda _: True) -> dict[str, Any]:
    """Train `experiment` (or continue `resume_dir` from `resume`) and return its summary.

    The loggers (`make_loggers(run_dir)`) are made only once the data is loaded, the limits checked,
    the model built and the run directory exists, so input that fails those checks leaves no
    dashboard touched and no sender thread behind.

    Every ending is marked: summary.json gets `status` finished, stopped early (`go_on`, asked after
    each epoch, said no: a search's scheduler), diverged or failed (with the error's first line); a
    stop writes no summary (the run can be resumed), and the loggers' close gets status stopped with
    the resume command. Raises train.Stopped (with `.run_dir` set; a checkpoint is saved),
    train.Diverged as `fit` does, and limits.LimitError when the run runs out of memory; the loggers
    are closed in every case.
    """
    from runner import limits

    started = time.perf_counter()
    device = train.pick_device(experiment.train)
    if dataset is None:
        dataset = data.load(experiment.data, device)  # before the run dir: bad data leaves nothing behind
    built = _build(experiment, dataset, device, out, resume_dir, resume)
    new_dir = resume_dir is None and (out is None or not out.exists())
    run_dir = resume_dir or runs.create(experiment, out)
    with Recorder(experiment, run_dir, make_loggers(run_dir), device, resume, started) as recorder:
        try:
            if resume is None:
                recorder.start(start_info(dataset, experiment, device))
            model, results = train.fit(experiment, dataset, device, recorder.logger, resume=resume,
                                       checkpoint=recorder.checkpoint, should_stop=should_stop, built=built,
                                       go_on=go_on)
        except train.Stopped as stopped:
            stopped.run_dir = run_dir
            recorder.ended(status.STOPPED, first_line(stopped), reason=f"stopped by {stopped.reason} after step "
                           f"{stopped.step}", resume=f"python -m runner --resume {run_dir}")
            raise
        except train.Diverged as diverged:
            recorder.ended(status.DIVERGED, first_line(diverged))
            raise
        except Exception as exc:
            if runs.disk_full(exc):
                raise _disk_full(recorder, exc) from None
            if limits.is_allocation_error(exc):
                message = limits.allocation_message(exc, device)
                recorder.ended(status.FAILED, message)
                if new_dir and not (run_dir / runs.CHECKPOINT).exists():
                    shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained: leave nothing behind
                raise limits.LimitError(message) from None
            recorder.ended(status.FAILED, first_line(exc))
            raise
        try:
            return recorder.finished(results, lambda path: runs.save_weights(path, model.state_dict()))
        except Exception as exc:
            if runs.disk_full(exc):
                raise _disk_full(recorder, exc) from None
            raise


def _disk_full(recorder: Recorder, exc: BaseException) -> runs.DiskFull:
    """End a run whose disk filled as a stopped one (no summary: it can be resumed) and say what is kept."""
    run_dir = recorder.run_dir
    kept = recorder.checkpointed
    where = (f"its last checkpoint (step {kept}) is kept: free some space, then continue it with "
             f"`python -m runner --resume {run_dir}`") if kept is not None else (
             "it stopped before its first checkpoint, so it cannot be continued: free some space and start it again "
             "(its journal keeps the steps it trained)")
    message = (f"the disk holding {run_dir} is full ({os.strerror(errno.ENOSPC).lower()}); the run stopped and "
               f"{where}.")
    recorder.ended(status.STOPPED, message, reason="the disk is full")
    return runs.DiskFull(message)

