"""The one door from the runner to the dashboards: which loggers `--logger` makes, the comparison
board, the VISDOM_* checks, and which env a run writes.

The CLI imports this module lazily, and it imports visdom only when a Visdom logger is made, so
`--logger console|null`, `validate` and `schema` never pay for it.

A run's env is named after its run directory (dashboards.names) unless the spec names one
(`visdom.env`). Before the run takes it, the env's run pane is read: if another live run holds it
(its lease says `running` and was renewed in the last LEASE_SECONDS), this run takes the next free
name, `<env>-2`, `<env>-3`, ..., and says which. The lease lives in the env itself, not in a file
next to the server, because the server is the one thing two runs on two machines share; a run killed
with `kill -9` stops renewing it, so its env is free again a minute later without anyone cleaning up.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dashboards.names import run_env, safe_env  # noqa: F401 - run_env: the CLI names sweeps with it

if TYPE_CHECKING:
    from runner.loggers import Logger
    from runner.spec import Experiment

CLAIM_SECONDS = 2.0  # the longest a run waits to learn whether its env is free


class VisdomSettingError(ValueError):
    """VISDOM_PORT or VISDOM_SERVER cannot be used; the message says what is valid."""


def check_environment(kind: str) -> None:
    """Refuse a bad VISDOM_PORT / VISDOM_SERVER up front, before anything is trained or written."""
    if kind != "visdom":
        return
    port, server = os.environ.get("VISDOM_PORT"), os.environ.get("VISDOM_SERVER")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise VisdomSettingError(f"VISDOM_PORT is {port!r}; it must be a port number from 1 to 65535 (default 8097).")
    if server and not re.fullmatch(r"https?://[A-Za-z0-9.\-]+|https?://\[[0-9A-Fa-f:.]+\]", server):
        raise VisdomSettingError(f"VISDOM_SERVER is {server!r}; it must be a URL such as http://localhost or "
                                "http://10.0.0.5, without port or path (the port comes from VISDOM_PORT).")


def env_for(experiment: Experiment, run_dir: Path | None, group: str | None = None,
            sweep_dir: Path | None = None) -> str:
    """The env a run writes: the spec's `visdom.env`, else one named after its run directory."""
    if experiment.visdom.env:
        return safe_env(experiment.visdom.env)
    if run_dir is None:
        return safe_env(experiment.name)
    names = [sweep_dir.name, run_dir.name] if sweep_dir is not None else [run_dir.name]
    return run_env(group or experiment.name, *names)


def make_loggers(kind: str, experiment: Experiment, run_dir: Path | None = None, *, group: str | None = None,
                 sweep_dir: Path | None = None, env: str | None = None, progress: Any = None) -> list[Logger]:
    """The loggers `--logger` asks for; the dashboard is imported only when chosen.

    `group` and `sweep_dir` name a sweep's variant (see env_for); `env` overrides the name (replay
    passes the one the run recorded); `progress` is the console display variants training at the
    same time share (runner.console.shared_progress).
    """
    from runner.loggers import NullLogger

    if kind == "null":
        return [NullLogger()]
    from runner.console import ConsoleLogger

    console = ConsoleLogger(shared=progress)
    if kind == "console":
        return [console]
    v = experiment.visdom
    try:
        from dashboards.visdom_logger import VisdomLogger
    except ImportError as exc:
        print(f"warning: the Visdom dashboard is not available ({exc}); showing the console only.", file=sys.stderr)
        return [console]
    wanted = env or env_for(experiment, run_dir, group, sweep_dir)
    chosen = claim(wanted, v.server, v.port, str(run_dir) if run_dir else "", console.note)
    return [console, VisdomLogger(env=chosen, server=v.server, port=v.port, smoothing=v.smoothing, out=console.note)]


def make_board(kind: str, env: str, server: str | None, port: int | None) -> Any:
    """The live comparison env for `--logger visdom`, or None."""
    if kind != "visdom":
        return None
    try:
        from dashboards.compare import ComparisonBoard
    except ImportError as exc:
        print(f"warning: the Visdom comparison is not available ({exc}); showing the console only.", file=sys.stderr)
        return None
    return ComparisonBoard(env, server=server, port=port)


def claim(env: str, server: str | None, port: int | None, run_dir: str, say: Any = print) -> str:
    """`env`, or the first of `env-2`, `env-3`, ... that no other live run holds (see the module doc).

    A server that does not answer within CLAIM_SECONDS is not asked further: the run keeps `env`.
    """
    from dashboards.connection import Connection
    from dashboards.visdom_logger import lease

    conn = Connection(server, port)
    conn.deadline = time.monotonic() + CLAIM_SECONDS
    try:
        if conn.login_body is not None:
            conn.login()
        name = safe_env(env)
        for n in range(2, 100):
            held = lease(conn, name)
            if held is None or held.get("run_dir") == run_dir:
                break
            say(f"visdom: env {name!r} is being written by another live run (pid {held.get('pid')} on "
                f"{held.get('host')}, run directory {held.get('run_dir')}); this run uses "
                f"{safe_env(f'{env[:90]}-{n}')!r} instead.")
            name = safe_env(f"{env[:90]}-{n}")
        return name
    except Exception:  # noqa: BLE001 - no answer: the sender reports the server's absence itself
        return safe_env(env)
    finally:
        conn.close()
