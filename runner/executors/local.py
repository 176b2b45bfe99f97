"""The local executor (`--executor local`, the default): a comparison's variants one after another
in this process, and a search's draws one by one (runner.sweeps.search.LocalSearch, its scheduler
stopping some early). Variants that train on the same data share its tensors.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from runner import runs, status
from runner.errors import UserError
from runner.executors import LoggersFor, expected, failure
from runner.sweeps import search
from runner.sweeps.plan import Plan
from runner.sweeps.record import Resumed, publish
from runner.sweeps.results import Result, starting_results, to_run
from runner.sweeps.variants import safe_name, seeds_vary, show


def add_options(parser: argparse.ArgumentParser) -> None:
    """The local executor has no flags of its own."""


def unused(args: argparse.Namespace) -> None:
    """Nothing to refuse."""


def make(args: argparse.Namespace) -> "Local":
    return Local()


class Local:
    single_runs = True

    def check(self, plan: Plan | None) -> None:
        if plan is not None and plan.search is not None and importlib.util.find_spec("optuna") is None:
            raise UserError("a search needs Optuna, which is not installed in this environment; `make "
                            "install-extras` installs it (or .venv/bin/pip install 'optuna==5.0.0').")

    def run(self, plan: Plan, out: Path, loggers_for: LoggersFor, board: Any,
            should_stop: Callable[[], str | None], resumed: Resumed | None = None,
            last_words: list[Callable[[], None]] | None = None, say: Callable[[str], None] = print
            ) -> tuple[list[Result], BaseException | None]:
        """Train every valid variant in turn, each in out/<variant name>; one failing does not stop the
        rest. `resumed` (a stopped sweep read back) gives the results already there, which are kept,
        and the checkpoints its stopped variants continue from."""
        sweep = _Sweep(plan, out, loggers_for, board, should_stop, say, resumed)
        sweep.record()
        runnable = to_run(sweep.variants, sweep.results)
        total = len(runnable) + plan.to_draw
        for n, i in enumerate(runnable, 1):
            if should_stop() or sweep.stopped is not None:
                return sweep.results, sweep.stopped
            sweep.train(i, n, total)
        if plan.search is not None and plan.to_draw and sweep.stopped is None:
            sweep.draw(range(len(runnable) + 1, total + 1))
        return sweep.results, sweep.stopped


class _Sweep:
    """One local sweep as it goes: its variants, their results, the data they share."""

    def __init__(self, plan: Plan, out: Path, loggers_for: LoggersFor, board: Any,
                 should_stop: Callable[[], str | None], say: Callable[[str], None], resumed: Resumed | None) -> None:
        self.plan, self.out, self.loggers_for, self.board = plan, out, loggers_for, board
        self.should_stop, self.say = should_stop, say
        self.variants = list(plan.variants)
        self.results = starting_results(plan.variants, resumed)
        self.checkpoints = dict(resumed.checkpoints) if resumed is not None else {}
        self.cached: tuple[Any, Any] | None = None  # (data spec and device, dataset): variants share the tensors
        self.stopped: BaseException | None = None
        self.seeds = seeds_vary(self.variants)

    def record(self) -> None:
        try:
            publish(self.out, self.plan, self.variants, self.results, self.board)
        except OSError as exc:
            if not runs.disk_full(exc):
                raise
            self.say(f"warning: {self.out} is full; its table could not be rewritten ({exc.strerror})")

    def dataset(self, experiment: Any) -> Any:
        from runner import data, train

        device = train.pick_device(experiment.train)
        key = (experiment.data, str(device))
        if self.cached is None or self.cached[0] != key:
            self.cached = None  # free the previous tensors before loading others
            self.cached = (key, data.load(experiment.data, device))
        return self.cached[1]

    def train(self, i: int, n: int, total: int, go_on: Callable[[dict[str, Any]], bool] = lambda _: True) -> None:
        from runner import session, train

        variant, experiment = self.variants[i], self.variants[i].experiment
        assert experiment is not None
        self.say(f"\nvariant {n} of {total}: {variant.name} ({variant.label}"
                 f"{f', seed={show(variant.seed)}' if self.seeds else ''})")
        run_dir = self.out / variant.name
        self.results[i] = Result.of(variant, status.RUNNING, run_dir=run_dir)
        self.record()  # the live comparison shows which variant is training now
        try:
            dataset = self.dataset(experiment)
            loggers = lambda run_dir: self.loggers_for(variant, run_dir)  # noqa: E731
            if i in self.checkpoints:  # a stopped sweep's variant: on from its last checkpoint
                summary = session.execute(experiment, loggers, self.should_stop, resume_dir=run_dir,
                                          resume=self.checkpoints.pop(i), dataset=dataset)
            else:
                summary = session.execute(experiment, loggers, self.should_stop, out=run_dir, dataset=dataset,
                                          go_on=go_on)
            self.results[i] = Result.of(variant, status.FINISHED, summary, run_dir=run_dir)
        except (train.Stopped, runs.DiskFull) as exc:  # a full disk stops the sweep too: resumable
            self.results[i] = Result.of(variant, status.STOPPED, error=str(exc), run_dir=run_dir)
            self.stopped = exc
        except Exception as exc:  # noqa: BLE001 - one variant's failure is a row in the table, not the end
            if not expected(exc):
                traceback.print_exc(file=sys.stderr)
            self.say(f"variant {variant.name} failed: {failure(exc)}")
            self.results[i] = Result.of(variant, status.FAILED, error=failure(exc),
                                        run_dir=run_dir if run_dir.exists() else None)
        self.record()

    def draw(self, numbers: range) -> None:
        """A search's variants, drawn one by one, each trained before the next is drawn."""
        assert self.plan.search is not None
        experiment, source = self.plan.search
        drawer = search.LocalSearch(experiment, search.done(self.variants, self.results, experiment))
        for n in numbers:
            if self.should_stop() or self.stopped is not None:
                break
            number = search.next_number(self.variants)
            name = safe_name(f"{experiment.name}-{number:03d}")
            variant = search.variant(experiment, source, drawer.ask(name), number)
            self.variants.append(variant)
            self.results.append(Result.of(variant, status.FAILED, error=variant.error or "") if variant.error else
                                Result.of(variant, status.NOT_RUN))
            if variant.experiment is not None:
                self.train(len(self.variants) - 1, n, numbers.stop - 1,
                           lambda epoch: drawer.report(name, epoch["epoch"], epoch))
            drawer.tell(name, self.results[-1])
            self.record()
