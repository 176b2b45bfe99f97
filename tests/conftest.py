"""Fixtures shared by every test: tiny generated MNIST files, the real MNIST where fetched, and a
runtime folder of the test session's own for the Visdom servers the tests start."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from helpers import REAL_MNIST, make_tiny_mnist


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small models on a CPU shared with other work: one torch thread is quicker and steadier."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture(autouse=True, scope="session")
def visdom_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The servers the tests start record themselves (dashboards.visdom.process.record) here, not in
    the user's own runtime folder: a `make visdom` of the person running the tests is left alone."""
    folder = tmp_path_factory.mktemp("visdom") / "runtime"  # made by the first server, as a user's is
    patch = pytest.MonkeyPatch()
    patch.setenv("VISDOM_RUNTIME_DIR", str(folder))
    yield folder
    patch.undo()
