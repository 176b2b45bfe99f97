"""Reading files a person or another machine may have damaged: bounded, never through a link, never
anything but a regular file (a FIFO does not hang the reader), every failure a sentence instead of an
exception.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_JSON = 4_000_000  # spec.json and summary.json: real ones are a few KB


def read_file(path: Path, limit: int) -> tuple[bytes | None, str | None]:
    """(content, None), (None, None) when there is no such file, or (None, why it cannot be used)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, f"{path.name} is a link (not followed)"
        return None, f"{path.name} cannot be read ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, f"{path.name} is not a regular file"
        if info.st_size > limit:
            return None, f"{path.name} is {size(info.st_size)}, more than the {size(limit)} read (left unread)"
        chunks, got, left = [], 0, limit + 1
        while left > 0:  # one read, as a rule: more only for a short read or a file that grew meanwhile
            chunk = os.read(fd, min(left, max(info.st_size + 1, 1 << 16)))
            if not chunk:
                break
            chunks.append(chunk)
            got, left = got + len(chunk), left - len(chunk)
            if got == info.st_size:
                break
        data = b"".join(chunks)
        if len(data) > limit:
            return None, f"{path.name} grew past the {size(limit)} read (left unread)"
        return data, None
    except OSError as exc:
        return None, f"{path.name} cannot be read ({exc.strerror})"
    finally:
        os.close(fd)


def size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def load_json(path: Path, limit: int, problems: list[str]) -> tuple[Any, bool]:
    """(the file's JSON or None, whether the file exists); what is wrong with it goes to `problems`."""
    data, why = read_file(path, limit)
    if why:
        problems.append(why)
        return None, True
    if data is None:
        return None, False
    try:
        return json.loads(data.decode("utf-8")), True
    except (ValueError, RecursionError):
        problems.append(f"{path.name} is not JSON" + (" (empty)" if not data.strip() else ""))
        return None, True
