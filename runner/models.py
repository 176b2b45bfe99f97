"""The networks, one builder per `model.kind` in BUILDERS, each sized from the dataset's
DatasetInfo: the tutorial's MLP written twice (nn.Sequential, and raw tensors with F.* calls) and
logistic (softmax) regression; a LeNet-style CNN; and a person's own nn.Module (kind python).

Both MLP APIs draw their parameters from the same function in the same order, so the same init and
seed give the same weights, and the same function, whichever API a spec picks. Every model takes
images [N, C, H, W] and returns logits [N, classes]; `check_logits` holds any model to that with
one forward pass before training.
"""

from __future__ import annotations

import importlib
import math
import sys
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from runner.datasets import MNIST, DatasetInfo
from runner.errors import UserError
from runner.spec import CNNSpec, MLPSpec, PythonSpec

ModelSpec = MLPSpec  # the tutorial's


class ModelError(UserError):
    """A model that cannot be built or does not fit the data; the message names the key and the shapes."""

ACTIVATIONS: dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    "relu": (nn.ReLU, F.relu),
    "leaky_relu": (nn.LeakyReLU, F.leaky_relu),
    "selu": (nn.SELU, F.selu),
    "softplus": (nn.Softplus, F.softplus),
    "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "tanh": (nn.Tanh, torch.tanh),
    "gelu": (nn.GELU, F.gelu),
}


def layer_sizes(spec: ModelSpec, info: DatasetInfo = MNIST) -> list[tuple[int, int]]:
    """(in, out) of each linear layer: flattened images in, one logit per class out."""
    widths = [math.prod(info.shape), *spec.hidden, len(info.classes)]
    return list(zip(widths[:-1], widths[1:]))


def init_parameters(spec: ModelSpec, info: DatasetInfo = MNIST) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight [out, in], bias [out]) for each layer, drawn from torch's global RNG."""
    params = []
    for fan_in, fan_out in layer_sizes(spec, info):
        weight, bias = torch.empty(fan_out, fan_in), torch.empty(fan_out)
        if spec.init == "kaiming_normal":  # the tutorial's low-level version
            nn.init.kaiming_normal_(weight)
            nn.init.zeros_(bias)
        else:  # exactly what nn.Linear.reset_parameters does
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(bias, -bound, bound)
        params.append((weight, bias))
    return params


class FlatSequential(nn.Sequential):
    """nn.Sequential on flattened images: the MLP's layers keep the names (0.weight, ...) they always had."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(1))


def module_mlp(spec: ModelSpec, params: list[tuple[torch.Tensor, torch.Tensor]]) -> FlatSequential:
    """The tutorial's high-level version: nn.Sequential of Linear and activation modules."""
    make_activation = ACTIVATIONS[spec.activation][0]
    layers: list[nn.Module] = []
    for i, (weight, bias) in enumerate(params):
        # skip_init: the parameters come from init_parameters, and the global RNG must not move.
        linear = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0], device=weight.device)
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        layers.append(linear)
        if i < len(params) - 1:
            layers.append(make_activation())
    if spec.output_activation != "none":
        layers.append(ACTIVATIONS[spec.output_activation][0]())
    return FlatSequential(*layers)


