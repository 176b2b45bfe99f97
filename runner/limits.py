"""Limits checked before a run allocates or writes anything: memory for the model, disk for what the
run leaves behind, and a word when the work asked for would take hours.

`parameter_count` builds a model on PyTorch's meta device (shapes only, no storage), so any model
the runner can build is measured the same way before it exists; `check_memory` compares what
training it needs with what the device has free. Both raise LimitError, whose message is the one
paragraph the user sees (exit status 2).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from runner.errors import UserError

FLOAT_BYTES = 4
# Per parameter while training: weights, gradients, up to two optimizer slots (Adam), and the
# copy torch.save makes of them in a checkpoint; float32 each.
TRAINING_BYTES_PER_PARAMETER = 5 * FLOAT_BYTES
HEADROOM = 0.8  # of the free memory or disk a run may plan to use
LONG_RUN_STEPS = 2_000_000  # about an hour of the tutorial's MLP on a fast CPU: worth a warning
JOURNAL_BYTES_PER_STEP = 80  # one train_loss line of metrics.jsonl


class LimitError(UserError):
    """The run would not fit this machine; the message says what it needs and what there is."""


def parameter_count(build: Callable[[], Any]) -> int | None:
    """The number of parameters of the model `build()` makes, without allocating their storage;
    None for a builder that cannot run on the meta device (it copies real data, say)."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
        return sum(p.numel() for p in model.parameters())
    except (OverflowError, MemoryError) as exc:
        raise LimitError(f"the model is too large to describe on this machine ({type(exc).__name__}: "
                         f"{(str(exc).splitlines() or ['too large'])[0]}); make it smaller.") from None
    except RuntimeError as exc:
        if "overflow" in str(exc).lower():
            raise LimitError(f"the model is too large to describe on this machine "
                             f"({(str(exc).splitlines() or ['too large'])[0]}); make it smaller.") from None
        return None  # the real build reports its own problems
    except Exception:  # noqa: BLE001 - a builder that needs real data (or fails): the real build tells
        return None


def available_memory(device: Any) -> int | None:
    """Bytes free for a new allocation on `device` (a torch.device or its name); None if unknown."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # a container's own limit (cgroup v2), when it is lower than the machine's
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            free = min(free if free is not None else 1 << 62, int(limit) - used)
    except (OSError, ValueError):
        pass
    return free


def check_memory(parameter_count: int, device: Any, bytes_per_parameter: int = TRAINING_BYTES_PER_PARAMETER) -> None:
    """Refuse a model whose training would not fit in `device`'s free memory."""
    need = parameter_count * bytes_per_parameter
    have = available_memory(device)
    if have is not None and need > have * HEADROOM:
        raise LimitError(f"the model has {parameter_count:,} parameters; training it needs about {size(need)} of "
                         f"memory on {device} (weights, gradients, optimizer state) and {size(have)} is free. "
                         "Make it smaller (e.g. narrower model.hidden), or use a device with more memory.")


def check_disk(where: Path, need: int) -> None:
    """Refuse a run whose files (checkpoint, weights, journal) would not fit on `where`'s disk."""
    where = Path(where).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free * HEADROOM:
        raise LimitError(f"the run would write about {size(need)} (checkpoint, weights, journal) under {where}, "
                         f"which has {size(free)} free; free some space, choose another --out, or make the "
                         "model or the number of steps smaller.")


def run_bytes(parameter_count: int, steps: int, optimizer_slots: int = 2) -> int:
    """What a run leaves on disk: checkpoint (weights and optimizer state), model.pt, the journal."""
    return parameter_count * FLOAT_BYTES * (2 + optimizer_slots) + steps * JOURNAL_BYTES_PER_STEP


def long_run_warning(epochs: int, steps_per_epoch: int) -> str | None:
    """A warning when the run asks for more steps than anyone runs by accident, else None."""
    steps = epochs * steps_per_epoch
    if steps <= LONG_RUN_STEPS:
        return None
    return (f"warning: this run makes {steps:,} training steps ({epochs:,} epochs of {steps_per_epoch:,}); at a "
            "few thousand steps a second that is hours or more. Ctrl-C stops it with a checkpoint.")


def is_allocation_error(exc: BaseException) -> bool:
    """An out-of-memory failure of torch or Python (torch raises RuntimeError on CPU)."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                              or "not enough memory" in text)


def allocation_message(exc: BaseException, device: Any) -> str:
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    return (f"the run ran out of memory on {device} ({first}); make the model or the batch smaller "
            "(model.hidden, data.batch_size, data.test_batch_size).")


def size(n: float) -> str:
    """Bytes as people read them: 1,234 bytes, 5.7 MB, 1.2 GB."""
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} PB"


