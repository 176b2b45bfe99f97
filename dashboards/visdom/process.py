"""A Visdom server process as the launcher sees it: its handle (`Server`), its pid and log files in
the server's home, whether it is alive and ours (never a recycled pid), stopping it (SIGTERM, then
SIGKILL), free ports, and the errors the launcher raises.

Each server also has a record in this user's runtime folder, one file per port as Jupyter's runtime
files are (`record`, `recorded`): it names the server's pid, its home and the login file it uses, so
a run that knows only the port finds the login of the server this user started there. The folder is
$VISDOM_RUNTIME_DIR, else $XDG_DATA_HOME/mnist-runner/runtime (~/.local/share/mnist-runner/runtime),
like Jupyter's and not under $XDG_RUNTIME_DIR, which is emptied at logout while the server runs on;
mode 0700, the files 0600. A record whose pid is not that port's live server is ignored.

Servers this process started are remembered (`remember`): until its parent reaps it, a dead child
is a zombie that still answers kill(pid, 0); polling its Popen reaps it, so `stop` sees it gone at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from runner.files import atomic, write_text

STOP_TIMEOUT = 10.0
RUNTIME_VAR = "VISDOM_RUNTIME_DIR"
# How the server process shows in /proc/PID/cmdline: the guarded server, or visdom's own (older starts).
SERVER_MODULES = (b"dashboards.visdom.guard", b"visdom.server")


class ServerError(Exception):
    """The server could not be started or inspected; the message says why."""


class PortInUse(ServerError):
    """Something other than this home's server holds the port."""


class StartFailed(ServerError):
    """The server exited, timed out or served a broken page during start."""


@dataclass(frozen=True)
class Server:
    """Handle of a running server; `stop()` (or leaving a `with` block) stops exactly this pid."""

    port: int
    home: Path
    pid: int

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def log_path(self) -> Path:
        return log_path(self.port, self.home)

    @property
    def pid_path(self) -> Path:
        return pid_path(self.port, self.home)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop this server; False if it had already gone."""
        stopped = terminate(self.pid, self.port, timeout)
        # The pid file may already name a newer server on the same port: leave that one alone.
        if read_pid(self.pid_path) == self.pid:
            self.pid_path.unlink(missing_ok=True)
        forget(self.port, self.pid)
        return stopped

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AlreadyRunning(ServerError):
    """This home's server already runs on the port; `.server` is its handle."""

    def __init__(self, server: Server) -> None:
        super().__init__(f"the Visdom server is already running at {server.url} (pid {server.pid})")
        self.server = server


def pid_path(port: int, home: Path) -> Path:
    return Path(home) / f"visdom-{port}.pid"


def log_path(port: int, home: Path) -> Path:
    return Path(home) / f"visdom-{port}.log"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe(server: Server) -> str:
    """Who can reach the server and whether it asks for a login, from its command line."""
    try:
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "binding unknown"
    where = "127.0.0.1 only" if b"-bind_local" in argv else "EVERY network interface"
    return f"listening on {where}, {'login required' if b'-enable_login' in argv else 'no login'}"


def status(port: int, home: Path) -> Server | None:
    """The handle of this home's server on `port` if its pid file names a live visdom process."""
    pid = read_pid(pid_path(port, home))
    if pid is None or not is_ours(pid, port):
        return None
    return Server(port, Path(home).resolve(), pid)


def stop(port: int, home: Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the server named by this home's pid file for `port`; False if none was running."""
    path = pid_path(port, home)
    pid = read_pid(path)
    if pid is None:
        return False
    stopped = terminate(pid, port, timeout)
    path.unlink(missing_ok=True)
    forget(port, pid)
    return stopped


# Servers started by this process (see the module docstring).
_children: dict[int, subprocess.Popen[bytes]] = {}


def remember(process: subprocess.Popen[bytes]) -> None:
    """A server this process started: `alive` polls it, which reaps it once it has exited."""
    _children[process.pid] = process


def alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie someone else has yet to reap is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def is_ours(pid: int, port: int) -> bool:
    """Alive and a visdom server for this port: a recycled pid is never signalled."""
    if not alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): the pid file is all there is to go on
    return any(module in argv for module in SERVER_MODULES) and str(port).encode() in argv


def terminate(pid: int, port: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; False if the pid was not a live server of ours."""
    if not is_ours(pid, port):
        _children.pop(pid, None)
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        end = time.monotonic() + wait
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if not alive(pid):
            break
    _children.pop(pid, None)
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    write_text(path, f"{pid}\n")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # tornado binds with SO_REUSEADDR too: connections of a stopped server in TIME_WAIT
        # do not block a restart, a listening socket does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    # A listener on ::1 alone would catch browsers that resolve localhost to ::1 first.
    try:
        with socket.create_connection(("::1", port), timeout=0.5):
            return False
    except OSError:
        return True


def log_tail(server: Server, lines: int = 20) -> str:
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


# --- this user's record of the servers they started -------------------------------------------

def runtime_dir(environ: Mapping[str, str] | None = None) -> Path:
    """This user's folder of server records (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(RUNTIME_VAR):
        return Path(environ[RUNTIME_VAR])
    data = environ.get("XDG_DATA_HOME") or Path("~/.local/share").expanduser()
    return Path(data) / "mnist-runner" / "runtime"


def runtime_path(port: int) -> Path:
    return runtime_dir() / f"visdom-{port}.json"


def record(server: Server, login: Path | None) -> None:
    """Note that `server` runs on its port, with the login kept in the file `login` (None: no stored one)."""
    path = runtime_path(server.port)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with atomic(path, permissions=0o600) as f:
        json.dump({"port": server.port, "pid": server.pid, "home": str(server.home),
                   "login": None if login is None else str(login)}, f)


def recorded(port: int) -> tuple[Server, Path | None] | None:
    """The live server this user started on `port` and its login file, from its record; None if none."""
    try:
        data = json.loads(runtime_path(port).read_text())
        server = Server(port, Path(data["home"]), int(data["pid"]))
        login = None if data["login"] is None else Path(data["login"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (server, login) if is_ours(server.pid, port) else None


def forget(port: int, pid: int) -> None:
    """Remove the record of `port` if it names `pid` (a newer server's record stays)."""
    path = runtime_path(port)
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass
