"""A sweep directory on disk: made new, its table and plan (sweep.json) rewritten as it goes, read back
to continue it (`--resume SWEEP_DIR`), and finished runs gathered into a comparison (`compare`).

A comparison may hold tracked runs (runner.track: a loop of one's own, `tracked_info`): their
spec.json is a config, so each is a variant without an experiment (runner.sweeps.variants.tracked)
and its row takes what its summary has (its last values; no test accuracy).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from runner import runs, status
from runner import spec as specs
from runner.files import write_json
from runner.sweeps import results as table
from runner.sweeps.plan import Plan
from runner.sweeps.results import Result
from runner.sweeps.variants import Variant, flatten, label, tracked, unflatten, unique

PLAN = "sweep.json"
OWN = (PLAN, table.RESULTS_CSV, table.RESULTS_MD)  # the files only the sweep writes (atomically), under its lock


def sweep_dir(name: str, out: Path | None, root: Path = Path("runs")) -> Path:
    """A new, empty sweep directory: `out`, or runs/<name>-<timestamp>[-n]."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out, n = root / f"{name}-{stamp}", 1
        while out.exists():
            n += 1
            out = root / f"{name}-{stamp}-{n}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise runs.RunDirError(f"--out {out} already holds files; a sweep needs a new or empty directory.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write(out: Path, plan: Plan, results: Sequence[Result], record_plan: bool = True) -> None:
    """results.csv, results.md and, for a sweep directory, sweep.json (its variants and where they
    ran, for `compare` and `--resume`)."""
    table.write(out, plan.name, results)
    if not record_plan:
        return
    search = {"search": {"source": plan.search[1], "spec": plan.search[0].model_dump(mode="json")}
              } if plan.search is not None else {}
    write_json(out / PLAN, {
        "name": plan.name, **plan.where, **search,
        "variants": [{"name": v.name, "base": v.base, "label": v.label, "source": v.source, "status": r.status,
                      "error": r.error, "run_dir": Path(r.run_dir).name if r.run_dir else None, "flat": v.flat,
                      **({"point": v.point} if v.point is not None else {})}
                     for v, r in zip(plan.variants, results)]})


def publish(out: Path, plan: Plan, variants: Sequence[Variant], results: Sequence[Result], board: Any) -> None:
    """The table and plan as they stand, on disk and on the live comparison (variants: a search's grow)."""
    write(out, replace(plan, variants=tuple(variants)), results)
    if board is not None:
        board.results(*table.rows(results))


@dataclass(frozen=True)
class Resumed:
    """A stopped sweep read back from its directory: the results it has, and the checkpoints (by
    variant index) its stopped variants continue from."""

    plan: Plan
    results: list[Result]
    checkpoints: dict[int, dict[str, Any]]

    @property
    def left(self) -> int:
        """Variants still to train, draws still to make included."""
        return sum(r.status not in status.SETTLED for r in self.results) + self.plan.to_draw


