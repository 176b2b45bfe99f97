"""The parts of a tracked run (runner.track) that its loop never sees: its directory made, its
loggers made, what made it recorded, the values it was given read (tensors in one copy per device)
and its summary made JSON. Importing it imports neither torch nor any dashboard.
"""

from __future__ import annotations

import json
import re
import reprlib
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping

from runner.errors import UserError


MAX_CONFIG_DEPTH = 64  # levels of lists and dicts in a config


class TrackError(UserError):
    """`track.run` called with what cannot make a run; nothing was written."""


MAX_SUMMARY = 1_000_000  # characters of the summary given, as JSON about; what comes after is left out
MAX_SUMMARY_TEXT = 10_000  # characters of one text (a key, or a value that is not a number) in it
MAX_SUMMARY_DEPTH = 32  # levels of dicts and lists in it; deeper ones are kept as their text


def plain(summary: Any) -> dict[str, Any]:
    """The summary given as JSON values, bounded (MAX_SUMMARY characters in all): numbers, strings,
    lists and dicts of them as they are, a one-element tensor or array as its number, anything else
    as its text; never an exception."""
    budget = [MAX_SUMMARY]
    try:
        items = list(summary.items())
    except Exception:  # noqa: BLE001 - run.summary replaced by what is not a dict
        items = [("summary", summary)]
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's about a masked element read as NaN
        for k, v in items:
            if budget[0] <= 0:
                out["left_out"] = f"the rest of the summary: more than {MAX_SUMMARY:,} characters"
                break
            out[_text(k, budget)] = _json(v, 0, budget)
    return out


def _json(value: Any, depth: int, budget: list[int]) -> Any:
    """`value` as JSON, its size taken from `budget`; what does not fit is left out."""
    budget[0] -= 8 + 2 * depth  # as summary.json is written: indented
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):  # past 1024 bits its digits are no use, nor is its float
        return int(value) if value.bit_length() <= 1024 else _text(value, budget)
    if isinstance(value, (dict, Mapping, list, tuple)) and depth < MAX_SUMMARY_DEPTH:
        try:
            if isinstance(value, (list, tuple)):
                return [_json(v, depth + 1, budget) for v in _fitting(value, budget)]
            return {_text(k, budget): _json(v, depth + 1, budget) for k, v in _fitting(value.items(), budget)}
        except Exception:  # noqa: BLE001 - a mapping whose items cannot be had: its text
            pass
    elif not isinstance(value, str):
        try:
            return float(value)  # a one-element tensor or array, a numpy scalar, a Decimal
        except Exception:  # noqa: BLE001 - not a number: its text
            pass
    return _text(value, budget)


def _fitting(items: Any, budget: list[int]) -> Any:
    for item in items:
        if budget[0] <= 0:
            return
        yield item


def _text(value: Any, budget: list[int]) -> str:
    if isinstance(value, str):
        text = value[:MAX_SUMMARY_TEXT]
    else:
        try:
            text = reprlib.repr(value) if isinstance(value, (dict, Mapping, list, tuple)) else str(value)[:MAX_SUMMARY_TEXT]
        except Exception:  # noqa: BLE001 - a text that cannot be had (a huge int, a failing __str__)
            text = f"<a {type(value).__name__}>"
    budget[0] -= len(text)
    return text


def read(values: list[Any]) -> list[float | None]:
    """Numbers as floats (None for one that cannot be one: an int past a float's range); tensors read
    with one copy per device (the only wait on a GPU)."""
    out: list[Any] = list(values)
    tensors: dict[Any, list[int]] = {}
    for i, value in enumerate(values):
        if hasattr(value, "detach"):
            tensors.setdefault(value.device, []).append(i)
        else:
            try:  # a huge int, a Fraction past a float's range, a signalling NaN
                out[i] = float(value.item() if hasattr(value, "item") else value)  # numpy: a scalar or one-element array
            except (ArithmeticError, ValueError, TypeError):
                out[i] = None
    if tensors:
        import torch

        with torch.no_grad():
            for indices in tensors.values():
                wide = torch.float32 if values[indices[0]].device.type == "mps" else torch.float64  # exact ints
                read = torch.stack([values[i].reshape(()).to(wide) for i in indices]).tolist()
                for i, v in zip(indices, read):
                    out[i] = float(v)
    return out


