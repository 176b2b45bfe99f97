"""Who may reach a Visdom server the launcher starts (docs/SECURITY.md): where it listens and its login.

Visdom has no access control of its own by default; whoever reaches the port reads and rewrites
every env. So the server listens on 127.0.0.1 only unless asked otherwise (`--public` or
VISDOM_BIND=all, which prints `public_warning`), answers only this machine's pages
(dashboards.visdom.guard), and asks for a login, as Jupyter asks for its token:
- VISDOM_USERNAME and VISDOM_PASSWORD, when both are set;
- otherwise the login stored in the server's home (`stored_credentials`: HOME/login.json, a random
  password made on the first start, mode 0600 from the start), which a run on this machine finds
  through the server's runtime record (`local_credentials`) and a person opens with the link
  `login_link` makes (`?token=`);
- none with the launcher's --no-login.
The server takes its login from its environment (`login_env`: no prompt, the cookie-signing secret
kept in the home with mode 0600). The password never shows in a repr, a log or a command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, urlsplit

from dashboards.visdom.process import Server, ServerError, recorded
from runner.files import atomic

USERNAME_VAR, PASSWORD_VAR, BIND_VAR = "VISDOM_USERNAME", "VISDOM_PASSWORD", "VISDOM_BIND"
STORED_USERNAME = "visdom"
LOOPBACK = ("localhost", "127.0.0.1", "::1")


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


def login_path(home: Path) -> Path:
    """Where the login the launcher made for `home`'s server is kept (username and password, JSON)."""
    return Path(home) / "login.json"


def read_login(path: Path) -> Credentials:
    """The login stored in `path`; ServerError (saying what to do) when it is not one."""
    try:
        data = json.loads(path.read_text())
        return Credentials(str(data["username"]), str(data["password"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerError(f"{path} is not a login file ({exc}); delete it and start the server again to make "
                          "a new one.") from None


def stored_credentials(home: Path) -> Credentials:
    """The login kept in `home`, made on the first call: a random password, in a file that is mode
    0600 from its first byte (a restart keeps it, so runs and browsers stay logged in)."""
    path = login_path(home)
    if path.exists():
        return read_login(path)
    made = Credentials(STORED_USERNAME, secrets.token_urlsafe(24))
    with atomic(path, permissions=0o600) as f:  # its temporary file is created 0600
        json.dump({"username": made.username, "password": made.password}, f)
    return made


def local_credentials(server: str, port: int) -> Credentials | None:
    """The stored login of the server this user started on `port` of this machine, found through its
    runtime record; None for a server elsewhere, one with no stored login, or none at all."""
    if urlsplit(server if "://" in server else f"//{server}").hostname not in LOOPBACK:
        return None
    found = recorded(port)
    if found is None or found[1] is None:
        return None
    try:
        return read_login(found[1])
    except (OSError, ServerError):
        return None


def login_link(server: Server) -> str | None:
    """The address a person opens to log in at once (`?token=`, as Jupyter prints one), when the
    server runs with the login stored in its home; None otherwise."""
    found = recorded(server.port)
    if found is None or found[0].pid != server.pid or found[1] is None:
        return None
    try:
        return f"{server.url}/?token={quote(read_login(found[1]).password, safe='')}"
    except (OSError, ServerError):
        return None


def cookie_secret_path(home: Path) -> Path:
    """Where a login-enabled server of `home` keeps the secret that signs its cookies.

    Visdom reads it from ~/.visdom/COOKIE_SECRET; the server runs with HOME=home, so each home has
    its own and a restart of the same home keeps the browser's login valid.
    """
    return Path(home) / ".visdom" / "COOKIE_SECRET"


def login_env(home: Path, credentials: Credentials) -> dict[str, str]:
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


def public_warning(port: int, login: bool) -> str:
    """What `start --public` prints: who can now reach the server, and the safer way."""
    lines = [f"warning: the Visdom server listens on every network interface: anyone who can reach port {port} "
             "of this machine can open the dashboard, by any name or address of it."]
    if not login:
        lines.append("warning: there is no login (--no-login): they can read, change and delete every env. "
                     "Start it without --no-login to require one.")
    else:
        lines.append("warning: the login travels over plain HTTP: on a network you do not trust, the "
                     "password's hash and the session cookie can be read on the way and reused.")
    lines.append(f"warning: to watch a remote run, prefer the default (127.0.0.1 only) and an SSH tunnel "
                 f"from your machine: ssh -L {port}:localhost:{port} HOST, then open http://localhost:{port}")
    return "\n".join(lines)
