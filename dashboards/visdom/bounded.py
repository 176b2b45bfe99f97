"""HTTP requests bounded in total: `post` ends when its time is up, whatever the server does.

The read timeout of requests (urllib3's) bounds each wait for the next bytes, not the answer: a
server that sends one byte a second holds a request for ever. Here a timer shuts the request's
socket down when its time is up, which ends the read or write in progress at once, and the request
fails with requests.Timeout. The sockets are known through the connection classes of the session's
pools: each notes, for the request under way on this thread, the socket it opens or reuses.
Only direct connections are watched (not those through a proxy).
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class _Watch:
    """One request's deadline: once it has passed, every socket the request uses is shut down.

    `note` (the request's thread) and `expire` (the timer's) need no lock: whichever runs second
    sees what the other did, so a socket noted just after the deadline is shut down as well.
    """

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.expired = False

    def note(self, sock: socket.socket | None) -> None:
        if sock is not None:
            self.sockets.append(sock)
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        self.expired = True
        for sock in list(self.sockets):
            _shut(sock)


_UNDER_WAY: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar("request_under_way", default=None)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing is waiting on it
        sock.shutdown(socket.SHUT_RDWR)


class _Noted:
    """Mixed into urllib3's connections: tells the request under way which socket it uses."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        watch = _UNDER_WAY.get()
        if watch is not None:
            watch.note(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        watch = _UNDER_WAY.get()
        if watch is not None:
            watch.note(self.sock)  # a kept-alive connection's socket (None for a new one: noted above)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _Connection(_Noted, HTTPConnection):
    pass


class _TLSConnection(_Noted, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


def session() -> requests.Session:
    """A requests.Session whose requests through `post` can be cut off at their deadline."""
    s = requests.Session()
    for prefix in ("http://", "https://"):
        s.mount(prefix, _Adapter())
    return s


def post(s: requests.Session, url: str, data: bytes, connect: float, total: float) -> requests.Response:
    """POST `data` and read the whole answer within `total` seconds (connecting within `connect`);
    raises requests.Timeout when the time is up, and what requests raises otherwise."""
    watch = _Watch()
    token = _UNDER_WAY.set(watch)
    timer = threading.Timer(total, watch.expire)
    timer.daemon = True
    timer.start()
    try:
        return s.post(url, data=data, timeout=(min(connect, total), total))
    except requests.RequestException:
        if watch.expired:
            raise requests.Timeout(f"no whole answer from {url} within {total:.1f} s") from None
        raise
    finally:
        timer.cancel()
        _UNDER_WAY.reset(token)
