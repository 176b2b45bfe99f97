"""One run of one experiment, from a validated spec to a summary on disk: data on the device, the
run directory, the journal, checkpoints after each epoch, and a clean stop on Ctrl-C or SIGTERM.
The CLI uses it for single runs and resumes; sweeps use it once per variant.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from runner import data, runs, train
from runner.loggers import FanOut, JsonlLogger, Logger
from runner.loggers import replay as replay_journal
from runner.spec import Experiment


class StopOnSignal:
    """Ctrl-C or SIGTERM asks training to stop after the current step; a second one exits at once.

    The journal is written one whole-line write(2) per event, so even the hard exit leaves it valid.
    """

    def __init__(self) -> None:
        self.signal: int | None = None

    def __enter__(self) -> "StopOnSignal":
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signal is not None:
            os._exit(128 + signum)
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
              "(again to quit at once)", file=sys.stderr)

    def __call__(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name


def execute(experiment: Experiment, make_loggers: Callable[[], Sequence[Logger]],
            should_stop: Callable[[], str | None] = lambda: None, *,
            out: Path | None = None, resume_dir: Path | None = None, resume: dict[str, Any] | None = None,
            dataset: data.Dataset | None = None) -> dict[str, Any]:
    """Train `experiment` (or continue `resume_dir` from `resume`) and return its summary.

    The loggers are made only once the data is loaded, the model built and the run directory exists, so input that
    fails those checks leaves no dashboard touched and no sender thread behind.

    Raises train.Stopped (with `.run_dir` set; a checkpoint is saved) and train.Diverged as `fit` does;
    the loggers are closed in every case.
    """
    started = time.perf_counter()
    device = train.pick_device(experiment.train)
    if dataset is None:
        dataset = data.load(experiment.data, device)  # before the run dir: bad data leaves nothing behind
    built = train.build_model(experiment, dataset)  # so does a model that does not fit the data
    run_dir = resume_dir or runs.create(experiment, out)
    loggers = list(make_loggers())
    visdom_env = next((logger.env for logger in loggers if hasattr(logger, "env")), None)
    journal = JsonlLogger(run_dir / runs.JOURNAL, keep=resume["journal_bytes"] if resume else 0)

    def checkpoint(payload: dict[str, Any]) -> None:
        runs.save_checkpoint(run_dir, {**payload, "journal_bytes": journal.position})

    with FanOut(journal, *loggers) as logger:
        if resume is None:
            logger.start({"name": experiment.name, "spec": experiment.model_dump(mode="json"),
                          "device": str(device), "run_dir": str(run_dir), "torch_version": torch.__version__,
                          "visdom_env": visdom_env, "dataset": dataset.info.describe(),
                          "train_size": len(dataset.train), "test_size": len(dataset.test),
                          "steps_per_epoch": -(-len(dataset.train) // experiment.data.batch_size)})
        else:  # the dashboard and console first get what the journal already holds
            replay_journal(journal.path, FanOut(*loggers), limit=resume["journal_bytes"])
        try:
            model, results = train.fit(experiment, dataset, device, logger, resume=resume, checkpoint=checkpoint,
                                       should_stop=should_stop, built=built)
        except train.Stopped as stopped:
            stopped.run_dir = run_dir
            raise
        torch.save(model.state_dict(), run_dir / runs.WEIGHTS)
        summary = {"name": experiment.name, **results, "wall_seconds": time.perf_counter() - started,
                   "device": str(device), "torch_version": torch.__version__, "seed": experiment.seed,
                   "visdom_env": visdom_env, "run_dir": str(run_dir)}
        runs.write_json(run_dir / runs.SUMMARY, summary)
        logger.close(summary)
    return summary
