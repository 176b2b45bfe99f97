"""Run directories: where a run's resolved spec, journal, summary and weights live on disk."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

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
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SPEC, spec.model_dump(mode="json"))
    return out


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
        json.dump(data, tmp, indent=2)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
