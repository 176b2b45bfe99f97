"""docs/BENCHMARKS.md is written by several benchmarks, each owning one section between its own
`<!-- NAME BEGIN -->` and `<!-- NAME END -->` markers; `write` replaces a section (or appends it) and
leaves the others as they are."""

from __future__ import annotations

from pathlib import Path


def write(text: str, path: Path, begin: str, end: str) -> None:
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + text.rstrip("\n") + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    path.write_text(new)
