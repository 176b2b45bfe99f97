"""The tutorial's networks: an MLP written twice (nn.Sequential, and raw tensors with F.* calls)
and logistic (softmax) regression, plus the activation registry.

Both APIs draw their parameters from the same function in the same order, so the same init and
seed give the same weights, and the same function, whichever API a spec picks.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from runner.spec import ModelSpec

IN_FEATURES, CLASSES = 28 * 28, 10

ACTIVATIONS: dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    "relu": (nn.ReLU, F.relu),
    "leaky_relu": (nn.LeakyReLU, F.leaky_relu),
    "selu": (nn.SELU, F.selu),
    "softplus": (nn.Softplus, F.softplus),
    "sigmoid": (nn.Sigmoid, torch.sigmoid),
    "tanh": (nn.Tanh, torch.tanh),
    "gelu": (nn.GELU, F.gelu),
}


def layer_sizes(spec: ModelSpec) -> list[tuple[int, int]]:
    """(in, out) of each linear layer."""
    widths = [IN_FEATURES, *spec.hidden, CLASSES]
    return list(zip(widths[:-1], widths[1:]))


def init_parameters(spec: ModelSpec) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight [out, in], bias [out]) for each layer, drawn from torch's global RNG."""
    params = []
    for fan_in, fan_out in layer_sizes(spec):
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


def module_mlp(spec: ModelSpec, params: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Sequential:
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
    return nn.Sequential(*layers)


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
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w.t() + b
            if i < last:
                x = self.activation(x)
        return x if self.output_activation is None else self.output_activation(x)


def build(spec: ModelSpec, params: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> nn.Module:
    """The network a spec describes: logits [N, 10] from flattened images [N, 784]."""
    params = init_parameters(spec) if params is None else params
    return module_mlp(spec, params) if spec.api == "module" else FunctionalMLP(spec, params)
