"""The Ray executor (`--executor ray`): a sweep's or search's variants as Ray Tune trials.

The driver (the `python -m runner` process) keeps everything a person looks at, and trials only
compute: `cluster` joins or starts Ray; `tuning` ships the data and runs Tune; each trial
(`trials`) trains wherever Tune places it and sends its events, checkpoints and ending through the
relay (`relay`) to the driver (`driver`), which writes each run directory with a session.Recorder
and feeds the dashboards, exactly as a local run does.

Ray is imported only by `--executor ray`; importing this package stays cheap.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from runner.errors import UserError
from runner.executors import LoggersFor

INSTALL = "`make install-extras` (or .venv/bin/pip install 'ray[tune]==2.60.0' 'optuna==5.0.0')"


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", metavar="HOST:PORT", help="with --executor ray: join the Ray cluster whose "
                        "head is there (default: $RAY_ADDRESS, else Ray starts on this machine for the sweep alone)")
    parser.add_argument("--max-concurrent", type=int, metavar="N", help="with --executor ray: at most N variants "
                        "train at once (default: as many as the cluster's CPUs and GPUs hold, given train.cpus and "
                        "train.gpus)")


def unused(args: argparse.Namespace) -> None:
    """Refuse Ray's flags when another executor is chosen."""
    if args.ray_address:
        raise UserError("--ray-address joins a Ray cluster, which only --executor ray uses; add --executor ray.")
    if args.max_concurrent is not None:
        raise UserError("--max-concurrent caps the variants training at once, which only --executor ray runs; "
                        "the local executor runs one at a time. Add --executor ray.")


def make(args: argparse.Namespace) -> "Ray":
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise UserError(f"--max-concurrent {args.max_concurrent}: give at least 1 (or leave it out: as many as "
                        "the cluster holds).")
    return Ray(args.ray_address or os.environ.get("RAY_ADDRESS") or None, args.max_concurrent)


class Ray:
    single_runs = False  # a spec without a sweep runs as a comparison of one, in a sweep directory

    def __init__(self, address: str | None, max_concurrent: int | None) -> None:
        self.address, self.max_concurrent = address, max_concurrent

    def check(self, plan: Any) -> None:
        """Ray Tune installed (Optuna too, for TPE), and the cluster's address answering."""
        from runner.executors.ray import cluster

        if not cluster.available():
            raise UserError("--executor ray needs Ray Tune, which is not installed in this environment; "
                            f"{INSTALL} installs it. Without it, --executor local (the default) runs the same "
                            "variants one after another.")
        search = plan.search[0].search if plan is not None and plan.search is not None else None
        if search is not None and search.searcher == "tpe" and importlib.util.find_spec("optuna") is None:
            raise UserError(f"a search with searcher tpe needs Optuna, which is not installed; {INSTALL} "
                            "installs it.")
        if self.address:
            cluster.check_address(self.address)

    def run(self, plan: Any, out: Path, loggers_for: LoggersFor, board: Any, should_stop: Callable[[], str | None],
            resumed: Any = None, last_words: list[Callable[[], None]] | None = None) -> tuple[list[Any], Any]:
        """Tune's trials for the plan; Ray starts (or is joined) while the data loads. Ray failing to
        start is a UserError, and a new sweep directory it leaves empty is removed."""
        from runner.executors.ray import cluster, tuning

        try:
            with cluster.connected(self.address, last_words) as ready:
                return tuning.run(plan, out, loggers_for, board, should_stop, resumed=resumed,
                                  max_concurrent=self.max_concurrent, ready=ready)
        except cluster.RayError:
            if resumed is None and not any(p.is_dir() for p in out.iterdir()):
                shutil.rmtree(out)  # nothing ran: bad input leaves nothing behind
            raise
