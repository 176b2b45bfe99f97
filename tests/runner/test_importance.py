"""Each varied key's importance for the metric (runner.sweeps.importance): Optuna's own numbers for a
real search's runs, a grid's listed values as categories, one line of results.md per key, and the
sentence that stands in for it with too few runs, no key that varies, or no Optuna."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, make_tiny_mnist, run_cli
from runner.sweeps import importance
from runner.sweeps import results as table

optuna = pytest.importorskip("optuna")

HIDDEN = [[100], [200, 200], [400], [800]]  # experiments/search_lr.json's choice


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """experiments/search_lr.json as shipped, on tiny data: 6 draws of one epoch, none stopped early."""
    root = tmp_path_factory.mktemp("search")
    data = make_tiny_mnist(root / "data")
    out = root / "out"
    sets = {"data.root": str(data), "data.verify": "false", "train.epochs": "1", "train.device": "cpu",
            "search.samples": "6", "search.scheduler": "none"}
    result = run_cli("experiments/search_lr.json", *(a for k, v in sets.items() for a in ("--set", f"{k}={v}")),
                     "--logger", "null", "--no-report", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def drawn(out: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Each variant's point, as sweep.json recorded it, and its summary."""
    variants = json.loads((out / "sweep.json").read_text())["variants"]
    return [(v["point"], json.loads((out / v["name"] / "summary.json").read_text())) for v in variants]


def optunas_own(points: list[tuple[dict[str, Any], float]], maximize: bool) -> dict[str, float]:
    """get_param_importances on a study made here: hidden layouts as their JSON text, the lr log-uniform."""
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    distributions = {"optim.lr": optuna.distributions.FloatDistribution(0.001, 0.5, log=True),
                     "model.hidden": optuna.distributions.CategoricalDistribution([json.dumps(h) for h in HIDDEN])}
    for point, value in points:
        params = {"optim.lr": point["optim.lr"], "model.hidden": json.dumps(point["model.hidden"])}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
    return optuna.importance.get_param_importances(study)


def test_a_real_search_gets_optunas_importances(search: Path) -> None:
    from runner.sweeps import record

    runs = drawn(search)
    assert len(runs) == 6 and all(summary["status"] == "finished" for _, summary in runs)
    accuracies = [summary["test_accuracy"] for _, summary in runs]
    assert len(set(accuracies)) > 2  # the draws did differ: the importances below mean something

    target, trials = table.learned(record.gather([search]).results, [search])
    assert target == importance.Target({"optim.lr": {"loguniform": [0.001, 0.5]}, "model.hidden": {"choice": HIDDEN}})
    assert sorted(json.dumps(t, sort_keys=True) for t in trials) == sorted(
        json.dumps((point, summary["test_accuracy"]), sort_keys=True) for point, summary in runs)
    found = importance.importances(trials, target)
    expected = optunas_own([(point, summary["test_accuracy"]) for point, summary in runs], maximize=True)
    assert found == pytest.approx(expected, abs=1e-12) and set(found) == {"optim.lr", "model.hidden"}
    assert list(found.values()) == sorted(found.values(), reverse=True) and sum(found.values()) == pytest.approx(1)
    assert found != pytest.approx({"optim.lr": 0.5, "model.hidden": 0.5})  # not the flat answer of too few trials

    # By test loss, lower is better: the same runs judged the other way round.
    by_loss = importance.Target(target.space, "test_loss", maximize=False)
    losses = [(point, summary["test_loss"]) for point, summary in runs]
    assert importance.importances(importance.trials(by_loss, losses), by_loss) == pytest.approx(
        optunas_own(losses, maximize=False), abs=1e-12)

    markdown = (search / "results.md").read_text()
    section = markdown[markdown.index("## What mattered for test_accuracy"):]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows == ["| key | importance |", *(f"| {key} | {expected[key]:.3f} |" for key in found)]
    assert "over 6 finished runs" in section


def test_a_grid_ranks_its_listed_values_as_categories() -> None:
    flats = [{"name": f"g-{a}-{lr}-{seed}", "seed": seed, "model.activation": a, "optim.lr": lr,
              "model.hidden": [32], "visdom.env": f"e{seed}", "description": "same"}
             for a in ("relu", "selu") for lr in (0.1, 0.01) for seed in (0, 1)]
    target = importance.of_grid(flats)
    # the seed, the name and the env are no keys; a key of one value is none either
    assert target == importance.Target({"model.activation": {"choice": ["relu", "selu"]},
                                        "optim.lr": {"choice": [0.1, 0.01]}})
    # lr 0.1 is best with either activation, whatever the seed; at 0.01 the activation and seed tell
    scores = {("relu", 0.1): 0.95, ("selu", 0.1): 0.95, ("relu", 0.01): 0.80, ("selu", 0.01): 0.90}
    runs = [(f, scores[f["model.activation"], f["optim.lr"]] + (f["seed"] / 100 if f["optim.lr"] == 0.01 else 0))
            for f in flats]
    trials = importance.trials(target, runs)
    assert len(trials) == 8  # every seed is a trial of its own
    assert trials[0] == ({"model.activation": "relu", "optim.lr": 0.1}, 0.95)

    study = optuna.create_study(direction="maximize")
    distributions = {"model.activation": optuna.distributions.CategoricalDistribution(["relu", "selu"]),
                     "optim.lr": optuna.distributions.CategoricalDistribution([0.1, 0.01])}
    for values, value in trials:
        study.add_trial(optuna.trial.create_trial(params=values, distributions=distributions, value=value))
    expected = optuna.importance.get_param_importances(study)
    found = importance.importances(trials, target)
    assert found == pytest.approx(expected, abs=1e-12)
    assert found["optim.lr"] > 0.9 > 0.1 > found["model.activation"]

    # a run outside the grid's values, or without a finite metric, is left out
    assert importance.trials(target, [({**flats[0], "optim.lr": 0.5}, 0.9), (flats[0], float("nan")),
                                      (flats[0], None)]) == []


