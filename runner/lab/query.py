"""Which rows, in which order: `--where KEY OP VALUE`, `--tag`, `--sort [-]KEY`, `--limit`, and the
spec keys that differ between the rows shown.

A key is a column of the listing (run, name, status, when, metric, epochs, steps, time, tags, notes,
sweep, tracked, problem, commit, dirty), a dotted key of the summary or of the spec (flattened as
runner.sweeps.variants flattens it: optim.lr, model.kind, last.train/loss) or of the provenance
(provenance.host, provenance.torch); `spec.`, `summary.` and `provenance.` say which when a name is in
more than one (a bare name is looked up in that order: columns, summary, spec, provenance).

Operators: = != > >= < <= and ~ (contains, ignoring case). A value is read as JSON when it is JSON
(0.98, true, [32]), as a fraction when it ends in % (98%), else as text; numbers compare as numbers,
texts as texts (`when>=2026-11-25` works, the times being written year first). A list (tags) equals a
value it holds. A row without the key matches only !=.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from runner.errors import UserError

FIELDS = ("run", "name", "status", "when", "metric", "metric_name", "epochs", "steps", "time", "tags", "notes",
          "sweep", "tracked", "problem", "commit", "dirty", "started")
SECTIONS = ("summary", "spec", "provenance")
OPS = ("!=", ">=", "<=", "=", ">", "<", "~")
WHERE = re.compile(r"\s*([^=!<>~]+?)\s*(!=|>=|<=|=|>|<|~)\s*(.*)", re.S)
NOT_DIFFERING = {"name", "description", "tags", "notes"}  # shown in their own columns, or naming the run
MISSING = object()


class QueryError(UserError):
    """A --where, --sort or --tag that cannot be used; the message names the keys that could be."""


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    text: str
    value: Any

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.text}"


def parse_where(text: str) -> Condition:
    found = WHERE.fullmatch(text)
    if not found or not found.group(1).strip():
        raise QueryError(f"--where {text!r}: write KEY OP VALUE with OP one of {' '.join(OPS)}, e.g. "
                         "--where 'test_accuracy>0.98' --where model.kind=cnn --where status=finished.")
    key, op, raw = found.group(1).strip(), found.group(2), found.group(3).strip()
    return Condition(key, op, raw, _parse(raw))


def _parse(raw: str) -> Any:
    if raw.endswith("%"):
        try:
            return float(raw[:-1]) / 100
        except ValueError:
            pass
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def finish(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns computed at listing time (local time, the commit's short form) added to each row."""
    for row in rows:
        started = row.get("started")
        row["when"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) \
            if isinstance(started, (int, float)) and math.isfinite(started) else None
        prov = row.get("provenance") or {}
        row["commit"] = prov.get("commit")
        row["dirty"] = prov.get("dirty")
    return rows


def value(row: dict[str, Any], key: str) -> Any:
    """The value of `key` in `row`, or MISSING."""
    if key in FIELDS:
        return row.get(key, MISSING)
    section, _, rest = key.partition(".")
    if section in SECTIONS and rest and rest in row.get(section, {}):
        return row[section][rest]
    for section in SECTIONS:
        flat = row.get(section) or {}
        if key in flat:
            return flat[key]
    return MISSING


def known(rows: Iterable[dict[str, Any]]) -> set[str]:
    keys = set(FIELDS)
    for row in rows:
        for section in SECTIONS:
            flat = row.get(section) or {}
            keys.update(flat)
            keys.update(f"{section}.{k}" for k in flat)
    return keys


def check_keys(keys: Sequence[str], rows: Sequence[dict[str, Any]], flag: str) -> None:
    """QueryError naming the closest known keys for a key no row has (nothing to check without rows)."""
    if not rows:
        return
    names = known(rows)
    for key in keys:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=4, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else \
                "; keys are columns (status, metric, when, tags...), summary keys (test_accuracy) or dotted spec " \
                "keys (model.kind, optim.lr)."
            raise QueryError(f"{flag} {key}: no run listed has this key{hint}")


def matches(row: dict[str, Any], condition: Condition) -> bool:
    got = value(row, condition.key)
    if got is MISSING or got is None and condition.value is not None:
        return condition.op == "!="
    if condition.op == "~":
        return condition.text.lower() in _text(got).lower()
    if condition.op in ("=", "!="):
        return _equal(got, condition) == (condition.op == "=")
    a, b = _comparable(got, condition.value)
    if a is None:
        return False
    return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[condition.op]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)


def _equal(got: Any, condition: Condition) -> bool:
    wanted = condition.value
    if isinstance(got, list) and not isinstance(wanted, list):
        return any(_same(item, wanted, condition.text) for item in got)
    return _same(got, wanted, condition.text)


def _same(got: Any, wanted: Any, text: str) -> bool:
    if _number(got) is not None and _number(wanted) is not None:
        return math.isclose(_number(got), _number(wanted), rel_tol=1e-12, abs_tol=0)  # type: ignore[arg-type]
    if isinstance(got, str):
        return got == text or got == wanted
    return json.dumps(got, sort_keys=True) == json.dumps(wanted, sort_keys=True)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _comparable(got: Any, wanted: Any) -> tuple[Any, Any]:
    if _number(got) is not None and _number(wanted) is not None:
        return _number(got), _number(wanted)
    if isinstance(got, str) and not isinstance(wanted, (list, dict)):
        return got, wanted if isinstance(wanted, str) else json.dumps(wanted)
    return None, None


def select(rows: list[dict[str, Any]], where: Sequence[Condition] = (), tags: Sequence[str] = (),
           sort: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The rows that meet every condition and carry every tag, sorted (default: newest first), at most
    `limit` of them. Raises QueryError for a key no row has."""
    check_keys([c.key for c in where], rows, "--where")
    if sort:
        check_keys([sort.lstrip("-")], rows, "--sort")
    kept = [r for r in rows if all(matches(r, c) for c in where) and all(t in r.get("tags", []) for t in tags)]
    kept = sort_rows(kept, sort or "-started")
    return kept[:limit] if limit is not None else kept


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Sorted by `key` (descending with a leading '-'); rows without it last either way; ties by run."""
    descending, key = key.startswith("-"), key.lstrip("-")
    rows = sorted(rows, key=lambda r: str(r.get("run") or r.get("rel")))
    present = [r for r in rows if value(r, key) not in (MISSING, None)]
    absent = [r for r in rows if value(r, key) in (MISSING, None)]

    def order(row: dict[str, Any]) -> tuple[int, Any]:
        got = value(row, key)
        if _number(got) is not None:
            return 0, _number(got)
        return 1, _text(got).lower()

    numbers = sorted((r for r in present if order(r)[0] == 0), key=order, reverse=descending)
    texts = sorted((r for r in present if order(r)[0] == 1), key=order, reverse=descending)
    return numbers + texts + absent


def differing(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The spec keys whose values differ between these rows (rows without a key not counted), in the
    order the specs give them."""
    first: dict[str, Any] = {}  # key -> the first value met (as _identity gives it)
    differ: set[str] = set()
    for row in rows:
        for key, item in (row.get("spec") or {}).items():
            if key in differ or key in NOT_DIFFERING:
                continue
            seen = _identity(item)
            if key not in first:
                first[key] = seen
            elif first[key] != seen:
                differ.add(key)
    return [key for key in first if key in differ]


def _identity(value: Any) -> Any:
    """A value as a set can hold it, 1, 1.0 and true kept apart; lists and objects as their JSON."""
    if value is None or type(value) in (str, int, float, bool):
        return type(value), value
    return dict, json.dumps(value, sort_keys=True)
