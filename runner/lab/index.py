"""Every run under a folder, quickly: the folder is walked (never through a link), and each run
directory's row is taken from FOLDER/.index.json when the files it was read from are unchanged
(mtime, size and inode of spec.json, summary.json, the journal, notes.json, the checkpoint and
report.html), else read again (runner.lab.scan). The directories stay the source of truth: a run
copied in or deleted by hand is listed right the next time, and a missing or damaged index is simply
rebuilt. The index is written atomically (runner.files), only into the folder being listed, and only
when something changed; a folder that cannot be written is listed all the same.

A sweep directory (sweep.json) stands for its runs: each of its run directories is a row of its own
naming the sweep; a sweep none of whose variants has a directory yet is one row, `not run`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from runner import runs, status
from runner.files import atomic
from runner.lab import notes as notebook
from runner.lab.reading import read_file
from runner.lab.scan import CHECKPOINT, LINK, RUNNING, read_row

INDEX = ".index.json"
FORMAT = 1
SWEEP = "sweep.json"
RUN_FILES = frozenset((runs.SPEC, runs.JOURNAL, runs.SUMMARY))
WATCHED = (runs.SPEC, runs.SUMMARY, runs.JOURNAL, notebook.NOTES, CHECKPOINT, "report.html")
MAX_INDEX = 200_000_000  # bytes of an index read (about 3 KB a run)
MAX_DEPTH = 8  # folders below the one listed
MAX_FOLDERS = 100_000  # folders looked into per listing: a runs/ holding a dataset by mistake stays quick
ROW_TYPES = {"rel": str, "name": str, "status": str, "spec": dict, "summary": dict, "provenance": dict,
             "tags": list, "notes": list}


class Found:
    """A run directory (or a link, or a sweep without runs) met by the walk."""

    __slots__ = ("rel", "kind", "sig", "sweep", "target")

    def __init__(self, rel: str, kind: str, sig: list[Any], sweep: str | None = None, target: str = "") -> None:
        self.rel, self.kind, self.sig, self.sweep, self.target = rel, kind, sig, sweep, target


def walk(root: Path, sweep: str | None = None) -> list[Found]:
    """The run directories under `root` (itself not one), links to folders, and sweeps without runs;
    `sweep`: the name of the sweep `root` is."""
    found: list[Found] = []
    stack: list[tuple[str, str, int, str | None]] = [(str(root), "", 0, sweep)]
    empty_sweeps: dict[str, Found] = {}
    visited = 0
    while stack and visited < MAX_FOLDERS:
        folder, rel, depth, sweep = stack.pop()
        visited += 1
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                if os.path.isdir(entry.path):  # a stat through the link: nothing behind it is read
                    found.append(Found(child, LINK, [], sweep, _readlink(entry.path)))
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            names, sig = look(entry.path)
            if names & RUN_FILES:
                found.append(Found(child, "run", sig, sweep))
                empty_sweeps.pop(sweep or "", None)
            elif SWEEP in names and sweep is None:
                empty_sweeps[child] = Found(child, "sweep", sig, child)
                stack.append((entry.path, child, depth + 1, child))
            elif depth < MAX_DEPTH and sweep is None:
                stack.append((entry.path, child, depth + 1, sweep))
    return found + list(empty_sweeps.values())


def look(folder: str) -> tuple[set[str], list[Any]]:
    """The names in `folder` and the signature of its watched files ([mtime_ns, size, inode] or None)."""
    try:
        entries = {e.name: e for e in os.scandir(folder)}
    except OSError:
        return set(), []
    sig: list[Any] = []
    for name in WATCHED:
        entry = entries.get(name)
        try:
            info = entry.stat(follow_symlinks=False) if entry is not None else None
        except OSError:
            info = None
        sig.append(None if info is None else [info.st_mtime_ns, info.st_size, info.st_ino])
    if SWEEP in entries:
        sig.append(SWEEP)
    return set(entries), sig


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def load(root: Path) -> dict[str, Any]:
    """The index's entries ({rel: {"sig", "row"}}), {} when there is none or it cannot be used."""
    data, why = read_file(root / INDEX, MAX_INDEX)
    if data is None or why:
        return {}
    try:
        index = json.loads(data)
    except (ValueError, RecursionError):
        return {}
    entries = index.get("entries") if isinstance(index, dict) and index.get("format") == FORMAT else None
    return entries if isinstance(entries, dict) else {}


