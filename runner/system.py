"""The machine under a run: a background thread that samples the process's CPU and memory and, on a
CUDA device, the memory torch holds and the GPU's utilisation, every `insight.system` seconds.

The training thread takes the latest sample when it next reads its losses (`Sampler.take`), so the
`system` event reaches the loggers, and the journal, in the loop's own order; it also takes one at
the run's start and one at its end (`Sampler.now`), so a run shorter than the interval has its load. `peaks()` is what
summary.json keeps: the process's peak resident memory and, on CUDA, the device's peak memory.
Utilisation comes from NVIDIA's management library (the nvidia-ml-py package) where it answers; where
it does not, that is said once and memory is still sampled.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import torch

MB = 1 << 20


class Sampler:
    """Samples every `every` seconds on a daemon thread; `take` returns the newest one not yet taken."""

    def __init__(self, every: float, device: torch.device) -> None:
        import psutil

        self.every, self.device = every, device
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call starts the measurement
        self.latest: dict[str, float] | None = None
        self.peak_rss_mb = 0.0  # the kernel's own peak may lag a sample taken just before
        self.lock = threading.Lock()
        self.sampling = threading.Lock()  # one sample at a time: the thread's, or one taken `now`
        self.stopping = threading.Event()
        self.utilisation = device.type == "cuda"
        self.thread = threading.Thread(target=self._run, name="system-sampler", daemon=True)

    def __enter__(self) -> "Sampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                sample = self.sample()
            except Exception as exc:  # noqa: BLE001 - a failed sample must not end the run
                print(f"warning: the system sampler stopped: {exc!r}", file=sys.stderr)
                return
            with self.lock:
                self.latest = sample
                self.peak_rss_mb = max(self.peak_rss_mb, sample["rss_mb"])

    def now(self, start: bool = False) -> dict[str, float]:
        """A sample taken now, on the caller's thread: the run's start (without a CPU share: no time has
        passed to share) or its end (the thread stopped first, its sample not yet taken dropped as older)."""
        if not start:
            self.__exit__()
            self.take()
        sample = self.sample(cpu=not start)
        with self.lock:
            self.peak_rss_mb = max(self.peak_rss_mb, sample["rss_mb"])
        return sample

    def sample(self, cpu: bool = True) -> dict[str, float]:
        with self.sampling, self.process.oneshot():
            values = {**({"cpu_percent": round(self.process.cpu_percent(None), 1)} if cpu else {}),
                      "rss_mb": round(self.process.memory_info().rss / MB, 1)}
        if self.device.type == "cuda":
            values["device_allocated_mb"] = round(torch.cuda.memory_allocated(self.device) / MB, 1)
            values["device_reserved_mb"] = round(torch.cuda.memory_reserved(self.device) / MB, 1)
            if self.utilisation:
                try:
                    values["device_utilisation"] = float(torch.cuda.utilization(self.device))
                except Exception as exc:  # noqa: BLE001 - no NVML here: said once, memory goes on
                    self.utilisation = False
                    print(f"note: GPU utilisation is not sampled here ({exc}); memory is.", file=sys.stderr)
        return values

    def take(self) -> dict[str, float] | None:
        with self.lock:
            sample, self.latest = self.latest, None
        return sample


def peaks(device: torch.device, sampler: Any = None) -> dict[str, float]:
    """summary.json's `peaks`: the process's peak resident memory so far (and at least what `sampler`
    saw) and, on CUDA, the device's peak memory, in MB."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    found = {"rss_mb": max(round(rss / (MB if sys.platform == "darwin" else 1024), 1),
                           getattr(sampler, "peak_rss_mb", 0.0))}
    if device.type == "cuda":
        found["device_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / MB, 1)
        found["device_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / MB, 1)
    return found


def sampler(every: float, device: torch.device) -> Any:
    """A Sampler, or nothing to enter when sampling is off or psutil is missing."""
    import contextlib

    if not every:
        return contextlib.nullcontext()
    try:
        return Sampler(every, device)
    except ImportError:
        print("note: the system load is not sampled: psutil is missing (`make install`).", file=sys.stderr)
        return contextlib.nullcontext()
