"""Command line: `python -m runner SPEC.json...`, `compare`, `report`, `validate`, `schema`, `replay`.

One spec without a sweep is one run; a spec with a sweep, or several specs, is a comparison
(runner.sweep). Only this module turns exceptions into exit codes; torch is imported only by the
commands that train, so `validate`, `schema` and `--dry-run` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from runner import spec as specs
from runner.loggers import FanOut

if TYPE_CHECKING:
    from runner.sweep import Result

VARIANTS_FAILED, USAGE_ERROR, DIVERGED = 1, 2, 3


class UsageError(Exception):
    """Bad input from the command line; the message is shown as is."""


def dashboards() -> Any:
    """The dashboards factory (loggers, comparison board, VISDOM_* checks), imported on first use."""
    from dashboards import factory

    return factory


def make_loggers(kind: str, experiment: specs.Experiment, run_dir: Path, report: bool, **where: Any) -> list[Any]:
    """The loggers `--logger` asks for, and with `report` the one writing report.html when the run ends."""
    loggers = dashboards().make_loggers(kind, experiment, run_dir, **where)
    if report:
        from dashboards.report import ReportOnClose

        loggers.append(ReportOnClose(run_dir))
    return loggers


def check_environment(kind: str) -> None:
    """Refuse a bad VISDOM_PORT / VISDOM_SERVER before anything is trained or written."""
    try:
        dashboards().check_environment(kind)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    if args.resume:
        if args.spec or args.set or args.out or args.dry_run:
            raise UsageError("--resume RUN_DIR continues a run (or SWEEP_DIR a sweep) with its own spec; give no "
                             "SPEC, --set, --out or --dry-run.")
        from runner import runs, sweep

        if (args.resume / sweep.PLAN).is_file():
            resumed = sweep.resume(args.resume)
            check_executor(args, resumed.plan)
            return run_sweep(args, [], resumed.plan, args.resume, resumed)
        if args.executor == "ray":
            raise UsageError("--executor ray runs comparisons in a sweep directory (a spec without a sweep is a "
                             "comparison of one); to continue one run, leave it out.")
        experiment, resume = runs.load_checkpoint(args.resume)
    elif not args.spec:
        raise UsageError("give an experiment file (e.g. experiments/relu.json) or --resume RUN_DIR.")
    else:
        experiments = [(specs.load(path, args.set), str(path)) for path in args.spec]
        first = experiments[0][0]
        if len(experiments) > 1 or first.sweep is not None or first.search is not None or args.dry_run \
                or args.executor == "ray":
            return run_sweep(args, experiments)
        experiment, resume = experiments[0][0], None
        if args.out is not None:
            from runner import runs

            runs.check_new(args.out)
    check_environment(args.logger)
    check_executor(args)
    from runner import session, train

    with session.StopOnSignal() as stop:
        try:
            session.execute(experiment, lambda run_dir: make_loggers(args.logger, experiment, run_dir,
                                                                     not args.no_report),
                            stop, out=args.out, resume_dir=args.resume, resume=resume)
        except train.Stopped as stopped:
            print(f"{stopped}; checkpoint saved. Continue with: python -m runner --resume {stopped.run_dir}",
                  file=sys.stderr)
            return 128 + (stop.signal or signal.SIGINT)
        except train.Diverged as diverged:
            print(f"error: {diverged}", file=sys.stderr)
            return DIVERGED
    return 0


def run_sweep(args: argparse.Namespace, experiments: list[tuple[specs.Experiment, str]], plan: Any = None,
              out: Path | None = None, resumed: Any = None) -> int:
    """Every variant of `experiments` (or, resuming, those of `plan` left to do), one after another,
    then the results table."""
    from runner import sweep

    check_environment(args.logger)
    if resumed is None:
        plan = sweep.plan(experiments)
        if not args.dry_run:
            check_executor(args, plan)
        if args.dry_run:
            print("\n".join(sweep.describe(plan)))
            return USAGE_ERROR if any(v.error for v in plan.variants) else 0
        out = sweep.sweep_dir(plan.name, args.out)
        if not (len(experiments) == 1 and experiments[0][0].visdom.env):  # the comparison env is one per sweep
            plan = dataclasses.replace(plan, env=dashboards().run_env(plan.name, out.name))
        what = f"a search of {plan.to_draw} variants" if plan.search else f"{len(plan.variants)} variants"
        print(f"{plan.name}: {what}{' on Ray' if args.executor == 'ray' else ''}, run directories under {out}")
    else:
        left = sum(r.status not in sweep.DONE for r in resumed.results) + plan.to_draw
        print(f"{plan.name}: resuming {left} of {len(plan.variants) + plan.to_draw} variants under {out}")
    from runner import session

    with session.StopOnSignal() as stop:
        with contextlib.ExitStack() as stack:
            board = dashboards().make_board(args.logger, plan.env, plan.server, plan.port)
            if board is not None:
                stack.enter_context(board)
            def loggers_for(experiment: specs.Experiment, run_dir: Path, **extra: Any) -> list[Any]:
                return make_loggers(args.logger, experiment, run_dir, not args.no_report, group=plan.name,
                                    sweep_dir=out, **extra)

            if args.executor == "ray":
                from runner import on_ray

                try:
                    with on_ray.connected(ray_address(args), stop.last_words) as ready:
                        results, stopped = on_ray.run(plan, out, loggers_for, board, stop, resumed=resumed,
                                                      max_concurrent=args.max_concurrent, ready=ready)
                except on_ray.RayError as exc:
                    if resumed is None and not any(p.is_dir() for p in out.iterdir()):
                        shutil.rmtree(out)  # nothing ran: bad input leaves nothing behind
                    raise UsageError(str(exc)) from None
            else:
                results, stopped = sweep.run(plan, out, loggers_for, board, stop, resumed=resumed)
        show_table(results, f"{plan.name} results")
        print(f"results: {out / sweep.RESULTS_MD}, {out / sweep.RESULTS_CSV}")
        if not args.no_report:
            from dashboards.report import write_or_warn

            write_or_warn(out)
    if stopped is not None:
        skipped = sum(r.status == sweep.NOT_RUN for r in results)
        if plan.search is not None and plan.search[0].search is not None:  # draws not made yet
            skipped += max(plan.search[0].search.samples - len(results), 0)
        print(f"{stopped}; checkpoint saved, {skipped} variant(s) not run yet. Continue the sweep with: "
              f"python -m runner --resume {out}", file=sys.stderr)
        return 128 + (stop.signal or signal.SIGINT)
    failed = [r for r in results if r.status not in (sweep.OK, sweep.STOPPED_EARLY)]
    if failed:
        print(f"error: {len(failed)} of {len(results)} variants failed: {', '.join(r.name for r in failed)}; "
              "the table says why.", file=sys.stderr)
        return VARIANTS_FAILED
    return 0


def ray_address(args: argparse.Namespace) -> str | None:
    return args.ray_address or os.environ.get("RAY_ADDRESS") or None


def check_executor(args: argparse.Namespace, plan: Any = None) -> None:
    """Refuse, before a sweep directory is made, an executor this machine cannot run: Ray not
    installed, a cluster that does not answer; a search without Optuna."""
    import importlib.util

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UsageError(f"--max-concurrent {args.max_concurrent}: give at least 1 (or leave it out: as many as "
                         "the cluster holds).")
    if args.ray_address and args.executor != "ray":
        raise UsageError("--ray-address joins a Ray cluster, which only --executor ray uses; add --executor ray.")
    if args.max_concurrent is not None and args.executor != "ray":
        raise UsageError("--max-concurrent caps the variants training at once, which only --executor ray runs; the "
                         "local executor runs one at a time. Add --executor ray.")
    if args.executor == "ray":
        from runner import on_ray

        if not on_ray.available():
            raise UsageError("--executor ray needs Ray Tune, which is not installed in this environment; `make "
                             "install` installs it (or pip install 'ray[tune]==2.60.0' 'optuna==5.0.0'). Without "
                             "it, --executor local (the default) runs the same variants one after another.")
        address = ray_address(args)
        if address:
            try:
                on_ray.check_address(address)
            except on_ray.RayError as exc:
                raise UsageError(str(exc)) from None
    searched = plan is not None and plan.search is not None
    tpe = searched and plan.search[0].search.searcher == "tpe"
    if (args.executor == "local" and searched or tpe) and importlib.util.find_spec("optuna") is None:
        raise UsageError("a search needs Optuna, which is not installed in this environment; `make install` "
                         "installs it (or pip install 'optuna==5.0.0').")


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
    check_environment(a.logger)
    from runner import sweep
    from runner.loggers import replay as replay_journal

    gathered = sweep.gather(a.run_dirs, a.env)
    plan = gathered.plan
    first = next((v.experiment.visdom for v in plan.variants if v.experiment is not None), specs.VisdomSpec())
    board = dashboards().make_board(a.logger, plan.env, first.server, first.port)
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
        if experiment.search is not None:
            from runner import search

            try:
                search.check(experiment, str(path))
            except specs.SpecError as exc:
                print(f"error: {exc}", file=sys.stderr)
                failed += 1
            else:
                print(f"ok: {path} ({experiment.name}, a search of {experiment.search.samples} variants)")
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
    check_environment(kind)
    from runner.loggers import JournalError
    from runner.loggers import replay as replay_journal

    recorded = _recorded_env(run_dir)
    with FanOut(*dashboards().make_loggers(kind, experiment, run_dir, env=recorded)) as logger:
        try:
            events = replay_journal(journal, logger)
        except JournalError as exc:
            raise UsageError(str(exc)) from None
    print(f"replayed {events} events from {journal}")
    return 0


def _recorded_env(run_dir: Path) -> str | None:
    """The env a run wrote, as its summary recorded it (None: name it as a new run would)."""
    from runner import runs

    try:
        env = json.loads((run_dir / runs.SUMMARY).read_text()).get("visdom_env")
    except (OSError, ValueError, AttributeError):
        return None
    return env if isinstance(env, str) and env else None


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
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: a comparison's variants one after another in this process (default); ray: as Ray "
                        "Tune trials, several at once, on this machine or a cluster (--ray-address); a spec "
                        "without a sweep then runs as a comparison of one, in a sweep directory")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="join the Ray cluster whose head is there (default: "
                   "$RAY_ADDRESS, else Ray starts on this machine for the sweep alone)")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="with --executor ray: at most N variants train "
                   "at once (default: as many as the cluster's CPUs and GPUs hold, given train.cpus and train.gpus)")
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
        from runner.limits import LimitError
        from runner.models import ModelError
        from runner.runs import RunDirError
        from runner.train import DeviceError

        if isinstance(exc, (DataError, DeviceError, LimitError, ModelError, RunDirError)):
            print(f"error: {exc}", file=sys.stderr)
            return USAGE_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
