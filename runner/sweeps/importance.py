"""What a comparison learned about its keys: how much each one mattered for the metric, by Optuna's
importance evaluator (its default, PED-ANOVA), for a search and for a grid alike.

Plain data in and out:
- a `Target`: the keys a comparison varied, each with one distribution in a search space's shape
  (`uniform`, `loguniform`, `randint`, `choice`), the metric it is judged by, and which way is better.
  A search gives its own (`of_search`, or `recorded` from sweep.json); any other comparison gives the
  values its variants have, as choices (`of_grid`): the sweep's listed values;
- trials: one (values, metric) per finished run, the values as its spec has them (`trials`);
- `importances(trials, target)`: {key: importance}, summing to 1, largest first, or NoImportance with
  the sentence saying why there is none.

A grid's values stay categorical, numbers too: a grid holds only the listed values, each as often as
the others, so PED-ANOVA compares how often each is among the best runs; a Float or Int distribution
would spread a kernel density over a range nobody gave, between values never tried.

Only finished runs count, as Optuna counts only complete trials: a run a search's scheduler stopped
early was judged at an earlier epoch than the rest. The seeds of one variant are trials of their own
with the same values, so a key is not credited with what the seed did. The seed itself is no key.

Optuna is imported only inside `importances` (the base install has none).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from runner.spec import UNSWEPT

Space = dict[str, dict[str, list[Any]]]  # dotted key -> {kind: args}, as a spec's search.space
Trial = tuple[dict[str, Any], float]  # a finished run's values of the keys, and its metric
METRIC = "test_accuracy"  # what a comparison without a search is judged by (its table ranks by it)
RECORD = "sweep.json"  # runner.sweeps.record.PLAN (record imports the table, which imports this module)
INSTALL = "install the extras (`make install-extras`): Optuna computes how much each key mattered"


class NoImportance(Exception):
    """There is no importance to show; the message says why, as a sentence for the page."""


@dataclass(frozen=True)
class Target:
    """The keys a comparison varied, each one distribution; the metric it is judged by; the better way."""

    space: Space
    metric: str = METRIC
    maximize: bool = True

    @property
    def keys(self) -> list[str]:
        """The keys that can take more than one value."""
        return [key for key, dist in self.space.items() if not _single(dist)]


def _single(dist: Mapping[str, list[Any]]) -> bool:
    (kind, args), = dist.items()
    return len({_identity(a) for a in args}) < 2 if kind == "choice" else args[0] == args[1]


def _identity(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def of_search(search: Mapping[str, Any]) -> Target:
    """A search's own space, metric and direction, from its spec section (as sweep.json records it)."""
    metric = search.get("metric") or METRIC
    mode = search.get("mode") or ("max" if metric == METRIC else "min")
    return Target({key: dict(dist) for key, dist in search["space"].items()}, metric, mode == "max")


def of_grid(flats: Sequence[Mapping[str, Any]]) -> Target:
    """The keys whose values differ among these variants' flat specs, each a choice of those values in
    the order they first appear; the seed, and what names or shows a run, left out."""
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    space: Space = {}
    for key in keys:
        if key == "seed" or key.split(".")[0] in UNSWEPT:
            continue
        values = list({_identity(flat.get(key)): flat.get(key) for flat in flats}.values())
        if len(values) > 1:
            space[key] = {"choice": values}
    return Target(space)


def recorded(folders: Iterable[Path]) -> Target | None:
    """The search the first of these sweep directories records in its sweep.json, or None (no such
    record, or a sweep of listed values)."""
    for folder in dict.fromkeys(folders):
        try:
            return of_search(json.loads((folder / RECORD).read_text())["search"]["spec"]["search"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return None


def trials(target: Target, runs: Iterable[tuple[Mapping[str, Any], Any]]) -> list[Trial]:
    """(values, metric) of each finished run: `runs` are (flat spec, metric value or None) pairs; a run
    without a finite metric, or with a value outside the space, is left out."""
    kept = []
    for flat, value in runs:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            continue
        values = {key: flat.get(key) for key in target.keys}
        if all(internal(target.space[key], v) is not None for key, v in values.items()):
            kept.append((values, float(value)))
    return kept


def internal(dist: Mapping[str, list[Any]], value: Any) -> Any:
    """`value` as Optuna holds it: a choice's index in its list, a number itself; None if outside."""
    (kind, args), = dist.items()
    if kind == "choice":
        return next((i for i, a in enumerate(args) if _identity(a) == _identity(value) or a == value), None)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not args[0] <= value <= args[1]:
        return None
    return int(value) if kind == "randint" else float(value)


def why_not(trials: Sequence[Trial], target: Target) -> str | None:
    """The sentence saying why these trials give no importance, or None when they give one."""
    if len(trials) < 2:
        n = len(trials)
        return f"No importance: it needs two finished variants or more, and there {'is' if n == 1 else 'are'} {n}."
    if not varying(trials, target):
        return "No importance: no key varies among the finished variants."
    if len({value for _, value in trials}) == 1:
        return f"No importance: every finished variant has the same {target.metric}."
    return None


def varying(trials: Sequence[Trial], target: Target) -> list[str]:
    """The keys whose value differs among these trials: the only ones importance can be given to."""
    return [key for key in target.keys if len({_identity(values[key]) for values, _ in trials}) > 1]


def importances(trials: Sequence[Trial], target: Target) -> dict[str, float]:
    """Each key's importance for the metric (Optuna's get_param_importances on these trials, their
    distributions the target's), largest first.

    Raises NoImportance saying why there is none: too few trials, no key that varies, no Optuna.
    """
    reason = why_not(trials, target)
    if reason is not None:
        raise NoImportance(reason)
    try:
        import optuna
        from runner.sweeps.search import LocalSearch
    except ImportError:
        raise NoImportance(f"No importance: {INSTALL}.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The distributions the search itself drew from: a choice is a categorical of its indices.
    distributions = {key: LocalSearch._distribution(target.space[key]) for key in target.keys}
    study = optuna.create_study(direction="maximize" if target.maximize else "minimize")
    for values, value in trials:
        params = {key: internal(target.space[key], v) for key, v in values.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
    with warnings.catch_warnings():  # few trials make PED-ANOVA warn; the page says how many there were
        warnings.simplefilter("ignore")
        found = optuna.importance.get_param_importances(  # PED-ANOVA, as the captions say, whatever the default
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), params=varying(trials, target))
    return dict(sorted(found.items(), key=lambda item: -item[1]))


def caption(trials: Sequence[Trial], target: Target) -> str:
    """What the importances are, for under their table."""
    return (f"Optuna's importance (PED-ANOVA) over {len(trials)} finished runs: how much each key's values set "
            f"the {'highest' if target.maximize else 'lowest'} {target.metric} apart from the rest; the "
            "importances add up to 1.")


def explain(trials: Sequence[Trial], target: Target) -> tuple[dict[str, float], str]:
    """`importances`, or no importances and the sentence saying why."""
    try:
        return importances(trials, target), ""
    except NoImportance as exc:
        return {}, str(exc)
