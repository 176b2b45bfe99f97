"""The training loop on tiny real IDX data, observed through the NullLogger."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from runner import data, train
from runner.loggers import NullLogger
from helpers import run_cli, tiny_spec
from runner.spec import Experiment, TrainSpec

CPU = torch.device("cpu")


def experiment(root: Path, **changes: object) -> Experiment:
    spec = {"name": "t", "data": {"root": str(root), "verify": False, "batch_size": 50, "test_batch_size": 64},
            "model": {"hidden": [32]}, "optim": {"lr": 0.1}, "train": {"epochs": 3, "log_every": 4, "samples": 8}}
    for dotted, value in changes.items():  # section__key, or a top-level key
        section, _, key = dotted.partition("__")
        if key:
            spec[section][key] = value  # type: ignore[index]
        else:
            spec[section] = value
    return Experiment.model_validate(spec)


def fit(spec: Experiment) -> tuple[torch.nn.Module, dict, NullLogger]:
    logger = NullLogger()
    model, results = train.fit(spec, data.load(spec.data, CPU), CPU, logger)
    return model, results, logger


def test_every_step_is_logged_once_in_order(tiny_mnist: Path) -> None:
    _, results, logger = fit(experiment(tiny_mnist))
    chunks = logger.named("train_loss")
    steps = [s for c in chunks for s in c["steps"]]
    assert steps == list(range(1, 37))  # 600 / 50 = 12 steps per epoch, 3 epochs
    assert results["steps"] == 36
    assert all(len(c["steps"]) == len(c["losses"]) <= 4 for c in chunks)
    assert [c["epoch"] for c in chunks if 12 in c["steps"] or 13 in c["steps"]] == [1, 2]
    assert all(math.isfinite(v) for c in chunks for v in c["losses"])


def test_it_learns_and_reports_each_epoch(tiny_mnist: Path) -> None:
    _, results, logger = fit(experiment(tiny_mnist))
    evaluations = logger.named("evaluation")
    assert [e["epoch"] for e in evaluations] == [1, 2, 3]
    assert [e["step"] for e in evaluations] == [12, 24, 36]
    assert evaluations[-1]["test_accuracy"] > 0.9  # the fake digits are easy
    assert results["test_accuracy"] == evaluations[-1]["test_accuracy"]
    losses = [v for c in logger.named("train_loss") for v in c["losses"]]
    assert sum(losses[-6:]) < sum(losses[:6])


def test_images_and_predictions_are_the_fixed_test_batch(tiny_mnist: Path) -> None:
    spec = experiment(tiny_mnist)
    _, _, logger = fit(spec)
    (images,) = logger.named("images")
    test = data.load(spec.data, CPU).test
    assert torch.equal(torch.tensor(images["pixels"], dtype=torch.uint8), data.denormalise(test.x[:8]))
    predictions = logger.named("predictions")
    assert len(predictions) == 3
    assert all(p["truth"] == test.y[:8].tolist() and len(p["predicted"]) == 8 for p in predictions)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_test_loss_is_the_mean_over_samples(tiny_mnist: Path, loss: str) -> None:
    spec = experiment(tiny_mnist, loss=loss)
    model, results, _ = fit(spec)
    test = data.load(spec.data, CPU).test
    with torch.no_grad():
        logits = model(test.x)
    if loss == "cross_entropy":
        expected = F.cross_entropy(logits, test.y).item()
    else:
        expected = F.mse_loss(logits.softmax(1), F.one_hot(test.y, 10).float()).item()
    assert results["test_loss"] == pytest.approx(expected, rel=1e-5)
    assert results["test_accuracy"] == pytest.approx((logits.argmax(1) == test.y).float().mean().item())


def test_evaluation_changes_nothing(tiny_mnist: Path) -> None:
    spec = experiment(tiny_mnist)
    model, _, _ = fit(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test = data.load(spec.data, CPU).test
    first = train.evaluate(model, train.loss_function("cross_entropy", 10), test, 64)
    second = train.evaluate(model, train.loss_function("cross_entropy", 10), test, 17)
    assert first[:2] == pytest.approx(second[:2])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # evaluate puts it back


@pytest.mark.parametrize("changes", [{}, {"model__api": "functional", "model__init": "kaiming_normal"},
                                     {"optim__name": "adam", "optim__lr": 0.001}])
def test_same_seed_gives_bitwise_identical_results(tiny_mnist: Path, changes: dict) -> None:
    runs = [fit(experiment(tiny_mnist, **changes)) for _ in range(2)]
    (m1, r1, _), (m2, r2, _) = runs
    timing = {"train_seconds", "eval_seconds", "samples_per_second", "peaks"}  # measured, not computed
    assert {k: v for k, v in r1.items() if k not in timing} == {k: v for k, v in r2.items() if k not in timing}
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    _, r3, _ = fit(experiment(tiny_mnist, seed=1, **changes))
    assert r3["history"] != r1["history"]


def test_both_apis_follow_the_same_curve(tiny_mnist: Path) -> None:
    module = fit(experiment(tiny_mnist))[2]
    functional = fit(experiment(tiny_mnist, model__api="functional"))[2]
    a = [v for c in module.named("train_loss") for v in c["losses"]]
    b = [v for c in functional.named("train_loss") for v in c["losses"]]
    assert a == pytest.approx(b, rel=1e-4)


def test_unavailable_devices_are_refused_clearly() -> None:
    assert train.pick_device(TrainSpec(device="cpu")) == CPU
    assert train.pick_device(TrainSpec()).type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(train.DeviceError, match="train.device is 'cuda:1'.*use auto or cpu"):
            train.pick_device(TrainSpec(device="cuda:1"))
        with pytest.raises(train.DeviceError, match="train.cuda_graphs needs a CUDA device"):
            train.pick_device(TrainSpec(cuda_graphs=True))


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for CUDA graphs where there is no CUDA")
def test_cuda_graphs_without_cuda_is_refused_before_anything_is_written(tmp_path: Path, tiny_mnist: Path) -> None:
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--set", "train.cuda_graphs=true", "--out",
                     str(tmp_path / "run"))
    assert result.returncode == 2 and "train.cuda_graphs needs a CUDA device" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_compiled_forward_learns_the_same_function(tiny_mnist: Path) -> None:
    eager = fit(experiment(tiny_mnist, train__epochs=1))[1]
    compiled = fit(experiment(tiny_mnist, train__epochs=1, train__compile=True))[1]
    assert compiled["steps"] == eager["steps"]
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-3)
