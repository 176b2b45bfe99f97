"""Experiment files: read (bounded in depth), `--set` overrides applied, validated into the frozen
models of runner.spec.models, and every problem described as one paragraph naming the keys.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.spec.models import MAX_DEPTH, MODEL_TAGS, Experiment, SpecError

MAX_BYTES = 4_000_000  # of a spec file: real ones are a few hundred bytes


def _describe(error: dict[str, Any], source: str) -> str:
    loc = list(error["loc"])
    if loc[:1] == ["model"] and len(loc) > 1 and loc[1] in MODEL_TAGS.values():
        del loc[1]  # the kind pydantic tried: the key a person wrote is model.X
    key = ".".join(str(part) for part in loc) or "the top level"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "model_kind":
        key, message = "model.kind", f"must be one of {', '.join(MODEL_TAGS)}"
        error = {**error, "input": error["input"].get("kind") if isinstance(error["input"], dict) else error["input"]}
    elif error["type"] == "extra_forbidden":
        message = "is not a known key"
    elif error["type"] == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    elif error["type"] == "string_pattern_mismatch":
        valid = {"name": "letters, digits, '_', '.', '-' (up to 100, starting with a letter or digit)",
                 "device": "auto, cpu, mps, cuda or cuda:N",
                 "target": "module:callable, e.g. models.small_cnn:build"}
        message = f"must be {valid.get(str(error['loc'][-1]), 'of the form ' + error['ctx']['pattern'])}"
    got = error.get("input")
    shown = "" if error["type"] in ("missing",) or isinstance(got, dict) else f" (got {json.dumps(got)[:60]})"
    if error["type"] != "value_error":  # pydantic's own sentences start "Input should ..."
        message = message[:1].lower() + message[1:]
    return f"{key}: {message}{shown}"


def depth(data: Any) -> int:
    """How deeply `data` nests lists and objects (without recursion: it may be very deep)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _check_depth(data: Any, source: str) -> None:
    if depth(data) > MAX_DEPTH:
        raise SpecError(f"{source}: nested more than {MAX_DEPTH} levels deep; an experiment is a few levels of "
                        "objects (see `python -m runner schema`).")


def parse(data: Any, source: str) -> Experiment:
    """An Experiment from already-decoded JSON, or SpecError naming every bad key."""
    _check_depth(data, source)
    if not isinstance(data, dict):
        raise SpecError(f"{source}: an experiment must be a JSON object {{...}}, not a JSON {type(data).__name__}.")
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, source) for e in exc.errors(include_url=False))
        raise SpecError(f"{source}: invalid experiment: {problems}. "
                        "See `python -m runner schema` for every key and its meaning.") from None


def read(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or SpecError saying what is wrong with the file."""
    if path.is_dir():
        raise SpecError(f"{path} is a directory; give an experiment file such as experiments/relu.json.")
    if path.exists() and not path.is_file():  # a FIFO would block for ever, a device read for ever
        raise SpecError(f"{path} is not a regular file; give an experiment file such as experiments/relu.json.")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise SpecError(f"{path} is larger than {MAX_BYTES // 1_000_000} MB; an experiment is a few hundred "
                            "bytes of JSON (see `python -m runner schema`).")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; the experiments that ship are in experiments/*.json.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read it as UTF-8 text ({exc}).") from None
    if not text.strip():
        raise SpecError(f"{path} is empty; an experiment is a JSON object with at least a \"name\".")
    try:
        data = json.loads(text)
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to read (more than {MAX_DEPTH} levels are never needed); "
                        "an experiment is a few levels of objects (see `python -m runner schema`).") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    _check_depth(data, str(path))
    return data


def apply_override(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """A copy of `data` with one `dotted.key=value` applied; value is JSON, or a plain string."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key or not re.fullmatch(r"[A-Za-z_]+(\.[A-Za-z_]+)*", key):
        raise SpecError(f"--set {assignment!r}: expected dotted.key=value, e.g. --set optim.lr=0.1 "
                        "or --set model.hidden=[256,128].")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare words such as adam or cpu
    except RecursionError:
        raise SpecError(f"--set {assignment[:60]!r}...: nested too deeply to read; values are numbers, words or "
                        "short lists.") from None
    _check_depth(value, f"--set {key}")
    data = json.loads(json.dumps(data))  # deep copy, JSON types only
    node = data
    *parents, leaf = key.split(".")
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"--set {assignment!r}: {'.'.join(parents[:i + 1])} is not a section with keys.")
        node = child
    node[leaf] = value
    return data


def load(path: Path, overrides: list[str] = ()) -> Experiment:  # type: ignore[assignment]
    """Read, override and validate one experiment file."""
    data = read(path)
    if not isinstance(data, dict):
        return parse(data, str(path))
    for assignment in overrides:
        data = apply_override(data, assignment)
    model = data.get("model")
    if isinstance(model, dict) and model.get("kind") == "python" and model.get("path") is None:
        # Your own model's module is looked for beside the experiment file, wherever the run resumes.
        data = {**data, "model": {**model, "path": str(path.resolve().parent)}}
    source = str(path) + (f" with --set {' '.join(overrides)}" if overrides else "")
    return parse(data, source)


def schema() -> dict[str, Any]:
    """JSON Schema of an experiment file, for editors."""
    return Experiment.model_json_schema()
