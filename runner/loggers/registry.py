"""Which loggers `--logger` makes: a comma-separated list of kinds (`--logger console,tensorboard`).

    null          nothing shown (the journal is still written); with other kinds: no console
    console       the terminal: progress bar, epoch lines, final table (runner.loggers.console)
    visdom        the live dashboard, one env per run, and the comparison env (dashboards.visdom)
    tensorboard   event files in RUN_DIR/tensorboard for `tensorboard --logdir runs/` (dashboards.tensorboard)

The console comes with every kind unless `null` is among them. A backend is one module named in
BACKENDS, imported only when chosen, with `make(experiment, place) -> Logger` and, where it has
them, `make_board(plan, out) -> board` (a live comparison of a sweep's runs) and `check() -> None`
(refuse its settings, or its packages missing, up front with a UserError naming what installs them).
A new backend is one module plus one line here.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from runner.errors import UserError
from runner.loggers.base import Logger, NullLogger

NULL = "null"
BACKENDS = {"console": "runner.loggers.console", "visdom": "dashboards.visdom.runs",
            "tensorboard": "dashboards.tensorboard"}
KINDS = (NULL, *BACKENDS)
REPORT = "dashboards.report"  # report.html: ReportOnClose, write, write_or_warn, ReportError


@dataclass(frozen=True)
class Place:
    """Where a run stands, for the backends that name what they show after it."""

    run_dir: Path | None = None
    group: str | None = None  # a variant's comparison (its name)
    sweep_dir: Path | None = None  # ... and its directory
    base: str | None = None  # the name of the spec the variant was made from
    replay: bool = False  # rebuilding a run from its journal
    progress: Any = None  # the console display variants training at the same time share
    say: Callable[[str], None] = print  # where a backend's messages go (above the progress bar)


def parse(text: str) -> tuple[str, ...]:
    """`--logger`'s value as kinds, each known and named once."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise UserError(f"--logger {text!r}: {'unknown ' + ', '.join(map(repr, unknown)) if unknown else 'empty'}; "
                        f"give one or more of {', '.join(KINDS)}, separated by commas (e.g. console,tensorboard).")
    return kinds


def backend(kind: str) -> ModuleType:
    """The module of a backend, or a UserError naming what installs it."""
    try:
        return importlib.import_module(BACKENDS[kind])
    except ImportError as exc:
        raise UserError(f"--logger {kind} cannot be used here ({exc}).") from None


def report() -> ModuleType:
    """The offline report's module (it needs no optional package)."""
    return importlib.import_module(REPORT)


def check(kinds: Sequence[str]) -> None:
    """Refuse, before anything is trained or written, a backend that cannot run: its packages missing
    or its settings (e.g. VISDOM_PORT) invalid."""
    for kind in kinds:
        if kind == NULL:
            continue
        module = backend(kind)
        if hasattr(module, "check"):
            module.check()


def make(kinds: Sequence[str], experiment: Any, place: Place) -> list[Logger]:
    """The loggers of one run; the console first (the others print through it)."""
    if NULL in kinds and len(kinds) == 1:
        return [NullLogger()]
    loggers: list[Logger] = []
    if NULL not in kinds:
        from runner.loggers.console import ConsoleLogger

        console = ConsoleLogger(shared=place.progress)
        loggers.append(console)
        place = Place(**{**place.__dict__, "say": console.note})
    for kind in kinds:
        if kind not in (NULL, "console"):
            try:
                loggers.append(backend(kind).make(experiment, place))
            except ImportError as exc:  # a backend whose optional part is missing: say so, train anyway
                print(f"warning: --logger {kind} is not available ({exc}); training without it.", file=sys.stderr)
    return loggers or [NullLogger()]


def make_board(kinds: Sequence[str], plan: Any, out: Path | None) -> Any:
    """The live comparison of a sweep's runs, from the first backend that draws one (None if none)."""
    for kind in kinds:
        if kind != NULL and hasattr(backend(kind), "make_board"):
            board = backend(kind).make_board(plan, out)
            if board is not None:
                return board
    return None
