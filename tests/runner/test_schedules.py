"""Learning-rate schedules and the usual optimisers: the rate each step used reaches the loggers, and a
stopped run with a schedule resumes bitwise identical."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from runner import data, train
from runner.loggers import NullLogger
from runner.spec import Experiment, SpecError, parse

CPU = torch.device("cpu")
LR = 0.1
STEPS_PER_EPOCH = 12  # 600 tiny digits in batches of 50
TIMING = {"train_seconds", "eval_seconds", "samples_per_second"}


def experiment(root: Path, **optim: Any) -> Experiment:
    return Experiment.model_validate({
        "name": "s", "data": {"root": str(root), "verify": False, "batch_size": 50, "test_batch_size": 100},
        "model": {"hidden": [32]}, "optim": {"name": "sgd", "lr": LR, "momentum": 0.9, **optim},
        "train": {"epochs": 3, "log_every": 1, "samples": 4}})


def rates(root: Path, **optim: Any) -> list[float]:
    """The learning rate of every step, as the loggers were told."""
    logger = NullLogger()
    train.fit(experiment(root, **optim), data.load(experiment(root).data, CPU), CPU, logger)
    calls = logger.named("metrics")
    assert [c["step"] for c in calls] == list(range(1, 3 * STEPS_PER_EPOCH + 1))
    return [c["values"]["lr"] for c in calls]


def test_constant_rate_without_a_schedule(tiny_mnist: Path) -> None:
    assert set(rates(tiny_mnist)) == {LR}


def test_step_schedule_decays_by_gamma_every_step_epochs(tiny_mnist: Path) -> None:
    lr = rates(tiny_mnist, schedule="step", step_epochs=1, gamma=0.5)
    expected = [LR] * 12 + [LR / 2] * 12 + [LR / 4] * 12
    assert lr == pytest.approx(expected)


def test_cosine_with_warm_up(tiny_mnist: Path) -> None:
    lr = rates(tiny_mnist, schedule="cosine", warmup_epochs=1)
    assert lr[0] == pytest.approx(LR / 100)
    assert all(a < b for a, b in zip(lr[:12], lr[1:13]))  # rising over the first epoch
    assert lr[12] == pytest.approx(LR)  # the peak, then the cosine down
    assert all(a >= b for a, b in zip(lr[12:], lr[13:]))
    assert lr[12 + 12] == pytest.approx(LR * (1 + math.cos(math.pi * 12 / 24)) / 2)
    assert lr[-1] < LR / 100


def test_onecycle_rises_then_falls(tiny_mnist: Path) -> None:
    lr = rates(tiny_mnist, schedule="onecycle", warmup_epochs=1)
    peak = lr.index(max(lr))
    assert peak == 11 and max(lr) == pytest.approx(LR)  # the last step of the rising epoch
    assert lr[0] < LR / 10 and lr[-1] < LR / 1000


@pytest.mark.parametrize("optim", [
    {"schedule": "cosine", "warmup_epochs": 0.5},
    {"schedule": "step", "step_epochs": 1},
    {"schedule": "onecycle"},
    {"name": "adamw", "lr": 0.01, "momentum": 0, "schedule": "cosine", "weight_decay": 0.1},
    {"nesterov": True, "schedule": "none", "warmup_epochs": 1},
], ids=["cosine-warmup", "step", "onecycle", "adamw-cosine", "nesterov-warmup"])
@pytest.mark.parametrize("stop_step", [7, 12, 20])
def test_resume_with_a_schedule_is_bitwise_identical(tiny_mnist: Path, optim: dict, stop_step: int) -> None:
    spec = experiment(tiny_mnist, **optim)
    dataset = data.load(spec.data, CPU)
    model, expected = train.fit(spec, dataset, CPU, NullLogger())
    checkpoints: list[dict] = []
    calls = iter(range(1, 1000))
    with pytest.raises(train.Stopped):
        train.fit(spec, dataset, CPU, NullLogger(), checkpoint=checkpoints.append,
                  should_stop=lambda: "SIGINT" if next(calls) == stop_step else None)
    logger = NullLogger()
    resumed, results = train.fit(spec, dataset, CPU, logger, resume=checkpoints[-1])
    assert {k: v for k, v in results.items() if k not in TIMING} == \
        {k: v for k, v in expected.items() if k not in TIMING}
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert [c["step"] for c in logger.named("metrics")] == list(range(stop_step + 1, 37))


def test_the_optimisers_are_what_the_spec_names(tiny_mnist: Path) -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    adamw = train.make_optimizer(experiment(tiny_mnist, name="adamw", momentum=0, weight_decay=0.05).optim, params)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.05
    sgd = train.make_optimizer(experiment(tiny_mnist, nesterov=True).optim, params)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9


@pytest.mark.parametrize("spec, words", [
    ({"optim": {"nesterov": True}}, ["optim", "nesterov needs sgd with momentum > 0"]),
    ({"optim": {"name": "adamw", "momentum": 0.9}}, ["momentum applies to sgd only"]),
    ({"optim": {"schedule": "exponential"}}, ["optim.schedule", "'cosine'"]),
    ({"optim": {"warmup_epochs": -1}}, ["optim.warmup_epochs"]),
    ({"optim": {"gamma": 2}}, ["optim.gamma"]),
    ({"optim": {"schedule": "cosine"}, "train": {"cuda_graphs": True, "device": "cuda"}},
     ["cuda_graphs", "fixed learning rate"]),
])
def test_bad_optimiser_settings_are_refused(spec: dict, words: list[str]) -> None:
    with pytest.raises(SpecError) as error:
        parse({"name": "x", **spec}, "x.json")
    for word in words:
        assert word in str(error.value)
