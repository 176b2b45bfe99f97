"""A run directory read into one row of the notebook, trusting none of its files.

Every read is bounded (spec.json and summary.json up to 4 MB, notes.json 1 MB, the journal's first
line 1 MB and, for a run without a summary, its last 256 KB for the latest evaluation), never through
a link, never of anything but a regular file (a FIFO named summary.json does not hang the listing).
A file that cannot be used makes the row say so (`problem`) instead of failing: a summary that is not
JSON is status `damaged`, a run without a summary is `stopped` (it has a checkpoint to resume from),
`unfinished` (killed, or copied half-way), or `running` when a live process holds its lock.

A row is a plain dict, JSON as it is, so the index can keep it:

    rel, name, tracked, status, problem, started (epoch seconds), when, metric, metric_name, epochs,
    steps, time, tags, notes, spec (flat dotted keys), summary (flat, without the per-epoch history),
    provenance (commit, dirty, host, versions: flat), has_report, sweep
"""

from __future__ import annotations

import calendar
import errno
import json
import math
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from runner import runs, status
from runner.lab import notes as notebook
from runner.lab.reading import MAX_JSON, load_json

MAX_FIRST_LINE = 1_000_000  # the journal's start event (the spec, and the provenance with its diffs)
TAIL = 256_000  # of a journal without a summary, read for its latest evaluation
MAX_DEPTH = 16  # levels of a spec or summary flattened; deeper stays one value
MAX_KEYS = 2_000  # flat keys kept of a spec or summary
MAX_VALUE = 2_000  # characters of a value's JSON kept in a row; longer ones are cut
STAMP = re.compile(r"-(\d{8}-\d{6})(?:-\d+)?$")  # runs/<name>-<YYYYmmdd-HHMMSS>[-n], as runs.create names them
CHECKPOINT = runs.CHECKPOINT
DAMAGED, LINK, RUNNING = "damaged", "link", status.RUNNING


