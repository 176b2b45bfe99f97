"""Input that would cost without bound is refused within bounds, with one paragraph naming it: IDX
files larger than their header says (a .gz inflating to hundreds of MB), damaged and oversized PNGs,
sweeps of millions of variants, models of a million layers. Real files made here, real processes."""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
import torch

from helpers import run_cli, write_own_idx, write_png_folder
from runner import data
from runner import spec as specs
from runner.spec import DataSpec
from runner.spec.models import check_sweep
from runner.sweeps import variants

CPU = torch.device("cpu")


def _gzip_of_zeros(header: bytes, zeros: int) -> bytes:
    """A gzip stream of `header` then `zeros` zero bytes, made a chunk at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    parts = [packer.compress(header)]
    for _ in range(zeros >> 20):
        parts.append(packer.compress(chunk))
    return b"".join(parts) + packer.flush()


def test_a_gzip_idx_file_is_inflated_no_further_than_its_header_says(tmp_path: Path) -> None:
    """Labels whose header promises 30 bytes, followed by 256 MB of zeros: refused as padded, having
    inflated a few KB past the header rather than the whole stream."""
    write_own_idx(tmp_path, (8, 8), classes=3, gz=True)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(_gzip_of_zeros(struct.pack(">II", 0x801, 30), 256 << 20))
    assert labels.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(data.DataError) as error:
            data.load(DataSpec(dataset="idx", root=str(tmp_path)), CPU)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(labels) in str(error.value) and "padded" in str(error.value)
    assert peak < 32 << 20, f"{peak:,} bytes allocated while reading"


def test_an_idx_header_promising_more_than_memory_is_refused_before_reading(tmp_path: Path) -> None:
    write_own_idx(tmp_path, (8, 8), classes=3)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(struct.pack(">IIII", 0x803, 4_000_000_000, 4000, 4000) + bytes(64))
    with pytest.raises(data.DataError) as error:
        data.load(DataSpec(dataset="idx", root=str(tmp_path)), CPU)
    message = str(error.value)
    assert str(images) in message and "header" in message and "memory" in message


def _png(width: int, height: int, rows: int) -> bytes:
    """A grey PNG whose header says width x height but whose image data holds only `rows` rows."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(rows)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def test_a_png_short_of_image_data_is_named_and_the_run_survives(tmp_path: Path) -> None:
    """The PNG that makes torchvision's decoder (libpng) crash with SIGSEGV: the CLI names it and
    exits 2, no traceback, instead of dying with a segmentation fault."""
    root = write_png_folder(tmp_path / "pngs", side=(9, 9), grey=True)
    short = root / "train" / "green" / "short.png"
    short.write_bytes(_png(9, 9, rows=3))
    spec = tmp_path / "pngs.json"
    spec.write_text(json.dumps({"name": "pngs", "data": {"dataset": "image_folder", "root": str(root)},
                                "model": {"hidden": [8]}, "train": {"epochs": 1, "device": "cpu"}}))
    result = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert str(short) in result.stderr and "crashed the image decoder" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize("side, words", [(8000, ["8000x8000 pixels by its header"]),
                                         (30000, ["900,000,000 pixels by its header"])])
def test_a_png_claiming_too_many_pixels_is_refused_before_decoding(tmp_path: Path, side: int,
                                                                   words: list[str]) -> None:
    """A header of 8000x8000 (or 30000x30000) pixels over 50 rows of data: refused by its header,
    no pixel decoded (decoding it would crash, or fill the memory)."""
    root = write_png_folder(tmp_path / "pngs", side=(9, 9), grey=True)
    huge = root / "test" / "red" / "huge.png"
    huge.write_bytes(_png(side, side, rows=50))
    with pytest.raises(data.DataError) as error:
        data.check_image_headers(sorted(root.rglob("*.png")))
    message = str(error.value)
    assert str(huge) in message and "16,777,216 pixels" in message
    for word in words:
        assert word in message
    with pytest.raises(data.DataError, match="pixels by its header"):
        data.load(DataSpec(dataset="image_folder", root=str(root)), CPU)


def test_a_truncated_png_is_named(tmp_path: Path) -> None:
    root = write_png_folder(tmp_path / "pngs")
    cut = root / "test" / "blue" / "0.png"
    cut.write_bytes(cut.read_bytes()[:-30])
    with pytest.raises(data.DataError) as error:
        data.load(DataSpec(dataset="image_folder", root=str(root)), CPU)
    assert str(cut) in str(error.value) and "cannot be decoded" in str(error.value)


def _sweep(counts: dict[str, int]) -> specs.Experiment:
    values = {"seed": lambda i: i, "optim.lr": lambda i: round(0.001 * (i + 1), 6)}
    return specs.parse({"name": "big", "sweep": {key: [values[key](i) for i in range(n)] for key, n in counts.items()}},
                       "big.json")


def test_a_sweep_past_the_limit_is_refused_before_any_variant_is_built() -> None:
    """10,100 combinations: refused naming each key and its count (the old code built them all)."""
    with pytest.raises(specs.SpecError) as error:
        variants.expand(_sweep({"seed": 101, "optim.lr": 100}), "big.json")
    message = str(error.value)
    assert "10,100 variants" in message and "seed 101" in message and "optim.lr 100" in message
    assert "10,000" in message
    variants.check_size({"seed": list(range(variants.MAX_VARIANTS))}, "big.json")  # the limit itself is fine


def test_a_sweep_of_ten_million_variants_is_refused_by_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"name": "big", "sweep": {"seed": list(range(100)),
                                                         "optim.lr": [0.001 * (i + 1) for i in range(100)],
                                                         "data.batch_size": list(range(1, 1001))}}))
    result = run_cli(str(path), "--dry-run", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "10,000,000 variants" in result.stderr and "data.batch_size 1,000" in result.stderr
    assert "Traceback" not in result.stderr


def test_specs_that_together_pass_the_limit_are_refused_and_a_long_value_list_is_checked_quickly(
        tmp_path: Path) -> None:
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps({"name": name, "sweep": {"seed": list(range(6_000))}}))
    result = run_cli(*map(str, paths), "--dry-run", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "12,000 variants together" in result.stderr and "10,000" in result.stderr
    with pytest.raises(ValueError, match="lists 7 twice"):  # found in one pass: pairwise took hours
        check_sweep({"seed": [*range(200_000), 7]})


def test_a_model_of_a_million_layers_is_refused_as_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(json.dumps({"name": "deep", "model": {"hidden": [4] * 1_000_000}}))
    result = run_cli("validate", str(path), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "model.hidden" in result.stderr and "at most 1000" in result.stderr
    assert "Traceback" not in result.stderr
    assert specs.parse({"name": "deep", "model": {"hidden": [4] * specs.MAX_LAYERS}}, "deep.json")
    with pytest.raises(specs.SpecError, match="model.channels"):
        specs.parse({"name": "deep", "model": {"kind": "cnn", "channels": [4] * 1001}}, "deep.json")