def numeric(value: Any) -> bool:
    """Whether a value of this kind (its type, element type and layout) holds a real number plainly:
    not bool, complex, text, a date or a record; not a sparse, quantized or masked one; for a tensor
    subclass, one whose number can be read."""
    dtype = value.dtype
    kind = getattr(dtype, "kind", None)  # numpy's
    if kind is not None:
        return kind in "iuf" and not hasattr(value, "mask")
    if not (getattr(dtype, "is_floating_point", False) or str(dtype).startswith(("torch.int", "torch.uint"))):
        return False
    if str(value.layout) != "torch.strided" or value.is_nested:
        return False
    if _own_reading(type(value)):  # a subclass that reads its own way: read once, on its device
        try:
            value.detach().reshape(-1)[:1].to(dtype=value.dtype).sum().item()
        except Exception:  # noqa: BLE001
            return False
    return True


READING = {"__torch_function__", "__torch_dispatch__", "item", "tolist", "__float__", "detach", "clone", "reshape", "to"}


def _own_reading(kind: type) -> bool:
    """Whether a tensor subclass defines any of the methods a value is read through."""
    import torch

    return any(READING & set(vars(k)) for k in kind.__mro__[:kind.__mro__.index(torch.Tensor)])


def config(config: Any) -> dict[str, Any]:
    """The config as JSON values, at most MAX_CONFIG_DEPTH levels deep and MAX_JSON bytes (the readers'
    bound on spec.json), so that every reader of the run can read its spec.json back."""
    from runner.lab.reading import MAX_JSON, size

    if config is None:
        return {}
    try:
        text = json.dumps(dict(config), allow_nan=False)
        why = f"it is {size(len(text))}, more than the {size(MAX_JSON)} spec.json may be" if len(text) > MAX_JSON \
            else f"it is nested more than {MAX_CONFIG_DEPTH} levels deep" if _depth(text) > MAX_CONFIG_DEPTH else ""
    except (TypeError, ValueError) as exc:
        why = f"this one cannot be written as JSON ({exc})"
    except RecursionError:
        why = f"it is nested more than {MAX_CONFIG_DEPTH} levels deep"
    if why:
        raise TrackError(f"track.run's config must be a dict of JSON values (numbers, strings, lists, dicts) and "
                         f"becomes the run's spec.json; {why}.")
    return json.loads(text)


def _depth(text: str) -> int:
    """How deep a JSON text's lists and dicts go (counted over its brackets outside strings)."""
    deepest = depth = 0
    for token in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest


def provenance_now() -> dict[str, Any]:
    """What made the run (runner.lab.provenance), the loop's own script standing for its repository."""
    from runner.lab import provenance

    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return provenance.collect([script] if script is not None and script.is_file() else [])


def brief(made: dict[str, Any]) -> dict[str, Any]:
    from runner.lab import provenance

    return provenance.brief(made)


def new_dir(name: str, out: Path | None, config: dict[str, Any]) -> Path:
    """A new run directory holding the config as its spec.json."""
    from runner import runs

    try:
        return runs.begin(out if out is not None else runs.fresh(name), config)
    except runs.RunDirError as exc:
        raise TrackError(str(exc).replace("--out", "out")) from None


def make_loggers(kinds: tuple[str, ...], name: str, run_dir: Path) -> list[Any]:
    """The backends' loggers for a run named `name` (a default spec of that name carries the dashboard's
    settings: VISDOM_SERVER, VISDOM_PORT and the env named after the run directory)."""
    from runner.loggers import registry
    from runner.spec import Experiment

    kinds = tuple(k for k in kinds if k != registry.NULL)
    if not kinds:
        return []
    registry.check(kinds)
    made = registry.make((registry.NULL, *kinds), Experiment(name=name), registry.Place(run_dir=run_dir))
    return [logger for logger in made if type(logger).__name__ != "NullLogger"]
