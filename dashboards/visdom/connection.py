"""Connection: the HTTP side of a Visdom sender, shared by VisdomLogger and ComparisonBoard.

It owns where the server is (arguments first, then VISDOM_SERVER / VISDOM_PORT, then
http://localhost:8097), the login Visdom's client would send (arguments first, then VISDOM_USERNAME /
VISDOM_PASSWORD, then the login stored for the server this user started on that port of this machine,
found through its runtime record: dashboards.visdom.access.local_credentials), one requests.Session
that keeps the login cookie, and the timeouts: once a closing sender sets `deadline`, no request
outlives it. What to send, and what a failure means, stays with the sender; only the sender thread
uses a Connection, so its counter needs no lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import requests

from dashboards.visdom import bounded
from dashboards.visdom.access import Credentials, local_credentials

DEFAULT_SERVER = "http://localhost"
DEFAULT_PORT = 8097
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0  # for a request's whole answer, not each read (dashboards.visdom.bounded)


class Refused(RuntimeError):
    """The server answered with an error status (e.g. 500 for a window or env it does not have)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class LoginRefused(Refused):
    """The server turned our username and password down."""


class Connection:
    """Where the Visdom server is, how to log in to it, and the session that talks to it."""

    def __init__(self, server: str | None = None, port: int | None = None, *,
                 username: str | None = None, password: str | None = None) -> None:
        server = server or os.environ.get("VISDOM_SERVER") or DEFAULT_SERVER
        if "://" not in server:
            server = "http://" + server
        self.server = server
        self.port = port or int(os.environ.get("VISDOM_PORT") or DEFAULT_PORT)
        self.base = f"{server.rstrip('/')}:{self.port}"
        self.username = username or os.environ.get("VISDOM_USERNAME") or None
        password = password or os.environ.get("VISDOM_PASSWORD") or None
        # One of the two without the other: no login is sent; the sender may say so.
        self.half_login = bool(self.username) != bool(password)
        # Neither given: the login stored for this user's server on that port, looked up at each login.
        self._stored_login = not (self.username or password)
        self._given_login = _login_body(self.username, password)
        if self._stored_login:
            self._stored()  # its user, for the sender's messages
        self.deadline: float | None = None  # set by the closing sender: no request may outlive it
        self.requests = 0  # sent, answered or not
        self.bytes = 0  # of the bodies sent
        self._session = bounded.session()

    def request(self, endpoint: str, body: str) -> requests.Response:
        """POST `body` to `endpoint`; raises what requests raises when no whole answer comes in time."""
        read = READ_TIMEOUT
        if self.deadline is not None:  # closing: a hung server must not hold close past its bound
            read = max(0.05, min(read, self.deadline - time.monotonic()))
        data = body.encode()
        self.requests += 1
        self.bytes += len(data)
        return bounded.post(self._session, f"{self.base}/{endpoint}", data, CONNECT_TIMEOUT, read)

    def post(self, msg: dict[str, Any], endpoint: str) -> str:
        """Send one message as JSON; raises Refused unless the server answers 200."""
        r = self.request(endpoint, json.dumps(msg))
        if r.status_code != 200:
            raise Refused(f"{endpoint} answered {r.status_code}", r.status_code)
        return r.text

    @property
    def login_body(self) -> str | None:
        """What Visdom's client sends to log in (the password hashed: the password itself is not
        kept), or None for no login. A stored login is looked up each time: the server may start, or
        restart, after the run has begun."""
        if not self._stored_login:
            return self._given_login
        found = self._stored()
        return _login_body(found.username, found.password) if found else None

    def _stored(self) -> Credentials | None:
        """The login stored for the server this user started on our port, if any."""
        found = local_credentials(self.server, self.port)
        self.username = found.username if found else None
        return found

    def login(self) -> bool:
        """Log in as Visdom's client does; the session keeps the cookie for every later request.

        Returns whether the server accepted the login; raises LoginRefused if it turned it down.
        """
        assert self.login_body is not None
        r = self.request("", self.login_body)
        if r.status_code == 400:
            raise LoginRefused(f"the server refused the login of {self.username!r}", 400)
        # 200: logged in. Anything else: a server without a login (it answers 500, having no
        # credentials to compare with); the requests that follow show whether it wants one.
        return r.status_code == 200

    def close(self) -> None:
        self._session.close()


def _login_body(username: str | None, password: str | None) -> str | None:
    """What Visdom's client sends to log in (the server hashes the password once more)."""
    if not (username and password):
        return None
    return json.dumps({"username": username, "password": hashlib.sha256(password.encode()).hexdigest()})
