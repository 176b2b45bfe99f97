"""The Visdom server launcher: one local, offline Visdom server per (port, home), started detached.

    python -m dashboards.visdom.server start|stop|status [--port N] [--home DIR] [--public] [--no-login]
    python -m dashboards.visdom.server prune --older-than DAYS [--dry-run] [--port N] [--home DIR]

`start` installs Visdom's web assets from pinned npm tarballs if needed (`dashboards.visdom.assets`),
so the server never reaches for a CDN, then runs Visdom's server behind this project's guard
(`python -m dashboards.visdom.guard`, Visdom's own arguments) in its own session and returns once the
page and every script and stylesheet it references answer 200. Its files live in HOME:
`visdom-N.pid`, `visdom-N.log`, `login.json` (the stored login) and `envs/` (the server's -env_path,
where the runners save every env, one `<env>.json` each). Visdom 0.2.4 loads saved envs lazily (it reads a file when its
env is first opened; `-eager_data_loading` would read them all at start), so a restart is quick and
the server's memory grows with the envs people look at, not with all that were ever saved.
`prune --older-than DAYS` deletes the saved envs not written for that many days (through the
server when it runs, so they leave its list too). `stop` signals exactly the pid in the pid file.
Tests and other code use `start`, `stop`, `status`, `free_port` and the `running` context manager,
all importable from here.

Security (docs/SECURITY.md): Visdom has no access control of its own by default; whoever reaches
the port reads and rewrites every env. So the server listens on 127.0.0.1 only unless asked
otherwise (`--public` or VISDOM_BIND=all, which prints a warning); the guard refuses requests whose
Host is not a loopback name or whose Origin is another site; and `start` turns on Visdom's login
(no prompt; the cookie-signing secret kept in HOME, mode 0600), with VISDOM_USERNAME and
VISDOM_PASSWORD when both are set, else with the login stored in HOME (made on the first start),
which runs on this machine find by themselves and whose link (`?token=`) `start` and `status` print.
`--no-login` starts it without one. Readiness is checked logged in.

This module is the launcher and its command line; the parts it is made of are
dashboards.visdom.process (the handle, pid files, signals), .access (binding and login) and
.readiness (the HTTP checks). Their public names are re-exported here.

This module imports neither torch nor visdom: the launcher answers in a fraction of a second and
only the server process pays for those imports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from dashboards.visdom import assets
from dashboards.visdom.access import (
    BIND_VAR,
    PASSWORD_VAR,
    USERNAME_VAR,
    Credentials,
    cookie_secret_path,
    credentials_from_env,
    local_credentials,
    login_env,
    login_link,
    login_path,
    public_from_env,
    public_warning,
    stored_credentials,
)
from dashboards.visdom.process import (
    STOP_TIMEOUT,
    AlreadyRunning,
    PortInUse,
    Server,
    ServerError,
    StartFailed,
    describe,
    free_port,
    log_path,
    pid_path,
    port_free,
    read_pid,
    record,
    recorded,
    remember,
    status,
    stop,
    write_pid,
)
from dashboards.visdom.process import alive as _alive  # noqa: F401 - tests and benchmarks poll it by this name
from dashboards.visdom.readiness import DIRECT, fetch, login, probe, wait_ready
from runner.fetch import CACHE

__all__ = ["BIND_VAR", "DEFAULT_HOME", "DEFAULT_PORT", "PASSWORD_VAR", "STOP_TIMEOUT", "STORED", "USERNAME_VAR",
           "AlreadyRunning", "Credentials", "PortInUse", "Server", "ServerError", "StartFailed", "cookie_secret_path",
           "credentials_from_env", "describe", "free_port", "local_credentials", "log_path", "login", "login_link",
           "login_path", "main", "pid_path", "probe", "prune", "public_from_env", "public_warning", "running",
           "start", "status", "stop", "stored_credentials"]

DEFAULT_PORT = 8097
DEFAULT_HOME = Path(".visdom")
MODULE = "python -m dashboards.visdom.server"  # how a person runs this launcher


class Stored:
    """start(credentials=STORED): the login kept in the server's home, made there if need be."""

    def __repr__(self) -> str:
        return "STORED"


STORED = Stored()
PROJECT = Path(__file__).resolve().parents[2]  # where the server process imports dashboards.visdom.guard from


