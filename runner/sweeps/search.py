"""Searches: variants drawn from a spec's `search.space` instead of listed in a `sweep`.

A drawn point is a dict of dotted keys to values; `variant` turns it into a named, labelled
Variant (`search_lr-007`, label `lr=0.0123, hidden=[800]`), so a search's trials are ordinary runs
in the sweep directory, its table and its dashboards. Two engines draw the points:

- `LocalSearch` (the local executor, one variant after another): Optuna's RandomSampler or
  TPESampler, and its SuccessiveHalvingPruner for `scheduler: asha`;
- runner.executors.ray: Tune's own random search or OptunaSearch, and Tune's ASHAScheduler.

`choice` values are drawn as their index in the list, so any JSON value (a list of widths) can be a
choice for both engines; `value` maps a drawn point back.

Importing this module must stay cheap (no torch, no optuna, no ray).
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

from runner import spec as specs
from runner import status
from runner.sweeps.variants import Variant, assign, make, safe_name, short_keys
from runner.sweeps.variants import show as show_value

Point = dict[str, Any]


def values(space: dict[str, dict[str, list[Any]]], drawn: Point) -> Point:
    """A drawn point (choices as indices) as the values the spec gets."""
    out = {}
    for key, dist in space.items():
        (kind, args), = dist.items()
        out[key] = args[int(drawn[key])] if kind == "choice" else drawn[key]
    return out


def drawn(space: dict[str, dict[str, list[Any]]], point: Point) -> Point:
    """The inverse of `values`: a point as the engines draw it (choices as indices)."""
    out = {}
    for key, dist in space.items():
        (kind, args), = dist.items()
        out[key] = next(i for i, a in enumerate(args) if a == point[key]) if kind == "choice" else point[key]
    return out


def show(value: Any) -> str:
    """A value for a label: reals to three significant digits."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return show_value(value)


def variant(experiment: specs.Experiment, source: str, point: Point, number: int) -> Variant:
    """The `number`th variant of a search: `experiment` with `point`'s values, checked like a sweep's."""
    data = experiment.model_dump(mode="json")
    data.pop("search")
    for key, value in point.items():
        assign(data, key, value)
    data["name"] = safe_name(f"{experiment.name}-{number:03d}")
    shorts = short_keys(point)
    label = ", ".join(f"{shorts[k]}={show(v)}" for k, v in point.items())
    return make(experiment, source, data, f"{source}, search variant {number} ({label})", label=label, point=point)


def check(experiment: specs.Experiment, source: str) -> None:
    """Refuse a space whose ends (or choices) do not make valid experiments, before anything runs."""
    assert experiment.search is not None
    for key, dist in experiment.search.space.items():
        (kind, args), = dist.items()
        for value in args:
            probe = variant(experiment, source, {key: value}, 0)
            if probe.error:
                problem = probe.error.split("invalid experiment: ", 1)[-1]
                raise specs.SpecError(f"{source}: search.space.{key}: {kind} {json.dumps(args)} reaches "
                                      f"{json.dumps(value)}, which is not a valid value: {problem}")


def most_resources(experiment: specs.Experiment) -> specs.Experiment:
    """The search's experiment with the most CPUs and GPUs its space can draw (the top of a range, the
    largest choice): what a cluster must be able to hold for every draw to run."""
    assert experiment.search is not None
    most = {key.split(".", 1)[1]: max(args) for key, dist in experiment.search.space.items()
            if key in ("train.cpus", "train.gpus") for args in dist.values()}
    if not most:
        return experiment
    return experiment.model_copy(update={"name": f"{experiment.name} (its search.space at most)",
                                         "train": experiment.train.model_copy(update=most)})


def next_number(variants: Sequence[Variant]) -> int:
    """The number of a search's next draw."""
    return sum(v.point is not None for v in variants) + 1


def done(variants: Sequence[Variant], results: Sequence[Any], experiment: specs.Experiment
         ) -> list[tuple[Point, float | None]]:
    """The draws that trained to their end, with their metric: what a resumed search learns from."""
    metric = experiment.search.metric  # type: ignore[union-attr]
    return [(v.point, metric_of(r, metric)) for v, r in zip(variants, results)
            if v.point is not None and r.status == status.FINISHED]


def metric_of(result: Any, metric: str) -> float | None:
    value = getattr(result, metric, None)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


class LocalSearch:
    """A search run one variant after another with Optuna: `ask` a point, `report` each epoch's
    metric (False: the pruner stops it there), `tell` how it ended.

    `done` are the points already trained, with their results (resuming a stopped search): the
    sampler learns from them, and draws the rest from a seed moved past them.
    """

    def __init__(self, experiment: specs.Experiment, done: Sequence[tuple[Point, float | None]] = ()) -> None:
        import optuna

        search = experiment.search
        assert search is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.search, self.space = search, search.space
        seed = experiment.seed + len(done)
        sampler = (optuna.samplers.TPESampler(seed=seed) if search.searcher == "tpe"
                   else optuna.samplers.RandomSampler(seed=seed))
        pruner = (optuna.pruners.SuccessiveHalvingPruner(min_resource=search.grace_period,
                                                         reduction_factor=search.reduction_factor)
                  if search.scheduler == "asha" else optuna.pruners.NopPruner())
        self.study = optuna.create_study(direction="maximize" if search.direction == "max" else "minimize",
                                         sampler=sampler, pruner=pruner)
        self.distributions = {key: self._distribution(dist) for key, dist in self.space.items()}
        for point, value in done:
            if value is not None:
                self.study.add_trial(optuna.trial.create_trial(
                    params=drawn(self.space, point), distributions=self.distributions, value=value))
        self._trials: dict[str, Any] = {}

    @staticmethod
    def _distribution(dist: dict[str, list[Any]]) -> Any:
        from optuna import distributions as d

        (kind, args), = dist.items()
        if kind == "choice":
            return d.CategoricalDistribution(list(range(len(args))))
        if kind == "randint":
            return d.IntDistribution(args[0], args[1])
        return d.FloatDistribution(float(args[0]), float(args[1]), log=kind == "loguniform")

    def ask(self, name: str) -> Point:
        trial = self.study.ask(self.distributions)
        self._trials[name] = trial
        return values(self.space, trial.params)

    def report(self, name: str, epoch: int, results: dict[str, Any]) -> bool:
        trial = self._trials[name]
        value = results.get(self.search.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return True
        trial.report(value, epoch)
        return not trial.should_prune()

    def tell(self, name: str, result: Any) -> None:
        import optuna

        trial = self._trials.pop(name, None)
        if trial is None:
            return
        value = metric_of(result, self.search.metric)
        if result.status == status.STOPPED_EARLY:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif result.status == status.FINISHED and value is not None:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
