"""The commands behind `python -m runner`: train (one run, a sweep or search, or a resume), compare,
report, validate, replay. Each returns an exit status; errors a person can fix are UserErrors, which
the CLI prints as one paragraph (exit 2).

What a run is shown on comes from the logger registry (runner.loggers.registry), how a comparison's
variants train from the executor registry (runner.executors): this module names neither a backend
nor an executor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from runner import spec as specs
from runner.errors import UserError
from runner.loggers import registry
from runner.loggers.registry import Place

VARIANTS_FAILED, DIVERGED = 1, 3


def run_loggers(kinds: Sequence[str], experiment: specs.Experiment, place: Place, report: bool) -> list[Any]:
    """One run's loggers, and with `report` the one writing report.html when the run ends."""
    loggers = registry.make(kinds, experiment, place)
    if report and place.run_dir is not None:
        loggers.append(registry.report().ReportOnClose(place.run_dir))
    return loggers


def train(args: argparse.Namespace) -> int:
    """A spec (or several), or `--resume` of a run or a sweep."""
    from runner import executors

    kinds = registry.parse(args.logger)
    executor = executors.make(args)
    if args.resume:
        if args.spec or args.set or args.out or args.dry_run:
            raise UserError("--resume RUN_DIR continues a run (or SWEEP_DIR a sweep) with its own spec; give no "
                            "SPEC, --set, --out or --dry-run.")
        return resume(args, kinds, executor)
    if not args.spec:
        raise UserError("give an experiment file (e.g. experiments/relu.json) or --resume RUN_DIR.")
    experiments = [(specs.load(path, args.set), str(path)) for path in args.spec]
    first = experiments[0][0]
    if len(experiments) > 1 or first.sweep is not None or first.search is not None or args.dry_run \
            or not executor.single_runs:
        return sweep(args, kinds, executor, experiments)
    if args.out is not None:
        from runner import runs

        runs.check_new(args.out)
    registry.check(kinds)
    executor.check(None)
    return single(args, kinds, first, None)


def resume(args: argparse.Namespace, kinds: Sequence[str], executor: Any) -> int:
    """`--resume` of a run or a sweep, holding its directory from before anything is read from it."""
    from runner import runs
    from runner.sweeps import record

    a_sweep = (args.resume / record.PLAN).is_file()
    if not a_sweep:
        runs.check_resumable(args.resume)  # before the lock: a folder that is not a run gets nothing written
    with runs.lock(args.resume, record.OWN if a_sweep else runs.OWN):
        if a_sweep:
            return sweep(args, kinds, executor, [], record.resume(args.resume))
        if not executor.single_runs:
            raise UserError(f"--executor {args.executor} runs comparisons in a sweep directory (a spec without a "
                            "sweep is a comparison of one); to continue one run, leave it out.")
        experiment, checkpoint = runs.load_checkpoint(args.resume)
        registry.check(kinds)
        executor.check(None)
        return single(args, kinds, experiment, checkpoint)


def single(args: argparse.Namespace, kinds: Sequence[str], experiment: specs.Experiment,
           resume: dict[str, Any] | None) -> int:
    """One run, or the continuation of one, in this process."""
    from runner import session
    from runner import train as training

    with session.StopOnSignal() as stop:
        try:
            session.execute(experiment, lambda run_dir: run_loggers(kinds, experiment, Place(run_dir),
                                                                    not args.no_report),
                            stop, out=args.out, resume_dir=args.resume, resume=resume)
        except training.Stopped as stopped:
            print(f"{stopped}; checkpoint saved. Continue with: python -m runner --resume {stopped.run_dir}",
                  file=sys.stderr)
            return 128 + (stop.signal or signal.SIGINT)
        except training.Diverged as diverged:
            print(f"error: {diverged}", file=sys.stderr)
            return DIVERGED
    return 0


