"""Writing files so that a reader (or a crash) sees the old file or the new one, never half of one.

`atomic` is the one way the runner and the dashboards replace a file: a temporary file beside it,
renamed over it when the writing succeeded and deleted when it did not.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic(path: Path, mode: str = "w", permissions: int = 0o644, **options: Any) -> Iterator[IO[Any]]:
    """A file to write `path`'s new content into ("w" text in UTF-8, or "wb"); it replaces `path`
    when the block ends without an error, and is deleted when it raises."""
    if "b" not in mode:
        options.setdefault("encoding", "utf-8")
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, mode, **options) as f:
            yield f
        os.chmod(name, permissions)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic(path) as f:
        f.write(text)


def write_json(path: Path, data: Any) -> None:
    with atomic(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")


def write_bytes(path: Path, data: bytes) -> None:
    with atomic(path, "wb") as f:
        f.write(data)