def _recorded(out: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]], tuple[specs.Experiment, str] | None]:
    try:
        recorded = json.loads((out / PLAN).read_text())
        items = [(item["name"], item["label"], item["source"], item["flat"], status.read(item["status"]),
                  item["error"], item["run_dir"], item.get("base", ""), item.get("point"))
                 for item in recorded["variants"]]
        recorded["name"]
        searched = recorded.get("search")
        search = None if searched is None else (
            specs.parse(searched["spec"], f"{out / PLAN} (the search)"), searched["source"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise runs.RunDirError(f"--resume {out}: {PLAN} cannot be read ({type(exc).__name__}: {exc}); it is "
                               "damaged or not a sweep record of this runner.") from None
    for item in items:  # the variants' run directories are the sweep's own folders, and nothing else
        runs.child(out, item[0], out / PLAN)
        if item[6]:
            runs.child(out, item[6], out / PLAN)
    return recorded, items, search


def resume(out: Path) -> Resumed:
    """The sweep recorded in `out`/sweep.json, as it stood when it stopped: finished and failed variants
    keep their results, a stopped one continues from its checkpoint, the rest run afresh.

    Raises runs.RunDirError for a directory that is not a sweep of this runner, or has nothing left to do.
    """
    recorded, items, search = _recorded(out)
    variants, results, checkpoints = [], [], {}
    for i, (vname, vlabel, source, flat, state, error, run_dir, base, point) in enumerate(items):
        experiment = None
        if not error or state != status.FAILED:
            experiment = specs.parse(unflatten(flat), f"{out / PLAN} (variant {vname})")
        variant = Variant(vname, source, flat, experiment, error=error or None if experiment is None else None,
                          base=base, label=vlabel, point=point)
        variants.append(variant)
        where = runs.child(out, run_dir or vname, out / PLAN)
        summary = read_summary(where) if (where / runs.SUMMARY).is_file() else None
        if summary is not None and status.read(summary.get("status", status.FINISHED)) in status.TRAINED:
            results.append(Result.of(variant, status.FINISHED, summary, run_dir=where))
        elif state == status.FAILED or experiment is None:
            results.append(Result.of(variant, status.FAILED, error=error or "",
                                     run_dir=where if where.exists() else None))
        elif (where / runs.CHECKPOINT).is_file():
            _, checkpoints[i] = runs.load_checkpoint(where)
            results.append(Result.of(variant, status.STOPPED, run_dir=where))
        else:
            if (where / runs.JOURNAL).exists():  # stopped before its first checkpoint: nothing to continue
                shutil.rmtree(where)
            results.append(Result.of(variant, status.NOT_RUN))
    plan = Plan(recorded["name"], tuple(variants), search, _dashboard(variants, search), _where(recorded))
    if all(r.status in status.SETTLED for r in results) and not plan.to_draw:
        raise runs.RunDirError(f"--resume {out}: every variant of this sweep has finished (see "
                               f"{out / table.RESULTS_MD}); start a new sweep instead.")
    return Resumed(plan, results, checkpoints)


def _where(recorded: dict[str, Any]) -> dict[str, Any]:
    """Where the comparison was shown, as sweep.json recorded it (no board: nothing)."""
    return {"env": recorded["env"]} if isinstance(recorded.get("env"), str) else {}


def _dashboard(variants: Sequence[Variant], search: tuple[specs.Experiment, str] | None) -> specs.VisdomSpec:
    """The dashboard section a resumed comparison is shown with: its search's, or its first variant's
    (whose own env names a comparison only when all its variants come from that one spec)."""
    if search is not None:
        return search[0].visdom
    first = next((v.experiment for v in variants if v.experiment is not None), None)
    if first is None:
        return specs.VisdomSpec()
    one_spec = len({v.source for v in variants}) == 1
    return first.visdom if one_spec else first.visdom.model_copy(update={"env": None})


@dataclass(frozen=True)
class Gathered:
    """Finished (or stopped) runs found on disk, as a plan, with the results they recorded."""

    plan: Plan
    results: list[Result]
    journals: dict[str, Path] = field(default_factory=dict)  # variant name -> its metrics.jsonl


Entry = tuple[Variant, "Path | None", "dict[str, Any] | None"]


def _entries_of_sweep(path: Path) -> tuple[str, dict[str, Any], list[Entry]]:
    try:
        recorded = json.loads((path / PLAN).read_text())
        recorded["name"], recorded["variants"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise runs.RunDirError(f"{path / PLAN} cannot be read ({type(exc).__name__}: {exc}); it is damaged "
                               "or not a sweep record of this runner.") from None
    entries: list[Entry] = []
    for item in recorded["variants"]:
        run_dir = runs.child(path, item["run_dir"], path / PLAN) if item["run_dir"] else None
        if run_dir is not None and (run_dir / runs.JOURNAL).is_file():
            entries.append(_from_run_dir(run_dir, item))
        else:  # never trained: an invalid value, or a sweep stopped before it
            variant = Variant(item["name"], item["source"], item["flat"], error=item["error"] or None,
                              base=item.get("base", ""))
            entries.append((variant, None, {"status": status.read(item["status"]), "error": item["error"]}))
    return recorded["name"], _where(recorded), entries


def _entries(paths: Sequence[Path]) -> tuple[list[str], dict[str, Any], list[Entry]]:
    entries: list[Entry] = []
    names: list[str] = []
    where: dict[str, Any] = {}
    for path in paths:
        if (path / runs.JOURNAL).is_file():
            entries.append(_from_run_dir(path, None))
        elif path.is_dir() and (path / PLAN).is_file():
            name, shown, found = _entries_of_sweep(path)
            names.append(name)
            where = shown if len(paths) == 1 else {}
            entries += found
        elif path.is_dir() and any((child / runs.JOURNAL).is_file() for child in path.iterdir()):
            entries += [_from_run_dir(child, None) for child in sorted(path.iterdir())
                        if (child / runs.JOURNAL).is_file()]
        else:
            raise runs.RunDirError(f"{path} is neither a run directory (with {runs.JOURNAL}) nor a sweep directory "
                                   "holding them; runs are made by `python -m runner SPEC.json` under runs/.")
    if not entries:
        raise runs.RunDirError("nothing to compare: give run directories or sweep directories.")
    return names, where, entries


def gather(paths: Sequence[Path]) -> Gathered:
    """Run directories, and sweep directories standing for all their runs, as one comparison.

    Raises runs.RunDirError for a path that is neither.
    """
    names, where, entries = _entries(paths)
    name = names[0] if len(names) == 1 and len(paths) == 1 else "compare"
    variants = label(unique([variant for variant, _, _ in entries]), name)
    results = []
    journals = {}
    for variant, (_, run_dir, recorded) in zip(variants, entries):
        if run_dir is not None:
            journals[variant.name] = run_dir / runs.JOURNAL
        summary = read_summary(run_dir) if run_dir is not None else None
        ended = status.read(summary.get("status", status.FINISHED)) if summary is not None else None
        if variant.tracked and ended is not None and ended not in status.TRAINED:  # its last values still count
            results.append(Result.of(variant, status.STOPPED if ended == status.STOPPED else status.FAILED, summary,
                                     error=str(summary.get("error") or ended), run_dir=run_dir))
        elif summary is not None and ended not in status.TRAINED:
            results.append(Result.of(variant, status.FAILED, error=str(summary.get("error") or summary.get("status")),
                                     run_dir=run_dir))
        elif summary is not None:
            results.append(Result.of(variant, status.FINISHED, summary, run_dir=run_dir))
        else:
            state = (recorded or {}).get("status")
            if run_dir is not None and state not in (status.FAILED, status.STOPPED):
                state = status.UNFINISHED  # a journal but no summary: killed, or still running
            results.append(Result.of(variant, state or status.UNFINISHED, error=(recorded or {}).get("error") or "",
                                     run_dir=run_dir))
    first = next((v.experiment.visdom for v in variants if v.experiment is not None), specs.VisdomSpec())
    return Gathered(Plan(name, tuple(variants), dashboard=first.model_copy(update={"env": None}), where=where),
                    results, journals)


def _from_run_dir(run_dir: Path, recorded: dict[str, Any] | None) -> Entry:
    info = tracked_info(run_dir)
    if info is not None:
        try:
            config = json.loads((run_dir / runs.SPEC).read_text())
        except (OSError, json.JSONDecodeError):
            config = None
        config = config if isinstance(config, dict) else info.get("spec") if isinstance(info.get("spec"), dict) else {}
        name = str(info.get("name") or run_dir.name)
        return tracked(name, str(run_dir), config), run_dir, recorded
    try:
        resolved = json.loads((run_dir / runs.SPEC).read_text())
        experiment = specs.parse(resolved, str(run_dir / runs.SPEC))
    except (OSError, json.JSONDecodeError, specs.SpecError) as exc:
        raise runs.RunDirError(f"{run_dir}: its {runs.SPEC} cannot be read ({exc}); is it a run directory of "
                               "this runner?") from None
    flat = flatten(experiment.model_dump(mode="json"))
    base = recorded["base"] if recorded else re.sub(r"-seed_\d+$", "", experiment.name)
    return Variant(experiment.name, str(run_dir), flat, experiment, base=base), run_dir, recorded


def tracked_info(run_dir: Path) -> dict[str, Any] | None:
    """A tracked run's start info (its journal's first line: name, config as `spec`, `tracked`), or its
    summary where the journal cannot say; None for a run of the runner's own."""
    try:
        with open(run_dir / runs.JOURNAL, encoding="utf-8") as f:
            first = json.loads(f.readline(1 << 20))
        info = first.get("info") if first.get("event") == "start" else None
        if isinstance(info, dict) and info.get("tracked") is True:
            return info
    except (OSError, ValueError, AttributeError):
        pass
    summary = read_summary(run_dir)
    return summary if summary is not None and summary.get("tracked") is True else None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((run_dir / runs.SUMMARY).read_text())
        return summary if isinstance(summary, dict) else None
    except (OSError, json.JSONDecodeError):
        return None
