"""The Visdom server launcher: one local, offline Visdom server per (port, home), started detached.

    python -m dashboards.server start|stop|status [--port N] [--home DIR] [--public]
    python -m dashboards.server prune --older-than DAYS [--dry-run] [--port N] [--home DIR]

`start` installs Visdom's web assets from pinned npm tarballs if needed (`dashboards.assets`),
so the server never reaches for a CDN, then runs `python -m visdom.server` in its own session and
returns once the page and every script and stylesheet it references answer 200. Its files live in
HOME: `visdom-N.pid`, `visdom-N.log` and `envs/` (the server's -env_path, where the runners save
every env, one `<env>.json` each). Visdom 0.2.4 loads saved envs lazily (it reads a file when its
env is first opened; `-eager_data_loading` would read them all at start), so a restart is quick and
the server's memory grows with the envs people look at, not with all that were ever saved.
`prune --older-than DAYS` deletes the saved envs not written for that many days (through the
server when it runs, so they leave its list too). `stop` signals exactly the pid in the pid file. Tests and other code use `start`, `stop`, `status`, `free_port` and the
`running` context manager.

Security (docs/SECURITY.md): Visdom has no access control of its own by default; whoever reaches
the port reads and rewrites every env. So the server listens on 127.0.0.1 only unless asked
otherwise (`--public` or VISDOM_BIND=all, which prints a warning). When VISDOM_USERNAME and
VISDOM_PASSWORD are both set, `start` turns on Visdom's login with them (no prompt), keeps the
cookie-signing secret in HOME (mode 0600), and logs in to check readiness.

This module imports neither torch nor visdom: the launcher answers in a fraction of a second and
only the server process pays for those imports.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.cookiejar
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urljoin

from dashboards import assets
from runner.fetch import CACHE

DEFAULT_PORT = 8097
DEFAULT_HOME = Path(".visdom")
STOP_TIMEOUT = 10.0
USERNAME_VAR, PASSWORD_VAR, BIND_VAR = "VISDOM_USERNAME", "VISDOM_PASSWORD", "VISDOM_BIND"


class ServerError(Exception):
    """The server could not be started or inspected; the message says why."""


class PortInUse(ServerError):
    """Something other than this home's server holds the port."""


class StartFailed(ServerError):
    """The server exited, timed out or served a broken page during start."""


class AlreadyRunning(ServerError):
    """This home's server already runs on the port; `.server` is its handle."""

    def __init__(self, server: Server) -> None:
        super().__init__(f"the Visdom server is already running at {server.url} (pid {server.pid})")
        self.server = server


@dataclass(frozen=True)
class Credentials:
    """The one Visdom login; the password never shows in a repr, a log or a command line."""

    username: str
    password: str = field(repr=False)

    def login_body(self) -> bytes:
        # What Visdom's own client posts: the server hashes this once more and compares.
        return json.dumps({"username": self.username,
                           "password": hashlib.sha256(self.password.encode()).hexdigest()}).encode()


def credentials_from_env(environ: Mapping[str, str] | None = None) -> Credentials | None:
    """VISDOM_USERNAME and VISDOM_PASSWORD: both set turns the login on, neither leaves it off."""
    environ = os.environ if environ is None else environ
    username, password = environ.get(USERNAME_VAR, ""), environ.get(PASSWORD_VAR, "")
    if username and password:
        return Credentials(username, password)
    if username or password:
        missing = PASSWORD_VAR if username else USERNAME_VAR
        raise ServerError(f"{missing} is not set: set both {USERNAME_VAR} and {PASSWORD_VAR} to turn on "
                          "the dashboard's login, or neither to run it without one.")
    return None


def public_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """VISDOM_BIND=all listens on every interface; unset or `local` keeps the server on 127.0.0.1."""
    value = (os.environ if environ is None else environ).get(BIND_VAR, "").strip().lower()
    if value in ("", "local", "localhost", "127.0.0.1"):
        return False
    if value in ("all", "0.0.0.0"):
        return True
    raise ServerError(f"{BIND_VAR}={value!r} is not understood: use `local` (the default) or `all`.")


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
        stopped = _terminate(self.pid, self.port, timeout)
        # The pid file may already name a newer server on the same port: leave that one alone.
        if _read_pid(self.pid_path) == self.pid:
            self.pid_path.unlink(missing_ok=True)
        return stopped

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_path(port: int, home: Path) -> Path:
    return Path(home) / f"visdom-{port}.pid"