def start(port: int, home: Path, timeout: float = 60, cache: Path = CACHE, *, public: bool = False,
          credentials: Credentials | Stored | None = None) -> Server:
    """Start a server on 127.0.0.1:`port` and return once its page and assets answer 200.

    `public` listens on every interface instead; `credentials` turn on Visdom's login (readiness
    then logs in): given ones, or STORED for the login kept in `home` (what the command line uses
    unless told otherwise); None starts it without one. Raises AlreadyRunning (with the running
    server's handle) when this home's server is already up on the port, PortInUse when anything else
    holds it, StartFailed otherwise.
    """
    deadline = time.monotonic() + timeout
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    stored = isinstance(credentials, Stored)
    account = stored_credentials(home) if isinstance(credentials, Stored) else credentials
    existing = status(port, home)
    if existing is not None:
        wait_ready(existing, deadline, timeout, account)
        if stored and recorded(port) is None:  # its record was deleted: runs could not find its login
            record(existing, login_path(home))
        raise AlreadyRunning(existing)
    pid_path(port, home).unlink(missing_ok=True)  # stale: its process is gone
    if not port_free(port):
        raise PortInUse(f"port {port} is already in use by another program (not the Visdom server "
                        f"of {home}); stop it or choose another port with --port.")
    try:
        assets.ensure(cache=cache)
    except assets.AssetError as exc:
        raise StartFailed(f"cannot install Visdom's web assets: {exc}") from None

    server = _launch(port, home, public, account)
    try:
        wait_ready(server, deadline, timeout, account)
    except BaseException:
        server.stop()
        raise
    record(server, login_path(home) if stored else None)  # how runs on this machine find its login
    return server


def _launch(port: int, home: Path, public: bool, credentials: Credentials | None) -> Server:
    """Run Visdom's server behind the guard, detached, logging to its log file; its pid file names it."""
    (home / "envs").mkdir(exist_ok=True)
    command = [sys.executable, "-m", "dashboards.visdom.guard", "-port", str(port),
               "-env_path", str(home / "envs"),
               # INFO would add one access-log line per plotted point; warnings and errors stay.
               "-logging_level", "WARNING"]
    if not public:
        command.append("-bind_local")
    path = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    if credentials is not None:
        command.append("-enable_login")
        env.update(login_env(home, credentials))
    with open(log_path(port, home), "wb") as log:
        process = subprocess.Popen(
            command, cwd=home, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            # Own session: no terminal hang-up or Ctrl-C in the launching shell reaches it.
            start_new_session=True, env=env)
    remember(process)
    write_pid(pid_path(port, home), process.pid)
    return Server(port, home, process.pid)


@contextlib.contextmanager
def running(port: int | None = None, home: Path | None = None, timeout: float = 60, *,
            public: bool = False, credentials: Credentials | Stored | None = None) -> Iterator[Server]:
    """A server for the duration of a block: a free port and a temporary home unless given."""
    options = {"public": public, "credentials": credentials}
    with contextlib.ExitStack() as stack:
        if home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="visdom-")))
        server = (start(port, home, timeout, **options) if port is not None
                  else _start_anywhere(home, timeout, **options))
        stack.callback(server.stop)  # runs before the temporary home is removed
        yield server


def _start_anywhere(home: Path, timeout: float, attempts: int = 3, **options: object) -> Server:
    # A free port can be taken by another process before the server binds it: try another.
    for attempt in range(attempts):
        try:
            return start(free_port(), home, timeout, **options)
        except PortInUse:
            if attempt == attempts - 1:
                raise
        except StartFailed as exc:
            if "Address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def prune(port: int, home: Path, older_than_days: float, dry_run: bool = False,
          credentials: Credentials | None = None, now: float | None = None) -> list[str]:
    """Delete the saved envs of `home` last written more than `older_than_days` ago; their names.

    Visdom's own `main` env is kept. When this home's server runs, each env is deleted through it
    (its `delete_env` call), so it also leaves the server's memory and env list.
    """
    folder = Path(home) / "envs"
    cutoff = (time.time() if now is None else now) - older_than_days * 86400
    old = sorted(path for path in folder.glob("*.json") if path.stem != "main" and path.stat().st_mtime < cutoff)
    if dry_run or not old:
        return [path.stem for path in old]
    server = status(port, home)
    opener = DIRECT
    if server is not None and credentials is not None:
        _, opener = login(port, credentials)
    for path in old:
        if server is not None:
            code, _ = fetch(f"http://127.0.0.1:{port}/delete_env", opener=opener,
                            data=json.dumps({"eid": path.stem}).encode())
            if code == 200:
                continue
        path.unlink(missing_ok=True)  # no server, or it did not know the env: the file is all there is
    return [path.stem for path in old]


# --- command line ----------------------------------------------------------------------------

