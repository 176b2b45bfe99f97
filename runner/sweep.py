"""Comparisons: specs with a `sweep` (or several specs) expanded into variants, each trained as an
ordinary run inside one sweep directory, and the results gathered into one table; and the same
comparison rebuilt from finished run directories.

A variant is named after the values its own spec varies (`activations-activation_selu`: its run
directory and dashboard env); its label, shown in legends and tables, names only what differs across
the whole comparison, seed left out: runs that differ only in their seed are one group on the charts.

Importing this module must stay cheap (no torch): `--dry-run` lists the variants at once.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import sys
from collections import Counter
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from runner import runs
from runner import spec as specs
from runner.loggers import Logger

RESULTS_CSV, RESULTS_MD, PLAN = "results.csv", "results.md", "sweep.json"
OK, FAILED, STOPPED, NOT_RUN, UNFINISHED = "ok", "failed", "stopped", "not run", "unfinished"
RUNNING, STOPPED_EARLY = "running", "stopped early"  # stopped early: by a search's scheduler, a result
DONE = (OK, STOPPED_EARLY, FAILED)  # statuses a resumed sweep does not run again
OK_STATUS = "finished"  # what summary.json's status says of a run that finished


@dataclass(frozen=True)
class Variant:
    """One run of a comparison: a valid experiment, or the reason its values do not make one."""

    name: str  # run directory and dashboard env
    source: str  # the spec file it came from
    flat: dict[str, Any]  # its resolved spec as dotted keys: what labels are made of
    experiment: specs.Experiment | None = None
    error: str | None = None
    base: str = ""  # the name of the spec it came from
    label: str = ""  # what sets it apart in this comparison, seed left out
    point: dict[str, Any] | None = None  # a search's variant: the values drawn for it

    @property
    def seed(self) -> Any:
        return self.flat.get("seed")


@dataclass(frozen=True)
class Plan:
    name: str  # names the sweep directory
    env: str  # the comparison's dashboard env
    server: str | None
    port: int | None
    variants: tuple[Variant, ...]
    search: tuple[specs.Experiment, str] | None = None  # a search: the spec (and its file) variants are drawn from

    @property
    def to_draw(self) -> int:
        """How many variants a search has still to draw."""
        if self.search is None or self.search[0].search is None:
            return 0
        return max(self.search[0].search.samples - sum(v.point is not None for v in self.variants), 0)


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

    @classmethod
    def of(cls, variant: Variant, status: str, summary: dict[str, Any] | None = None, error: str = "",
           run_dir: Path | None = None) -> "Result":
        numbers = {k: summary[k] for k in ("test_accuracy", "best_test_accuracy", "test_loss", "train_seconds")
                   } if summary else {}
        if status == OK and summary and summary.get("status") == STOPPED_EARLY:
            status = STOPPED_EARLY
        return cls(variant.name, variant.label, variant.seed, status, **numbers, error=error,
                   run_dir=str(run_dir) if run_dir else "")


class Board(Protocol):
    """The live comparison on a dashboard (dashboards.compare.ComparisonBoard is the real one)."""

    def run(self, name: str, label: str) -> Logger: ...

    def results(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None: ...

    def close(self) -> None: ...


# ----- planning ----------------------------------------------------------------------------------

def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"activation": "relu"}} -> {"model.activation": "relu"}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def show(value: Any) -> str:
    """A value as people write it: bare words for strings, compact JSON otherwise."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def safe_name(text: str) -> str:
    """`text` fitted to spec.NAME_PATTERN: other characters become '_', at most 100 of them."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "variant"
    return text[:100]


def _assign(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def expand(experiment: specs.Experiment, source: str) -> list[Variant]:
    """One variant per combination of the sweep's values; the experiment itself when it has none."""
    base = experiment.model_dump(mode="json")
    sweep = base.pop("sweep") or {}
    varied = [key for key, values in sweep.items() if len(values) > 1]
    shorts = _short_keys(varied)
    variants = []
    for combination in itertools.product(*sweep.values()):
        values = dict(zip(sweep, combination))
        data = json.loads(json.dumps(base))
        for key, value in values.items():
            _assign(data, key, value)
        parts = [f"{shorts[key]}={show(values[key])}" for key in varied]
        suffix = "-".join(safe_name(part.replace("=", "_")) for part in parts)
        data["name"] = safe_name(f"{experiment.name}-{suffix}") if suffix else experiment.name
        if experiment.visdom.env and suffix:
            data["visdom"]["env"] = safe_name(f"{experiment.visdom.env}-{suffix}")
        where = f"{source}, variant {', '.join(parts)}" if parts else source
        try:
            variant = specs.parse(data, where)
        except specs.SpecError as exc:
            variants.append(Variant(data["name"], source, flatten(data), error=str(exc), base=experiment.name))
        else:
            variants.append(Variant(variant.name, source, flatten(variant.model_dump(mode="json")), variant,
                                    base=experiment.name))
    return variants