def log_path(port: int, home: Path) -> Path:
    return Path(home) / f"visdom-{port}.log"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cookie_secret_path(home: Path) -> Path:
    """Where a login-enabled server of `home` keeps the secret that signs its cookies.

    Visdom reads it from ~/.visdom/COOKIE_SECRET; the server runs with HOME=home, so each home has
    its own and a restart of the same home keeps the browser's login valid.
    """
    return Path(home) / ".visdom" / "COOKIE_SECRET"


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
    pid = _read_pid(pid_path(port, home))
    if pid is None or not _is_ours(pid, port):
        return None
    return Server(port, Path(home).resolve(), pid)


def start(port: int, home: Path, timeout: float = 60, cache: Path = CACHE, *, public: bool = False,
          credentials: Credentials | None = None) -> Server:
    """Start a server on 127.0.0.1:`port` and return once its page and assets answer 200.

    `public` listens on every interface instead; `credentials` turn on Visdom's login (readiness
    then logs in). Raises AlreadyRunning (with the running server's handle) when this home's server
    is already up on the port, PortInUse when anything else holds it, StartFailed otherwise.
    """
    deadline = time.monotonic() + timeout
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    existing = status(port, home)
    if existing is not None:
        _wait_ready(existing, deadline, timeout, credentials)
        raise AlreadyRunning(existing)
    pid_path(port, home).unlink(missing_ok=True)  # stale: its process is gone
    if not _port_free(port):
        raise PortInUse(f"port {port} is already in use by another program (not the Visdom server "
                        f"of {home}); stop it or choose another port with --port.")
    try:
        assets.ensure(cache=cache)
    except assets.AssetError as exc:
        raise StartFailed(f"cannot install Visdom's web assets: {exc}") from None

    (home / "envs").mkdir(exist_ok=True)
    command = [sys.executable, "-m", "visdom.server", "-port", str(port),
               "-env_path", str(home / "envs"),
               # INFO would add one access-log line per plotted point; warnings and errors stay.
               "-logging_level", "WARNING"]
    if not public:
        command.append("-bind_local")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if credentials is not None:
        command.append("-enable_login")
        env.update(_login_env(home, credentials))
    with open(log_path(port, home), "wb") as log:
        process = subprocess.Popen(
            command, cwd=home, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            # Own session: no terminal hang-up or Ctrl-C in the launching shell reaches it.
            start_new_session=True, env=env)
    _children[process.pid] = process
    _write_pid(pid_path(port, home), process.pid)
    server = Server(port, home, process.pid)
    try:
        _wait_ready(server, deadline, timeout, credentials)
    except BaseException:
        server.stop()
        raise
    return server


def _login_env(home: Path, credentials: Credentials) -> dict[str, str]:
    """The environment that makes `visdom.server -enable_login` take its login without a prompt."""
    secret = cookie_secret_path(home)
    secret.parent.mkdir(mode=0o700, exist_ok=True)
    if not secret.is_file():
        # Created 0600 from the start: whoever reads it can forge a logged-in cookie.
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return {"VISDOM_USE_ENV_CREDENTIALS": "1", USERNAME_VAR: credentials.username,
            PASSWORD_VAR: credentials.password,
            # Visdom keeps the secret under ~/.visdom: point ~ at this home, but leave the user's
            # Visdom style settings (~/.config/visdom) where they are.
            "HOME": str(home), "XDG_CONFIG_HOME": config}


