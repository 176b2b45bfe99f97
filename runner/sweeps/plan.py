"""The plan of a comparison: the variants of some specs (each uniquely named and labelled), or the
search its variants will be drawn from, and the lines `--dry-run` prints.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from runner import spec as specs
from runner.sweeps import search
from runner.sweeps.variants import (
    MAX_VARIANTS,
    Variant,
    check_size,
    expand,
    label,
    safe_name,
    seeds_vary,
    show,
    unique,
)


@dataclass(frozen=True)
class Plan:
    name: str  # names the sweep directory
    variants: tuple[Variant, ...]
    search: tuple[specs.Experiment, str] | None = None  # a search: the spec (and its file) variants are drawn from
    dashboard: specs.VisdomSpec = field(default_factory=specs.VisdomSpec)  # where the comparison is shown
    where: dict[str, Any] = field(default_factory=dict)  # where it was shown, as the board said (sweep.json)

    @property
    def to_draw(self) -> int:
        """How many variants a search has still to draw."""
        if self.search is None or self.search[0].search is None:
            return 0
        return max(self.search[0].search.samples - sum(v.point is not None for v in self.variants), 0)


def plan(experiments: Sequence[tuple[specs.Experiment, str]]) -> Plan:
    """The comparison of these (experiment, source) pairs: every variant of each, uniquely named; a
    search's variants are drawn as it runs."""
    searches = [(e, source) for e, source in experiments if e.search is not None]
    if searches and len(experiments) > 1:
        raise specs.SpecError(f"{searches[0][1]} declares a search, which runs on its own; give it as the only "
                              "experiment file.")
    if searches:
        experiment, source = searches[0]
        search.check(experiment, source)
        return Plan(experiment.name, (), searches[0], experiment.visdom)
    for experiment, source in experiments:
        if experiment.sweep:
            check_size(experiment.sweep, source)
    total = sum(math.prod(map(len, (e.sweep or {"": [None]}).values())) for e, _ in experiments)
    if total > MAX_VARIANTS:
        raise specs.SpecError(f"these {len(experiments)} experiment files make {total:,} variants together, more "
                              f"than the {MAX_VARIANTS:,} one comparison may have; compare fewer at once.")
    variants = unique([variant for experiment, source in experiments for variant in expand(experiment, source)])
    names = list(dict.fromkeys(experiment.name for experiment, _ in experiments))
    name = names[0] if len(names) == 1 else safe_name("-vs-".join(names))
    if len(name) > 60:
        name = safe_name(f"{names[0]}-and-{len(names) - 1}-more")
    dashboard = experiments[0][0].visdom
    if len(experiments) > 1:  # a spec's own env names its own runs, not a comparison of several specs
        dashboard = dashboard.model_copy(update={"env": None})
    return Plan(name, tuple(label(variants, name)), dashboard=dashboard)


def describe(plan: Plan) -> list[str]:
    """The lines `--dry-run` prints: one per variant, invalid ones with the reason; a search's space."""
    if plan.search is not None and not plan.variants:
        s = plan.search[0].search
        assert s is not None
        lines = [f"{plan.name}: a search of {s.samples} variants by {s.metric} ({s.direction}), searcher "
                 f"{s.searcher}, scheduler {s.scheduler}"]
        return lines + [f"  {key}: {kind} {json.dumps(args)}" for key, dist in s.space.items()
                        for kind, args in dist.items()]
    width = max(len(v.name) for v in plan.variants)
    lines = [f"{plan.name}: {len(plan.variants)} variant{'s' * (len(plan.variants) != 1)}"]
    seeds = seeds_vary(plan.variants)
    for v in plan.variants:
        seed = f"  seed={show(v.seed)}" if seeds else ""
        lines.append(f"  {v.name:<{width}}  {v.label}{seed}" + (f"\n    invalid: {v.error}" if v.error else ""))
    return lines
