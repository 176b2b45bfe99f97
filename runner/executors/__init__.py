"""Executors: how a comparison's variants get trained. The CLI plans the variants
(runner.sweeps), makes the sweep directory and the live comparison, and hands them to the executor
`--executor` names; the executor trains each variant as an ordinary run (session.Recorder writes
its directory) and returns the results table.

    local   runner.executors.local   one variant after another, in this process (the default)
    ray     runner.executors.ray     Ray Tune trials, several at once, on this machine or a cluster

A third executor is one module with `make(args) -> Executor` and `add_options(parser)` (its own
flags; `unused(args)` refuses them when another executor is chosen), plus one line in EXECUTORS.
Modules are imported only when named, and importing one must stay cheap (no torch, no ray).
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:
    from runner.loggers import Logger
    from runner.sweeps.plan import Plan
    from runner.sweeps.record import Resumed
    from runner.sweeps.results import Result

EXECUTORS = {"local": "runner.executors.local", "ray": "runner.executors.ray"}

# The loggers of one variant's run: its backends and its trace on the live comparison.
LoggersFor = Callable[..., "Sequence[Logger]"]  # (variant, run_dir, progress=None) -> loggers


class Executor(Protocol):
    """Trains a plan's variants (and a search's draws) into `out`, one run directory each."""

    single_runs: bool  # whether it runs a spec without a sweep as a plain run (else: a comparison of one)

    def check(self, plan: Plan | None) -> None:
        """Refuse, before the sweep directory exists, what this executor cannot run here (UserError)."""

    def run(self, plan: Plan, out: Path, loggers_for: LoggersFor, board: Any,
            should_stop: Callable[[], str | None], resumed: Resumed | None,
            last_words: list[Callable[[], None]]) -> tuple[list[Result], BaseException | None]:
        """Every variant left to train; returns the results in plan order and the Stopped that ended
        the sweep early, if one did. The table and sweep.json are rewritten as variants end."""


def module(name: str) -> ModuleType:
    return importlib.import_module(EXECUTORS[name])


def add_options(parser: argparse.ArgumentParser) -> None:
    """`--executor` and each executor's own flags."""
    parser.add_argument("--executor", choices=tuple(EXECUTORS), default="local",
                        help="local: a comparison's variants one after another in this process (default); ray: as "
                             "Ray Tune trials, several at once, on this machine or a cluster (--ray-address); a "
                             "spec without a sweep then runs as a comparison of one, in a sweep directory")
    for name in EXECUTORS:
        module(name).add_options(parser)


def make(args: argparse.Namespace) -> Executor:
    """The executor `--executor` names, after refusing the flags of the others."""
    for name in EXECUTORS:
        if name != args.executor:
            module(name).unused(args)
    return module(args.executor).make(args)


def failure(exc: BaseException) -> str:
    """A variant's error as its row says it: a person's mistake (or a divergence) by its message alone,
    anything else with its type (the executor prints the traceback)."""
    return str(exc) if expected(exc) else f"{type(exc).__name__}: {exc}"


def expected(exc: BaseException) -> bool:
    """Whether an error's message is the whole story (one paragraph), needing no traceback."""
    from runner import train
    from runner.errors import UserError

    return isinstance(exc, (UserError, train.Diverged))
