"""Run directories: where a run's resolved spec, journal, summary and weights live on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from runner import status
from runner.errors import UserError
from runner.files import atomic, write_json
from runner.spec import Experiment

SPEC, JOURNAL, SUMMARY, WEIGHTS = "spec.json", "metrics.jsonl", "summary.json", "model.pt"


def create(spec: Experiment, out: Path | None, root: Path = Path("runs")) -> Path:
    """A new run directory holding the resolved spec: `out`, or runs/<name>-<timestamp>[-n]."""
    if out is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = root / f"{spec.name}-{stamp}"
        n = 1
        while out.exists():
            n += 1
            out = root / f"{spec.name}-{stamp}-{n}"
    check_new(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot make the run directory {out}: {exc.strerror}; choose another --out.") from None
    write_json(out / SPEC, spec.model_dump(mode="json"))
    return out


CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = {"format", "model", "optimizer", "torch_rng", "state", "journal_bytes"}


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

    if not run_dir.is_dir():
        what = "a file, not a directory" if run_dir.exists() else "no such directory"
        raise RunDirError(f"--resume {run_dir}: {what}; give a run directory under runs/.")
    if not (run_dir / SPEC).is_file() or not (run_dir / JOURNAL).is_file():
        raise RunDirError(f"--resume {run_dir}: not a run directory (it has no {SPEC} and {JOURNAL}).")
    if finished(run_dir):
        raise RunDirError(f"--resume {run_dir}: this run already finished (see its {SUMMARY}); "
                          "start a new one instead.")
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
    if out.is_dir() and any(p.name != SPEC for p in out.iterdir()):  # (a spec alone: a run killed as it began)
        raise RunDirError(f"--out {out} already holds files that are not a run of this runner; a run needs a new "
                          "or empty directory (it writes spec.json, model.pt and more), so choose another.")
