"""Command line: `python -m runner SPEC.json`, `validate`, `schema`, `replay`.

Only this module turns exceptions into exit codes; torch is imported only by the commands that
train, so `validate` and `schema` answer at once.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from runner import spec as specs
from runner.loggers import FanOut, Logger, NullLogger

USAGE_ERROR, DIVERGED = 2, 3


class UsageError(Exception):
    """Bad input from the command line; the message is shown as is."""


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


def run(args: argparse.Namespace) -> int:
    from runner import runs, session, train

    if args.resume:
        if args.spec or args.set or args.out:
            raise UsageError("--resume RUN_DIR continues a run with its own spec; give no SPEC, --set or --out.")
        experiment, resume = runs.load_checkpoint(args.resume)
    elif args.spec is None:
        raise UsageError("give an experiment file (e.g. experiments/relu.json) or --resume RUN_DIR.")
    else:
        experiment, resume = specs.load(args.spec, args.set), None
        if args.out is not None:
            runs.check_new(args.out)
    with session.StopOnSignal() as stop:
        try:
            session.execute(experiment, make_loggers(args.logger, experiment), stop, out=args.out,
                            resume_dir=args.resume, resume=resume)
        except train.Stopped as stopped:
            print(f"{stopped}; checkpoint saved. Continue with: python -m runner --resume {stopped.run_dir}",
                  file=sys.stderr)
            return 128 + (stop.signal or signal.SIGINT)
        except train.Diverged as diverged:
            print(f"error: {diverged}", file=sys.stderr)
            return DIVERGED
    return 0


def validate(paths: Sequence[Path]) -> int:
    failed = 0
    for path in paths:
        try:
            experiment = specs.load(path)
        except specs.SpecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
        else:
            print(f"ok: {path} ({experiment.name})")
    return USAGE_ERROR if failed else 0


def replay(run_dir: Path, kind: str) -> int:
    from runner import runs

    journal = run_dir / runs.JOURNAL
    if not journal.is_file():
        raise UsageError(f"{run_dir} is not a run directory: it has no {runs.JOURNAL}. Run directories are "
                         "made by `python -m runner SPEC.json` under runs/.")
    experiment = specs.parse(json.loads((run_dir / runs.SPEC).read_text()), str(run_dir / runs.SPEC))
    from runner.loggers import replay as replay_journal

    with FanOut(*make_loggers(kind, experiment)) as logger:
        events = replay_journal(journal, logger)
    print(f"replayed {events} events from {journal}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner", description="Train an experiment described by a JSON file. "
                                "Other commands: `validate SPEC...`, `schema`, `replay RUN_DIR`.")
    p.add_argument("spec", type=Path, nargs="?", help="experiment file, e.g. experiments/relu.json")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    p.add_argument("--logger", choices=("visdom", "console", "null"), default="visdom",
                   help="visdom: console and live dashboard (default); console: terminal only; null: nothing shown")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set optim.lr=0.1 (repeatable)")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<name>-<timestamp>)")
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
        from runner.runs import RunDirError
        from runner.train import DeviceError

        if isinstance(exc, (DataError, DeviceError, RunDirError)):
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
