"""Who may reach a Visdom server the launcher starts (docs/SECURITY.md): where it listens and its login.

Visdom has no access control of its own by default; whoever reaches the port reads and rewrites
every env. So the server listens on 127.0.0.1 only unless asked otherwise (`--public` or
VISDOM_BIND=all, which prints `public_warning`). When VISDOM_USERNAME and VISDOM_PASSWORD are both
set, the server runs with Visdom's login (`login_env`: no prompt, the cookie-signing secret kept in
the server's home with mode 0600). The password never shows in a repr, a log or a command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from dashboards.visdom.process import ServerError

USERNAME_VAR, PASSWORD_VAR, BIND_VAR = "VISDOM_USERNAME", "VISDOM_PASSWORD", "VISDOM_BIND"


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
