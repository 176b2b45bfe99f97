"""Dashboards that outlive the server and never mix two runs (issue 11).

Two runs of one spec at once each fill their own env; the server is killed with SIGKILL after they
finish and started again as `make visdom` starts it; every env comes back with every point, and
headless Chromium lists the runs grouped under the experiment. A second live run asking for an env
that another live run holds takes a fresh name and says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import wait_until, windows
from dashboards.visdom import server as servers
from helpers import ROOT, run_cli, tiny_spec

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def cli(*args: str, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "VISDOM_PORT": str(port)})


def points(held: dict[str, Any]) -> dict[str, list[tuple[list, list]]]:
    """Every plot window's traces as (x, y) lists."""
    return {win: [(t["x"], t["y"]) for t in w["content"]["data"]] for win, w in held.items() if w["type"] == "plot"}


def test_two_runs_at_once_keep_their_envs_and_a_killed_server_brings_them_back(
        tmp_path: Path, tiny_mnist: Path) -> None:
    home, port = tmp_path / "visdom", servers.free_port()
    spec = str(tiny_spec(tmp_path, tiny_mnist, train={"epochs": 3, "log_every": 1}))
    server = servers.start(port, home)
    restarted = None
    try:
        # Two runs of one spec, at the same time, with different learning rates.
        a = cli(spec, "--out", str(tmp_path / "tiny-a"), "--set", "optim.lr=0.1", port=port)
        b = cli(spec, "--out", str(tmp_path / "tiny-b"), "--set", "optim.lr=0.05", "--set", "train.epochs=2",
                port=port)
        for process in (a, b):
            _, stderr = process.communicate(timeout=300)
            assert process.returncode == 0, stderr
        envs, held = {}, {}
        for name, epochs in (("a", 3), ("b", 2)):
            summary = json.loads((tmp_path / f"tiny-{name}" / "summary.json").read_text())
            env = envs[name] = summary["visdom_env"]
            assert env == f"tiny_{name}"  # grouped under the experiment, named after the run directory
            held[name] = windows(port, env)
            journal = [json.loads(line) for line in (tmp_path / f"tiny-{name}" / "metrics.jsonl").open()]
            steps = [r["step"] for r in journal if r["event"] == "train_loss"]
            losses = [r["loss"] for r in journal if r["event"] == "train_loss"]
            (xs, ys), (smooth_xs, smoothed) = points(held[name])["train_loss"]
            assert xs == smooth_xs == steps == list(range(1, 12 * epochs + 1))  # exactly its own points
            assert ys == pytest.approx(losses)
            assert [x for x, _ in points(held[name])["test"]] == [list(range(1, epochs + 1))] * 2
            assert "finished" in held[name]["run"]["content"]
        assert (home / "envs" / "tiny_a.json").is_file() and (home / "envs" / "tiny_b.json").is_file()

        # The server dies hard; started again the way `make visdom` starts it.
        os.kill(server.pid, signal.SIGKILL)
        wait_until(lambda: not servers._alive(server.pid), timeout=10)
        started = subprocess.run([sys.executable, "-m", "dashboards.visdom.server", "start", "--port", str(port),
                                  "--home", str(home)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr
        assert f"envs are kept in {home / 'envs'}" in started.stdout
        restarted = servers.status(port, home)
        for name, env in envs.items():
            assert points(windows(port, env)) == points(held[name])  # every point is back
            assert set(windows(port, env)) == set(held[name])

        env_list = envs_in_browser(f"http://localhost:{port}", tmp_path)
        assert {"tiny", "tiny_a", "tiny_b"} <= set(env_list["titles"]), env_list
        assert env_list["children"].get("tiny") == ["tiny_a", "tiny_b"], env_list
    finally:
        for handle in (restarted, server):
            if handle is not None:
                handle.stop()


# The env selector: a tree whose top level is the text before the first '_' of each env name.
ENV_TREE_JS = """() => {
  const titles = Array.from(document.querySelectorAll('.rc-tree-select-tree-title'), t => t.textContent.trim());
  const children = {};
  for (const node of document.querySelectorAll('.rc-tree-select-tree-child-tree')) {
    const parent = node.closest('li');
    const title = parent && parent.querySelector('.rc-tree-select-tree-title');
    if (title) children[title.textContent.trim()] = Array.from(
        node.querySelectorAll('.rc-tree-select-tree-title'), t => t.textContent.trim());
  }
  return {titles, children};
}"""


def envs_in_browser(url: str, tmp_path: Path) -> dict[str, Any]:
    """Open Visdom's env list in headless Chromium, expand every group, and read it."""

    from chromium import open_env_list, page as chromium_page
    from test_browser import ARTIFACTS, require_browser

    require_browser()
    with chromium_page() as page:
        started = time.monotonic()
        open_env_list(page, url, timeout_ms=30_000)
        for _ in range(10):  # open every collapsed group
            closed = page.query_selector_all(".rc-tree-select-tree-switcher_close")
            if not closed:
                break
            for switch in closed:
                switch.click()
            time.sleep(0.2)
        found = page.evaluate(ENV_TREE_JS)
        found["seconds"] = time.monotonic() - started
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "env-list.png"))
    return found