def _short_keys(keys: Iterable[str]) -> dict[str, str]:
    """model.activation -> activation, optim.name -> optim; the whole key where two would read the same."""
    keys = list(keys)
    leaves = [key.split(".")[-2] if key.endswith(".name") else key.rsplit(".", 1)[-1] for key in keys]
    return {key: leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(keys, leaves)}


def label(variants: Sequence[Variant], fallback: str) -> list[Variant]:
    """The variants with labels naming only what differs among them, seed aside.

    A key whose values differ is named on every variant, except where one value is more common than
    each other: then only the variants that depart from it name the key (three specs where one adds
    momentum: `momentum=0.9` on that one alone). A variant that departs from nothing is called by its
    spec's name; when nothing differs at all, every variant is called `fallback`.
    """
    order = {key: i for i, key in enumerate(specs.sweepable_keys())}
    keys = sorted({k for v in variants for k in v.flat if k in order and k != "seed"}, key=order.__getitem__)
    values = {k: [json.dumps(v.flat.get(k), sort_keys=True) for v in variants] for k in keys}
    differing = [k for k in keys if len(set(values[k])) > 1]
    shorts = _short_keys(differing)
    usual = {}
    for k in differing:
        (first, n), *rest = Counter(values[k]).most_common()
        usual[k] = first if n > rest[0][1] else None
    labelled = []
    for i, v in enumerate(variants):
        parts = [f"{shorts[k]}={show(v.flat.get(k))}" for k in differing if values[k][i] != usual[k]]
        labelled.append(replace(v, label=", ".join(parts) or (v.base if differing else fallback) or v.name))
    # Different settings must never share a label: the charts merge runs by label (seeds of one variant).
    settings: dict[str, set[str]] = {}
    for v in labelled:
        settings.setdefault(v.label, set()).add(json.dumps([v.flat.get(k) for k in differing]))
    return [replace(v, label=f"{v.label} ({v.name})") if len(settings[v.label]) > 1 else v for v in labelled]


def unique(variants: Sequence[Variant]) -> list[Variant]:
    """The variants, a name taken twice getting -2, -3, ... (its run directory and env follow)."""
    named: list[Variant] = []
    taken: set[str] = set()
    for variant in variants:
        name, n = variant.name, 1
        while name in taken:
            n += 1
            name = safe_name(f"{variant.name[:95]}-{n}")
        taken.add(name)
        if name != variant.name and variant.experiment is not None:
            variant = replace(variant, experiment=variant.experiment.model_copy(update={"name": name}))
        named.append(replace(variant, name=name))
    return named


def plan(experiments: Sequence[tuple[specs.Experiment, str]]) -> Plan:
    """The comparison of these (experiment, source) pairs: every variant of each, uniquely named; a
    search's variants are drawn as it runs."""
    searches = [(e, source) for e, source in experiments if e.search is not None]
    if searches and len(experiments) > 1:
        raise specs.SpecError(f"{searches[0][1]} declares a search, which runs on its own; give it as the only "
                              "experiment file.")
    if searches:
        from runner import search

        experiment, source = searches[0]
        search.check(experiment, source)
        return Plan(experiment.name, experiment.visdom.env or experiment.name, experiment.visdom.server,
                    experiment.visdom.port, (), searches[0])
    variants = unique([variant for experiment, source in experiments for variant in expand(experiment, source)])
    names = list(dict.fromkeys(experiment.name for experiment, _ in experiments))
    name = names[0] if len(names) == 1 else safe_name("-vs-".join(names))
    if len(name) > 60:
        name = safe_name(f"{names[0]}-and-{len(names) - 1}-more")
    first = experiments[0][0].visdom
    env = first.env if len(experiments) == 1 and first.env else name
    return Plan(name, env, first.server, first.port, tuple(label(variants, name)))