def sweep(args: argparse.Namespace, kinds: Sequence[str], executor: Any,
          experiments: list[tuple[specs.Experiment, str]], resumed: Any = None) -> int:
    """Every variant of `experiments` (or, resuming, those left to do), then the results table."""
    from runner.sweeps import plan as plans
    from runner.sweeps import record

    registry.check(kinds)
    if resumed is None:
        plan = plans.plan(experiments)
        if args.dry_run:
            print("\n".join(plans.describe(plan)))
            return UserError.exit_status if any(v.error for v in plan.variants) else 0
        executor.check(plan)
        out = record.sweep_dir(plan.name, args.out)
        what = f"a search of {plan.to_draw} variants" if plan.search else f"{len(plan.variants)} variants"
        print(f"{plan.name}: {what}{'' if args.executor == 'local' else f' on {args.executor.capitalize()}'}, "
              f"run directories under {out}")
    else:
        plan, out = resumed.plan, args.resume
        executor.check(plan)
        print(f"{plan.name}: resuming {resumed.left} of {len(plan.variants) + plan.to_draw} variants under {out}")
    return _train_sweep(args, kinds, executor, plan, out, resumed)


def _train_sweep(args: argparse.Namespace, kinds: Sequence[str], executor: Any, plan: Any, out: Path,
                 resumed: Any) -> int:
    from dataclasses import replace

    from runner import runs, session, status
    from runner.sweeps import record

    # The sweep directory is held throughout (a resume holds it already).
    with session.StopOnSignal() as stop, runs.lock(out, record.OWN), contextlib.ExitStack() as stack:
        board = registry.make_board(kinds, plan, out)
        if board is not None:
            stack.enter_context(board)
            plan = replace(plan, where={**plan.where, **board.where()})

        def loggers_for(variant: Any, run_dir: Path, progress: Any = None) -> list[Any]:
            place = Place(run_dir, plan.name, out, variant.base, progress=progress)
            return [*run_loggers(kinds, variant.experiment, place, not args.no_report),
                    *([board.run(variant.name, variant.label)] if board is not None else [])]

        results, stopped = executor.run(plan, out, loggers_for, board, stop, resumed, stop.last_words)
        stack.close()
        show_table(results, f"{plan.name} results")
        print(f"results: {out / record.table.RESULTS_MD}, {out / record.table.RESULTS_CSV}")
        if not args.no_report:
            registry.report().write_or_warn(out)
    if isinstance(stopped, runs.DiskFull):
        print(f"error: the disk holding {out} is full; the sweep stopped there and its variants keep their last "
              f"checkpoints. Once there is space, continue it with: python -m runner --resume {out}", file=sys.stderr)
        return UserError.exit_status
    if stopped is not None:
        skipped = sum(r.status == status.NOT_RUN for r in results)
        if plan.search is not None and plan.search[0].search is not None:  # draws not made yet
            skipped += max(plan.search[0].search.samples - len(results), 0)
        print(f"{stopped}; checkpoint saved, {skipped} variant(s) not run yet. Continue the sweep with: "
              f"python -m runner --resume {out}", file=sys.stderr)
        return 128 + (stop.signal or signal.SIGINT)
    failed = [r for r in results if r.failed]
    if failed:
        print(f"error: {len(failed)} of {len(results)} variants failed: {', '.join(r.name for r in failed)}; "
              "the table says why.", file=sys.stderr)
        return VARIANTS_FAILED
    return 0


def show_table(results: Sequence[Any], title: str) -> None:
    """The results table on the console, then the whole message of each failure it abbreviates."""
    from rich.console import Console

    from runner.sweeps import results as table

    console = Console(highlight=False)
    console.print(table.table(results, title))
    for line in table.errors(results):
        console.print(line, markup=False)