def journal_ends(path: Path, problems: list[str], tail: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The journal's start event (its first line) and, with `tail` (a run without a summary), its
    latest evaluation (in its last TAIL bytes); each None when absent or unreadable. A journal that
    does not end with a whole line is noted in `problems`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        problems.append(f"{path.name} is a link (not followed)" if exc.errno == errno.ELOOP
                        else f"{path.name} cannot be read ({exc.strerror})")
        return None, None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{path.name} is not a regular file")
            return None, None
        end = info.st_size
        head = os.pread(fd, min(end, 16_384), 0)  # the start event is a few KB: read more only if needed
        if b"\n" not in head and end > len(head):
            head = os.pread(fd, min(end, MAX_FIRST_LINE), 0)
        last = os.pread(fd, min(end, TAIL), max(0, end - TAIL)) if tail else os.pread(fd, 1, max(0, end - 1))
    except OSError as exc:
        problems.append(f"{path.name} cannot be read ({exc.strerror})")
        return None, None
    finally:
        os.close(fd)
    if last and not last.endswith(b"\n"):
        problems.append(f"{path.name} ends mid-line (cut)")
    return _event(head.split(b"\n", 1)[0], "start"), _last_evaluation(last) if tail else None


def _event(line: bytes, kind: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) and event.get("event") == kind else None


def _last_evaluation(tail: bytes) -> dict[str, Any] | None:
    for line in reversed(tail.split(b"\n")):
        if b'"evaluation"' in line:
            event = _event(line, "evaluation")
            if event is not None:
                return event
    return None


def flatten(tree: Any, prefix: str = "", depth: int = 0, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"model": {"kind": "mlp"}} -> {"model.kind": "mlp"} (as runner.sweeps.variants.flatten), bounded:
    MAX_DEPTH levels, MAX_KEYS keys, values cut at MAX_VALUE characters of JSON."""
    out = {} if out is None else out
    if not isinstance(tree, dict):
        return out
    for key, value in tree.items():
        if len(out) >= MAX_KEYS:
            break
        if isinstance(value, dict) and value and depth < MAX_DEPTH:
            flatten(value, f"{prefix}{key}.", depth + 1, out)
        elif value is None or type(value) in (bool, int) or type(value) is str and len(value) <= MAX_VALUE:
            out[f"{prefix}{key}"] = value  # the common case, kept as it is
        else:
            out[f"{prefix}{key}"] = _bounded(value)
    return out


def _bounded(value: Any) -> Any:
    if isinstance(value, (bool, int, float)) or value is None:
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "..."
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return str(value)[:MAX_VALUE]
    return value if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "..."


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def main_value(last: Any) -> tuple[str | None, float | None]:
    """A tracked run's main value among the last values it logged: an accuracy, else a loss, else the
    first one."""
    if not isinstance(last, dict) or not last:
        return None, None
    keys = [str(k) for k in last]
    for wanted in ("accuracy", "acc", "loss"):
        for key in keys:
            if key.lower().rstrip("/").endswith(wanted) or (wanted == "loss" and "loss" in key.lower()):
                return key, number(last[key])
    return keys[0], number(last[keys[0]])


def read_row(folder: Path, rel: str, sweep: str | None = None) -> dict[str, Any]:
    """The row of the run directory `folder` (`rel`: its path under the folder being listed)."""
    problems: list[str] = []
    spec, _ = load_json(folder / runs.SPEC, MAX_JSON, problems)
    summary, has_summary = load_json(folder / runs.SUMMARY, MAX_JSON, problems)
    start, evaluation = journal_ends(folder / runs.JOURNAL, problems, tail=not has_summary)
    info = start.get("info") if start and isinstance(start.get("info"), dict) else {}
    if spec is not None and not isinstance(spec, dict):
        problems.append(f"{runs.SPEC} is not an object")
    if not isinstance(spec, dict):
        spec = info.get("spec") if isinstance(info.get("spec"), dict) else {}
    if has_summary and not isinstance(summary, dict):
        if summary is not None:
            problems.append(f"{runs.SUMMARY} is not an object")
        summary = None
    provenance = (summary or {}).get("provenance") or info.get("provenance")
    provenance = provenance if isinstance(provenance, dict) else {}
    row: dict[str, Any] = {
        "rel": rel, "sweep": sweep,
        "name": _text(spec.get("name") or info.get("name") or (summary or {}).get("name")) or folder.name,
        "tracked": bool((summary or {}).get("tracked") or info.get("tracked")),
        "status": _status(folder, summary, has_summary),
        "started": _started(folder, provenance),
        "spec": flatten(spec), "summary": flatten(_without(summary or {}, ("history", "provenance", "run_dir"))),
        "provenance": _provenance(provenance), "has_report": os.path.isfile(folder / "report.html"),
    }
    row.update(_results(row["tracked"], summary, evaluation))
    row.update(_notebook(folder, spec, row["started"], problems))
    row["problem"] = "; ".join(problems) or None
    return row


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""


def _without(tree: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in tree.items() if k not in keys}


def _status(folder: Path, summary: dict[str, Any] | None, has_summary: bool) -> str:
    """The run's state from its files; `running` is decided later, from the live locks."""
    if summary is not None:
        return status.read(summary.get("status", status.FINISHED))
    if has_summary:
        return DAMAGED
    if os.path.lexists(folder / CHECKPOINT):
        return status.STOPPED  # a checkpoint to resume from, and no ending: stopped (or killed) mid-run
    return status.UNFINISHED


def _started(folder: Path, provenance: dict[str, Any]) -> float | None:
    """When the run started: its provenance's time, else the timestamp in its folder's name
    (runs/<name>-YYYYmmdd-HHMMSS), else when its spec.json (or journal) was written."""
    recorded = provenance.get("time")
    if isinstance(recorded, str):
        try:
            return float(calendar.timegm(time.strptime(recorded, "%Y-%m-%dT%H:%M:%SZ")))
        except (ValueError, OverflowError):
            pass
    stamp = STAMP.search(folder.name)
    if stamp:
        try:
            return time.mktime(time.strptime(stamp.group(1), "%Y%m%d-%H%M%S"))
        except (ValueError, OverflowError):
            pass
    for name in (runs.SPEC, runs.JOURNAL, runs.SUMMARY):
        try:
            return os.lstat(folder / name).st_mtime
        except OSError:
            continue
    return None


def _provenance(p: dict[str, Any]) -> dict[str, Any]:
    """What a row keeps of a run's provenance: the project's commit and dirtiness, other folders' too,
    the host and versions; flat keys."""
    project = p.get("project") if isinstance(p.get("project"), dict) else {}
    kept: dict[str, Any] = {"commit": project.get("commit"), "dirty": project.get("dirty"),
                            "branch": project.get("branch"), "host": p.get("host"), "python": p.get("python")}
    versions = p.get("versions") if isinstance(p.get("versions"), dict) else {}
    kept.update({k: v for k, v in versions.items() if isinstance(v, (str, type(None)))})
    for i, other in enumerate(p.get("extra") if isinstance(p.get("extra"), list) else []):
        if isinstance(other, dict):
            kept.update({f"extra.{i}.path": other.get("path"), f"extra.{i}.commit": other.get("commit"),
                         f"extra.{i}.dirty": other.get("dirty")})
    return {k: _bounded(v) for k, v in kept.items() if v is not None} if p else {}


def _results(tracked: bool, summary: dict[str, Any] | None, evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """metric (and its name), epochs, steps and time: from the summary, or for a run without one from
    its journal's latest evaluation."""
    s = summary or {}
    if tracked:
        name, value = main_value(s.get("last"))
    elif summary is None and evaluation is not None:
        name, value = "test_accuracy", number(evaluation.get("test_accuracy"))
    else:
        name, value = "test_accuracy", number(s.get("test_accuracy"))
    epochs = s.get("epochs") if summary is not None else (evaluation or {}).get("epoch")
    seconds = number(s.get("train_seconds")) if number(s.get("train_seconds")) is not None else number(
        s.get("wall_seconds"))
    return {"metric": value, "metric_name": name, "epochs": epochs if number(epochs) is not None else None,
            "steps": s.get("steps") if number(s.get("steps")) is not None else None, "time": seconds}


def _notebook(folder: Path, spec: dict[str, Any], started: float | None, problems: list[str]) -> dict[str, Any]:
    """The run's tags and notes: notes.json's, and the spec's own."""
    data, exists = load_json(folder / notebook.NOTES, notebook.MAX_BYTES, problems)
    record, why = notebook.parse(data) if exists and data is not None else (None, None)
    if why:
        problems.append(why)
    tags = record["tags"] if record and record["has_tags"] else notebook.spec_tags(spec)
    notes = list(record["notes"]) if record else []
    first = notebook.spec_note(spec)
    if first:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started is not None else ""
        notes.insert(0, {"time": when, "text": first, "from": "spec"})
    return {"tags": tags, "notes": notes}