def stop(port: int, home: Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the server named by this home's pid file for `port`; False if none was running."""
    path = pid_path(port, home)
    pid = _read_pid(path)
    if pid is None:
        return False
    stopped = _terminate(pid, port, timeout)
    path.unlink(missing_ok=True)
    return stopped


@contextlib.contextmanager
def running(port: int | None = None, home: Path | None = None, timeout: float = 60, *,
            public: bool = False, credentials: Credentials | None = None) -> Iterator[Server]:
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
            return start(free_port(), home, timeout, **options)  # type: ignore[arg-type]
        except PortInUse:
            if attempt == attempts - 1:
                raise
        except StartFailed as exc:
            if "Address already in use" not in str(exc) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# --- processes -------------------------------------------------------------------------------

# Servers started by this process. Until its parent reaps it, a dead child is a zombie that still
# answers kill(pid, 0); polling the Popen reaps it, so stop() sees it gone at once.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _alive(pid: int) -> bool:
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


def _is_ours(pid: int, port: int) -> bool:
    """Alive and a visdom server for this port: a recycled pid is never signalled."""
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): the pid file is all there is to go on
    return b"visdom.server" in argv and str(port).encode() in argv


def _terminate(pid: int, port: int, timeout: float) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; False if the pid was not a live server of ours."""
    if not _is_ours(pid, port):
        _children.pop(pid, None)
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        end = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if not _alive(pid):
            break
    _children.pop(pid, None)
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    os.replace(tmp, path)


def _port_free(port: int) -> bool:
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


def _log_tail(server: Server, lines: int = 20) -> str:
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


# --- readiness -------------------------------------------------------------------------------

# Straight to 127.0.0.1, never through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _cookie_opener() -> urllib.request.OpenerDirector:
    """Like `_opener`, and keeps the login cookie of a login-enabled server."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


