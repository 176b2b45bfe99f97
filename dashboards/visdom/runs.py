"""The Visdom backend as the logger registry sees it (`--logger visdom`): the VISDOM_* checks, the
logger of one run with the env it writes, and the comparison board of a sweep.

Env names are decided here and nowhere else. A run's env is named after its run directory
(dashboards.visdom.names) unless the spec names one (`visdom.env`; a sweep's variant then gets
`<env>-<what sets it apart>`). Before the run takes it, the env's run pane is read: if another live
run holds it (its lease says `running` and was renewed in the last LEASE_SECONDS), this run takes
the next free name, `<env>-2`, `<env>-3`, ..., and says which. The lease lives in the env itself, not
in a file next to the server, because the server is the one thing two runs on two machines share; a
run killed with `kill -9` stops renewing it, so its env is free again a minute later.

visdom itself is imported only when a logger or board is made, so `check` costs nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dashboards.visdom.names import run_env, safe_env
from runner.errors import UserError

if TYPE_CHECKING:
    from runner.loggers import Logger
    from runner.loggers.registry import Place
    from runner.spec import Experiment

CLAIM_SECONDS = 2.0  # the longest a run waits to learn whether its env is free


def check() -> None:
    """Refuse a bad VISDOM_PORT / VISDOM_SERVER up front, before anything is trained or written."""
    port, server = os.environ.get("VISDOM_PORT"), os.environ.get("VISDOM_SERVER")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise UserError(f"VISDOM_PORT is {port!r}; it must be a port number from 1 to 65535 (default 8097).")
    if server and not re.fullmatch(r"https?://[A-Za-z0-9.\-]+|https?://\[[0-9A-Fa-f:.]+\]", server):
        raise UserError(f"VISDOM_SERVER is {server!r}; it must be a URL such as http://localhost or "
                        "http://10.0.0.5, without port or path (the port comes from VISDOM_PORT).")


def env_for(experiment: Experiment, place: Place) -> str:
    """The env a run writes: the one it wrote before, if its directory already holds it (a resume, a
    retried trial, a replay); else the spec's `visdom.env` (a variant's with what sets it apart), else
    one named after its run directory."""
    recorded = _recorded_env(place.run_dir) if place.run_dir is not None else None
    if recorded:
        return recorded
    own = experiment.visdom.env
    if own:
        suffix = experiment.name.removeprefix(f"{place.base}-") if place.base else experiment.name
        if not place.group or suffix == experiment.name or own.endswith(f"-{suffix}"):
            return safe_env(own)  # (a variant of a sweep recorded before variants' envs were named here)
        return safe_env(f"{own}-{suffix}")
    if place.run_dir is None:
        return safe_env(experiment.name)
    names = [place.sweep_dir.name, place.run_dir.name] if place.sweep_dir is not None else [place.run_dir.name]
    return run_env(place.group or experiment.name, *names)


def _recorded_env(run_dir: Path) -> str | None:
    """The env a run wrote, as its summary recorded it, or its journal's start event (a run that
    stopped or was killed has no summary yet); None for a new run."""
    from runner.runs import JOURNAL, SUMMARY

    env = None
    try:
        env = json.loads((run_dir / SUMMARY).read_text()).get("visdom_env")
    except (OSError, ValueError, AttributeError):
        try:
            with open(run_dir / JOURNAL, encoding="utf-8") as f:
                env = json.loads(f.readline(1 << 20)).get("info", {}).get("visdom_env")
        except (OSError, ValueError, AttributeError):
            return None
    return env if isinstance(env, str) and env else None


def make(experiment: Experiment, place: Place) -> Logger:
    """The run's Visdom logger, on the env it claims."""
    from dashboards.visdom.logger import VisdomLogger

    v = experiment.visdom
    wanted = env_for(experiment, place)
    chosen = claim(wanted, v.server, v.port, str(place.run_dir or ""), place.say)
    return VisdomLogger(env=chosen, server=v.server, port=v.port, smoothing=v.smoothing, out=place.say)


def make_board(plan: Any, out: Path | None) -> Any:
    """The live comparison env of a sweep (`out`) or of `compare` (no directory): the env it
    recorded, the spec's own, else one named after the sweep directory."""
    try:
        from dashboards.visdom.compare import ComparisonBoard
    except ImportError as exc:
        print(f"warning: the Visdom comparison is not available ({exc}); showing the console only.", file=sys.stderr)
        return None
    spec = plan.dashboard
    env = plan.where.get("env") or spec.env or (run_env(plan.name, out.name) if out is not None else plan.name)
    return ComparisonBoard(env, server=spec.server, port=spec.port)


def claim(env: str, server: str | None, port: int | None, run_dir: str, say: Callable[[str], None] = print) -> str:
    """`env`, or the first of `env-2`, `env-3`, ... that no other live run holds (see the module doc).

    A server that does not answer within CLAIM_SECONDS is not asked further: the run keeps `env`.
    """
    from dashboards.visdom.connection import Connection
    from dashboards.visdom.panes import lease

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
