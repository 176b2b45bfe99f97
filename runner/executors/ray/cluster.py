"""Ray for a sweep: joined to a cluster (`--ray-address`) or started on this machine for the sweep
alone, its start-up chatter kept off the console, and the checks made before a sweep directory
exists (Ray installed, the address answers, every variant fits some node).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from runner import spec as specs
from runner.errors import UserError

CONNECT_TIMEOUT = 10.0  # seconds to reach --ray-address before giving up


class RayError(UserError):
    """Ray is missing or the cluster cannot be reached; the message says what to do."""


def available() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.tune") is not None
    except (ImportError, ValueError):
        return False


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse an address that is not HOST:PORT or does not answer within `timeout` seconds."""
    if address == "auto":  # Ray's own: the cluster `ray start` made on this machine
        return
    if address.startswith("ray://"):
        raise RayError(f"--ray-address {address}: Ray Client addresses (ray://) are not supported, since the "
                       "driver must run where the dashboard is; give the head's HOST:PORT (default port 6379) "
                       "and run the runner on a machine of the cluster.")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayError(f"--ray-address {address!r}: expected HOST:PORT of a cluster's head, e.g. 10.0.0.5:6379 "
                       "(the address `ray start --head` prints).")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayError(f"--ray-address {address}: no Ray cluster answered within {timeout:g} s ({exc.strerror or exc})."
                       f" Start one with `ray start --head --port={port}` there, check the address and firewall, "
                       "or leave --ray-address (and RAY_ADDRESS) out to run Ray on this machine alone.") from None


@contextmanager
def connected(address: str | None, last_words: list[Callable[[], None]] | None = None
              ) -> Iterator[Callable[[], None]]:
    """Ray for this sweep: joined to the cluster at `address`, or started here for the sweep alone
    (on loopback, its temporary files in a directory of its own, deleted afterwards, and by a hard
    exit too when `last_words` is StopOnSignal's; its processes end with this one). Usage stats
    stay off. The context gives `ready()`, which starts Ray (or raises RayError) on the calling
    thread, Ray's own (its client must live on the main thread): the caller decides what runs
    meanwhile on others."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C is the runner's to handle
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # the run directories hold the results
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["RAY_DEDUP_LOGS"] = "0"
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ core: no warnings on the console
    if address:
        check_address(address)
    import ray

    runtime_env = {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_USAGE_STATS_ENABLED": "0",
                                "PYTHONWARNINGS": "ignore"}}
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "runtime_env": runtime_env}
    if not address or address.rpartition(":")[0] in ("127.0.0.1", "localhost"):
        options["_node_ip_address"] = "127.0.0.1"  # Ray on this machine alone: on loopback, reachable from nowhere
    temp = None if address else tempfile.mkdtemp(prefix="ray-")  # short: socket paths must fit in 107 bytes
    if temp is not None and last_words is not None:
        last_words.append(lambda: shutil.rmtree(temp, ignore_errors=True))

    def ready() -> None:
        if ray.is_initialized():
            return
        print(f"joining the Ray cluster at {address}" if address else "starting Ray on this machine", flush=True)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # ray.init takes SIGTERM
        chatter, started = _Chatter(), False
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(address="local", include_dashboard=False, _temp_dir=temp, **options)
            started = True
        except Exception as exc:  # noqa: BLE001 - a version mismatch, a port that is not Ray's, no memory...
            where = f"join the Ray cluster at {address}" if address else "start Ray on this machine"
            first = (str(exc).strip().splitlines() or [""])[0]
            raise RayError(f"could not {where}: {type(exc).__name__}: {first}. Ray's own messages are above; every "
                           "node must run the same Ray version (2.60.0, `make install-extras`) and, with "
                           "RAY_AUTH_MODE=token, have the cluster's token.") from None
        finally:
            chatter.restore(everything=not started)
            for s, handler in handlers.items():
                signal.signal(s, handler)
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):  # what goes wrong is the runner's to say
            logging.getLogger(name).setLevel(logging.CRITICAL)

    try:
        yield ready
    finally:
        ray.shutdown()  # also what a failed start left running
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


class _Chatter:
    """Ray's C++ core writes start-up warnings straight to file descriptor 2 (e.g. that it found no
    route to the internet, on an offline machine). While Ray starts, fd 2 goes to a file; `restore`
    puts it back and shows what else was written meanwhile (everything, if starting failed)."""

    LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWE] \d+ \d+\] \S+\.cc:\d+: ")

    def __init__(self) -> None:
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved: int | None = os.dup(2)
        os.dup2(self.file.fileno(), 2)

    def restore(self, everything: bool) -> None:
        if self.saved is None:
            return
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.saved = None
        self.file.seek(0)
        lines = self.file.read().splitlines(keepends=True)
        self.file.close()
        shown = b"".join(line for line in lines if everything or not self.LINE.match(line))
        if shown:
            sys.stderr.write(shown.decode(errors="replace"))
            sys.stderr.flush()


def stop_processes_under(temp: str | Path) -> None:
    """Kill the processes of a Ray cluster started on this machine with `ray start --temp-dir=TEMP`
    (tests, benchmarks): those whose command line or open files lie under TEMP. `ray stop` would
    stop every Ray of the machine."""
    temp = str(temp)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            if temp in cmdline or any(f.startswith(temp) for f in files):
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            continue


def check_resources(experiments: list[specs.Experiment], nodes: list[dict[str, Any]]) -> None:
    """Refuse variants no node of the cluster can hold (Tune would wait for them for ever)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    for experiment in experiments:
        wanted = {"CPU": experiment.train.cpus, "GPU": experiment.train.gpus}
        if not any(all(have.get(k, 0.0) >= v for k, v in wanted.items() if v) for have in alive):
            most = {k: max((have.get(k, 0.0) for have in alive), default=0.0) for k in wanted}
            raise RayError(f"{experiment.name}: train.cpus {experiment.train.cpus:g} and train.gpus "
                           f"{experiment.train.gpus:g} fit no node of this Ray cluster (its nodes have at most "
                           f"{most['CPU']:g} CPUs and {most['GPU']:g} GPUs); lower them, or add a node that has them.")
