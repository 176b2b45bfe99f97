"""A comparison's variants: one per combination of a sweep's values, named after the values its own
spec varies (`activations-activation_selu`: its run directory), and labelled, for legends and tables,
by only what differs across the whole comparison, seed left out: runs that differ only in their seed
are one group on the charts.

A tracked run (runner.track: a loop of one's own, its spec.json a config rather than an experiment)
is a variant without an experiment (`tracked`): its values are its config's, under `config.`, and
tracked runs are labelled by the config keys that differ among them (else by their names).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

from runner import spec as specs

MAX_VARIANTS = 10_000  # a sweep's combinations; as many as a search may draw (search.samples)
CONFIG = "config."  # a tracked run's config keys among its flat values


@dataclass(frozen=True)
class Variant:
    """One run of a comparison: a valid experiment, or the reason its values do not make one."""

    name: str  # its run directory
    source: str  # the spec file it came from
    flat: dict[str, Any]  # its resolved spec as dotted keys: what labels are made of
    experiment: specs.Experiment | None = None
    error: str | None = None
    base: str = ""  # the name of the spec it came from
    label: str = ""  # what sets it apart in this comparison, seed left out
    point: dict[str, Any] | None = None  # a search's variant: the values drawn for it
    tracked: bool = False  # a loop of one's own (runner.track): no experiment, its config in `flat`

    @property
    def seed(self) -> Any:
        return self.flat.get("seed")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"activation": "relu"}} -> {"model.activation": "relu"}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def tracked(name: str, source: str, config: dict[str, Any]) -> Variant:
    """A tracked run as a variant: its name, its config's values as `config.KEY` (and its seed, when the
    config has one: runs differing only in it are seeds of one variant)."""
    flat = {"name": name, **{CONFIG + key: value for key, value in flatten(config).items()}}
    if isinstance(config.get("seed"), (int, str)):
        flat["seed"] = config["seed"]
    return Variant(name, source, flat, base=name, tracked=True)


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of flatten: {"model.activation": "relu"} -> {"model": {"activation": "relu"}}."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        assign(tree, key, value)
    return tree


def assign(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` of a nested dict, making the levels it lacks."""
    *parents, leaf = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def show(value: Any) -> str:
    """A value as people write it: bare words for strings, compact JSON otherwise."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def safe_name(text: str) -> str:
    """`text` fitted to spec.NAME_PATTERN: other characters become '_', at most 100 of them."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "variant"
    return text[:100]


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """model.activation -> activation, optim.name -> optim; the whole key where two would read the same."""
    keys = list(keys)
    leaves = [key.split(".")[-2] if key.endswith(".name") else key.rsplit(".", 1)[-1] for key in keys]
    return {key: leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(keys, leaves)}


def make(experiment: specs.Experiment, source: str, data: dict[str, Any], where: str, **extra: Any) -> Variant:
    """`data` (a spec with a variant's values) parsed into a Variant, or one carrying the reason it is invalid."""
    try:
        parsed = specs.parse(data, where)
    except specs.SpecError as exc:
        return Variant(data["name"], source, flatten(data), error=str(exc), base=experiment.name, **extra)
    return Variant(parsed.name, source, flatten(parsed.model_dump(mode="json")), parsed, base=experiment.name,
                   **extra)


def expand(experiment: specs.Experiment, source: str) -> list[Variant]:
    """One variant per combination of the sweep's values; the experiment itself when it has none."""
    base = experiment.model_dump(mode="json")
    sweep = base.pop("sweep") or {}
    check_size(sweep, source)
    varied = [key for key, values in sweep.items() if len(values) > 1]
    shorts = short_keys(varied)
    variants = []
    for combination in itertools.product(*sweep.values()):
        values = dict(zip(sweep, combination))
        data = json.loads(json.dumps(base))
        for key, value in values.items():
            assign(data, key, value)
        parts = [f"{shorts[key]}={show(values[key])}" for key in varied]
        suffix = "-".join(safe_name(part.replace("=", "_")) for part in parts)
        data["name"] = safe_name(f"{experiment.name}-{suffix}") if suffix else experiment.name
        where = f"{source}, variant {', '.join(parts)}" if parts else source
        variants.append(make(experiment, source, data, where))
    return variants


def check_size(sweep: dict[str, list[Any]], source: str) -> None:
    """Refuse, before any variant is built, a sweep of more than MAX_VARIANTS combinations."""
    count = math.prod(len(values) for values in sweep.values())
    if count > MAX_VARIANTS:
        counts = ", ".join(f"{key} {len(values):,}" for key, values in sweep.items())
        raise specs.SpecError(f"{source}: the sweep makes {count:,} variants (values per key: {counts}; every "
                              f"combination runs), more than the {MAX_VARIANTS:,} a sweep may have. List fewer "
                              "values, or draw variants from ranges with a search instead.")


def label(variants: Sequence[Variant], fallback: str) -> list[Variant]:
    """The variants with labels naming only what differs among them, seed aside.

    A key whose values differ is named on every variant, except where one value is more common than
    each other: then only the variants that depart from it name the key (three specs where one adds
    momentum: `momentum=0.9` on that one alone). A variant that departs from nothing is called by its
    spec's name; when nothing differs at all, every variant is called `fallback`.

    Tracked runs are labelled by their config's keys (by their names when those are all alike); runs
    of the runner and tracked runs compared together are each labelled among their own kind, a kind
    of one run by its name.
    """
    kinds = [[v for v in variants if not v.tracked], [v for v in variants if v.tracked]]
    if not kinds[1]:
        return _labelled(variants, fallback, _spec_keys(variants))
    if not kinds[0]:
        return _labelled(variants, fallback if len({v.base for v in variants}) == 1 else "", _config_keys(variants))
    made = {id(original): v for kind, keys in ((kinds[0], _spec_keys(kinds[0])), (kinds[1], _config_keys(kinds[1])))
            for original, v in zip(kind, _labelled(kind, kind[0].base if len(kind) == 1 else "", keys))}
    labelled = [made[id(v)] for v in variants]
    kind_of = {v.label: set() for v in labelled}
    for v in labelled:
        kind_of[v.label].add(v.tracked)
    return [replace(v, label=f"{v.label} ({v.name})") if len(kind_of[v.label]) > 1 else v for v in labelled]


def _spec_keys(variants: Sequence[Variant]) -> list[str]:
    order = {key: i for i, key in enumerate(specs.sweepable_keys())}
    return sorted({k for v in variants for k in v.flat if k in order and k != "seed"}, key=order.__getitem__)


def _config_keys(variants: Sequence[Variant]) -> list[str]:
    return sorted({k for v in variants for k in v.flat if k.startswith(CONFIG)})


def _labelled(variants: Sequence[Variant], fallback: str, keys: list[str]) -> list[Variant]:
    """`label` over `keys`; a variant that departs from nothing, where nothing differs either, is called
    `fallback`, or by its name when that is empty."""
    values = {k: [json.dumps(v.flat.get(k), sort_keys=True) for v in variants] for k in keys}
    differing = [k for k in keys if len(set(values[k])) > 1]
    shorts = short_keys(differing)
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
    """The variants, a name taken twice getting -2, -3, ... (its run directory follows)."""
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


def seeds_vary(items: Iterable[Any]) -> bool:
    """Whether these variants (or results) have more than one seed (a tracked run may have none)."""
    return len({json.dumps(item.seed) for item in items if item.seed is not None}) > 1
