"""What made a run: the code (the git commit of this project and of your own model's folder, whether
their trees were dirty and the diff), the versions of Python, torch, torchvision, CUDA and Ray, the host
and the command line. `collect()` is called once as a run starts; it never fails and never waits
long: git runs with a timeout, without taking the repository's optional locks (a `git status` of
yours in the same checkout is never refused because of a run), without external diff or textconv
programs, and never overriding git's `safe.directory` check (a repository owned by another user is
reported as refused, not read). A missing git, a folder that is no repository or a repository with
no commit yet is said in the keys.

It imports neither torch nor Ray: their versions come from the modules already loaded, or from the
installed packages' metadata.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

DIFF_CAP = 200_000  # bytes of `git diff HEAD` kept per repository; the rest is cut, and the keys say so
LIST_CAP = 200  # changed or untracked file names kept per repository
GIT_SECONDS = 5.0  # each git call
PROJECT = Path(__file__).resolve().parent.parent.parent  # the folder holding the runner package
# Never ask, never lock, never run a program the repository's config names for diffs or file monitoring.
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_PAGER": "cat"}
GIT_OPTIONS = ("-c", "core.fsmonitor=false", "-c", "core.untrackedCache=false", "-c", "color.ui=false")


def collect(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> dict[str, Any]:
    """The provenance of a run starting now: `project` (this checkout), `extra` (one entry per folder
    of `extra_dirs`, e.g. the folder of a `model.kind: python` module; a file stands for its folder),
    `versions`, `python`, `host`, `platform`, `command` (sys.argv), `cwd` and `time` (UTC, ISO 8601)."""
    folders = []
    for item in extra_dirs:
        path = Path(item).expanduser()
        path = path.parent if path.is_file() else path
        if path.resolve() not in [f.resolve() for f in folders] and path.resolve() != PROJECT:
            folders.append(path)
    project = repository(PROJECT)
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": [str(a) for a in sys.argv],
        "cwd": _cwd(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "project": project,
        "extra": [_other(folder, project) for folder in folders],
    }


def _other(folder: Path, project: dict[str, Any]) -> dict[str, Any]:
    """An extra folder's repository, or a pointer to the project's when the folder is inside it."""
    top = _git(folder, ["rev-parse", "--show-toplevel"])
    if not top.error and project.get("git") and top.text.strip() == project.get("root"):
        return {"path": str(folder), "git": True, "root": project["root"], "same_as": "project"}
    return repository(folder)


def brief(provenance: dict[str, Any]) -> dict[str, Any]:
    """The provenance without the diffs' text (their size and sha256 stay): what summary.json needs
    to be listed quickly; the journal's start info keeps the whole of it."""
    def short(repo: Any) -> Any:
        return {k: v for k, v in repo.items() if k != "diff"} if isinstance(repo, dict) else repo

    out = dict(provenance)
    if "project" in out:
        out["project"] = short(out["project"])
    if isinstance(out.get("extra"), list):
        out["extra"] = [short(r) for r in out["extra"]]
    return out


def model_dirs(model: Any) -> list[Path]:
    """The folder of a `model.kind: python` module (the module already imported by the run, else the
    spec's model.path), for `collect(extra_dirs=...)`; [] for the built-in kinds. `model` is the spec's
    model section, as the pydantic model or as a dict."""
    get = model.get if isinstance(model, dict) else lambda key, default=None: getattr(model, key, default)
    if get("kind") != "python":
        return []
    module = sys.modules.get(str(get("target") or "").partition(":")[0])
    where = getattr(module, "__file__", None)
    if where:
        return [Path(where).resolve().parent]
    return [Path(get("path"))] if get("path") else []


def versions() -> dict[str, str | None]:
    """Versions of what trains a run; None for what is not installed."""
    torch = sys.modules.get("torch")  # imported by a run already; never imported here (seconds)
    # torch.version.cuda: the CUDA torch was built with; None for a CPU build or torch not loaded
    cuda = getattr(getattr(torch, "version", None), "cuda", None)
    found = {"torch": getattr(torch, "__version__", None) or _installed("torch"),
             "torchvision": getattr(sys.modules.get("torchvision"), "__version__", None) or _installed("torchvision"),
             "cuda": cuda, "ray": _installed("ray"), "numpy": _installed("numpy"), "pydantic": _installed("pydantic")}
    return {k: str(v) if v is not None else None for k, v in found.items()}


