"""Helpers for tests that read back what the real Visdom server holds."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from dashboards.visdom.access import local_credentials
from dashboards.visdom.logger import VisdomLogger


def windows(port: int, env: str, username: str | None = None, password: str | None = None) -> dict[str, Any]:
    """Every window of `env` on the server at `port`, as Visdom's own client reads them: logged in as
    given, else with the stored login of the server this user started there, as a run logs in."""
    from visdom import Visdom

    stored = local_credentials("localhost", port) if username is None else None
    if stored is not None:
        username, password = stored.username, stored.password
    login = {"username": username, "password": password} if username else {}
    viz = Visdom(server="http://localhost", port=port, use_incoming_socket=False, raise_exceptions=True, **login)
    return json.loads(viz.get_window_data(env=env))


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def delivered(logger: VisdomLogger) -> bool:
    s = logger.stats()
    return s.events > 0 and s.delivered == s.events
