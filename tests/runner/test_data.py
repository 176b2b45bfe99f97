"""IDX reading and checking, on tiny files made here and on the real MNIST where fetched."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from helpers import make_digits, write_idx
from runner import data
from runner.spec import DataSpec

RAW = ("MNIST", "raw")


def test_reads_what_was_written(tiny_mnist: Path) -> None:
    images, labels = make_digits(600, seed=1)
    raw = tiny_mnist.joinpath(*RAW)
    assert torch.equal(data.read_idx(raw / "train-images-idx3-ubyte", data.IMAGES_MAGIC), images)
    assert torch.equal(data.read_idx(raw / "train-labels-idx1-ubyte", data.LABELS_MAGIC), labels)


def test_load_normalises_once_and_limits(tiny_mnist: Path) -> None:
    dataset = data.load(DataSpec(root=str(tiny_mnist), verify=False, train_limit=100), torch.device("cpu"))
    assert dataset.train.x.shape == (100, 1, 28, 28) and dataset.train.x.dtype == torch.float32
    assert dataset.test.y.dtype == torch.int64 and len(dataset.test) == 200
    images, _ = make_digits(600, seed=1)
    assert torch.equal(data.denormalise(dataset.train.x, dataset.info), images[:100, None])
    assert dataset.info is data.MNIST


def test_batches_cover_every_example_once_in_a_seeded_order(tiny_mnist: Path) -> None:
    split = data.load(DataSpec(root=str(tiny_mnist), verify=False), torch.device("cpu")).train
    orders = []
    for _ in range(2):
        ys = [y for _, y in data.batches(split, 64, torch.Generator().manual_seed(5))]
        assert [len(y) for y in ys] == [64] * 9 + [24]
        orders.append(torch.cat(ys))
    assert torch.equal(orders[0], orders[1])
    assert torch.equal(orders[0].sort().values, split.y.sort().values)
    other = torch.cat([y for _, y in data.batches(split, 64, torch.Generator().manual_seed(6))])
    assert not torch.equal(orders[0], other)


@pytest.mark.parametrize("damage, words", [
    ("missing", ["is missing", "make data"]),
    ("truncated", ["truncated", "make data"]),
    ("wrong magic", ["not an IDX images file", "make data"]),
    ("unreadable", ["cannot be read", "make data"]),
])
def test_damaged_files_are_named_with_the_fix(tiny_mnist: Path, damage: str, words: list[str]) -> None:
    path = tiny_mnist.joinpath(*RAW, "t10k-images-idx3-ubyte")
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    elif damage == "wrong magic":
        write_idx(path, torch.zeros(200, dtype=torch.uint8))  # a labels file where images belong
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(data.DataError) as error:
        data.load(DataSpec(root=str(tiny_mnist), verify=False), torch.device("cpu"))
    for word in words:
        assert word in str(error.value)
    assert str(path) in str(error.value)


def test_checksums_are_enforced(tiny_mnist: Path) -> None:
    with pytest.raises(data.DataError, match="published sha256"):
        data.load(DataSpec(root=str(tiny_mnist)), torch.device("cpu"))


def test_count_mismatch_between_images_and_labels(tiny_mnist: Path) -> None:
    write_idx(tiny_mnist.joinpath(*RAW, "train-labels-idx1-ubyte"), torch.zeros(10, dtype=torch.uint8))
    with pytest.raises(data.DataError, match="600 images but .* 10 labels"):
        data.load(DataSpec(root=str(tiny_mnist), verify=False), torch.device("cpu"))


def test_real_mnist_matches_its_published_facts(real_mnist: Path) -> None:
    raw = real_mnist.joinpath(*RAW)
    for name, digest in data.MNIST.files.items():
        assert hashlib.sha256((raw / name).read_bytes()).hexdigest() == digest
    dataset = data.load(DataSpec(root=str(real_mnist)), torch.device("cpu"))
    assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
    assert torch.bincount(dataset.test.y).tolist()[:3] == [980, 1135, 1032]
    # Normalised with the training set's own mean and std, so it comes out ~N(0, 1).
    assert abs(dataset.train.x.mean().item()) < 1e-3 and abs(dataset.train.x.std().item() - 1) < 1e-3


def test_real_mnist_reads_as_torchvision_reads_it(real_mnist: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.datasets.MNIST(str(real_mnist), train=False, download=False)
    ours = data.read_idx(real_mnist.joinpath(*RAW, "t10k-images-idx3-ubyte"), data.IMAGES_MAGIC)
    assert torch.equal(ours, reference.data)