def _installed(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - broken metadata is not the run's problem
        return None


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def repository(folder: Path) -> dict[str, Any]:
    """The git state of `folder`: commit, branch, dirty, changed and untracked files, the diff against
    HEAD (cut at DIFF_CAP bytes); or `git: false` and `error` saying why there is none."""
    entry: dict[str, Any] = {"path": str(folder)}
    top = _git(folder, ["rev-parse", "--show-toplevel"])
    if top.error:
        return {**entry, "git": False, "error": top.error}
    entry.update(git=True, root=top.text.strip())
    head = _git(folder, ["rev-parse", "--verify", "--quiet", "HEAD"])
    if head.error or not head.text.strip():
        return {**entry, "commit": None, "error": "the repository has no commit yet"}
    entry["commit"] = head.text.strip()
    branch = _git(folder, ["symbolic-ref", "--quiet", "--short", "HEAD"])
    entry["branch"] = branch.text.strip() if not branch.error else None
    status = _git(folder, ["status", "--porcelain=v1", "-z", "--untracked-files=normal"])
    if status.error:
        return {**entry, "dirty": None, "error": status.error}
    changed, untracked = _status(status.text)
    diff = _git(folder, ["diff", "HEAD", "--no-ext-diff", "--no-textconv", "--no-color"], cap=DIFF_CAP)
    entry.update(dirty=bool(changed), changed=changed[:LIST_CAP], untracked=untracked[:LIST_CAP],
                 diff=diff.text, diff_bytes=diff.size, diff_cut=diff.cut,
                 diff_sha256=hashlib.sha256(diff.text.encode()).hexdigest())
    if diff.error:
        entry["diff_error"] = diff.error
    return entry


def _status(text: str) -> tuple[list[str], list[str]]:
    """Changed (tracked) and untracked paths out of `git status --porcelain -z`."""
    changed, untracked = [], []
    items = text.split("\0")
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if len(item) < 4:
            continue
        code, path = item[:2], item[3:]
        if code == "??":
            untracked.append(path)
        elif code != "!!":
            changed.append(path)
            if "R" in code or "C" in code:
                i += 1  # a rename's or copy's source path follows
    return changed, untracked


class Output:
    """What a git call gave: its text (cut at a cap), the whole size, whether it was cut, or an error."""

    def __init__(self, text: str = "", size: int = 0, cut: bool = False, error: str | None = None) -> None:
        self.text, self.size, self.cut, self.error = text, size, cut, error


def _git(folder: Path, args: Sequence[str], cap: int = 1_000_000, seconds: float | None = None) -> Output:
    """`git -C folder ARGS`, at most `seconds` (default GIT_SECONDS) long and `cap` bytes of output kept
    (the rest counted)."""
    seconds = GIT_SECONDS if seconds is None else seconds
    if not folder.is_dir():
        return Output(error=f"{folder} is not a folder")
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: git never waits on a full stderr pipe
        try:
            process = subprocess.Popen(["git", *GIT_OPTIONS, "-C", str(folder), *args], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=errors, env={**os.environ, **GIT_ENV},
                                       start_new_session=True)  # a group of its own: a timeout stops its children
        except FileNotFoundError:
            return Output(error="git is not installed (no `git` on PATH)")
        except OSError as exc:
            return Output(error=f"git cannot be started ({exc.strerror})")
        late = threading.Event()
        timer = threading.Timer(seconds, lambda: (late.set(), _kill(process.pid)))
        timer.start()
        kept, size = bytearray(), 0
        try:
            for chunk in iter(lambda: process.stdout.read(65536), b""):  # type: ignore[union-attr]
                size += len(chunk)
                if len(kept) < cap:
                    kept += chunk[:cap - len(kept)]
            code = process.wait()
        finally:
            timer.cancel()
            process.stdout.close()  # type: ignore[union-attr]
        errors.seek(0)
        said = errors.read(4096).decode(errors="replace")
    if late.is_set():
        return Output(error=f"git {args[0]} took longer than {seconds:g} s and was stopped")
    if code:
        return Output(error=_why(said, folder), size=size)
    return Output(bytes(kept).decode(errors="replace"), size, size > cap)


def _kill(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass


def _why(stderr: str, folder: Path) -> str:
    text = " ".join(stderr.split())
    if "dubious ownership" in text or "safe.directory" in text:
        return (f"git refused {folder}: the repository is owned by another user (git's safe.directory check, "
                "left on)")
    if "not a git repository" in text:
        return f"{folder} is not in a git repository"
    return f"git: {text[:300]}" if text else "git failed"
