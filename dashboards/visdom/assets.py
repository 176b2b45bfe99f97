"""Visdom's web assets, installed offline from npm tarballs listed in `assets.json`.

`python -m visdom.server` downloads its JavaScript, CSS and fonts from public CDNs on first start
and crashes when it cannot reach them. It skips every download when each file it wants exists
under visdom's `static/` directory and `static/version.built` holds the visdom version (see
visdom/server/build.py). This module owns putting those files there: every file comes out of an
npm package tarball whose sha256 is pinned in `assets.json`, fetched through `runner.fetch` (which
caches tarballs outside git and checks every byte), and `version.built` is written last, so a
half-done install is never mistaken for a finished one.

`python -m dashboards.visdom.assets` installs them by hand; `dashboards.visdom.server start` calls `ensure()`.
The report (dashboards.report.page) reads its plotly.js pin from the same manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from runner.fetch import CACHE, FetchError, extract, npm_tarball
from runner.files import write_text

MANIFEST = Path(__file__).with_name("assets.json")

# Holds the sha256 of the manifest an install came from, so that editing assets.json (a version
# bump) makes the next start reinstall instead of trusting files from the previous manifest.
STAMP = ".assets-manifest.sha256"
BUILT = "version.built"


class AssetError(Exception):
    """The assets could not be installed; the message says why and what to do."""


@dataclass(frozen=True)
class Package:
    """One npm tarball and the files it provides: target under static/ -> member in the tarball."""

    name: str
    version: str
    sha256: str
    files: dict[str, str]


@dataclass(frozen=True)
class Manifest:
    visdom: str
    packages: tuple[Package, ...]
    digest: str

    def targets(self) -> list[str]:
        return [target for package in self.packages for target in package.files]


def load_manifest(path: Path = MANIFEST) -> Manifest:
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
        packages = tuple(Package(p["name"], p["version"], p["sha256"], dict(p["files"]))
                         for p in data["packages"])
        visdom = data["visdom"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AssetError(f"unreadable asset manifest {path}: {exc!r}") from None
    for package in packages:
        for target in package.files:
            # Targets are joined onto visdom's package directory: keep them inside it.
            pure = PurePosixPath(target)
            if pure.is_absolute() or ".." in pure.parts:
                raise AssetError(f"{path}: target {target!r} of {package.name} leaves static/")
    return Manifest(visdom, packages, hashlib.sha256(raw).hexdigest())


def visdom_dir() -> Path:
    """visdom's package directory, found without importing visdom (which imports torch)."""
    spec = importlib.util.find_spec("visdom")
    if spec is None or spec.origin is None:
        raise AssetError("visdom is not installed in this Python; run `make install`.")
    return Path(spec.origin).parent


def static_dir() -> Path:
    return visdom_dir() / "static"


def visdom_version() -> str:
    """What `visdom.__version__` is: the stripped VERSION file next to visdom/__init__.py."""
    try:
        return (visdom_dir() / "VERSION").read_text().strip()
    except OSError:
        return "no_version_file"  # visdom's own fallback, which build.py treats as built


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def is_installed(static: Path | None = None, manifest: Path = MANIFEST) -> bool:
    """True when visdom.server would download nothing and the files came from this manifest."""
    static = static or static_dir()
    wanted = load_manifest(manifest)
    return (_read(static / BUILT) == visdom_version()
            and _read(static / STAMP) == wanted.digest
            and all((static / target).is_file() for target in wanted.targets()))


def install(static: Path | None = None, cache: Path = CACHE, manifest: Path = MANIFEST) -> None:
    """Place every file of the manifest under `static`, then the stamp, then version.built.

    Unlocked: call `ensure()` unless nothing else can be installing into `static` meanwhile.
    """
    static = static or static_dir()
    wanted = load_manifest(manifest)
    installed = visdom_version()
    if wanted.visdom != installed:
        raise AssetError(f"visdom {installed} is installed but {manifest.name} lists the web assets "
                         f"of visdom {wanted.visdom}; install visdom=={wanted.visdom} (make install).")
    try:
        static.mkdir(parents=True, exist_ok=True)
        # Invalidate our stamp first: if this install stops halfway, the next start tries again.
        # version.built stays: a server starting meanwhile sees every file (each is replaced
        # atomically) and must not fall back to the CDNs.
        (static / STAMP).unlink(missing_ok=True)
        for package in wanted.packages:
            tarball = npm_tarball(package.name, package.version, package.sha256, cache=cache)
            _extract(tarball, {static / target: member for target, member in package.files.items()})
        _write(static / STAMP, wanted.digest)
        if _read(static / BUILT) != installed:
            _write(static / BUILT, installed)
    except FetchError as exc:
        raise AssetError(str(exc)) from None
    except tarfile.TarError as exc:
        raise AssetError(f"unreadable tarball in {cache}: {exc}") from None
    except OSError as exc:
        raise AssetError(f"cannot write visdom's web assets into {static}: {exc}") from None


def ensure(static: Path | None = None, cache: Path = CACHE, manifest: Path = MANIFEST,
           force: bool = False) -> bool:
    """Install unless already in place (or `force`); True when it installed."""
    static = static or static_dir()
    if not force and is_installed(static, manifest):
        return False
    with _lock(static, cache):
        if not force and is_installed(static, manifest):  # another process did it meanwhile
            return False
        install(static, cache, manifest)
    return True


@contextlib.contextmanager
def _lock(static: Path, cache: Path) -> Iterator[None]:
    # One installer per static directory at a time (two first starts, parallel test runs): the
    # second waits, then finds the work done.
    key = hashlib.sha256(str(static.resolve()).encode()).hexdigest()[:16]
    path = cache / "npm" / f".assets-{key}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w")
    except OSError as exc:
        raise AssetError(f"cannot create the lock file {path}: {exc}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _extract(tarball: Path, destinations: dict[Path, str]) -> None:
    # extract() takes member -> destination, so a member wanted at two places (bootstrap's svg
    # font also lives under a name with '#' in it) goes out in a second round.
    pending = dict(destinations)
    while pending:
        batch: dict[str, Path] = {}
        for destination, member in list(pending.items()):
            if member not in batch:
                batch[member] = destination
                del pending[destination]
        extract(tarball, batch)
        for destination in batch.values():
            _readable(destination)


def _write(path: Path, text: str) -> None:
    write_text(path, text)


def _readable(path: Path) -> None:
    # Temporary files are created 0600; like the rest of an installed package, static files are
    # readable by every user who may run the server.
    os.chmod(path, 0o644)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.visdom.assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--static", type=Path, help="target directory (default: visdom's static/)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"tarball cache (default: {CACHE})")
    parser.add_argument("--force", action="store_true", help="reinstall even if in place")
    args = parser.parse_args(argv)
    try:
        static = args.static or static_dir()
        if not ensure(static, args.cache, force=args.force):
            print(f"Visdom web assets already in place in {static}")
            return 0
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Visdom web assets installed in {static}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
