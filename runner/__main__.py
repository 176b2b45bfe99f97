"""Command line: `python -m runner SPEC.json...`, `compare`, `report`, `validate`, `schema`, `replay`.

Parses the arguments and dispatches to runner.commands; only this module turns exceptions into exit
codes (a UserError: its paragraph and exit 2). torch is imported only by the commands that train,
so `validate`, `schema` and `--dry-run` answer at once.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from runner import spec as specs
from runner.errors import UserError
from runner.loggers.registry import KINDS

EXIT = ("exit status: 0 ok; 1 a variant of a comparison failed; 2 bad input; 3 the run diverged; "
        "130/143 stopped by Ctrl-C/SIGTERM (checkpoint saved)")
LOGGER_HELP = (f"one or more of {', '.join(KINDS)}, separated by commas: visdom (default) the live dashboard, "
               "tensorboard event files in the run directory, console the terminal alone, null nothing shown; "
               "the console comes with every kind but null")


def parser() -> argparse.ArgumentParser:
    from runner import executors

    p = argparse.ArgumentParser(
        prog="python -m runner", description="Train an experiment described by a JSON file. A spec with a sweep, "
        "or several specs, is a comparison: every variant runs in turn, each with its own run directory and "
        "dashboard env, in one sweep directory with a results table. Other commands: `compare RUN_DIR...`, "
        "`report RUN_DIR`, `validate SPEC...`, `schema`, `replay RUN_DIR`; the notebook of runs: `runs [DIR...]`, "
        "`tag RUN... +TAG -TAG`, `note RUN TEXT`, `diff RUN_A RUN_B`.", epilog=EXIT)
    p.add_argument("spec", type=Path, nargs="*", help="experiment files, e.g. experiments/relu.json")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--logger", default="visdom", metavar="KIND[,KIND]", help=LOGGER_HELP)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--out", type=Path, help="run directory, or a comparison's sweep directory "
                                            "(default: runs/<name>-<timestamp>)")
    p.add_argument("--dry-run", action="store_true", help="list the variants a spec's sweep makes; train nothing")
    p.add_argument("--no-report", action="store_true", help="write no report.html into the run or sweep directory "
                                                            "at the end")
    executors.add_options(p)
    return p


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner compare", description="Compare finished runs from their "
                                "journals, without training: charts on the dashboard and the results table.")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                   help="run directories; a sweep directory stands for all its runs")
    p.add_argument("--logger", default="visdom", metavar="KIND[,KIND]",
                   help="visdom: the comparison env and the table (default); console (or any kind without a "
                        "comparison view): the table only")
    p.add_argument("--env", help="Visdom env of the comparison (default: the sweep's, or 'compare')")
    p.add_argument("--out", type=Path, help="also write results.csv and results.md into this directory")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner report", description="Write one self-contained HTML "
                                "file showing a run (its curves, samples, summary and spec) or a sweep (its "
                                "curves overlaid and its results table), from the directory's files only. It opens "
                                "in any browser without a network.")
    p.add_argument("path", type=Path, metavar="RUN_DIR_OR_SWEEP_DIR")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default: "
                   "RUN_DIR_OR_SWEEP_DIR/report.html)")
    return p


def replay_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner replay", description="Rebuild a run's dashboard (or its "
                                "console, or its TensorBoard event files) from its journal.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--logger", default="visdom", metavar="KIND[,KIND]", help=LOGGER_HELP)
    return p


LAB = ("runs", "tag", "note", "diff")  # the notebook's commands (runner/lab/cli.py parses their arguments)


def dispatch(argv: list[str]) -> int:
    from runner.lab import cli as lab

    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command in LAB or (command == "report" and lab.wants_lab_report(rest)):
        return getattr(lab, command)(rest)
    from runner import commands

    if command == "schema":
        print(json.dumps(specs.schema(), indent=2))
        return 0
    if command == "validate":
        if not rest:
            raise UserError("validate needs at least one experiment file, e.g. "
                            "`python -m runner validate experiments/*.json`.")
        return commands.validate([Path(a) for a in rest])
    if command == "compare":
        a = compare_parser().parse_args(rest)
        if a.env is not None and not re.fullmatch(specs.NAME_PATTERN, a.env):
            raise UserError(f"--env {a.env!r}: use letters, digits, '_', '.', '-' (up to 100, starting with a "
                            "letter or digit).")
        return commands.compare(a)
    if command == "report":
        return commands.report(report_parser().parse_args(rest))
    if command == "replay":
        return commands.replay(replay_parser().parse_args(rest))
    return commands.train(parser().parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return dispatch(list(sys.argv[1:] if argv is None else argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_status


if __name__ == "__main__":
    sys.exit(main())