class FunctionalMLP(nn.Module):
    """The tutorial's low-level version: raw weight tensors and `x @ w.t() + b`.

    It is an nn.Module only so that .to(device), .parameters() and state_dict() work as usual.
    """

    def __init__(self, spec: ModelSpec, params: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w.clone()) for w, _ in params)
        self.biases = nn.ParameterList(nn.Parameter(b.clone()) for _, b in params)
        self.activation = ACTIVATIONS[spec.activation][1]
        self.output_activation = None if spec.output_activation == "none" else ACTIVATIONS[spec.output_activation][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w.t() + b
            if i < last:
                x = self.activation(x)
        return x if self.output_activation is None else self.output_activation(x)


def mlp(spec: MLPSpec, info: DatasetInfo, params: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        ) -> nn.Module:
    """The tutorial's MLP (or logistic regression) in the API the spec picks."""
    params = init_parameters(spec, info) if params is None else params
    return module_mlp(spec, params) if spec.api == "module" else FunctionalMLP(spec, params)


def cnn(spec: CNNSpec, info: DatasetInfo) -> nn.Sequential:
    """LeNet-5 style: [conv -> (batch norm) -> activation -> 2x2 pool] per channel count, then dense layers.

    With padding "same" only the pooling shrinks the image, rounding up (ceil_mode), so any image size
    down to 1x1 keeps at least one pixel per channel.
    """
    make_activation = ACTIVATIONS[spec.activation][0]
    pool = nn.MaxPool2d if spec.pool == "max" else nn.AvgPool2d
    channels, height, width = info.shape
    padding = spec.kernel // 2 if spec.padding == "same" else 0
    layers: list[nn.Module] = []
    for out in spec.channels:
        height, width = height + 2 * padding - spec.kernel + 1, width + 2 * padding - spec.kernel + 1
        if height < 1 or width < 1:
            raise ModelError(f"model.padding is valid and model.kernel {spec.kernel}: after {len(layers) // 3} "
                             f"convolution(s) the {info.shape[1]}x{info.shape[2]} images of {info.name} are too "
                             "small for the next one; use padding same, a smaller kernel or fewer channels.")
        layers += [nn.Conv2d(channels, out, spec.kernel, padding=padding)]
        layers += [nn.BatchNorm2d(out)] if spec.batch_norm else []
        layers += [make_activation(), pool(2, ceil_mode=True)]
        channels, height, width = out, -(-height // 2), -(-width // 2)
    layers.append(nn.Flatten())
    features = channels * height * width
    for out in spec.hidden:
        layers += [nn.Dropout(spec.dropout)] if spec.dropout else []
        layers += [nn.Linear(features, out), make_activation()]
        features = out
    layers += [nn.Dropout(spec.dropout)] if spec.dropout else []
    layers.append(nn.Linear(features, len(info.classes)))
    return nn.Sequential(*layers)


def python(spec: PythonSpec, info: DatasetInfo) -> nn.Module:
    """A person's own model: `target`'s callable, looked up in `path` first, then on PYTHONPATH."""
    module_name, _, attribute = spec.target.partition(":")
    folders = [spec.path] if spec.path else []
    searched = " or ".join([*folders, "on PYTHONPATH"]) if folders else "on PYTHONPATH"
    sys.path[:0] = folders
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ModelError(f"model.target {spec.target!r}: no module named {module_name!r} in {searched}; put "
                             f"{module_name.replace('.', '/')}.py beside the experiment file or on PYTHONPATH."
                             ) from None
        raise ModelError(f"model.target {spec.target!r}: importing {module_name} failed: {exc}.") from None
    except Exception as exc:  # noqa: BLE001 - a person's module may raise anything while it loads
        raise ModelError(f"model.target {spec.target!r}: importing {module_name} raised "
                         f"{type(exc).__name__}: {exc}.") from None
    finally:
        del sys.path[:len(folders)]
    build = getattr(module, attribute, None)
    if not callable(build):
        raise ModelError(f"model.target {spec.target!r}: {module_name} ({getattr(module, '__file__', '?')}) has no "
                         f"callable {attribute!r}.")
    try:
        model = build(in_shape=info.shape, classes=len(info.classes), **spec.args)
    except Exception as exc:  # noqa: BLE001 - the person's code, the person's error, said in one line
        raise ModelError(f"model.target {spec.target!r}: calling {attribute}(in_shape={info.shape}, "
                         f"classes={len(info.classes)}, **model.args) raised {type(exc).__name__}: {exc}.") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model.target {spec.target!r}: {attribute} returned a {type(model).__name__}, not a "
                         "torch.nn.Module; return the network itself.")
    return model


BUILDERS: dict[str, Callable[[Any, DatasetInfo], nn.Module]] = {
    "mlp": mlp, "logistic": mlp, "cnn": cnn, "python": python,
}


def build(spec: MLPSpec | CNNSpec | PythonSpec, info: DatasetInfo = MNIST,
          params: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> nn.Module:
    """The network a spec describes, sized for `info`: logits [N, classes] from images [N, C, H, W]."""
    if params is not None:
        return mlp(spec, info, params)  # type: ignore[arg-type]
    return BUILDERS[spec.kind](spec, info)


def check_logits(model: nn.Module, x: torch.Tensor, info: DatasetInfo, target: str) -> None:
    """One forward pass on a batch, in eval mode and without touching any RNG: the logits must be
    [batch, classes] of floats, and some parameter must be trainable. A model that fails here would
    otherwise fail mid-run (after its run directory was made), or train on nonsense."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, name the shapes
        raise ModelError(f"{target} fails on a batch of images {tuple(x.shape)} (N, C, H, W) of {info.name}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}.") from None
    finally:
        model.train(was_training)
    expected = (len(x), len(info.classes))
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ModelError(f"{target} maps images {tuple(x.shape)} to {got}; it must return logits {expected} "
                         f"(batch, classes: {len(info.classes)} for {info.name}).")
    if not logits.is_floating_point():
        raise ModelError(f"{target} returns logits of type {str(logits.dtype).removeprefix('torch.')}; logits must be "
                         "floating point (float32, or float16/bfloat16) so that the loss has gradients.")
    parameters = list(model.parameters())
    if not any(p.requires_grad for p in parameters):
        held = f"all {len(parameters)} of its parameter tensors are frozen" if parameters else "it holds none"
        raise ModelError(f"{target} has no parameters to train ({held}): the optimizer would have nothing to "
                         "change. Give it layers whose parameters have requires_grad=True (nn.Linear, nn.Conv2d, ...), "
                         "or unfreeze some of them.")