def test_too_few_runs_or_no_varied_key_give_a_note_not_an_error(tmp_path: Path) -> None:
    target = importance.Target({"optim.lr": {"choice": [0.1, 0.01]}})
    one = [({"optim.lr": 0.1}, 0.9)]
    assert importance.explain(one, target) == (
        {}, "No importance: it needs two finished variants or more, and there is 1.")
    same = [({"optim.lr": 0.1}, 0.9), ({"optim.lr": 0.1}, 0.8)]
    assert importance.explain(same, target) == ({}, "No importance: no key varies among the finished variants.")
    with pytest.raises(importance.NoImportance, match="there are 0"):
        importance.importances([], target)

    # a sweep of one variant: its results.md says why, once
    from runner import status
    from runner.sweeps.variants import Variant

    variant = Variant("only", "s.json", {"name": "only", "seed": 0, "optim.lr": 0.1}, label="only")
    result = table.Result.of(variant, status.FINISHED, {"test_accuracy": 0.9, "best_test_accuracy": 0.9,
                                                        "test_loss": 0.3, "train_seconds": 1.0})
    table.write(tmp_path, "only", [result])
    markdown = (tmp_path / "results.md").read_text()
    assert markdown.endswith("## What mattered for test_accuracy\n\n"
                             "No importance: it needs two finished variants or more, and there is 1.\n")


def test_without_optuna_the_note_says_install_the_extras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from runner import status
    from runner.sweeps.variants import Variant

    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError, as without the extras
    table._importance_lines.cache_clear()
    results = [table.Result.of(Variant(f"v{lr}", "s.json", {"name": f"v{lr}", "optim.lr": lr}, label=f"lr={lr}"),
                               status.FINISHED, {"test_accuracy": acc, "best_test_accuracy": acc, "test_loss": 1 - acc,
                                                 "train_seconds": 1.0})
               for lr, acc in ((0.1, 0.9), (0.01, 0.8), (0.001, 0.7))]
    table.write(tmp_path, "s", results)
    table._importance_lines.cache_clear()
    markdown = (tmp_path / "results.md").read_text()
    assert markdown.count("install the extras (`make install-extras`)") == 1
    assert "| lr=0.1 | 90.00% |" in markdown  # the table itself is all there
    target, trials = table.learned(results)
    assert len(trials) == 3 and importance.explain(trials, target) == ({}, f"No importance: {importance.INSTALL}.")


def test_nothing_imports_optuna_until_importances_are_asked_for() -> None:
    modules = ("runner.sweeps.importance", "runner.sweeps.results", "runner.sweeps.record", "dashboards.parallel",
               "dashboards.visdom.compare", "dashboards.report")
    done = subprocess.run([sys.executable, "-c", f"import sys; import {', '.join(modules)}; "
                           "print('optuna' in sys.modules)"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_key_constant_among_the_finished_runs_gets_no_importance_and_equal_metrics_give_none() -> None:
    target = importance.Target(space={"optim.lr": {"choice": [0.1, 0.2, 0.3]}, "model.width": {"choice": [8, 16]}})
    trials = [({"optim.lr": 0.1, "model.width": 8}, 0.9), ({"optim.lr": 0.2, "model.width": 8}, 0.8),
              ({"optim.lr": 0.3, "model.width": 8}, 0.7)]
    found = importance.importances(trials, target)
    assert found == {"optim.lr": 1.0}
    same = [(values, 0.5) for values, _ in trials]
    with pytest.raises(importance.NoImportance, match="same test_accuracy"):
        importance.importances(same, target)


def test_a_search_that_minimises_is_judged_by_its_lowest_values(tmp_path: Path) -> None:
    """Key `a` sets the lowest values apart and key `b` the highest: a minimising search credits `a`,
    a maximising one `b`; and the direction is the one the search's spec (as sweep.json records it) gives."""
    space = {"a": {"choice": [0, 1, 2, 3]}, "b": {"choice": [0, 1, 2, 3]}}
    trials = [({"a": a, "b": b}, (-10.0 if a == 0 else 10.0 if b == 0 else 0.0) + 0.01 * r + 0.001 * (a + b))
              for a in range(4) for b in range(4) for r in range(3)]
    lowest = importance.importances(trials, importance.Target(space, "test_loss", maximize=False))
    highest = importance.importances(trials, importance.Target(space, "test_loss", maximize=True))
    assert list(lowest) == ["a", "b"] and lowest["a"] > 0.8
    assert list(highest) == ["b", "a"] and highest["b"] > 0.7

    assert not importance.of_search({"space": space, "metric": "test_loss"}).maximize  # a loss: lower is better
    assert not importance.of_search({"space": space, "metric": "test_accuracy", "mode": "min"}).maximize
    assert importance.of_search({"space": space, "metric": "test_loss", "mode": "max"}).maximize
    assert importance.of_search({"space": space}).maximize
    (tmp_path / importance.RECORD).write_text(json.dumps(
        {"search": {"spec": {"search": {"space": space, "metric": "test_loss", "mode": "min"}}}}))
    assert importance.recorded([tmp_path]) == importance.Target(space, "test_loss", maximize=False)
