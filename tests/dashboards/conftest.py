"""Fixtures for tests that need the real Visdom server, started through `dashboards.visdom.server`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from dashboards.visdom.server import STORED, Server, running


@pytest.fixture
def visdom_server(tmp_path: Path) -> Iterator[Server]:
    """A real, offline Visdom server on a free port with its home in tmp_path; always stopped. It asks
    for no login (as the launcher's --no-login); the guard against other sites' pages is on.

    The handle has .url, .port, .pid, .log_path and .stop(); stopping it early (to simulate an
    outage) is fine, and a server restarted with `dashboards.visdom.server.start(port, home)` is the
    test's to stop.
    """
    with running(home=tmp_path / "visdom") as server:
        yield server


@pytest.fixture
def login_server(tmp_path: Path) -> Iterator[Server]:
    """Like `visdom_server`, with the login `make visdom` starts it with: made and stored in its home
    (`dashboards.visdom.server.login_link` gives the browser's link), found by runs on this machine."""
    with running(home=tmp_path / "visdom", credentials=STORED) as server:
        yield server
