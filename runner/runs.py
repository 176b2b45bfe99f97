"""Run directories: where a run's resolved spec, journal, summary and weights live on disk."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from runner import status
from runner.errors import UserError
from runner.files import atomic, write_json
from runner.spec import Experiment

SPEC, JOURNAL, SUMMARY, WEIGHTS = "spec.json", "metrics.jsonl", "summary.json", "model.pt"
LOCK = ".lock"  # held (flock) by the process using the directory; the kernel lets go when it dies


def fresh(name: str, root: Path = Path("runs")) -> Path:
    """The name a new run of `name` gets: root/<name>-<timestamp>, then -2, -3, ... if that exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, n = root / f"{name}-{stamp}", 1
    while out.exists():
        n += 1
        out = root / f"{name}-{stamp}-{n}"
    return out


def create(spec: Experiment, out: Path | None, root: Path = Path("runs")) -> Path:
    """A new run directory holding the resolved spec: `out`, or runs/<name>-<timestamp>[-n]."""
    return begin(out if out is not None else fresh(spec.name, root), spec.model_dump(mode="json"))


def begin(out: Path, spec: Any) -> Path:
    """Make `out` a new run's directory holding `spec` as its spec.json (RunDirError when it cannot be).

    The folder is marked as a run's (its .lock made) before spec.json is written, so a folder holding a
    spec.json but no .lock is a person's own, never taken for a run that was killed as it began."""
    check_new(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        os.close(os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise RunDirError(f"cannot make the run directory {out}: {exc.strerror}; choose another --out.") from None
    write_json(out / SPEC, spec)
    return out


def is_run(folder: Path) -> bool:
    """Whether `folder` holds a run of this runner: its journal or summary, or the spec.json a run writes
    once its folder is marked (.lock). A folder of a person's files that happens to hold a spec.json is not one."""
    def has(name: str) -> bool:
        return os.path.lexists(folder / name)

    return has(JOURNAL) or has(SUMMARY) or (has(SPEC) and has(LOCK))


CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = {"format", "model", "optimizer", "torch_rng", "state", "journal_bytes"}
OWN = (SPEC, SUMMARY, CHECKPOINT, WEIGHTS)  # the files only the run writes (atomically), under its lock


class RunDirError(UserError):
    """A run directory that cannot be used as asked; the message says why and what to do."""


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write the checkpoint atomically (temp file + rename): a crash leaves the previous one whole."""
    import torch

    with atomic(run_dir / CHECKPOINT, "wb", permissions=0o600) as f:
        torch.save({**payload, "format": CHECKPOINT_FORMAT}, f)


def load_checkpoint(run_dir: Path) -> tuple[Experiment, dict[str, Any]]:
    """The spec and checkpoint of an unfinished run, or RunDirError."""
    import torch

    from runner.spec import parse

    check_resumable(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise RunDirError(f"--resume {run_dir}: the run stopped before its first checkpoint; nothing to resume, "
                          "start it again.")
    try:
        # map_location: a checkpoint written on a GPU resumes on any machine; fit moves it back.
        payload = torch.load(run_dir / CHECKPOINT, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise RunDirError(f"--resume {run_dir}: {CHECKPOINT} cannot be read ({type(exc).__name__}); "
                          "it is damaged or not a checkpoint of this runner.") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else None
        raise RunDirError(f"--resume {run_dir}: {CHECKPOINT} has format {found!r}, this runner reads format "
                          f"{CHECKPOINT_FORMAT}; resume it with the version that wrote it, or start again.")
    if not CHECKPOINT_KEYS <= payload.keys():
        raise RunDirError(f"--resume {run_dir}: {CHECKPOINT} lacks {sorted(CHECKPOINT_KEYS - payload.keys())}; it is "
                          "damaged or not a checkpoint of this runner.")
    try:
        spec = parse(json.loads((run_dir / SPEC).read_text()), str(run_dir / SPEC))
    except (OSError, ValueError) as exc:
        raise RunDirError(f"--resume {run_dir}: {SPEC} cannot be read ({exc}).") from None
    return spec, payload


def check_dir(run_dir: Path) -> None:
    """Refuse a --resume path that is not a directory."""
    if not run_dir.is_dir():
        what = "a file, not a directory" if run_dir.exists() else "no such directory"
        raise RunDirError(f"--resume {run_dir}: {what}; give a run directory under runs/.")


def check_resumable(run_dir: Path) -> None:
    """Refuse a --resume of what is not an unfinished run directory, before anything in it is touched."""
    check_dir(run_dir)
    if not (run_dir / SPEC).is_file() or not (run_dir / JOURNAL).is_file():
        raise RunDirError(f"--resume {run_dir}: not a run directory (it has no {SPEC} and {JOURNAL}).")
    if finished(run_dir):
        raise RunDirError(f"--resume {run_dir}: this run already finished (see its {SUMMARY}); "
                          "start a new one instead.")


def check_fits(run_dir: Path, checkpoint: dict[str, Any], model: Any) -> None:
    """Refuse a checkpoint whose weights are not the model's (another run's checkpoint.pt copied in),
    before anything of the run directory changes."""
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = checkpoint["model"]
    got = {k: tuple(v.shape) for k, v in saved.items()} if isinstance(saved, dict) else {}
    if got != have:
        differ = sorted(set(have) ^ set(got)) or sorted(k for k in have if have[k] != got[k])
        raise RunDirError(f"--resume {run_dir}: {CHECKPOINT} holds the weights of another model than its "
                          f"{SPEC} builds (they differ in {', '.join(differ[:3])}); it is another run's checkpoint. "
                          "Resume the run that wrote it, or start this one again.")


def finished(run_dir: Path) -> bool:
    """Whether the run finished: its summary says so (a failed or diverged run's says otherwise)."""
    try:
        summary = json.loads((run_dir / SUMMARY).read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # a summary we cannot read: do not offer to resume over it
    return not isinstance(summary, dict) or status.read(summary.get("status", status.FINISHED)) in status.TRAINED


def check_new(out: Path) -> None:
    """Refuse to start a new run in a directory that already holds one, or holds files that are not a
    run's: a run writes spec.json, model.pt and more, and never over files that are not its own."""
    if (out / JOURNAL).exists():
        raise RunDirError(f"--out {out} already holds a run; choose another directory, or continue it with "
                          f"--resume {out}.")
    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if names - {SPEC, LOCK} or (SPEC in names and LOCK not in names):  # spec.json and .lock: killed as it began
        raise RunDirError(f"--out {out} already holds files that are not a run of this runner; a run needs a new "
                          "or empty directory (it writes spec.json, model.pt and more), so choose another.")


def save_weights(path: Path, state: dict[str, Any]) -> None:
    """The trained weights (a run's model.pt), written atomically like the checkpoint."""
    import torch

    with atomic(path, "wb") as f:
        torch.save(state, f)


_held: dict[Path, list[int]] = {}  # directories this process holds -> [lock descriptor, holders]
_holding = threading.Lock()


@contextlib.contextmanager
def lock(directory: Path, own: tuple[str, ...] = OWN) -> Iterator[None]:
    """Hold `directory` for this process (a run, a resume, a sweep): another process asking for it
    gets RunDirError naming the holder; the kernel lets go when the holder dies, even by `kill -9`.
    On taking it, what an atomic write of one of the `own` files left behind when its process was
    killed (`.NAME.XXXXXXXX.tmp`) is deleted: no writer of ours is alive. Re-entrant within a
    process, so a resume may hold its directory before it builds the run."""
    key = directory.resolve()
    with _holding:
        taken = key not in _held
        if taken:
            _held[key] = [_take(directory), 0]
        _held[key][1] += 1
    try:
        if taken:
            _clean_temps(directory, own)
        yield
    finally:
        with _holding:
            _held[key][1] -= 1
            if not _held[key][1]:
                os.close(_held.pop(key)[0])


def _take(directory: Path) -> int:
    """The directory's lock, taken; RunDirError naming the holder when another process has it."""
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise RunDirError(f"{directory}: its {LOCK} cannot be opened ({exc.strerror}); a run directory must be a "
                          "folder of yours, and its lock file not a link.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(os.fstat(fd).st_ino)
        os.close(fd)
        raise RunDirError(f"{directory} is in use by {holder}; a run or sweep directory is used by one process "
                          "at a time. Wait for that one to end (or stop it), then try again.") from None
    return fd


def _holder(inode: int) -> str:
    """The process holding the lock file `inode`, as the kernel lists it (/proc/locks), with its command."""
    try:
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                command = Path(f"/proc/{fields[4]}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return f"process {fields[4]} ({' '.join(command.split())[:200]})"
    except OSError:
        pass
    return "another process"


def _clean_temps(directory: Path, own: tuple[str, ...]) -> None:
    """Delete the temporary files `files.atomic` leaves when its process is killed mid-write; only
    regular files named like them, only for the names the directory's own writer uses."""
    pattern = re.compile(r"\.(%s)\.[a-z0-9_]{8}\.tmp" % "|".join(re.escape(name) for name in own))
    for entry in os.scandir(directory):
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def child(parent: Path, name: Any, record: Path) -> Path:
    """`parent`/`name` for a name read from `record` (sweep.json): one plain folder name, never a path
    that leads out of `parent` ("../x", "/home/x") nor a link; RunDirError otherwise."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise RunDirError(f"{record}: {name!r} is not the name of a folder inside {parent}; the file is damaged or "
                          "was edited (its run directories are its own sub-folders, named by their variants).")
    path = parent / name
    if path.is_symlink():
        raise RunDirError(f"{record}: {path} is a link; a sweep's run directories are its own sub-folders, and "
                          "nothing a link points to is read or changed.")
    return path


class DiskFull(UserError):
    """The disk filled during a run; the message says what was kept and how to continue."""


def disk_full(exc: BaseException | None) -> bool:
    """Whether `exc` comes of a full disk (or quota), also when a library wrapped that (torch.save)."""
    for _ in range(8):
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