def describe(plan: Plan) -> list[str]:
    """The lines `--dry-run` prints: one per variant, invalid ones with the reason; a search's space."""
    if plan.search is not None and not plan.variants:
        s = plan.search[0].search
        assert s is not None
        lines = [f"{plan.name}: a search of {s.samples} variants by {s.metric} ({s.direction}), searcher "
                 f"{s.searcher}, scheduler {s.scheduler}; comparison env {plan.env}"]
        return lines + [f"  {key}: {kind} {json.dumps(args)}" for key, dist in s.space.items()
                        for kind, args in dist.items()]
    width = max(len(v.name) for v in plan.variants)
    lines = [f"{plan.name}: {len(plan.variants)} variant{'s' * (len(plan.variants) != 1)}, "
             f"comparison env {plan.env}"]
    seeds = _seeds_vary(plan.variants)
    for v in plan.variants:
        seed = f"  seed={show(v.seed)}" if seeds else ""
        lines.append(f"  {v.name:<{width}}  {v.label}{seed}" + (f"\n    invalid: {v.error}" if v.error else ""))
    return lines


def _seeds_vary(items: Iterable[Variant | Result]) -> bool:
    return len({json.dumps(item.seed) for item in items}) > 1


# ----- running -----------------------------------------------------------------------------------

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


def run(plan: Plan, out: Path, loggers_for: Callable[[specs.Experiment, Path], list[Logger]], board: Board | None,
        should_stop: Callable[[], str | None] = lambda: None, say: Callable[[str], None] = print,
        resumed: Resumed | None = None) -> tuple[list[Result], Exception | None]:
    """Train every valid variant in turn, each in out/<variant name>; one failing does not stop the rest.
    A search then draws its variants one by one (runner.search.LocalSearch), its scheduler stopping
    some early.

    `resumed` (a stopped sweep read back by `resume`) gives the results already there, which are
    kept, and the checkpoints the unfinished variants continue from.
    Returns the results in plan order and the train.Stopped that ended the sweep early, if one did.
    The results table and plan are rewritten after each variant, so a killed sweep still leaves them.
    """
    from runner import data, session, train

    variants = list(plan.variants)
    results = first_results(plan, resumed)
    checkpoints = dict(resumed.checkpoints) if resumed is not None else {}
    cached: tuple[Any, Any] | None = None  # (data spec and device, dataset): variants share the tensors
    stopped: Exception | None = None

    def record() -> None:
        publish(out, plan, variants, results, board)

    def train_one(i: int, n: int, total: int, go_on: Callable[[dict[str, Any]], bool]) -> None:
        nonlocal cached, stopped
        variant, experiment = variants[i], variants[i].experiment
        assert experiment is not None
        say(f"\nvariant {n} of {total}: {variant.name} ({variant.label}"
            f"{f', seed={show(variant.seed)}' if seeds else ''})")
        run_dir = out / variant.name
        results[i] = Result.of(variant, RUNNING, run_dir=run_dir)
        record()  # the live comparison shows which variant is training now
        try:
            device = train.pick_device(experiment.train)
            key = (experiment.data, str(device))
            if cached is None or cached[0] != key:
                cached = None  # free the previous tensors before loading others
                cached = (key, data.load(experiment.data, device))

            def loggers(run_dir: Path) -> list[Logger]:
                return [*loggers_for(experiment, run_dir), *([board.run(variant.name, variant.label)] if board else [])]

            if i in checkpoints:  # a stopped sweep's variant: on from its last checkpoint
                summary = session.execute(experiment, loggers, should_stop, resume_dir=run_dir,
                                          resume=checkpoints.pop(i), dataset=cached[1])
            else:
                summary = session.execute(experiment, loggers, should_stop, out=run_dir, dataset=cached[1],
                                          go_on=go_on)
            results[i] = Result.of(variant, OK, summary, run_dir=run_dir)
        except train.Stopped as exc:
            results[i] = Result.of(variant, STOPPED, error=str(exc), run_dir=run_dir)
            stopped = exc
        except Exception as exc:  # noqa: BLE001 - one variant's failure is a row in the table, not the end
            known = known_errors()
            if not isinstance(exc, known):
                traceback.print_exc(file=sys.stderr)
            message = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
            say(f"variant {variant.name} failed: {message}")
            results[i] = Result.of(variant, FAILED, error=message, run_dir=run_dir if run_dir.exists() else None)
        record()

    record()
    runnable = to_run(variants, results)
    seeds = _seeds_vary(variants)
    total = len(runnable) + plan.to_draw
    for n, i in enumerate(runnable, 1):
        if should_stop() or stopped is not None:
            return results, stopped
        train_one(i, n, total, lambda _: True)
    if plan.search is not None and plan.to_draw and stopped is None:
        from runner import search

        experiment, source = plan.search
        drawer = search.LocalSearch(experiment, search.done(variants, results, experiment))
        for n in range(len(runnable) + 1, total + 1):
            if should_stop() or stopped is not None:
                break
            number = search.next_number(variants)
            name = safe_name(f"{experiment.name}-{number:03d}")
            variant = search.variant(experiment, source, drawer.ask(name), number)
            variants.append(variant)
            results.append(Result.of(variant, FAILED, error=variant.error or "") if variant.error else
                           Result.of(variant, NOT_RUN))
            if variant.experiment is not None:
                train_one(len(variants) - 1, n, total, lambda epoch: drawer.report(name, epoch["epoch"], epoch))
            drawer.tell(name, results[-1])
            record()
    return results, stopped


