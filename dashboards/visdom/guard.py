"""The guard in front of Visdom: the dashboard answers only this machine's pages (docs/SECURITY.md).

    python -m dashboards.visdom.guard VISDOM_SERVER_ARGUMENTS...

runs Visdom's own server (visdom.server's `main`, with the same arguments) with its tornado
Application replaced by one that looks at every request before any of Visdom's handlers does (pages,
static files, the HTTP API and the websockets alike):
- Host: with -bind_local the Host header must be a loopback name (localhost, 127.0.0.1 or [::1], any
  port, so an SSH tunnel to another local port still works). A page whose own DNS name was rebound to
  127.0.0.1 sends that name: refused, so no site can read the envs through DNS rebinding.
- Origin: a browser names the origin of the page behind every cross-origin request, the "simple"
  POSTs sent without a preflight and the websockets included. When a request carries one, it must be
  the server's own (the scheme and the very Host the request was sent to): any other site's page,
  even one on another port of 127.0.0.1, is refused. Clients that are not browsers send none.
- ?token=T on a GET, with Visdom's login on: T is the password (compared in constant time); the guard
  sets Visdom's own login cookie and redirects to the same page without the token, as Jupyter's token
  link does. A page asked for without the cookie goes to Visdom's login page instead of a blank 400.
A refused request gets 403 and a one-line reason, and none of Visdom's handlers runs. Without
-bind_local (the launcher's --public) the Host check is off, since remote users name the machine as
they reach it; the Origin check and the login stay.

Only the server process imports this module (it imports tornado and visdom).
"""

from __future__ import annotations

import hashlib
import hmac
import sys
from typing import Any
from urllib.parse import urlsplit

import tornado.web
import tornado.websocket
from visdom.server import app as visdom_app
from visdom.server import run_server
from visdom.server.handlers import socket_handlers

LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
COOKIE = "user_password"  # the cookie Visdom's own login sets and its handlers check
PAGES = ("/env/", "/compare/")  # what a person opens; without a login Visdom answers them a blank 400


def host_name(host: str) -> str | None:
    """The name in a Host header ('[::1]:8097' -> '::1'), lower case; None when it is not one."""
    try:
        parts = urlsplit(f"//{host}")
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return None
    return parts.hostname


def same_origin(origin: str, host: str) -> bool:
    """Whether `origin` (an Origin header) is the origin of a page served from `host` (the Host header)."""
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


def refusal(headers: Any, local_only: bool) -> str | None:
    """Why a request with these headers is refused, or None when it may go on."""
    host = headers.get("Host", "")
    if local_only and host_name(host) not in LOOPBACK:
        return f"Host {host!r} is not this machine: the dashboard answers localhost, 127.0.0.1 and [::1] only"
    origin = headers.get("Origin")
    if origin is not None and not same_origin(origin, host):
        return f"Origin {origin!r} is another site: the dashboard answers its own pages only"
    return None


def password_matches(token: str, credential: dict[str, str]) -> bool:
    """Whether `token` is the login's password; Visdom keeps sha256(sha256(password)) as hex."""
    digest = hashlib.sha256(hashlib.sha256(token.encode()).hexdigest().encode()).hexdigest()
    return hmac.compare_digest(digest.encode(), credential["password"].encode())


class Refused(tornado.web.RequestHandler):
    """403 with the reason, for a request the guard turns away before any Visdom handler sees it."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")  # it echoes a header: never read as HTML
        self.finish(f"refused: {self.reason}\n")


class TokenLogin(tornado.web.RequestHandler):
    """Sets Visdom's login cookie for a right token, then shows the same page without it."""

    def initialize(self, credential: dict[str, str]) -> None:
        self.credential = credential

    def get(self, *args: Any) -> None:
        # The value Visdom's own login sets; SameSite keeps other sites' requests from carrying it.
        self.set_signed_cookie(COOKIE, self.credential["username"] + self.credential["password"],
                               httponly=True, samesite="Strict")
        self.redirect("/" + self.request.path.lstrip("/\\"))  # never '//host' nor '/\\host': no redirect off it


class GuardedApplication(visdom_app.Application):
    """Visdom's Application behind the guard (see the module docstring)."""

    local_only = True  # main() sets it from -bind_local

    def find_handler(self, request: Any, **kwargs: Any) -> Any:
        reason = refusal(request.headers, self.local_only)
        if reason is not None:
            return self.get_handler_delegate(request, Refused, {"reason": reason})
        if self.login_enabled and request.method == "GET":
            token = request.query_arguments.get("token")
            if token is not None:
                if not password_matches(token[-1].decode(errors="replace"), self.user_credential):
                    return self.get_handler_delegate(request, Refused, {"reason": "this link's token is wrong"})
                return self.get_handler_delegate(request, TokenLogin, {"credential": self.user_credential})
            if request.path.startswith(PAGES) and not self._logged_in(request):
                # Not permanent: a browser would remember a 301 and skip the page once logged in.
                return self.get_handler_delegate(request, tornado.web.RedirectHandler,
                                                 {"url": "/", "permanent": False})
        return super().find_handler(request, **kwargs)

    def _logged_in(self, request: Any) -> bool:
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and tornado.web.decode_signed_value(
            self.settings["cookie_secret"], COOKIE, cookie.value) is not None


def same_origin_socket(handler: tornado.websocket.WebSocketHandler, origin: str) -> bool:
    """Visdom's websockets accept every origin; tornado's own rule accepts the page's own only."""
    return same_origin(origin, handler.request.headers.get("Host", ""))


def install(local_only: bool) -> None:
    """Put the guard into Visdom's server: its Application and its websockets' origin check."""
    GuardedApplication.local_only = local_only
    run_server.Application = GuardedApplication  # what visdom's start_server builds
    for handler in (socket_handlers.SocketHandler, socket_handlers.VisSocketHandler):
        handler.check_origin = same_origin_socket  # type: ignore[method-assign]


def main() -> None:
    """Visdom's own command line, behind the guard; -bind_local keeps the Host check on."""
    install(local_only="-bind_local" in sys.argv[1:])
    run_server.download_scripts_and_run()


if __name__ == "__main__":
    main()
