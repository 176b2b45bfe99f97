"""The two MLP styles compute the same function; inits and activations are what the spec says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from runner import models
from runner.spec import ACTIVATIONS, ModelSpec


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("output_activation", ["none", "relu"])
def test_functional_and_module_mlps_compute_the_same_function(activation: str, output_activation: str) -> None:
    spec = ModelSpec(hidden=(32, 16), activation=activation, output_activation=output_activation)
    torch.manual_seed(0)
    params = models.init_parameters(spec)
    module = models.build(spec.model_copy(update={"api": "module"}), params=params)
    functional = models.build(spec.model_copy(update={"api": "functional"}), params=params)
    x = torch.randn(64, 784)
    torch.testing.assert_close(module(x), functional(x), rtol=1e-5, atol=1e-6)
    assert isinstance(module, nn.Sequential)
    assert not any(isinstance(m, nn.Linear) for m in functional.modules())


@pytest.mark.parametrize("init", ["default", "kaiming_normal"])
def test_same_seed_gives_the_same_weights_in_both_apis(init: str) -> None:
    weights = []
    for api in ("module", "functional"):
        torch.manual_seed(3)
        model = models.build(ModelSpec(api=api, init=init))
        weights.append([p.detach() for p in model.parameters()])
    shapes = [tuple(w.shape) for w in weights[0]]
    assert shapes == [(200, 784), (200,), (200, 200), (200,), (10, 200), (10,)]
    # module: weight, bias per layer; functional: every weight, then every bias
    module, functional = weights
    for a, b in zip(module[0::2] + module[1::2], functional):
        assert torch.equal(a, b)


def test_inits_differ_as_described() -> None:
    torch.manual_seed(0)
    kaiming = models.init_parameters(ModelSpec(init="kaiming_normal"))
    assert all(torch.count_nonzero(b) == 0 for _, b in kaiming)
    assert abs(kaiming[0][0].std().item() - (2 / 784) ** 0.5) < 0.002  # kaiming_normal_: std sqrt(2 / fan_in)
    torch.manual_seed(0)
    default = models.init_parameters(ModelSpec())
    assert default[0][0].abs().max().item() <= 1 / 784 ** 0.5 + 1e-6  # nn.Linear: U(-1/sqrt(fan_in), ...)


def test_output_activation_relu_clips_the_logits_as_the_tutorial_did() -> None:
    torch.manual_seed(0)
    model = models.build(ModelSpec(output_activation="relu"))
    assert (model(torch.randn(100, 784)) >= 0).all()
    torch.manual_seed(0)
    assert (models.build(ModelSpec())(torch.randn(100, 784)) < 0).any()


def test_logistic_regression_is_one_linear_layer() -> None:
    model = models.build(ModelSpec(kind="logistic"))
    assert [tuple(p.shape) for p in model.parameters()] == [(10, 784), (10,)]
