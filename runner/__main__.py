"""Command line: `python -m runner SPEC.json...`, `compare`, `report`, `validate`, `schema`, `replay`.

One spec without a sweep is one run; a spec with a sweep, or several specs, is a comparison
(runner.sweep). Only this module turns exceptions into exit codes; torch is imported only by the
commands that train, so `validate`, `schema` and `--dry-run` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from runner import spec as specs
from runner.loggers import FanOut, Logger, NullLogger

if TYPE_CHECKING:
    from runner.sweep import Board, Result

VARIANTS_FAILED, USAGE_ERROR, DIVERGED = 1, 2, 3


class UsageError(Exception):
    """Bad input from the command line; the message is shown as is."""


def check_visdom_environment(kind: str) -> None:
    """Refuse a bad VISDOM_PORT / VISDOM_SERVER up front, before anything is trained or written."""
    if kind != "visdom":
        return
    port, server = os.environ.get("VISDOM_PORT"), os.environ.get("VISDOM_SERVER")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"VISDOM_PORT is {port!r}; it must be a port number from 1 to 65535 (default 8097).")
    if server and not re.fullmatch(r"https?://[A-Za-z0-9.\-]+|https?://\[[0-9A-Fa-f:.]+\]", server):
        raise UsageError(f"VISDOM_SERVER is {server!r}; it must be a URL such as http://localhost or "
                         "http://10.0.0.5, without port or path (the port comes from VISDOM_PORT).")


def make_loggers(kind: str, experiment: specs.Experiment) -> list[Logger]:
    """The loggers `--logger` asks for; the dashboard is imported only when chosen."""
    if kind == "null":
        return [NullLogger()]
    from runner.console import ConsoleLogger

    if kind == "console":
        return [ConsoleLogger()]
    v = experiment.visdom
    try:
        from dashboards.visdom_logger import VisdomLogger

        return [ConsoleLogger(), VisdomLogger(env=v.env or experiment.name, server=v.server, port=v.port)]
    except ImportError as exc:
        print(f"warning: the Visdom dashboard is not available ({exc}); showing the console only.", file=sys.stderr)
        return [ConsoleLogger()]


def make_board(kind: str, env: str, server: str | None, port: int | None) -> Board | None:
    """The live comparison env for `--logger visdom`, or None."""
    if kind != "visdom":
        return None
    try:
        from dashboards.compare import ComparisonBoard
    except ImportError as exc:
        print(f"warning: the Visdom comparison is not available ({exc}); showing the console only.", file=sys.stderr)
        return None
    return ComparisonBoard(env, server=server, port=port)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        if args.spec or args.set or args.out or args.dry_run:
            raise UsageError("--resume RUN_DIR continues a run with its own spec; give no SPEC, --set, --out or "
                             "--dry-run.")
        from runner import runs

        experiment, resume = runs.load_checkpoint(args.resume)
    elif not args.spec:
        raise UsageError("give an experiment file (e.g. experiments/relu.json) or --resume RUN_DIR.")
    else:
        experiments = [(specs.load(path, args.set), str(path)) for path in args.spec]
        if len(experiments) > 1 or experiments[0][0].sweep is not None or args.dry_run:
            return run_sweep(args, experiments)
        experiment, resume = experiments[0][0], None
        if args.out is not None:
            from runner import runs

            runs.check_new(args.out)
    check_visdom_environment(args.logger)
    from runner import session, train

    with session.StopOnSignal() as stop:
        try:
            session.execute(experiment, lambda: reporting(args, make_loggers(args.logger, experiment), args.resume),
                            stop, out=args.out, resume_dir=args.resume, resume=resume)
        except train.Stopped as stopped:
            print(f"{stopped}; checkpoint saved. Continue with: python -m runner --resume {stopped.run_dir}",
                  file=sys.stderr)
            return 128 + (stop.signal or signal.SIGINT)
        except train.Diverged as diverged:
            print(f"error: {diverged}", file=sys.stderr)
            return DIVERGED
    return 0


def run_sweep(args: argparse.Namespace, experiments: list[tuple[specs.Experiment, str]]) -> int:
    """Every variant of `experiments`, one after another, then the results table."""
    from runner import sweep

    plan = sweep.plan(experiments)
    check_visdom_environment(args.logger)
    if args.dry_run:
        print("\n".join(sweep.describe(plan)))
        return USAGE_ERROR if any(v.error for v in plan.variants) else 0
    from runner import session

    out = sweep.sweep_dir(plan.name, args.out)
    print(f"{plan.name}: {len(plan.variants)} variants, run directories under {out}")
    with session.StopOnSignal() as stop:
        with contextlib.ExitStack() as stack:
            board = make_board(args.logger, plan.env, plan.server, plan.port)
            if board is not None:
                stack.enter_context(board)
            results, stopped = sweep.run(plan, out, lambda e: reporting(args, make_loggers(args.logger, e)), board,
                                         stop)
        show_table(results, f"{plan.name} results")
        print(f"results: {out / sweep.RESULTS_MD}, {out / sweep.RESULTS_CSV}")
        if not args.no_report:
            from dashboards.report import write_or_warn

            write_or_warn(out)
    if stopped is not None:
        skipped = sum(r.status == sweep.NOT_RUN for r in results)
        print(f"{stopped}; checkpoint saved. Continue that variant with: python -m runner --resume "
              f"{getattr(stopped, 'run_dir', '')}; {skipped} variant(s) not run.", file=sys.stderr)
        return 128 + (stop.signal or signal.SIGINT)
    failed = [r for r in results if r.status != sweep.OK]
    if failed:
        print(f"error: {len(failed)} of {len(results)} variants failed: {', '.join(r.name for r in failed)}; "
              "the table says why.", file=sys.stderr)
        return VARIANTS_FAILED
    return 0


def show_table(results: Sequence[Result], title: str) -> None:
    """The results table on the console, then the whole message of each failure it abbreviates."""
    from rich.console import Console

    from runner import sweep

    console = Console(highlight=False)
    console.print(sweep.table(results, title))
    for line in sweep.errors(results):
        console.print(line, markup=False)


def compare(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m runner compare", description="Compare finished runs from their "
                                "journals, without training: charts on the dashboard and the results table.")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                   help="run directories; a sweep directory stands for all its runs")
    p.add_argument("--logger", choices=("visdom", "console"), default="visdom",
                   help="visdom: the comparison env and the table (default); console: the table only")
    p.add_argument("--env", help="Visdom env of the comparison (default: the sweep's, or 'compare')")
    p.add_argument("--out", type=Path, help="also write results.csv and results.md into this directory")
    a = p.parse_args(argv)
    if a.env is not None and not re.fullmatch(specs.NAME_PATTERN, a.env):
        raise UsageError(f"--env {a.env!r}: use letters, digits, '_', '.', '-' (up to 100, starting with a "
                         "letter or digit).")
    check_visdom_environment(a.logger)
    from runner import sweep
    from runner.loggers import replay as replay_journal

    gathered = sweep.gather(a.run_dirs, a.env)
    plan = gathered.plan
    first = next((v.experiment.visdom for v in plan.variants if v.experiment is not None), specs.VisdomSpec())
    board = make_board(a.logger, plan.env, first.server, first.port)
    if board is not None:
        with board:
            for variant in plan.variants:
                if variant.name in gathered.journals:
                    with board.run(variant.name, variant.label) as logger:
                        replay_journal(gathered.journals[variant.name], logger)
            board.results(*sweep.rows(gathered.results))
    show_table(gathered.results, f"{plan.name} results")
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        sweep.write(a.out, plan, gathered.results, record_plan=False)
        print(f"results: {a.out / sweep.RESULTS_MD}, {a.out / sweep.RESULTS_CSV}")
    return 0


def reporting(args: argparse.Namespace, loggers: list[Logger], run_dir: Path | None = None) -> list[Logger]:
    """`loggers`, and unless --no-report the one writing the run's report.html when it ends, however it
    ends (it comes after the journal, so it reads the journal whole)."""
    if args.no_report:
        return loggers
    from dashboards.report import ReportOnClose

    return [*loggers, ReportOnClose(run_dir)]


def report(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m runner report", description="Write one self-contained HTML "
                                "file showing a run (its curves, samples, summary and spec) or a sweep (its "
                                "curves overlaid and its results table), from the directory's files only. It opens "
                                "in any browser without a network.")
    p.add_argument("path", type=Path, metavar="RUN_DIR_OR_SWEEP_DIR")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default: "
                   "RUN_DIR_OR_SWEEP_DIR/report.html)")
    a = p.parse_args(argv)
    from dashboards.report import ReportError, write

    try:
        print(f"report: {write(a.path, a.output)}")
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def validate(paths: Sequence[Path]) -> int:
    failed = 0
    for path in paths:
        try:
            experiment = specs.load(path)
        except specs.SpecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if experiment.sweep is None:
            print(f"ok: {path} ({experiment.name})")
            continue
        from runner import sweep

        variants = sweep.expand(experiment, str(path))
        for variant in variants:
            if variant.error:
                print(f"error: {variant.error}", file=sys.stderr)
        if any(v.error for v in variants):
            failed += 1
        else:
            print(f"ok: {path} ({experiment.name}, {len(variants)} variants)")
    return USAGE_ERROR if failed else 0


def replay(run_dir: Path, kind: str) -> int:
    from runner import runs

    journal = run_dir / runs.JOURNAL
    if not journal.is_file() or not (run_dir / runs.SPEC).is_file():
        raise UsageError(f"{run_dir} is not a run directory: it needs {runs.JOURNAL} and {runs.SPEC}. Run "
                         "directories are made by `python -m runner SPEC.json` under runs/.")
    try:
        experiment = specs.parse(json.loads((run_dir / runs.SPEC).read_text()), str(run_dir / runs.SPEC))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{run_dir / runs.SPEC} cannot be read ({exc}); is {run_dir} a run directory?") from None
    check_visdom_environment(kind)
    from runner.loggers import JournalError
    from runner.loggers import replay as replay_journal

    with FanOut(*make_loggers(kind, experiment)) as logger:
        try:
            events = replay_journal(journal, logger)
        except JournalError as exc:
            raise UsageError(str(exc)) from None
    print(f"replayed {events} events from {journal}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runner", description="Train an experiment described by a JSON file. A spec with a sweep, "
        "or several specs, is a comparison: every variant runs in turn, each with its own run directory and "
        "dashboard env, in one sweep directory with a results table. Other commands: `compare RUN_DIR...`, "
        "`report RUN_DIR`, `validate SPEC...`, `schema`, `replay RUN_DIR`.",
        epilog="exit status: 0 ok; 1 a variant of a comparison failed; 2 bad input; 3 the run diverged; "
               "130/143 stopped by Ctrl-C/SIGTERM (checkpoint saved)")
    p.add_argument("spec", type=Path, nargs="*", help="experiment files, e.g. experiments/relu.json")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--logger", choices=("visdom", "console", "null"), default="visdom",
                   help="visdom: console and live dashboard (default); console: terminal only; null: nothing shown")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--out", type=Path, help="run directory, or a comparison's sweep directory "
                                            "(default: runs/<name>-<timestamp>)")
    p.add_argument("--dry-run", action="store_true", help="list the variants a spec's sweep makes; train nothing")
    p.add_argument("--no-report", action="store_true", help="write no report.html into the run or sweep directory "
                                                            "at the end")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["schema"]:
            print(json.dumps(specs.schema(), indent=2))
            return 0
        if argv[:1] == ["validate"]:
            if len(argv) < 2:
                raise UsageError("validate needs at least one experiment file, e.g. "
                                 "`python -m runner validate experiments/*.json`.")
            return validate([Path(a) for a in argv[1:]])
        if argv[:1] == ["compare"]:
            return compare(argv[1:])
        if argv[:1] == ["report"]:
            return report(argv[1:])
        if argv[:1] == ["replay"]:
            p = argparse.ArgumentParser(prog="python -m runner replay")
            p.add_argument("run_dir", type=Path)
            p.add_argument("--logger", choices=("visdom", "console"), default="visdom")
            a = p.parse_args(argv[1:])
            return replay(a.run_dir, a.logger)
        return run(parser().parse_args(argv))
    except (specs.SpecError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as exc:  # data and device problems carry their own one-paragraph messages
        from runner.data import DataError
        from runner.models import ModelError
        from runner.runs import RunDirError
        from runner.train import DeviceError

        if isinstance(exc, (DataError, DeviceError, ModelError, RunDirError)):
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
