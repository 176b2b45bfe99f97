"""Fixtures shared by every test: tiny generated MNIST files, and the real MNIST where fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REAL_MNIST, make_tiny_mnist


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    """A data root holding 600 train / 200 test fake digits in torchvision's layout."""
    return make_tiny_mnist(tmp_path / "data")


@pytest.fixture
def real_mnist() -> Path:
    if not (REAL_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("real MNIST not fetched; `make data` fetches it (make test does so first)")
    return REAL_MNIST


@pytest.fixture
def real_fashion_mnist() -> Path:
    if not (REAL_MNIST / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip("real Fashion-MNIST not fetched; `make data` fetches it (make test does so first)")
    return REAL_MNIST
