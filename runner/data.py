"""Datasets as tensors on the training device: IDX files read and checked once, normalised once,
batched by index with a seeded permutation (no per-sample transforms in the hot loop).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from runner.spec import DataSpec

# The tutorial's Normalize constants: the training set's pixel mean and std.
MEAN, STD = 0.1307, 0.3081

MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


class DataError(Exception):
    """Missing or damaged data; the message names the file and says how to fix it."""


@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # float32 [N, 784], normalised
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    train: Split
    test: Split


def read_idx(path: Path, magic: int, expected_sha256: str | None = None) -> torch.Tensor:
    """The uint8 array in an IDX file (images [N, rows, cols] or labels [N]), checked for damage."""
    hint = "run `make data` to fetch MNIST again"
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} is missing; {hint}.") from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror}); {hint}.") from None
    if expected_sha256 is not None and hashlib.sha256(blob).hexdigest() != expected_sha256:
        raise DataError(f"{path} does not match MNIST's published sha256 (damaged or a different file); {hint}.")
    dims = magic & 0xFF
    header = 4 + 4 * dims
    if len(blob) < header or struct.unpack(">I", blob[:4])[0] != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (magic number {magic:#010x}); {hint}.")
    shape = struct.unpack(f">{dims}I", blob[4:header])
    count = 1
    for d in shape:
        count *= d
    if len(blob) != header + count:
        raise DataError(f"{path} is truncated or padded: {len(blob) - header} data bytes, header says {count}; {hint}.")
    return torch.frombuffer(bytearray(blob[header:]), dtype=torch.uint8).reshape(shape)


def normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.reshape(len(images), -1).float() / 255 - MEAN) / STD


def denormalise(x: torch.Tensor) -> torch.Tensor:
    """Back to uint8 pixels [N, 28, 28], for showing a batch."""
    return ((x * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).reshape(-1, 28, 28)


def _split(raw: Path, prefix: str, limit: int | None, verify: bool, device: torch.device) -> Split:
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    images, labels = (read_idx(raw / name, magic, MNIST_FILES[name] if verify else None)
                      for name, magic in zip(names, (IMAGES_MAGIC, LABELS_MAGIC)))
    if len(images) != len(labels):
        raise DataError(f"{raw / names[0]} holds {len(images)} images but {raw / names[1]} {len(labels)} labels.")
    if images.shape[1:] != (28, 28):
        raise DataError(f"{raw / names[0]} holds {tuple(images.shape[1:])} images; expected 28x28.")
    images, labels = images[:limit], labels[:limit]
    return Split(normalise(images).to(device), labels.long().to(device))


def load(spec: DataSpec, device: torch.device) -> Dataset:
    """The whole dataset, normalised once, on `device`."""
    raw = Path(spec.root) / "MNIST" / "raw"
    return Dataset(train=_split(raw, "train", spec.train_limit, spec.verify, device),
                   test=_split(raw, "t10k", spec.test_limit, spec.verify, device))


def batches(split: Split, batch_size: int, generator: torch.Generator | None = None, skip: int = 0) -> Iterator[
        tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches by index, from batch `skip` on: a seeded permutation when a generator is given,
    in order otherwise."""
    n = len(split)
    starts = range(skip * batch_size, n, batch_size)
    if generator is None:
        for start in starts:
            yield split.x[start:start + batch_size], split.y[start:start + batch_size]
        return
    # Drawn on the CPU so the same seed gives the same order on every device; one copy per epoch.
    order = torch.randperm(n, generator=generator).to(split.x.device)
    for start in starts:
        index = order[start:start + batch_size]
        yield split.x[index], split.y[index]