class _PageRefs(HTMLParser):
    """Collects what a page makes the browser load: script src and link href."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        value = dict(attrs).get(wanted) if wanted else None
        if value:
            self.refs.append(value)


def _get(url: str, timeout: float = 5.0, opener: urllib.request.OpenerDirector = _opener,
         data: bytes | None = None) -> tuple[int | str, bytes]:
    """HTTP status and body (of a POST when `data` is given), or the error's text when there was no
    HTTP answer."""
    try:
        with opener.open(url, data=data, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc)), b""


def probe(port: int, opener: urllib.request.OpenerDirector = _opener) -> dict[str, int | str]:
    """Status of the index page and of every script and stylesheet it references, by URL.

    Without a login cookie in `opener`, a login-enabled server's index page is its login page.
    """
    index = f"http://127.0.0.1:{port}/"
    code, body = _get(index, opener=opener)
    result: dict[str, int | str] = {index: code}
    if code == 200:
        parser = _PageRefs()
        parser.feed(body.decode("utf-8", "replace"))
        for ref in parser.refs:
            url = urljoin(index, ref)
            result[url] = _get(url, opener=opener)[0]
    return result


def login(port: int, credentials: Credentials,
          opener: urllib.request.OpenerDirector | None = None) -> tuple[int | str, urllib.request.OpenerDirector]:
    """Log in as a browser does: 200 and an opener holding the cookie; 400 for wrong credentials.

    A server without a login answers 500 (it has no credentials to compare with).
    """
    opener = opener or _cookie_opener()
    code, _ = _get(f"http://127.0.0.1:{port}/", opener=opener, data=credentials.login_body())
    return code, opener


def _wait_ready(server: Server, deadline: float, timeout: float,
                credentials: Credentials | None = None) -> None:
    index = f"http://127.0.0.1:{server.port}/"
    while True:
        if not _alive(server.pid):
            raise StartFailed(f"the Visdom server exited during start; the end of "
                              f"{server.log_path}:\n{_log_tail(server)}")
        if _get(index, timeout=2.0)[0] == 200:
            break
        if time.monotonic() > deadline:
            raise StartFailed(f"the Visdom server did not answer on {index} within {timeout:g} s; "
                              f"the end of {server.log_path}:\n{_log_tail(server)}")
        time.sleep(0.1)
    opener = _opener
    if credentials is not None:
        code, with_cookie = login(server.port, credentials)
        if code == 200:
            opener = with_cookie  # so the probe below checks the dashboard page, not the login page
        elif code == 400:
            raise StartFailed(f"the Visdom server at {index} refuses the login of {credentials.username!r}; "
                              f"it was started with other credentials: stop it and start it again.")
        # otherwise a server started without a login (500): the probe below is all there is to do
    # Static files either exist or never will: one pass, no waiting.
    broken = {url: code for url, code in probe(server.port, opener).items() if code != 200}
    if broken:
        listing = "\n".join(f"  {code}  {url}" for url, code in broken.items())
        raise StartFailed(f"the Visdom page at {index} references files that do not load:\n{listing}")


# --- command line ----------------------------------------------------------------------------

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
    opener = _opener
    if server is not None and credentials is not None:
        _, opener = login(port, credentials)
    for path in old:
        if server is not None:
            code, _ = _get(f"http://127.0.0.1:{port}/delete_env", opener=opener,
                           data=json.dumps({"eid": path.stem}).encode())
            if code == 200:
                continue
        path.unlink(missing_ok=True)  # no server, or it did not know the env: the file is all there is
    return [path.stem for path in old]


def public_warning(port: int, credentials: Credentials | None) -> str:
    """What `start --public` prints: who can now reach the server, and the safer way."""
    lines = [f"warning: the Visdom server listens on every network interface: anyone who can reach port {port} "
             "of this machine can open the dashboard."]
    if credentials is None:
        lines.append(f"warning: there is no login: they can read, change and delete every env. Set "
                     f"{USERNAME_VAR} and {PASSWORD_VAR} before starting it to require one.")
    else:
        lines.append("warning: the login travels over plain HTTP: on a network you do not trust, the "
                     "password's hash and the session cookie can be read on the way and reused.")
    lines.append(f"warning: to watch a remote run, prefer the default (127.0.0.1 only) and an SSH tunnel "
                 f"from your machine: ssh -L {port}:localhost:{port} HOST, then open http://localhost:{port}")
    return "\n".join(lines)


def port_number(text: str) -> int:
    """argparse type: a TCP port a server can listen on."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dashboards.server", description=__doc__,
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
                             f"{BIND_VAR}=all). Anyone who reaches the port can use the dashboard; see "
                             f"docs/SECURITY.md. Set {USERNAME_VAR} and {PASSWORD_VAR} to require a login.")
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else port_number(os.environ.get("VISDOM_PORT") or str(DEFAULT_PORT))
    except argparse.ArgumentTypeError as exc:
        print(f"error: VISDOM_PORT: {exc}", file=sys.stderr)
        return 2
    if args.home.exists() and not args.home.is_dir():
        print(f"error: --home {args.home} is a file; the server's home must be a directory.", file=sys.stderr)
        return 2

    if args.command == "prune":
        if args.older_than is None or args.older_than < 0:
            print("error: prune needs --older-than DAYS (a number >= 0), e.g. --older-than 30", file=sys.stderr)
            return 2
        try:
            credentials = credentials_from_env()
        except ServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        names = prune(port, args.home, args.older_than, args.dry_run, credentials)
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {len(names)} env(s) older than {args.older_than:g} days from {args.home / 'envs'}"
              + "".join(f"\n  {name}" for name in names))
        return 0

    if args.command == "status":
        server = status(port, args.home)
        if server is None:
            print(f"Visdom is not running on port {port} (home {args.home})")
            return 3
        print(f"Visdom is running at {server.url} (pid {server.pid}, log {server.log_path}; "
              f"{describe(server)})")
        return 0

    if args.command == "stop":
        pid = _read_pid(pid_path(port, args.home))
        if stop(port, args.home):
            print(f"Stopped the Visdom server on port {port} (pid {pid})")
        else:
            print(f"No Visdom server was running on port {port} (home {args.home})")
        return 0

    try:
        public = args.public or public_from_env()
        credentials = credentials_from_env()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        server = start(port, args.home, args.timeout, public=public, credentials=credentials)
    except AlreadyRunning as exc:
        print(f"Visdom is already running at {exc.server.url} (pid {exc.server.pid}; {describe(exc.server)}); "
              f"envs are kept in {exc.server.home / 'envs'}")
        return 0
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    home = f" --home {args.home}" if args.home != DEFAULT_HOME else ""
    if public:
        print(public_warning(port, credentials), file=sys.stderr)
    print(f"Visdom is running at {server.url} (pid {server.pid}, log {server.log_path}; {describe(server)}); "
          f"stop it with: python -m dashboards.server stop --port {port}{home}")
    print(f"envs are kept in {server.home / 'envs'} (each run's env is saved there and loaded again, lazily, after "
          f"a restart); remove old ones with: python -m dashboards.server prune --older-than DAYS{home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