def _usable(entry: Any, found: Found) -> dict[str, Any] | None:
    """The row an index entry holds, if it was read from the very files `found` has now."""
    if not isinstance(entry, dict) or entry.get("sig") != found.sig or not isinstance(entry.get("row"), dict):
        return None
    row = entry["row"]
    if not all(isinstance(row.get(k), t) for k, t in ROW_TYPES.items()) or row.get("sweep") != found.sweep:
        return None
    return row


def save(root: Path, entries: dict[str, Any]) -> bool:
    """Write the index atomically; False (and nothing changed) when the folder cannot be written."""
    try:
        text = json.dumps({"format": FORMAT, "entries": entries}, separators=(",", ":"))  # the C encoder: 20x json.dump
        with atomic(root / INDEX) as f:
            f.write(text)
        return True
    except (OSError, TypeError, ValueError):
        return False


def rows_of(root: Path, use_index: bool = True) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows of every run under `root`, and counts: `reused` from the index, `read` afresh. A sweep
    directory given itself lists its runs without an index (a sweep's folder holds only its own files)."""
    is_sweep = os.path.lexists(root / SWEEP)
    use_index = use_index and not is_sweep
    old = load(root) if use_index else {}
    entries: dict[str, Any] = {}
    rows, counts = [], {"reused": 0, "read": 0}
    for found in walk(root, root.name if is_sweep else None):
        row = _usable(old.get(found.rel), found) if found.kind == "run" else None
        if row is None:
            row = _row(root, found)
            counts["read"] += 1
        else:
            counts["reused"] += 1
        entries[found.rel] = {"sig": found.sig, "row": row}
        rows.append(row)
    if use_index and entries != old and (entries or old):
        counts["written"] = int(save(root, entries))
    return rows, counts


def _row(root: Path, found: Found) -> dict[str, Any]:
    if found.kind == "run":
        return read_row(root / found.rel, found.rel, found.sweep)
    blank = {"rel": found.rel, "name": Path(found.rel).name, "sweep": found.sweep, "tracked": False,
             "started": None, "spec": {}, "summary": {}, "provenance": {}, "has_report": False, "metric": None,
             "metric_name": None, "epochs": None, "steps": None, "time": None, "tags": [], "notes": []}
    if found.kind == LINK:
        return {**blank, "status": LINK, "problem": f"a link to {found.target}; not followed"}
    return {**blank, "status": status.NOT_RUN, "problem": None}


def held_locks() -> set[int]:
    """The inodes of the files flock-ed by live processes (/proc/locks); empty where there is none."""
    data, _ = read_file(Path("/proc/locks"), 16_000_000)
    held = set()
    for line in (data or b"").decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK":
            try:
                held.add(int(fields[5].rsplit(":", 1)[-1]))
            except ValueError:
                continue
    return held


def listing(roots: Sequence[Path], use_index: bool = True) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows of every run under each of `roots` (a run or sweep directory itself lists its own),
    each with `run` (its path as given) and `running` decided from the live locks."""
    rows, counts = [], {"reused": 0, "read": 0}
    for root in roots:
        if RUN_FILES & set(look(str(root))[0]):
            found_rows = [read_row(root, "", None)]
            counts["read"] += 1
        else:
            found_rows, found = rows_of(root, use_index)
            for key, n in found.items():
                counts[key] = counts.get(key, 0) + n
        for row in found_rows:
            rows.append({**row, "run": os.path.join(str(root), row["rel"]) if row["rel"] else str(root)})
    waiting = [row for row in rows if row["status"] in (status.STOPPED, status.UNFINISHED)]
    if waiting:
        held = held_locks()
        for row in waiting:
            try:
                if os.lstat(Path(row["run"]) / runs.LOCK).st_ino in held:
                    row["status"] = RUNNING
            except OSError:
                continue
    return rows, counts
