"""Datasets as tensors on the training device: files read and checked once, normalised once,
batched by index with a seeded permutation (no per-sample transforms in the hot loop).

What the rest of the runner knows of a dataset is its `DatasetInfo` (image shape, class names,
normalisation): models size themselves from it and the loggers draw with it. `LOADERS` maps each
`data.dataset` kind to the function that reads it; the published datasets are entries of `KNOWN`,
with their files and sha256 sums. Adding a published IDX dataset is one entry there.

Files are read within bounds: an IDX file's header is checked before the data it promises is read
(a .gz inflated only that far), an image's size is read from its header before any pixel is
decoded, and images are decoded in a child process, so a damaged file that crashes the decoder
ends the child, not the run.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import torch

from runner import limits
from runner.datasets import FASHION_MNIST, KNOWN, MNIST, DatasetInfo  # noqa: F401 - FASHION_MNIST: read here
from runner.errors import UserError
from runner.spec import DataSpec

IMAGES_MAGICS = (0x00000803, 0x00000804)  # idx3: [N, H, W] grey; idx4: [N, C, H, W]
LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
SPLITS = (("train", "train"), ("test", "t10k"))  # (split, file prefix as MNIST names them)
CHUNK = 1 << 20  # bytes read at a time to check a file's sha256
BYTES_PER_PIXEL = 1 + 4  # a pixel in memory: the uint8 read, then its normalised float32


class DataError(UserError):
    """Missing or damaged data; the message names the file and says how to fix it."""




@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # float32 [N, C, H, W], normalised
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    train: Split
    test: Split
    info: DatasetInfo = MNIST


def read_idx(path: Path, magic: int | None = None, expected_sha256: str | None = None, hint: str = "") -> torch.Tensor:
    """The uint8 array in an IDX file (.gz too), checked for damage; `magic` None: any images file.

    The header is read first and the data after it only up to the size the header promises (a .gz
    inflated in bounded chunks), so a file that is larger than it says, or than memory, costs nothing.
    """
    hint = hint or "run `make data` to fetch it again"
    try:
        if expected_sha256 is not None and _sha256(path) != expected_sha256:
            raise DataError(f"{path} does not match its published sha256 (damaged or a different file); {hint}.")
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            return _read_array(f, path, magic, hint)
    except FileNotFoundError:
        raise DataError(f"{path} is missing; {hint}.") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a readable gzip file ({exc}); {hint}.") from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror or exc}); {hint}.") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_array(f: BinaryIO, path: Path, magic: int | None, hint: str) -> torch.Tensor:
    """The header's magic and shape, checked, then exactly the bytes it promises."""
    head = f.read(4)
    found = struct.unpack(">I", head)[0] if len(head) == 4 else None
    allowed = set(IMAGES_MAGICS) if magic is None else {magic}
    if found not in allowed:
        kind = "labels" if magic == LABELS_MAGIC else "images"
        raise DataError(f"{path} is not an IDX {kind} file (magic number {found if found is None else hex(found)}, "
                        f"expected {' or '.join(f'{m:#010x}' for m in sorted(allowed))}); {hint}.")
    dims = found & 0xFF
    packed = f.read(4 * dims)
    if len(packed) < 4 * dims:
        raise DataError(f"{path} is truncated inside its header; {hint}.")
    shape = struct.unpack(f">{dims}I", packed)
    count = math.prod(shape)
    free = limits.available_memory("cpu")
    if free is not None and count * BYTES_PER_PIXEL > free * limits.HEADROOM:
        raise DataError(f"{path}'s header says it holds {count:,} bytes of shape {shape}; read and normalised that "
                        f"is about {limits.size(count * BYTES_PER_PIXEL)}, more than the {limits.size(free)} of "
                        f"memory free; {hint}.")
    blob = f.read(count)
    if len(blob) < count or f.read(1):
        size = f"{len(blob)} data bytes" if len(blob) < count else "more data bytes than that"
        raise DataError(f"{path} is truncated or padded: {size}, header says {count}; {hint}.")
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8).reshape(shape)


