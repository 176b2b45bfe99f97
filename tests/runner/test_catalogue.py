"""The bad-input catalogue: unusual input ends in exit 2 with one paragraph, no traceback, and
nothing left on disk (no run directory, no temporary file); work that would take hours is warned
about. Each case is what a person could type, run through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import run_cli, tiny_spec
from runner import limits, spec


def refused(result, *words: str) -> None:  # noqa: ANN001 - a CompletedProcess
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message  # one paragraph
    for word in words:
        assert word in message, message


def nothing_left(out: Path) -> None:
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    assert not list(out.parent.glob("*.tmp")) and not list(out.parent.glob("tmp*")), list(out.parent.iterdir())


@pytest.mark.parametrize("setting, words", [
    ("data.batch_size=true", ["data.batch_size", "not true"]),  # JSON true is 1 to a lax integer
    ("data.batch_size=200.5", ["data.batch_size", "whole number"]),
    ('data.batch_size="200"', ["data.batch_size", "whole number"]),
    ("train.epochs=false", ["train.epochs"]),
    ("seed=true", ["seed"]),
    ("model.hidden=[true,200]", ["model.hidden"]),
    ("data.batch_size=100000000000000000000", ["data.batch_size", "64-bit"]),  # beyond int64
    ("model.hidden=[100000000000000000000]", ["model.hidden", "64-bit"]),
    ("optim.lr=1e300", ["optim.lr", "float32"]),  # overflowed inside torch with a traceback
    ("optim.lr=1e-50", ["optim.lr", "float32"]),  # rounds to 0 in float32: nothing would train
    ("optim.weight_decay=1e39", ["optim.weight_decay", "float32"]),
    ("optim.lr=true", ["optim.lr", "not true"]),
])
def test_numbers_outside_their_type_are_refused(tmp_path: Path, tiny_mnist: Path, setting: str,
                                                words: list[str]) -> None:
    out = tmp_path / "run"
    refused(run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--set", setting, "--out", str(out)),
            *words)
    nothing_left(out)


def test_a_spec_nested_thousands_deep_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"name": "deep", "model": {"args": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    refused(run_cli(str(path), "--logger", "null", "--out", str(tmp_path / "run")), "nested")
    refused(run_cli("validate", str(path)), "nested")
    nothing_left(tmp_path / "run")


def test_a_moderately_deep_spec_is_refused_before_pydantic_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"  # deep enough to hurt, shallow enough for json to read
    path.write_text('{"name": "deep", "sweep": {"seed": [' + "[" * 500 + "]" * 500 + "]}}")
    refused(run_cli(str(path), "--logger", "null", "--out", str(tmp_path / "run")), "nested more than")


def test_a_deeply_nested_override_is_refused(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    refused(run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--set",
                    "model.hidden=" + "[" * 50_000 + "]" * 50_000, "--out", str(out)), "nested")
    nothing_left(out)


def test_a_model_too_large_for_memory_is_refused_before_allocating(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--set", "model.hidden=[100000000]",
                     "--out", str(out), timeout=120)
    refused(result, "parameters", "memory", "model.hidden")
    nothing_left(out)


def test_an_allocation_failure_during_training_is_one_paragraph_and_leaves_nothing(
        tmp_path: Path, tiny_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory that the estimate missed (another process took it meanwhile): the allocation error itself."""
    from runner import session, train

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 313600000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(train, "fit", out_of_memory)
    out = tmp_path / "run"
    with pytest.raises(limits.LimitError, match="ran out of memory on cpu"):
        session.execute(spec.load(tiny_spec(tmp_path, tiny_mnist)), lambda run_dir: [], out=out)
    nothing_left(out)


def test_a_run_that_would_not_fit_on_disk_is_refused(tmp_path: Path) -> None:
    with pytest.raises(limits.LimitError, match="would write about"):
        limits.check_disk(tmp_path / "runs" / "x", 10**18)  # an exabyte: no disk here has it
    limits.check_disk(tmp_path / "runs" / "x", 10**6)


def test_work_that_would_take_hours_is_warned_about_not_refused() -> None:
    assert limits.long_run_warning(10, 300) is None  # relu.json
    warning = limits.long_run_warning(100_000, 300)
    assert warning is not None and "30,000,000 training steps" in warning and "Ctrl-C" in warning


def test_the_memory_estimate_counts_parameters_without_allocating_them() -> None:
    from runner import models

    big = spec.parse({"name": "big", "model": {"hidden": [100_000_000]}}, "test")
    assert limits.parameter_count(lambda: models.build(big.model)) == 784 * 10**8 + 10**8 + 10**8 * 10 + 10
    relu = spec.parse({"name": "relu"}, "test")
    assert limits.parameter_count(lambda: models.build(relu.model)) == 199_210
    with pytest.raises(limits.LimitError, match="parameters"):
        limits.check_memory(10**12, torch.device("cpu"))


def test_ordinary_numbers_still_pass(tmp_path: Path, tiny_mnist: Path) -> None:
    experiment = spec.load(tiny_spec(tmp_path, tiny_mnist), ["optim.lr=1e-5", "data.batch_size=7", "seed=12"])
    assert (experiment.optim.lr, experiment.data.batch_size, experiment.seed) == (1e-5, 7, 12)
    assert json.loads(json.dumps(experiment.model_dump(mode="json")))["model"]["hidden"] == [32]
