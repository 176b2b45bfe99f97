"""Which env a run writes (dashboards.visdom.runs.env_for, the one place env names are decided): a
new run's is named after its run directory, a sweep variant of a spec with its own `visdom.env` adds
what sets it apart, and a run directory that already holds a run keeps the env it wrote."""

from __future__ import annotations

import json
from pathlib import Path

from dashboards.visdom.names import run_env
from dashboards.visdom.runs import env_for
from runner import spec as specs
from runner.loggers.registry import Place


def experiment(name: str, env: str | None = None) -> specs.Experiment:
    return specs.parse({"name": name, **({"visdom": {"env": env}} if env else {})}, "test")


def test_a_new_run_is_named_after_its_run_directory(tmp_path: Path) -> None:
    assert env_for(experiment("relu"), Place(tmp_path / "relu-20261202-101500")) == "relu_20261202-101500"
    variant = Place(tmp_path / "act-1" / "act-activation_selu", group="act", sweep_dir=tmp_path / "act-1", base="act")
    assert env_for(experiment("act-activation_selu"), variant) == "act_1-activation_selu"


def test_a_spec_s_own_env_names_its_runs_and_its_variants(tmp_path: Path) -> None:
    assert env_for(experiment("relu", "mine"), Place(tmp_path / "r")) == "mine"
    variant = Place(tmp_path / "s" / "act-activation_selu", group="act", sweep_dir=tmp_path / "s", base="act")
    assert env_for(experiment("act-activation_selu", "mine"), variant) == "mine-activation_selu"
    # a variant recorded (sweep.json) before variants' envs were named here already carries its suffix
    assert env_for(experiment("act-activation_selu", "mine-activation_selu"), variant) == "mine-activation_selu"
    drawn = Place(tmp_path / "s" / "search-007", group="search", sweep_dir=tmp_path / "s", base="search")
    assert env_for(experiment("search-007", "mine"), drawn) == "mine-007"


def test_a_run_directory_that_holds_a_run_keeps_its_env(tmp_path: Path) -> None:
    """A stopped variant resumed on its own (`--resume RUN_DIR`: no sweep around it), a retried trial, a
    replay: the env its journal's start event (or its summary) recorded, never its sweep's comparison."""
    run_dir = tmp_path / "act-activation_selu"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"event": "start", "info": {"visdom_env": "mine-activation_selu"}})
                                           + "\n")
    assert env_for(experiment("act-activation_selu", "mine"), Place(run_dir)) == "mine-activation_selu"
    (run_dir / "summary.json").write_text(json.dumps({"visdom_env": "mine-activation_selu-2"}))
    assert env_for(experiment("act-activation_selu", "mine"), Place(run_dir, replay=True)) == "mine-activation_selu-2"
    (run_dir / "summary.json").write_text(json.dumps({"visdom_env": None}))  # made with --logger null
    assert env_for(experiment("act-activation_selu"), Place(run_dir)) == run_env("act-activation_selu", run_dir.name)