def test_a_live_run_keeps_its_env_and_the_second_run_takes_a_fresh_name(tmp_path: Path, tiny_mnist: Path,
                                                                       visdom_server: servers.Server) -> None:
    port = visdom_server.port
    # Long enough to still be training when the second run starts on a fast machine; stopped below.
    spec = str(tiny_spec(tmp_path, tiny_mnist, train={"epochs": 5000, "log_every": 1}, visdom={"env": "shared"}))
    first = cli(spec, "--out", str(tmp_path / "first"), port=port)
    try:
        # Once the first run's pane (and lease) is on the server, start the second.
        wait_until(lambda: "run" in safe_windows(port, "shared"), timeout=60)
        second = run_cli(spec, "--out", str(tmp_path / "second"), "--set", "train.epochs=1",
                         env={"VISDOM_PORT": str(port)})
        assert second.returncode == 0, second.stderr
        assert "env 'shared' is being written by another live run" in second.stderr
        assert "this run uses 'shared-2'" in second.stderr
        summary = json.loads((tmp_path / "second" / "summary.json").read_text())
        assert summary["visdom_env"] == "shared-2"
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert f"{tmp_path / 'first'}" in windows(port, "shared")["run"]["content"]


def safe_windows(port: int, env: str) -> dict[str, Any]:
    try:
        return windows(port, env)
    except Exception:  # noqa: BLE001 - the env does not exist yet
        return {}


def test_prune_deletes_old_envs_only(tmp_path: Path, visdom_server: servers.Server) -> None:
    from visdom import Visdom

    viz = Visdom(port=visdom_server.port, use_incoming_socket=False, raise_exceptions=True)
    for env in ("relu_old", "relu_new"):
        viz.text("x", win="t", env=env)
        viz.save([env])
    envs = visdom_server.home / "envs"
    old = time.time() - 40 * 86400
    os.utime(envs / "relu_old.json", (old, old))
    listed = servers.prune(visdom_server.port, visdom_server.home, 30, dry_run=True)
    assert listed == ["relu_old"] and (envs / "relu_old.json").exists()
    result = subprocess.run([sys.executable, "-m", "dashboards.visdom.server", "prune", "--older-than", "30", "--port",
                             str(visdom_server.port), "--home", str(visdom_server.home)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "deleted 1 env(s)" in result.stdout and "relu_old" in result.stdout
    assert not (envs / "relu_old.json").exists() and (envs / "relu_new.json").exists()
    assert "relu_old" not in json.loads(viz.get_env_list() if isinstance(viz.get_env_list(), str)
                                        else json.dumps(viz.get_env_list()))  # gone from the server too
    # with no server running, the files alone
    os.utime(envs / "relu_new.json", (old, old))
    visdom_server.stop()
    assert servers.prune(visdom_server.port, visdom_server.home, 30) == ["relu_new"]
    assert not (envs / "relu_new.json").exists()
