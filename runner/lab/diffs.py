"""Two runs side by side (`python -m runner diff RUN_A RUN_B`): the spec keys whose values differ
(flattened), the code (each repository's commit, whether its tree was dirty, the files whose recorded
changes differ and a unified diff of the two recorded diffs, or "same commit, same tree"), the
versions (Python, torch, CUDA, ...; the host) and the results (the summaries' numbers).

The code comes from the provenance each run recorded as it started (runner.lab.provenance): the
journal's start event holds it whole, summary.json may hold it without the diffs' text. Runs made
before provenance was recorded say so. Every file is read bounded, as the listing reads it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from runner import runs
from runner.errors import UserError
from runner.lab import notes as notebook
from runner.lab.reading import MAX_JSON, load_json
from runner.lab.scan import flatten, number

MAX_START = 4_000_000  # bytes of the journal's first line read: the start event, diffs included
MAX_DIFF_LINES = 400  # of the unified diff of two recorded diffs shown as text (JSON keeps MAX_DIFF_CHARS)
MAX_DIFF_CHARS = 400_000
VERSION_KEYS = ("python", "platform", "host")
FILE = re.compile(r"^diff --git a/(.*?) b/(.*)$", re.M)


def read(folder: Path) -> dict[str, Any]:
    """What a run directory says of itself: spec, summary, provenance (as whole as recorded), problems."""
    example = "e.g. python -m runner diff runs/a-20261125-171800 runs/b-20261125-172000"
    if not folder.is_dir():
        raise UserError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}; diff takes two run "
                        f"directories, {example}.")
    try:
        notebook.run_dir(Path(os.path.realpath(folder)))  # what a run directory is; a link named here is followed
    except UserError:
        raise UserError(f"{folder} is not a run directory (made by `python -m runner SPEC.json`; `python -m runner "
                        f"runs` lists them); diff takes two run directories, {example}.") from None
    problems: list[str] = []
    spec, _ = load_json(folder / runs.SPEC, MAX_JSON, problems)
    summary, _ = load_json(folder / runs.SUMMARY, MAX_JSON, problems)
    start = _start(folder / runs.JOURNAL, problems)
    info = start.get("info") if isinstance(start.get("info"), dict) else {}
    spec = spec if isinstance(spec, dict) else info.get("spec") if isinstance(info.get("spec"), dict) else {}
    summary = summary if isinstance(summary, dict) else {}
    provenance = info.get("provenance") if isinstance(info.get("provenance"), dict) else summary.get("provenance")
    return {"spec": spec, "summary": summary, "provenance": provenance if isinstance(provenance, dict) else None,
            "problems": problems}


def _start(journal: Path, problems: list[str]) -> dict[str, Any]:
    """The journal's start event (its first line, up to MAX_START bytes), or {}."""
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        problems.append(f"{runs.JOURNAL} cannot be read ({exc.strerror})")
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            problems.append(f"{runs.JOURNAL} is not a regular file")
            return {}
        line = os.pread(fd, MAX_START, 0).split(b"\n", 1)[0]
    except OSError:
        return {}
    finally:
        os.close(fd)
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    return event if isinstance(event, dict) and event.get("event") == "start" else {}


def compare(a: Path, b: Path) -> dict[str, Any]:
    """What differs between runs `a` and `b`, as data (render() writes it for people)."""
    left, right = read(a), read(b)
    return {"a": str(a), "b": str(b), "problems": {"a": left["problems"], "b": right["problems"]},
            "spec": _keys(flatten(left["spec"]), flatten(right["spec"])),
            "code": _code(left["provenance"], right["provenance"]),
            "versions": _versions(left, right),
            "results": _results(left["summary"], right["summary"])}


def _keys(x: dict[str, Any], y: dict[str, Any]) -> dict[str, list[Any]]:
    gone = "(missing)"
    keys = list(dict.fromkeys([*x, *y]))
    return {k: [x.get(k, gone), y.get(k, gone)] for k in keys
            if json.dumps(x.get(k, gone), sort_keys=True) != json.dumps(y.get(k, gone), sort_keys=True)}