def port_number(text: str) -> int:
    """argparse type: a TCP port a server can listen on."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=MODULE, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 ok, 1 failed, 2 port taken by another program; "
               "status: 0 running, 3 not running")
    parser.add_argument("command", choices=["start", "stop", "status", "prune"])
    parser.add_argument("--older-than", type=float, metavar="DAYS",
                        help="prune: delete saved envs not written for this many days")
    parser.add_argument("--dry-run", action="store_true", help="prune: list what would be deleted, delete nothing")
    parser.add_argument("--port", type=port_number, default=None,
                        help=f"port (default: $VISDOM_PORT or {DEFAULT_PORT})")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME,
                        help="directory for the pid file, log and envs (default: ./.visdom)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the server to answer (default: 60)")
    parser.add_argument("--public", action="store_true",
                        help=f"start: listen on every network interface, not only 127.0.0.1 (also "
                             f"{BIND_VAR}=all). Anyone who reaches the port is asked for the login; see "
                             "docs/SECURITY.md.")
    parser.add_argument("--no-login", action="store_true",
                        help=f"start: ask for no login (by default it asks for {USERNAME_VAR} and {PASSWORD_VAR} "
                             "when both are set, else for a login stored in HOME/login.json). Then every program "
                             "and user of this machine can read, change and delete every env; other sites' pages "
                             "are still refused.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        port = args.port if args.port is not None else port_number(os.environ.get("VISDOM_PORT") or str(DEFAULT_PORT))
    except argparse.ArgumentTypeError as exc:
        print(f"error: VISDOM_PORT: {exc}", file=sys.stderr)
        return 2
    if args.home.exists() and not args.home.is_dir():
        print(f"error: --home {args.home} is a file; the server's home must be a directory.", file=sys.stderr)
        return 2
    command = {"prune": _prune_command, "status": _status_command, "stop": _stop_command, "start": _start_command}
    return command[args.command](args, port)


def _prune_command(args: argparse.Namespace, port: int) -> int:
    if args.older_than is None or args.older_than < 0:
        print("error: prune needs --older-than DAYS (a number >= 0), e.g. --older-than 30", file=sys.stderr)
        return 2
    try:
        credentials = credentials_from_env() or local_credentials("localhost", port)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    names = prune(port, args.home, args.older_than, args.dry_run, credentials)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(names)} env(s) older than {args.older_than:g} days from {args.home / 'envs'}"
          + "".join(f"\n  {name}" for name in names))
    return 0


def _status_command(args: argparse.Namespace, port: int) -> int:
    server = status(port, args.home)
    if server is None:
        print(f"Visdom is not running on port {port} (home {args.home})")
        return 3
    print(f"Visdom is running at {server.url} (pid {server.pid}, log {server.log_path}; "
          f"{describe(server)})")
    _print_link(server)
    return 0


def _print_link(server: Server) -> None:
    """How a person opens the dashboard of a server with the stored login."""
    link = login_link(server)
    if link is not None:
        print(f"open the dashboard, logged in, at: {link}\n(the login is kept in {login_path(server.home)}, "
              "mode 0600; runs on this machine use it by themselves)")


def _stop_command(args: argparse.Namespace, port: int) -> int:
    pid = read_pid(pid_path(port, args.home))
    if stop(port, args.home):
        print(f"Stopped the Visdom server on port {port} (pid {pid})")
    else:
        print(f"No Visdom server was running on port {port} (home {args.home})")
    return 0


def _start_command(args: argparse.Namespace, port: int) -> int:
    try:
        public = args.public or public_from_env()
        credentials = credentials_from_env()
        if credentials is not None and args.no_login:
            raise ServerError(f"--no-login and {USERNAME_VAR}/{PASSWORD_VAR} contradict each other: unset the "
                              "variables, or drop --no-login.")
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    asked = None if args.no_login else credentials or STORED
    try:
        server = start(port, args.home, args.timeout, public=public, credentials=asked)
    except AlreadyRunning as exc:
        print(f"Visdom is already running at {exc.server.url} (pid {exc.server.pid}; {describe(exc.server)}); "
              f"envs are kept in {exc.server.home / 'envs'}")
        _print_link(exc.server)
        return 0
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    home = f" --home {args.home}" if args.home != DEFAULT_HOME else ""
    if public:
        print(public_warning(port, asked is not None), file=sys.stderr)
    elif args.no_login:
        print("warning: --no-login: every program and user of this machine can read, change and delete every "
              "env; other sites' pages are still refused.", file=sys.stderr)
    print(f"Visdom is running at {server.url} (pid {server.pid}, log {server.log_path}; {describe(server)}); "
          f"stop it with: {MODULE} stop --port {port}{home}")
    print(f"envs are kept in {server.home / 'envs'} (each run's env is saved there and loaded again, lazily, after "
          f"a restart); remove old ones with: {MODULE} prune --older-than DAYS{home}")
    _print_link(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
