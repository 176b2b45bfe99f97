"""The results table of a comparison: one row per variant, best first, as the console, results.md,
results.csv and the dashboards show it. Statuses are runner.status's words.

results.md ends with what the comparison learned: each varied key's importance for the metric
(runner.sweeps.importance), or the sentence saying why there is none yet. `learned` gives the keys
and the finished runs' values that the dashboards' parallel-coordinates chart draws too.

A tracked run (runner.track) has no test set of the runner's: its row says n/a there, its wall time
stands for the training time, and a `last values` column shows what it logged last.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from runner import status
from runner.files import atomic, write_text
from runner.sweeps import importance
from runner.sweeps.variants import Variant, seeds_vary, show

RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
NUMBERS = ("test_accuracy", "best_test_accuracy", "test_loss", "train_seconds")
TEXT_COLUMNS = ("variant", "last values", "status")  # aligned left; the others hold numbers
LAST_SHOWN = 4  # a tracked run's last values in its row; results.csv has them all
NOT_MEASURED = "n/a"  # a tracked run's test accuracy and loss: its loop has no test set of the runner's


@dataclass(frozen=True)
class Result:
    """One row of the results table."""

    name: str
    label: str
    seed: Any
    status: str
    test_accuracy: float | None = None
    best_test_accuracy: float | None = None
    test_loss: float | None = None
    train_seconds: float | None = None
    error: str = ""
    run_dir: str = ""
    flat: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the variant's values
    tracked: bool = False  # a loop of one's own (runner.track)
    last: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # a tracked run's last values

    @classmethod
    def of(cls, variant: Variant, state: str, summary: dict[str, Any] | None = None, error: str = "",
           run_dir: Path | None = None) -> "Result":
        """A row for `variant`; a finished one takes its numbers (and a search's early stop) from `summary`,
        a tracked one its wall time and last values."""
        numbers = {k: _number(summary.get(k)) for k in NUMBERS} if summary else {}
        if state == status.FINISHED and summary and summary.get("status") == status.STOPPED_EARLY:
            state = status.STOPPED_EARLY
        last = {}
        if variant.tracked and summary:
            numbers["train_seconds"] = numbers.get("train_seconds") or _number(summary.get("wall_seconds"))
            last = dict(summary["last"]) if isinstance(summary.get("last"), dict) else {}
        return cls(variant.name, variant.label, variant.seed, state, **numbers, error=error,
                   run_dir=str(run_dir) if run_dir else "", flat=variant.flat, tracked=variant.tracked, last=last)

    @property
    def failed(self) -> bool:
        return self.status not in status.TRAINED


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def starting_results(variants: Sequence[Variant], resumed: Any = None) -> list[Result]:
    """The table as a sweep starts: a resumed sweep's rows as they were, else `first_results`."""
    return list(resumed.results) if resumed is not None else first_results(variants)


def first_results(variants: Sequence[Variant]) -> list[Result]:
    """The table as a sweep starts: not run, or failed for a variant whose values are invalid."""
    return [Result.of(v, status.NOT_RUN) if v.experiment else Result.of(v, status.FAILED, error=v.error or "")
            for v in variants]


def to_run(variants: Sequence[Variant], results: Sequence[Result]) -> list[int]:
    """Which variants a sweep (or a resumed one) still trains."""
    return [i for i, (v, r) in enumerate(zip(variants, results))
            if v.experiment is not None and r.status in status.TO_RUN]


def ranked(results: Iterable[Result]) -> list[Result]:
    """Finished runs by final test accuracy, best first; the others after them, in plan order."""
    results = list(results)
    done = sorted((r for r in results if r.test_accuracy is not None), key=lambda r: -r.test_accuracy)  # type: ignore[operator]
    return done + [r for r in results if r.test_accuracy is None]


def brief(error: str) -> str:
    """The gist of an error message for a table cell: its first sentence, without the file it names."""
    error = re.sub(r"^.*?: invalid experiment: ", "invalid ", error)
    return re.split(r"(?<=[^.\s]{2})\. ", error, maxsplit=1)[0].rstrip(".")


def rows(results: Sequence[Result], detail: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of the table the console, results.md and the dashboard show; with
    `detail` the status of a failure carries the gist of its error."""
    seeds = seeds_vary(results)
    problems = any(r.status != status.FINISHED for r in results)
    tracked = any(r.tracked for r in results)
    header = ["variant", *(["seed"] if seeds else []), "final acc", "best acc", "final loss", "train s",
              *(["last values"] if tracked else []), *(["status"] if problems else [])]

    def number(value: float | None, spec: str, r: Result) -> str:
        if r.tracked and spec != ".1f":
            return NOT_MEASURED
        return "" if value is None or not math.isfinite(value) else format(value, spec)

    table = []
    for r in ranked(results):
        state = r.status + (f": {brief(r.error)}" if detail and r.error and r.status != status.FINISHED else "")
        table.append([r.label, *([show(r.seed) if r.seed is not None else ""] if seeds else []),
                      number(r.test_accuracy, ".2%", r),
                      number(r.best_test_accuracy, ".2%", r), number(r.test_loss, ".4f", r),
                      number(r.train_seconds, ".1f", r), *([last_values(r.last)] if tracked else []),
                      *([state] if problems else [])])
    return header, table


def last_values(last: dict[str, Any]) -> str:
    """A tracked run's last values, the first LAST_SHOWN of them: 'train/loss 0.0123, lr 0.001 (+2 more)'."""
    shown = [f"{name} {value:.4g}" if isinstance(value, (int, float)) else f"{name} {value}"
             for name, value in list(last.items())[:LAST_SHOWN]]
    more = len(last) - LAST_SHOWN
    return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def errors(results: Sequence[Result]) -> list[str]:
    """The whole message of each failure, after the table."""
    return [f"{r.label}{f' (seed {show(r.seed)})' if seeds_vary(results) else ''}: {r.error}"
            for r in ranked(results) if r.error and r.status != status.FINISHED]


def table(results: Sequence[Result], title: str) -> Any:
    """The results as a rich Table, for the console; `errors` gives the messages to print under it."""
    from rich.table import Table

    header, cells = rows(results, detail=False)
    t = Table(title=title, show_header=True)
    for column in header:
        t.add_column(column, justify="left" if column in TEXT_COLUMNS else "right",
                     no_wrap=column not in ("variant", "last values"))
    for row in cells:
        t.add_row(*row)
    return t


def learned(results: Sequence[Result], folders: Iterable[Path] = ()
            ) -> tuple[importance.Target, list[importance.Trial]]:
    """The keys the comparison varied (the search recorded in the first of `folders`, or of the folders
    holding the runs, that holds one; else the values its variants differ in), and each finished run's
    values and metric."""
    results = [r for r in results if not r.tracked]  # no test metric to judge them by
    folders = [*folders, *(Path(r.run_dir).parent for r in results if r.run_dir)]
    target = importance.recorded(folders) or importance.of_grid([r.flat for r in results])
    runs = [(r.flat, getattr(r, target.metric, None)) for r in results if r.status == status.FINISHED]
    return target, importance.trials(target, runs)


def importance_lines(results: Sequence[Result], folders: Iterable[Path] = ()) -> list[str]:
    """results.md's last section: each key's importance for the metric, largest first, or why there is none."""
    target, trials = learned(results, folders)
    return list(_importance_lines(json.dumps([target.space, target.metric, target.maximize, trials])))


@functools.lru_cache(maxsize=4)  # a sweep rewrites its table as a variant starts too: nothing new has finished
def _importance_lines(key: str) -> tuple[str, ...]:
    space, metric, maximize, listed = json.loads(key)
    target, trials = importance.Target(space, metric, maximize), [(values, value) for values, value in listed]
    found, note = importance.explain(trials, target)
    heading = (f"## What mattered for {metric}", "")
    if not found:
        return (*heading, note)
    return (*heading, "| key | importance |", "|:--|--:|", *(_line([k, f"{v:.3f}"]) for k, v in found.items()), "",
            importance.caption(trials, target))


def _line(row: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |"


def markdown(results: Sequence[Result], title: str, folders: Iterable[Path] = ()) -> str:
    header, cells = rows(results)
    right = {column: ":--" for column in TEXT_COLUMNS}
    text = [f"# {title}", "", _line(header), "| " + " | ".join(right.get(c, "--:") for c in header) + " |",
            *(_line(row) for row in cells)]
    if errors(results):
        text += ["", "## Errors", "", *(f"- {e}" for e in errors(results))]
    if not all(r.tracked for r in results):  # tracked runs have no test metric to judge keys by
        text += ["", *importance_lines(results, folders)]
    return "\n".join(text) + "\n"


def write(out: Path, name: str, results: Sequence[Result]) -> None:
    """results.csv (every number in full) and results.md (the table as shown) in `out`."""
    tracked = any(r.tracked for r in results)
    fields = ["variant", "seed", "status", *NUMBERS, "name", "run_dir", "error", *(["last"] if tracked else [])]
    with atomic(out / RESULTS_CSV, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in ranked(results):
            writer.writerow([r.label, "" if r.seed is None else r.seed, r.status,
                             *("" if getattr(r, k) is None else repr(getattr(r, k)) for k in NUMBERS),
                             r.name, r.run_dir, r.error, *([json.dumps(r.last)] if tracked else [])])
    write_text(out / RESULTS_MD, markdown(results, f"{name} results", [out]))