def normalise(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32, each channel to mean 0 and std 1 on the training set."""
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return (images.float() / 255 - mean) / std


def denormalise(x: torch.Tensor, info: DatasetInfo = MNIST) -> torch.Tensor:
    """Back to uint8 pixels [N, C, H, W], for showing a batch."""
    x = x.reshape(-1, *info.shape).cpu()
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images [N, C, H, W], as fractions of 255."""
    x = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return tuple(x.mean(1).tolist()), tuple(max(s, 1e-6) for s in x.std(1).tolist())


def _split(info: DatasetInfo, images: torch.Tensor, labels: torch.Tensor, limit: int | None,
           device: torch.device) -> Split:
    images, labels = images[:limit], labels[:limit]
    return Split(normalise(images, info).to(device), labels.long().to(device))


def _read_pair(folder: Path, prefix: str, hint: str, sums: dict[str, str] | None = None,
               own: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, C, H, W] and labels [N] of one split, from `prefix`-images/labels files (or .gz),
    checked against `sums` when given; a person's `own` files may hold colour images (idx4)."""
    paths = []
    for kind, idx in (("images", "idx3"), ("labels", "idx1")):
        name = f"{prefix}-{kind}-{idx}-ubyte"
        if kind == "images" and own and not _exists(folder / name):
            name = f"{prefix}-{kind}-idx4-ubyte"  # a person's colour images, [N, C, H, W]
        path = folder / name
        paths.append(path if path.exists() or not (folder / f"{name}.gz").exists() else folder / f"{name}.gz")
    images = read_idx(paths[0], None, sums.get(paths[0].name) if sums else None, hint)
    labels = read_idx(paths[1], LABELS_MAGIC, sums.get(paths[1].name) if sums else None, hint)
    if len(images) != len(labels):
        raise DataError(f"{paths[0]} holds {len(images)} images but {paths[1]} {len(labels)} labels.")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return images, labels


def _exists(path: Path) -> bool:
    return path.exists() or path.with_name(path.name + ".gz").exists()


def load_known(spec: DataSpec, device: torch.device) -> Dataset:
    """A published dataset of KNOWN, checked against its sums unless data.verify is false."""
    info = KNOWN[spec.dataset]
    folder = Path(spec.root) / info.folder
    hint = f"{info.fetch} (into {spec.root})"
    splits = {}
    for split, prefix in SPLITS:
        images, labels = _read_pair(folder, prefix, hint, info.files if spec.verify else None)
        if tuple(images.shape[1:]) != info.shape:
            raise DataError(f"{folder / f'{prefix}-images-idx3-ubyte'} holds {tuple(images.shape[1:])} images; "
                            f"{info.name} has {info.shape} (C, H, W).")
        splits[split] = _split(info, images, labels, getattr(spec, f"{split}_limit"), device)
    return Dataset(splits["train"], splits["test"], info)


def _own(name: str, root: str, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
         classes: tuple[str, ...], spec: DataSpec, device: torch.device) -> Dataset:
    """A person's dataset: its shape, classes and normalisation read off the files themselves."""
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(f"{root}: training images are {tuple(train[0].shape[1:])} (C, H, W) but test images "
                        f"{tuple(test[0].shape[1:])}; both splits need one size.")
    mean, std = channel_stats(train[0][:spec.train_limit])
    c, h, w = train[0].shape[1:]
    info = DatasetInfo(name, (c, h, w), classes, mean, std, folder=root)
    return Dataset(_split(info, *train, spec.train_limit, device), _split(info, *test, spec.test_limit, device), info)


def load_idx(spec: DataSpec, device: torch.device) -> Dataset:
    """A person's IDX files in data.root: {train,t10k}-images-idx3-ubyte (grey [N, H, W]) or -idx4-ubyte
    ([N, C, H, W]) and {train,t10k}-labels-idx1-ubyte, each optionally .gz; classes 0..max label."""
    folder = Path(spec.root)
    hint = ("data.dataset idx reads train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            f"t10k-labels-idx1-ubyte (or .gz, or idx4 images [N, C, H, W]) from data.root ({folder})")
    pairs = {split: _read_pair(folder, prefix, hint, own=True) for split, prefix in SPLITS}
    classes = int(max(pairs["train"][1].max(), pairs["test"][1].max())) + 1 if len(pairs["train"][1]) else 0
    if classes < 2:
        raise DataError(f"{folder}: the labels hold {classes} class(es); a classifier needs at least two.")
    return _own("idx", str(folder), pairs["train"], pairs["test"], tuple(str(k) for k in range(classes)), spec, device)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_IMAGE_PIXELS = 4096 * 4096  # per image; a header claiming more is refused before any decoding
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # Pillow's modes of images without colour


def load_image_folder(spec: DataSpec, device: torch.device) -> Dataset:
    """Images in torchvision's ImageFolder layout, root/{train,test}/<class>/*.png: checked by their
    headers first, then decoded once by torchvision; grey if every image is grey, else colour (RGB)."""
    root = Path(spec.root)
    classes, files = _image_files(root)
    paths = [path for items in files.values() for path, _ in items]
    check_image_headers(paths)
    images = iter(decode_images(paths))
    decoded = {split: [next(images) for _ in items] for split, items in files.items()}
    channels = 3 if any(image.shape[0] >= 3 for split in decoded.values() for image in split) else 1
    pairs = {}
    for split, items in files.items():
        stacked = torch.stack([_to_channels(image, channels) for image in decoded[split]])
        pairs[split] = (stacked, torch.tensor([label for _, label in items]))
    return _own("image_folder", str(root), pairs["train"], pairs["test"], classes, spec, device)


def _image_files(root: Path) -> tuple[tuple[str, ...], dict[str, list[tuple[Path, int]]]]:
    """The class names, and each split's image files with their labels; the layout checked."""
    layout = f"expected {root}/train/<class>/*.png and {root}/test/<class>/*.png (or .jpg)"
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DataError(f"{root} is not an image folder: {layout}.")
    classes = tuple(sorted(d.name for d in (root / "train").iterdir() if d.is_dir()))
    if len(classes) < 2:
        raise DataError(f"{root / 'train'} holds {len(classes)} class folder(s); a classifier needs at least two "
                        f"({layout}).")
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "test"):
        extra = sorted({d.name for d in (root / split).iterdir() if d.is_dir()} - set(classes))
        if extra:
            raise DataError(f"{root / split / extra[0]} is a class the training set lacks; the classes are "
                            f"those of {root / 'train'}: {', '.join(classes)}.")
        files[split] = [(path, label) for label, name in enumerate(classes) if (root / split / name).is_dir()
                        for path in sorted((root / split / name).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
        if not files[split]:
            raise DataError(f"{root / split} holds no images ({layout}).")
    return classes, files


def check_image_headers(paths: list[Path]) -> None:
    """Each image's size and kind as its header gives them (no pixel is decoded for this): a PNG or
    JPEG of at most MAX_IMAGE_PIXELS, all of one size, all together fitting in memory."""
    first: tuple[Path, tuple[int, int]] | None = None
    colour = False
    for path in paths:
        size, mode = _image_header(path)
        colour = colour or mode not in GREY_MODES
        if size[0] * size[1] > MAX_IMAGE_PIXELS:
            raise DataError(f"{path} is {size[0]}x{size[1]} pixels by its header, more than the "
                            f"{MAX_IMAGE_PIXELS:,} pixels an image may have; resize it (the others too).")
        first = first or (path, size)
        if size != first[1]:
            raise DataError(f"{path} is {size[0]}x{size[1]} pixels but {first[0]} is {first[1][0]}x{first[1][1]}; "
                            "every image of a dataset needs one size (resize them first).")
    if first is not None:
        need = len(paths) * (3 if colour else 1) * first[1][0] * first[1][1] * (BYTES_PER_PIXEL + 1)
        free = limits.available_memory("cpu")
        if free is not None and need > free * limits.HEADROOM:
            raise DataError(f"the {len(paths):,} images of {first[1][0]}x{first[1][1]} pixels in {first[0].parent.parent.parent} "
                            f"would take about {limits.size(need)} of memory decoded and normalised, and "
                            f"{limits.size(free)} is free; use fewer or smaller images.")


def _image_header(path: Path) -> tuple[tuple[int, int], str]:
    """An image's (width, height) and Pillow's mode for it, read from its header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own cap is lower
            with Image.open(path, formats=["PNG", "JPEG"]) as image:
                return image.size, image.mode
    except Image.DecompressionBombError as exc:  # past Pillow's own cap, which is higher than ours
        found = re.search(r"\((\d+) pixels\)", str(exc))
        claimed = f"{int(found[1]):,}" if found else "too many"
        raise DataError(f"{path} is {claimed} pixels by its header, more than the {MAX_IMAGE_PIXELS:,} pixels an "
                        "image may have; resize it (the others too).") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path} cannot be decoded as an image ({str(exc).splitlines()[0]}); PNG and JPEG "
                        "files are read.") from None


# The child's program: the paths as a JSON list on stdin; on stdout "ready", then one pickle per image,
# its pixels [c, H, W] uint8, or the first line of why it cannot be decoded (and nothing after it).
DECODER = """
import json, pickle, signal, sys, warnings
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle, not a damaged file's
paths = json.load(sys.stdin)
warnings.filterwarnings("ignore", category=DeprecationWarning)  # torchvision 0.29 points to torchcodec
from torchvision.io import ImageReadMode, decode_image
out = sys.stdout.buffer
pickle.dump("ready", out)
for path in paths:
    try:
        pickle.dump(decode_image(path, mode=ImageReadMode.UNCHANGED).numpy(), out)
    except (RuntimeError, OSError, ValueError) as exc:
        pickle.dump((str(exc) or type(exc).__name__).splitlines()[0], out)
        break
    out.flush()
"""


def decode_images(paths: list[Path]) -> list[torch.Tensor]:
    """Each image [c, H, W] uint8 as stored (grey, grey+alpha, RGB or RGBA), decoded by torchvision in a
    child process: a decoder that crashes on a damaged file (libpng on a PNG with less image data
    than its header says) ends the child, not the run, and the file is named."""
    with tempfile.TemporaryFile() as errors:
        child = subprocess.Popen([sys.executable, "-c", DECODER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=errors)
        try:
            with contextlib.suppress(BrokenPipeError):  # a child that died at once: told below
                child.stdin.write(json.dumps([str(p) for p in paths]).encode())  # type: ignore[union-attr]
                child.stdin.close()  # type: ignore[union-attr]
            decoded = []
            for path in [None, *paths]:
                try:
                    answer = pickle.load(child.stdout)  # type: ignore[arg-type]
                except (EOFError, pickle.UnpicklingError):
                    raise DataError(_crash(path, child.wait(), errors)) from None
                if isinstance(answer, str) and path is not None:
                    raise DataError(f"{path} cannot be decoded as an image ({answer}).")
                if path is not None:
                    decoded.append(torch.from_numpy(answer))
            return decoded
        finally:
            child.kill()
            child.wait()
            child.stdout.close()  # type: ignore[union-attr]


def _crash(path: Path | None, status: int, errors: Any) -> str:
    """Why the decoder's child ended early: what it said last, and the file it was decoding."""
    errors.seek(0)
    said = (errors.read().decode(errors="replace").strip().splitlines() or [""])[-1][:300]
    how = f"signal {-status}" if status < 0 else f"exit status {status}"
    if path is None:
        return f"the image decoder (torchvision, in a child process) did not start ({how}: {said})."
    return (f"{path} crashed the image decoder ({how}{': ' + said if said else ''}); the file is damaged (cut "
            "short, or less image data than its header says): replace or remove it.")


def _to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """A decoded image [c, H, W] (grey, grey+alpha, RGB or RGBA) as `channels` channels, alpha dropped."""
    if image.shape[0] in (2, 4):
        image = image[:-1]
    if channels == 3 and image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image


LOADERS: dict[str, Callable[[DataSpec, torch.device], Dataset]] = {
    **{name: load_known for name in KNOWN},
    "idx": load_idx,
    "image_folder": load_image_folder,
}


def load(spec: DataSpec, device: torch.device) -> Dataset:
    """The whole dataset, normalised once, on `device`."""
    return LOADERS[spec.dataset](spec, device)


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