def compare(a: argparse.Namespace) -> int:
    """Finished runs' comparison from their journals: the board (if the logger draws one) and the table."""
    from dataclasses import replace

    from runner.loggers import replay as replay_journal
    from runner.sweeps import record
    from runner.sweeps import results as table

    kinds = registry.parse(a.logger)
    registry.check(kinds)
    gathered = record.gather(a.run_dirs)
    plan = gathered.plan
    if a.env is not None:
        plan = replace(plan, where={"env": a.env})
    sweep_dir = a.run_dirs[0] if len(a.run_dirs) == 1 and (a.run_dirs[0] / record.PLAN).is_file() else None
    board = registry.make_board(kinds, plan, sweep_dir)  # a sweep's own comparison, named as the sweep named it
    if board is not None:
        with board:
            for variant in plan.variants:
                if variant.name in gathered.journals:
                    with board.run(variant.name, variant.label) as logger:
                        replay_journal(gathered.journals[variant.name], logger)
            board.results(*table.rows(gathered.results))
    show_table(gathered.results, f"{plan.name} results")
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        record.write(a.out, plan, gathered.results, record_plan=False)
        print(f"results: {a.out / table.RESULTS_MD}, {a.out / table.RESULTS_CSV}")
    return 0


def report(a: argparse.Namespace) -> int:
    module = registry.report()
    try:
        print(f"report: {module.write(a.path, a.output)}")
    except module.ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def validate(paths: Sequence[Path]) -> int:
    """Each spec checked as a run would check it: its keys, its sweep's variants, its search's space."""
    failed = 0
    for path in paths:
        try:
            described, errors = _validate(path)
        except specs.SpecError as exc:
            described, errors = "", [str(exc)]
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        failed += bool(errors)
        if not errors:
            print(f"ok: {path} ({described})")
    return UserError.exit_status if failed else 0


def _validate(path: Path) -> tuple[str, list[str]]:
    """What the spec is, and the reasons its variants are invalid (one each)."""
    experiment = specs.load(path)
    if experiment.search is not None:
        from runner.sweeps import search

        search.check(experiment, str(path))
        return f"{experiment.name}, a search of {experiment.search.samples} variants", []
    if experiment.sweep is None:
        return experiment.name, []
    from runner.sweeps.variants import expand

    variants = expand(experiment, str(path))
    return f"{experiment.name}, {len(variants)} variants", [v.error for v in variants if v.error]


def replay(a: argparse.Namespace) -> int:
    """A run's dashboard (or console, or event files) rebuilt from its journal; a tracked run's
    (runner.track: its spec.json is a config, not an experiment) with its backends alone, as it was
    shown while it ran."""
    from runner import runs
    from runner.loggers import FanOut, JournalError
    from runner.loggers import replay as replay_journal

    run_dir = a.run_dir
    journal = run_dir / runs.JOURNAL
    if not journal.is_file() or not (run_dir / runs.SPEC).is_file():
        raise UserError(f"{run_dir} is not a run directory: it needs {runs.JOURNAL} and {runs.SPEC}. Run "
                        "directories are made by `python -m runner SPEC.json` under runs/.")
    kinds = registry.parse(a.logger)
    tracked = tracked_name(run_dir)
    if tracked is not None:
        experiment = specs.Experiment(name=tracked)
        kinds = (registry.NULL, *kinds)  # the console draws the runner's epochs only
    else:
        try:
            experiment = specs.parse(json.loads((run_dir / runs.SPEC).read_text()), str(run_dir / runs.SPEC))
        except (OSError, ValueError) as exc:
            raise UserError(f"{run_dir / runs.SPEC} cannot be read ({exc}); is {run_dir} a run directory?") from None
    registry.check(kinds)
    with FanOut(*registry.make(kinds, experiment, Place(run_dir, replay=True))) as logger:
        try:
            events = replay_journal(journal, logger)
        except JournalError as exc:
            raise UserError(str(exc)) from None
    print(f"replayed {events} events from {journal}")
    return 0


def tracked_name(run_dir: Path) -> str | None:
    """The name of a tracked run (runner.track), as its journal's start event or its summary.json says;
    None for a run of the runner's own."""
    from runner.sweeps.record import tracked_info

    info = tracked_info(run_dir)
    if info is None:
        return None
    name = str(info.get("name") or "")
    return name if re.fullmatch(specs.NAME_PATTERN, name) else "tracked"
