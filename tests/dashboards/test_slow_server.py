"""A dashboard address that answers one byte a second: every request to it ends within its bound in
total (the read timeout alone would restart at each byte), and a run pointed at it trains, finishes
and says what was not delivered. The server is a real socket server on 127.0.0.1, written here."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from dashboards.visdom import runs
from dashboards.visdom.connection import Connection
from helpers import Trickle, run_cli, tiny_spec

@pytest.fixture
def trickle() -> Iterator[Trickle]:
    server = Trickle()
    yield server
    server.close()


def _in_thread(call: object, *args: object) -> dict:
    """Run `call(*args)` on a thread; what it returned or raised, and whether it ended (60 s at most)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call(*args)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    outcome["ended"] = not thread.is_alive()
    return outcome


def test_a_request_ends_at_its_deadline_however_the_answer_trickles(trickle: Trickle) -> None:
    conn = Connection("http://127.0.0.1", trickle.port)
    conn.deadline = time.monotonic() + 3  # as a closing sender sets it
    outcome = _in_thread(conn.post, {"eid": "main"}, "events")
    conn.close()
    assert outcome["ended"], "the request was still waiting on the trickling server after 60 s"
    assert isinstance(outcome.get("error"), requests.Timeout), outcome
    assert trickle.connections == 1 and trickle.bytes_sent >= 1  # it was answering, byte by byte


def test_claiming_an_env_before_the_first_step_ends_within_its_bound(trickle: Trickle) -> None:
    """The one exchange a run waits for before training: asking whether its env is free."""
    outcome = _in_thread(runs.claim, "tiny_run", "http://127.0.0.1", trickle.port, "/runs/tiny")
    assert outcome["ended"], "claim was still waiting on the trickling server after 60 s"
    assert outcome.get("value") == "tiny_run"  # no answer in time: the run keeps its env
    assert trickle.connections >= 1 and trickle.bytes_sent >= 1


def test_a_run_pointed_at_a_trickling_dashboard_trains_and_finishes(tmp_path: Path, tiny_mnist: Path,
                                                                    trickle: Trickle) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "visdom", "--out", str(out),
                     env={"VISDOM_SERVER": "http://127.0.0.1", "VISDOM_PORT": str(trickle.port),
                          "VISDOM_USERNAME": "", "VISDOM_PASSWORD": "", "HOME": str(tmp_path)},
                     timeout=180)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 24
    assert "replay" in result.stderr + result.stdout  # what was not delivered, and how to send it later
    assert trickle.connections >= 2 and os.path.exists(out / "metrics.jsonl")
