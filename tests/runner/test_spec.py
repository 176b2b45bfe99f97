"""Experiment specs: every shipped experiment validates, and bad input gets one clear paragraph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import ROOT, run_cli
from runner import spec as specs

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.json"))
GOOD = {"name": "ok"}


def test_every_shipped_experiment_validates_and_says_what_it_shows() -> None:
    assert len(EXPERIMENTS) >= 9
    for path in EXPERIMENTS:
        experiment = specs.load(path)
        assert experiment.name == path.stem
        assert len(experiment.description) > 20, path


def test_relu_is_the_tutorials_network() -> None:
    relu = specs.load(ROOT / "experiments" / "relu.json")
    assert (relu.model.hidden, relu.model.activation, relu.model.output_activation) == ((200, 200), "relu", "none")
    assert (relu.data.batch_size, relu.optim.name, relu.optim.lr, relu.train.epochs) == (200, "sgd", 0.01, 10)
    assert specs.load(ROOT / "experiments" / "seed_as_written.json").model.output_activation == "relu"


def test_specs_are_frozen() -> None:
    experiment = specs.parse(GOOD, "x")
    with pytest.raises(Exception):
        experiment.seed = 3  # type: ignore[misc]


def test_logistic_has_no_hidden_layers() -> None:
    assert specs.parse({"name": "l", "model": {"kind": "logistic"}}, "x").model.hidden == ()


def test_set_overrides_nested_keys_with_json_or_bare_words() -> None:
    data = specs.apply_override({"name": "a"}, "model.hidden=[64,32]")
    data = specs.apply_override(data, "optim.name=adam")
    experiment = specs.parse(data, "x")
    assert experiment.model.hidden == (64, 32) and experiment.optim.name == "adam"


def test_schema_describes_every_field() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    sections = [schema, *schema["$defs"].values()]
    for section in sections:
        for key, field in section["properties"].items():
            assert field.get("description"), f"{section.get('title')}.{key} has no description"


def test_validate_reports_each_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "b", "optim": {"lr": 0}}')
    result = run_cli("validate", str(EXPERIMENTS[0]), str(bad))
    assert result.returncode == 2
    assert f"ok: {EXPERIMENTS[0]}" in result.stdout
    assert "optim.lr" in result.stderr


# (file contents or None for "no file", extra CLI args, words the message must contain)
BAD_INPUTS = {
    "wrong type": ('{"name": "x", "train": {"epochs": "ten"}}', [], ["train.epochs", "integer"]),
    "unknown top-level key": ('{"name": "x", "epoch": 3}', [], ["epoch", "not a known key"]),
    "unknown nested key": ('{"name": "x", "optim": {"learning_rate": 0.1}}', [], ["optim.learning_rate",
                                                                                 "not a known key"]),
    "negative lr": ('{"name": "x", "optim": {"lr": -0.1}}', [], ["optim.lr", "greater than 0"]),
    "zero lr": ('{"name": "x", "optim": {"lr": 0}}', [], ["optim.lr"]),
    "zero batch": ('{"name": "x", "data": {"batch_size": 0}}', [], ["data.batch_size"]),
    "negative epochs": ('{"name": "x", "train": {"epochs": -1}}', [], ["train.epochs"]),
    "unknown activation": ('{"name": "x", "model": {"activation": "swish"}}', [], ["model.activation", "'relu'",
                                                                                 "'gelu'"]),
    "unknown optimizer": ('{"name": "x", "optim": {"name": "rmsprop"}}', [], ["optim.name", "'sgd'", "'adam'"]),
    "unknown dataset": ('{"name": "x", "data": {"dataset": "cifar10"}}', [], ["data.dataset", "'mnist'"]),
    "unknown device": ('{"name": "x", "train": {"device": "tpu"}}', [], ["train.device", "cuda:N"]),
    "missing name": ('{"seed": 1}', [], ["name", "required"]),
    "bad name": ('{"name": "../etc"}', [], ["name", "letters, digits"]),
    "empty file": ("", [], ["empty"]),
    "not json": ("{name: x}", [], ["not valid JSON", "line 1"]),
    "json array": ('[{"name": "x"}]', [], ["JSON object", "list"]),
    "missing file": (None, [], ["no such file", "experiments/"]),
    "hidden layers on logistic": ('{"name": "x", "model": {"kind": "logistic", "hidden": [10]}}', [],
                                  ["logistic", "hidden"]),
    "momentum with adam": ('{"name": "x", "optim": {"name": "adam", "momentum": 0.9}}', [], ["optim", "momentum"]),
    "negative hidden width": ('{"name": "x", "model": {"hidden": [10, -2]}}', [], ["model.hidden", "positive"]),
    "--set without =": ('{"name": "x"}', ["--set", "optim.lr"], ["--set", "dotted.key=value"]),
    "--set bad value": ('{"name": "x"}', ["--set", "optim.lr=-1"], ["optim.lr", "--set"]),
    "--set unknown key": ('{"name": "x"}', ["--set", "optim.betas=[0.9]"], ["optim.betas", "not a known key"]),
    "--set into a value": ('{"name": "x", "seed": 3}', ["--set", "seed.x=1"], ["seed", "not a section"]),
    "infinite lr": ('{"name": "x"}', ["--set", "optim.lr=Infinity"], ["optim.lr", "finite"]),
    "huge seed": ('{"name": "x"}', ["--set", "seed=99999999999999999999999"], ["seed", "less than"]),
    "compile with cuda graphs": ('{"name": "x", "train": {"compile": true, "cuda_graphs": true}}', [],
                                 ["train", "alternatives"]),
    "unknown logger": ('{"name": "x"}', ["--logger", "wandb"], ["--logger", "visdom"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_gets_one_clear_paragraph(case: str, tmp_path: Path) -> None:
    text, args, words = BAD_INPUTS[case]
    path = tmp_path / "spec.json"
    if text is not None:
        path.write_text(text)
    result = run_cli(str(path), *args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert not (tmp_path / "run").exists()  # nothing was started


def test_a_directory_is_not_a_spec(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path))
    assert result.returncode == 2 and "is a directory" in result.stderr and "Traceback" not in result.stderr


def test_a_spec_path_that_is_no_regular_file_or_too_large_is_refused_at_once(tmp_path: Path) -> None:
    """/dev/zero would be read until memory runs out, a FIFO with no writer would block for ever."""
    import os

    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.json"
    big.write_text('{"name": "x", "description": "' + "x" * 5_000_000 + '"}')
    for path, words in ((Path("/dev/zero"), "not a regular file"), (fifo, "not a regular file"),
                        (big, "larger than 4 MB")):
        result = run_cli(str(path), "--logger", "null", "--out", str(tmp_path / "run"), timeout=60)
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()

