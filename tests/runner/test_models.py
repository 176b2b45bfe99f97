"""The two MLP styles compute the same function; inits and activations are what the spec says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from runner import models
from runner.data import DatasetInfo
from runner.spec import ACTIVATIONS, CNNSpec, ModelSpec


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


def info(shape: tuple[int, int, int], classes: int = 10) -> DatasetInfo:
    return DatasetInfo("test", shape, tuple(str(k) for k in range(classes)), (0.5,) * shape[0], (0.5,) * shape[0])


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 16, 16), (3, 7, 5), (1, 1, 1), (3, 64, 48)])
@pytest.mark.parametrize("spec", [CNNSpec(), CNNSpec(channels=(8, 16, 32), kernel=3, hidden=(64,), pool="avg",
                                                     batch_norm=True, dropout=0.2)], ids=["lenet5", "deeper"])
def test_the_cnn_fits_any_image_shape(shape: tuple[int, int, int], spec: CNNSpec) -> None:
    model = models.build(spec, info(shape, classes=7))
    x = torch.randn(5, *shape)
    assert model(x).shape == (5, 7)
    models.check_logits(model, x, info(shape, classes=7), "the cnn model")


def test_lenet5_has_the_papers_layers() -> None:
    model = models.build(CNNSpec(), info((1, 28, 28)))
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 6, (5, 5)), (6, 16, (5, 5))]
    assert [(m.in_features, m.out_features) for m in linears] == [(16 * 7 * 7, 120), (120, 84), (84, 10)]
    # padding valid on 32x32 images: the paper's 16 maps of 5x5 before the dense layers
    valid = models.build(CNNSpec(padding="valid"), info((1, 32, 32)))
    assert next(m for m in valid if isinstance(m, nn.Linear)).in_features == 16 * 5 * 5


def test_valid_padding_on_images_too_small_is_refused_with_the_sizes() -> None:
    with pytest.raises(models.ModelError) as error:
        models.build(CNNSpec(padding="valid"), info((1, 8, 8)))
    assert "8x8" in str(error.value) and "padding same" in str(error.value)


def test_the_mlp_is_sized_from_the_dataset() -> None:
    model = models.build(ModelSpec(hidden=(16,)), info((3, 4, 5), classes=3))
    assert model(torch.randn(2, 3, 4, 5)).shape == (2, 3)
    assert [tuple(p.shape) for p in model.parameters()] == [(16, 60), (16,), (3, 16), (3,)]
