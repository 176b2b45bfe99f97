"""How one optimisation step runs: eagerly, with a torch.compile'd forward, or as a CUDA graph.

Each variant is a callable `step(x, y) -> loss` that updates the model and returns the loss as a
device tensor (never read on the host here: the loop copies losses in chunks).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossFn = Callable[..., torch.Tensor]


def eager(forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer, loss_fn: LossFn,
          zero_to_none: bool = True) -> Step:
    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = loss_fn(forward(x), y)
        optimizer.zero_grad(set_to_none=zero_to_none)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


class GraphedStep:
    """The whole step (forward, backward, optimizer) captured once as a CUDA graph, then replayed:
    one launch per step instead of dozens, which is what a small MLP on a big GPU is bound by.

    The first WARMUP steps run eagerly on a side stream (as capture requires); batches of another
    size (the last, short one of an epoch) also run eagerly, zeroing the graph's gradient tensors
    in place rather than freeing them.
    """

    WARMUP = 3

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, batch_size: int,
                 device: torch.device) -> None:
        self.model, self.optimizer, self.loss_fn, self.batch_size = model, optimizer, loss_fn, batch_size
        self.device = device
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), warnings.catch_warnings():
            # Adam made capturable for the graph warns when it steps outside one; that is intended here.
            warnings.filterwarnings("ignore", message=".*capturable.*")
            loss = eager(self.model, self.optimizer, self.loss_fn, zero_to_none=self.graph is None)(x, y)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        return loss

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Streams and the capture default to the current device: make it this run's (cuda:N too).
        with torch.cuda.device(self.device):
            return self._step(x, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if len(x) != self.batch_size or (self.graph is None and self.warm < self.WARMUP):
            self.warm += 1
            return self._eager(x, y)
        if self.graph is None:
            self.static_x, self.static_y = x.clone(), y.clone()
            self.optimizer.zero_grad(set_to_none=True)  # backward inside the capture allocates them
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_loss = self.loss_fn(self.model(self.static_x), self.static_y)
                self.static_loss.backward()
                self.optimizer.step()
        else:
            self.static_x.copy_(x)
            self.static_y.copy_(y)
        self.graph.replay()  # capture records without running: the first replay does this step
        return self.static_loss.detach().clone()  # the next replay overwrites static_loss


def make(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, device: torch.device, *,
         compile: bool, cuda_graphs: bool, batch_size: int) -> Step:
    """The step a spec's train.compile / train.cuda_graphs ask for."""
    if cuda_graphs:
        return GraphedStep(model, optimizer, loss_fn, batch_size, device)
    return eager(torch.compile(model) if compile else model, optimizer, loss_fn)
