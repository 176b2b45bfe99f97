"""Connection: the HTTP side of a Visdom sender, shared by VisdomLogger and ComparisonBoard.

It owns where the server is (arguments first, then VISDOM_SERVER / VISDOM_PORT, then
http://localhost:8097), the login Visdom's client would send (arguments first, then VISDOM_USERNAME /
VISDOM_PASSWORD), one requests.Session that keeps the login cookie, and the timeouts: once a closing
sender sets `deadline`, no request outlives it. What to send, and what a failure means, stays with
the sender; only the sender thread uses a Connection, so its counter needs no lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import requests

DEFAULT_SERVER = "http://localhost"
DEFAULT_PORT = 8097
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0


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
        # What Visdom's client sends (the server hashes it again); the password itself is not kept.
        self.login_body = (json.dumps({"username": self.username,
                                       "password": hashlib.sha256(password.encode()).hexdigest()})
                           if self.username and password else None)
        self.deadline: float | None = None  # set by the closing sender: no request may outlive it
        self.requests = 0  # sent, answered or not
        self.bytes = 0  # of the bodies sent
        self._session = requests.Session()

    def request(self, endpoint: str, body: str) -> requests.Response:
        """POST `body` to `endpoint`; raises what requests raises when no answer comes."""
        read = READ_TIMEOUT
        if self.deadline is not None:  # closing: a hung server must not hold close past its bound
            read = max(0.05, min(read, self.deadline - time.monotonic()))
        data = body.encode()
        self.requests += 1
        self.bytes += len(data)
        return self._session.post(f"{self.base}/{endpoint}", data=data, timeout=(min(CONNECT_TIMEOUT, read), read))

    def post(self, msg: dict[str, Any], endpoint: str) -> str:
        """Send one message as JSON; raises Refused unless the server answers 200."""
        r = self.request(endpoint, json.dumps(msg))
        if r.status_code != 200:
            raise Refused(f"{endpoint} answered {r.status_code}", r.status_code)
        return r.text

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