def _repos(p: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A run's repositories by role: `project`, and each other folder by its path."""
    if p is None:
        return {}
    found = {"project": p["project"]} if isinstance(p.get("project"), dict) else {}
    for other in p.get("extra") if isinstance(p.get("extra"), list) else []:
        if isinstance(other, dict) and isinstance(other.get("path"), str):
            found[other["path"]] = other
    return found


def _code(pa: dict[str, Any] | None, pb: dict[str, Any] | None) -> dict[str, Any]:
    if pa is None or pb is None:
        missing = [side for side, p in (("a", pa), ("b", pb)) if p is None]
        return {"recorded": False, "missing": missing}
    ra, rb = _repos(pa), _repos(pb)
    return {"recorded": True, "repos": [_repo(role, ra.get(role), rb.get(role)) for role in dict.fromkeys([*ra, *rb])]}


def _repo(role: str, x: dict[str, Any] | None, y: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "a": _brief(x), "b": _brief(y)}
    if x is None or y is None:
        out["verdict"] = f"only in run {'b' if x is None else 'a'}"
        return out
    if not x.get("git") or not y.get("git"):
        out["verdict"] = "no git record: " + "; ".join(str(r.get("error")) for r in (x, y) if not r.get("git"))
        return out
    same_commit = x.get("commit") == y.get("commit")
    texts = [r.get("diff") for r in (x, y)]
    same_tree = (x.get("diff_sha256"), x.get("untracked")) == (y.get("diff_sha256"), y.get("untracked"))
    if same_commit and same_tree:
        out["verdict"] = "same commit, same tree"
        return out
    out["verdict"] = ("same commit" if same_commit else "different commits") + (
        ", same tree changes" if same_tree else ", different tree changes")
    out["files"] = _files(texts[0] or "", texts[1] or "") if None not in texts else []
    out["untracked"] = sorted(set(x.get("untracked") or []) ^ set(y.get("untracked") or []))
    if None in texts:
        out["note"] = "a recorded diff is not kept (summary.json holds none); the journals' start events do"
    elif not same_tree:
        lines = list(difflib.unified_diff((texts[0] or "").splitlines(), (texts[1] or "").splitlines(),
                                          "a: recorded diff", "b: recorded diff", lineterm="", n=2))
        out["diff"] = "\n".join(lines)[:MAX_DIFF_CHARS]
    return out


def _brief(repo: dict[str, Any] | None) -> dict[str, Any] | None:
    if repo is None:
        return None
    return {k: repo.get(k) for k in ("path", "commit", "dirty", "branch", "diff_bytes", "diff_cut") if k in repo}


def _files(x: str, y: str) -> list[str]:
    """The files whose part of the two recorded diffs differs (changed in one tree, or differently)."""
    def parts(text: str) -> dict[str, str]:
        found = list(FILE.finditer(text))
        return {m.group(2): text[m.start():found[i + 1].start() if i + 1 < len(found) else len(text)]
                for i, m in enumerate(found)}

    px, py = parts(x), parts(y)
    return sorted(f for f in set(px) | set(py) if _body(px.get(f)) != _body(py.get(f)))


def _body(part: str | None) -> str | None:
    """A file's part of a diff without its `index` line (blob ids differ with the contents anyway)."""
    if part is None:
        return None
    return "\n".join(line for line in part.splitlines() if not line.startswith("index "))


def _versions(left: dict[str, Any], right: dict[str, Any]) -> dict[str, list[Any]]:
    def flat(run: dict[str, Any]) -> dict[str, Any]:
        p = run["provenance"] or {}
        found = {k: p.get(k) for k in VERSION_KEYS if k in p}
        found.update({k: v for k, v in (p.get("versions") or {}).items()} if isinstance(p.get("versions"), dict)
                     else {})
        for key in ("torch_version", "device", "node"):
            if key in run["summary"]:
                found[f"summary.{key}"] = run["summary"][key]
        return found

    return _keys(flat(left), flat(right))


def _results(x: dict[str, Any], y: dict[str, Any]) -> dict[str, list[Any]]:
    """The summaries' status and numbers (a tracked run's last values too), both sides and the change."""
    fx, fy = flatten({k: v for k, v in x.items() if k not in ("history", "provenance")}), \
        flatten({k: v for k, v in y.items() if k not in ("history", "provenance")})
    out: dict[str, list[Any]] = {}
    for key in dict.fromkeys([*fx, *fy]):
        vx, vy = fx.get(key), fy.get(key)
        if key == "status" or (number(vx) is not None or number(vy) is not None):
            change = vy - vx if number(vx) is not None and number(vy) is not None else None
            out[key] = [vx, vy, change]
    return out


def render(found: dict[str, Any]) -> str:
    """The comparison for people: one section each for spec, code, versions and results; every line
    shown as table.visible writes it (the names and values are the runs')."""
    from runner.lab.table import show, visible

    lines = [f"diff {found['a']} {found['b']}"]
    for side in ("a", "b"):
        lines += [f"  ({found[side]}: {p})" for p in found["problems"][side]]
    spec = found["spec"]
    lines += ["", f"spec: {len(spec)} key{'s' if len(spec) != 1 else ''} differ{'s' if len(spec) == 1 else ''}"
              if spec else "spec: the same"]
    width = max([len(k) for k in spec] + [1])
    lines += [f"  {k.ljust(width)}  {show(v[0])} -> {show(v[1])}" for k, v in spec.items()]
    lines += ["", "code:"] + _code_lines(found["code"])
    versions = found["versions"]
    lines += ["", "versions: the same" if not versions else "versions:"]
    lines += [f"  {k}: {show(v[0])} -> {show(v[1])}" for k, v in versions.items()]
    results = found["results"]
    changed = {k: v for k, v in results.items() if v[0] != v[1]}
    lines += ["", "results:" if changed else "results: the same"]
    width = max([len(k) for k in changed] + [1])
    for key, (vx, vy, change) in changed.items():
        lines.append(f"  {key.ljust(width)}  {show(vx)} -> {show(vy)}" + (f" ({change:+.4g})" if change else ""))
    same = [f"{k} {show(v[0])}" for k, v in results.items() if k not in changed]
    if changed and same:
        lines.append(f"  the same: {', '.join(same)}")
    return "\n".join(map(visible, lines))


def _code_lines(code: dict[str, Any]) -> list[str]:
    if not code["recorded"]:
        return [f"  not recorded for {' and '.join(code['missing'])}: the run was made before runs recorded "
                "their code (provenance)"]
    lines = []
    for repo in code["repos"]:
        a, b = repo["a"] or {}, repo["b"] or {}
        where = "project" if repo["role"] == "project" else repo["role"]
        commits = str(a.get("commit") or "?")[:10] + ("" if a.get("commit") == b.get("commit") else
                                                      f" -> {str(b.get('commit') or '?')[:10]}")
        lines.append(f"  {where} ({a.get('path') or b.get('path')}): {repo['verdict']}"
                     + (f", commit {commits}" if a.get("commit") or b.get("commit") else ""))
        if repo.get("files"):
            lines.append(f"    the trees differ in: {', '.join(repo['files'])}")
        if repo.get("untracked"):
            lines.append(f"    untracked in one only: {', '.join(repo['untracked'])}")
        if repo.get("note"):
            lines.append(f"    ({repo['note']})")
        diff = (repo.get("diff") or "").splitlines()
        lines += [f"    {line}" for line in diff[:MAX_DIFF_LINES]]
        if len(diff) > MAX_DIFF_LINES:
            lines.append(f"    ... {len(diff) - MAX_DIFF_LINES} more lines (--json has them)")
    return lines