def first_results(plan: Plan, resumed: Resumed | None) -> list[Result]:
    """The table as a sweep starts: a resumed sweep's rows as they were, else not run (failed: invalid)."""
    if resumed is not None:
        return list(resumed.results)
    return [Result.of(v, NOT_RUN) if v.experiment else Result.of(v, FAILED, error=v.error or "") for v in plan.variants]


def to_run(variants: Sequence[Variant], results: Sequence[Result]) -> list[int]:
    """Which variants a sweep (or a resumed one) still trains."""
    return [i for i, (v, r) in enumerate(zip(variants, results))
            if v.experiment is not None and r.status in (NOT_RUN, STOPPED, UNFINISHED)]


def publish(out: Path, plan: Plan, variants: Sequence[Variant], results: Sequence[Result], board: Board | None) -> None:
    """The table and plan as they stand, on disk and on the live comparison (variants: a search's grow)."""
    write(out, replace(plan, variants=tuple(variants)), results)
    if board is not None:
        board.results(*rows(results))


def known_errors() -> tuple[type[Exception], ...]:
    """Errors whose message is the whole story (one paragraph): shown as they are, no traceback."""
    from runner import data, limits, models, train

    return (specs.SpecError, runs.RunDirError, data.DataError, train.DeviceError, train.Diverged,
            models.ModelError, limits.LimitError)


@dataclass(frozen=True)
class Resumed:
    """A stopped sweep read back from its directory: the results it has, and the checkpoints (by
    variant index) its stopped variants continue from."""

    plan: Plan
    results: list[Result]
    checkpoints: dict[int, dict[str, Any]]


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of flatten: {"model.activation": "relu"} -> {"model": {"activation": "relu"}}."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        _assign(tree, key, value)
    return tree


