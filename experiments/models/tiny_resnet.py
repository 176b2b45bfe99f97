"""An example of your own model: a small residual convolutional network.

The runner calls `build(in_shape=(C, H, W), classes=N, **model.args)` and trains what it returns,
an nn.Module mapping images [N, C, H, W] to logits [N, classes]. Global average pooling makes it
work for any image size and channel count.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Two 3x3 convolutions with batch norm, added to their input."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def build(in_shape: tuple[int, int, int], classes: int, width: int = 16, blocks: int = 2) -> nn.Module:
    channels = in_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        *(Block(width) for _ in range(blocks)),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))
