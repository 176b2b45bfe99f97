"""The parts of a tracked run (runner.track) that its loop never sees: its directory made, its
loggers made, what made it recorded, the values it was given read (tensors in one copy per device)
and its summary made JSON. Importing it imports neither torch nor any dashboard.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from runner.errors import UserError


class TrackError(UserError):
    """`track.run` called with what cannot make a run; nothing was written."""


def plain(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary given as JSON values: numbers, strings, lists and dicts of them as they are, a
    one-element tensor or array as its number, anything else as its text."""
    return {str(k): _json(v) for k, v in summary.items()}


def _json(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, Mapping) and depth < 32:
        return {str(k): _json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and depth < 32:
        return [_json(v, depth + 1) for v in value]
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def read(values: list[Any]) -> list[float]:
    """Numbers as floats; tensors read with one copy per device (the only wait on a GPU)."""
    out: list[Any] = list(values)
    tensors: dict[Any, list[int]] = {}
    for i, value in enumerate(values):
        if hasattr(value, "detach"):
            tensors.setdefault(value.device, []).append(i)
        elif not isinstance(value, (int, float)):
            out[i] = value.item()  # a numpy scalar or one-element array
    if tensors:
        import torch

        with torch.no_grad():
            for indices in tensors.values():
                wide = torch.float32 if values[indices[0]].device.type == "mps" else torch.float64  # exact ints
                read = torch.stack([values[i].reshape(()).to(wide) for i in indices]).tolist()
                for i, v in zip(indices, read):
                    out[i] = v
    return [float(v) for v in out]


def numeric(dtype: Any) -> bool:
    """Whether an array's or tensor's element type is a real number (not bool, complex, text, a date)."""
    kind = getattr(dtype, "kind", None)  # numpy's
    if kind is not None:
        return kind in "iuf"
    return bool(getattr(dtype, "is_floating_point", False)) or str(dtype).startswith(("torch.int", "torch.uint"))


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