def resume(out: Path) -> Resumed:
    """The sweep recorded in `out`/sweep.json, as it stood when it stopped: finished and failed variants
    keep their results, a stopped one continues from its checkpoint, the rest run afresh.

    Raises runs.RunDirError for a directory that is not a sweep of this runner, or has nothing left to do.
    """
    try:
        recorded = json.loads((out / PLAN).read_text())
        items = [(item["name"], item["label"], item["source"], item["flat"], item["status"], item["error"],
                  item["run_dir"], item.get("base", ""), item.get("point")) for item in recorded["variants"]]
        name, env = recorded["name"], recorded["env"]
        searched = recorded.get("search")
        search = None if searched is None else (
            specs.parse(searched["spec"], f"{out / PLAN} (the search)"), searched["source"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise runs.RunDirError(f"--resume {out}: {PLAN} cannot be read ({type(exc).__name__}: {exc}); it is "
                               "damaged or not a sweep record of this runner.") from None
    variants, results, checkpoints = [], [], {}
    for i, (vname, vlabel, source, flat, status, error, run_dir, base, point) in enumerate(items):
        experiment = None
        if not error or status != FAILED:
            experiment = specs.parse(unflatten(flat), f"{out / PLAN} (variant {vname})")
        variant = Variant(vname, source, flat, experiment, error=error or None if experiment is None else None,
                          base=base, label=vlabel, point=point)
        variants.append(variant)
        where = out / run_dir if run_dir else out / vname
        summary = _read_summary(where) if (where / runs.SUMMARY).is_file() else None
        if summary is not None and summary.get("status", OK_STATUS) in runs.DONE:
            results.append(Result.of(variant, OK, summary, run_dir=where))
        elif status == FAILED or experiment is None:
            results.append(Result.of(variant, FAILED, error=error or "", run_dir=where if where.exists() else None))
        elif (where / runs.CHECKPOINT).is_file():
            _, checkpoints[i] = runs.load_checkpoint(where)
            results.append(Result.of(variant, STOPPED, run_dir=where))
        else:
            if (where / runs.JOURNAL).exists():  # stopped before its first checkpoint: nothing to continue
                import shutil

                shutil.rmtree(where)
            results.append(Result.of(variant, NOT_RUN))
    first = next((v.experiment.visdom for v in variants if v.experiment is not None), specs.VisdomSpec())
    if search is not None:
        first = search[0].visdom
    plan = Plan(name, env, first.server, first.port, tuple(variants), search)
    if all(r.status in DONE for r in results) and not plan.to_draw:
        raise runs.RunDirError(f"--resume {out}: every variant of this sweep has finished (see "
                               f"{out / RESULTS_MD}); start a new sweep instead.")
    return Resumed(plan, results, checkpoints)


# ----- the results table -------------------------------------------------------------------------

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
    seeds = _seeds_vary(results)
    problems = any(r.status != OK for r in results)
    header = ["variant", *(["seed"] if seeds else []), "final acc", "best acc", "final loss", "train s",
              *(["status"] if problems else [])]

    def number(value: float | None, spec: str) -> str:
        return "" if value is None or not math.isfinite(value) else format(value, spec)

    table = []
    for r in ranked(results):
        status = r.status + (f": {brief(r.error)}" if detail and r.error and r.status != OK else "")
        table.append([r.label, *([show(r.seed)] if seeds else []), number(r.test_accuracy, ".2%"),
                      number(r.best_test_accuracy, ".2%"), number(r.test_loss, ".4f"),
                      number(r.train_seconds, ".1f"), *([status] if problems else [])])
    return header, table


def errors(results: Sequence[Result]) -> list[str]:
    """The whole message of each failure, after the table."""
    return [f"{r.label}{f' (seed {show(r.seed)})' if _seeds_vary(results) else ''}: {r.error}"
            for r in ranked(results) if r.error and r.status != OK]


def table(results: Sequence[Result], title: str) -> Any:
    """The results as a rich Table, for the console; `errors` gives the messages to print under it."""
    from rich.table import Table

    header, cells = rows(results, detail=False)
    t = Table(title=title, show_header=True)
    for column in header:
        t.add_column(column, justify="left" if column in ("variant", "status") else "right",
                     no_wrap=column != "variant")
    for row in cells:
        t.add_row(*row)
    return t


def markdown(results: Sequence[Result], title: str) -> str:
    header, cells = rows(results)

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |"

    right = {"variant": ":--", "status": ":--"}
    text = [f"# {title}", "", line(header), "| " + " | ".join(right.get(c, "--:") for c in header) + " |",
            *(line(row) for row in cells)]
    if errors(results):
        text += ["", "## Errors", "", *(f"- {e}" for e in errors(results))]
    return "\n".join(text) + "\n"


def write(out: Path, plan: Plan, results: Sequence[Result], record_plan: bool = True) -> None:
    """results.csv (every number in full), results.md (the table as shown) and, for a sweep directory,
    sweep.json (its variants and where they ran, for `compare`)."""
    fields = ["variant", "seed", "status", "test_accuracy", "best_test_accuracy", "test_loss", "train_seconds",
              "name", "run_dir", "error"]
    tmp = out / f"{RESULTS_CSV}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for r in ranked(results):
            writer.writerow([r.label, "" if r.seed is None else r.seed, r.status,
                             *("" if v is None else repr(v) for v in (r.test_accuracy, r.best_test_accuracy,
                                                                      r.test_loss, r.train_seconds)),
                             r.name, r.run_dir, r.error])
    tmp.replace(out / RESULTS_CSV)
    tmp = out / f"{RESULTS_MD}.tmp"
    tmp.write_text(markdown(results, f"{plan.name} results"), encoding="utf-8")
    tmp.replace(out / RESULTS_MD)
    if record_plan:
        search = {"search": {"source": plan.search[1], "spec": plan.search[0].model_dump(mode="json")}
                  } if plan.search is not None else {}
        runs.write_json(out / PLAN, {
            "name": plan.name, "env": plan.env, **search,
            "variants": [{"name": v.name, "base": v.base, "label": v.label, "source": v.source, "status": r.status,
                          "error": r.error, "run_dir": Path(r.run_dir).name if r.run_dir else None, "flat": v.flat,
                          **({"point": v.point} if v.point is not None else {})}
                         for v, r in zip(plan.variants, results)]})


# ----- comparing finished runs -------------------------------------------------------------------

@dataclass(frozen=True)
class Gathered:
    """Finished (or stopped) runs found on disk, as a plan, with the results they recorded."""

    plan: Plan
    results: list[Result]
    journals: dict[str, Path] = field(default_factory=dict)  # variant name -> its metrics.jsonl


def gather(paths: Sequence[Path], env: str | None = None) -> Gathered:
    """Run directories, and sweep directories standing for all their runs, as one comparison.

    Raises runs.RunDirError for a path that is neither.
    """
    entries: list[tuple[Variant, Path | None, dict[str, Any] | None]] = []
    names: list[str] = []
    for path in paths:
        if (path / runs.JOURNAL).is_file():
            entries.append(_from_run_dir(path, None))
        elif path.is_dir() and (path / PLAN).is_file():
            try:
                recorded = json.loads((path / PLAN).read_text())
                recorded["name"], recorded["env"], recorded["variants"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise runs.RunDirError(f"{path / PLAN} cannot be read ({type(exc).__name__}: {exc}); it is damaged "
                                       "or not a sweep record of this runner.") from None
            names.append(recorded["name"])
            env = env or (recorded["env"] if len(paths) == 1 else None)
            for item in recorded["variants"]:
                run_dir = path / item["run_dir"] if item["run_dir"] else None
                if run_dir is not None and (run_dir / runs.JOURNAL).is_file():
                    entries.append(_from_run_dir(run_dir, item))
                else:  # never trained: an invalid value, or a sweep stopped before it
                    variant = Variant(item["name"], item["source"], item["flat"], error=item["error"] or None,
                                      base=item.get("base", ""))
                    entries.append((variant, None, {"status": item["status"], "error": item["error"]}))
        elif path.is_dir() and any((child / runs.JOURNAL).is_file() for child in path.iterdir()):
            entries += [_from_run_dir(child, None) for child in sorted(path.iterdir())
                        if (child / runs.JOURNAL).is_file()]
        else:
            raise runs.RunDirError(f"{path} is neither a run directory (with {runs.JOURNAL}) nor a sweep directory "
                                   "holding them; runs are made by `python -m runner SPEC.json` under runs/.")
    if not entries:
        raise runs.RunDirError("nothing to compare: give run directories or sweep directories.")
    name = names[0] if len(names) == 1 and len(paths) == 1 else "compare"
    variants = label(unique([variant for variant, _, _ in entries]), name)
    results = []
    journals = {}
    for variant, (_, run_dir, recorded) in zip(variants, entries):
        if run_dir is not None:
            journals[variant.name] = run_dir / runs.JOURNAL
        summary = _read_summary(run_dir) if run_dir is not None else None
        if summary is not None and summary.get("status", OK_STATUS) not in runs.DONE:
            results.append(Result.of(variant, FAILED, error=str(summary.get("error") or summary.get("status")),
                                     run_dir=run_dir))
        elif summary is not None:
            results.append(Result.of(variant, OK, summary, run_dir=run_dir))
        else:
            status = (recorded or {}).get("status")
            if run_dir is not None and status not in (FAILED, STOPPED):
                status = UNFINISHED  # a journal but no summary: killed, or still running
            results.append(Result.of(variant, status or UNFINISHED, error=(recorded or {}).get("error") or "",
                                     run_dir=run_dir))
    return Gathered(Plan(name, env or name, None, None, tuple(variants)), results, journals)


def _from_run_dir(run_dir: Path, recorded: dict[str, Any] | None) -> tuple[Variant, Path, dict[str, Any] | None]:
    try:
        resolved = json.loads((run_dir / runs.SPEC).read_text())
        experiment = specs.parse(resolved, str(run_dir / runs.SPEC))
    except (OSError, json.JSONDecodeError, specs.SpecError) as exc:
        raise runs.RunDirError(f"{run_dir}: its {runs.SPEC} cannot be read ({exc}); is it a run directory of "
                               "this runner?") from None
    flat = flatten(experiment.model_dump(mode="json"))
    base = recorded["base"] if recorded else re.sub(r"-seed_\d+$", "", experiment.name)
    return Variant(experiment.name, str(run_dir), flat, experiment, base=base), run_dir, recorded


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((run_dir / runs.SUMMARY).read_text())
        return summary if isinstance(summary, dict) else None
    except (OSError, json.JSONDecodeError):
        return None
