"""What a person sees while a run goes (issue 13): the run pane's status, the smoothed loss, the
logging cost in summary.json, and a console where messages never land inside the progress bar."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dashboard_helpers import wait_until, windows
from dashboards.visdom import server as servers
from helpers import ROOT, run_cli, tiny_spec
from runner.smoothing import ema

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

LOGGING = {"train_thread_seconds", "sender_cpu_seconds", "requests", "bytes", "overhead"}


def test_a_finished_run_says_so_with_both_loss_traces_and_its_logging_cost(
        tmp_path: Path, tiny_mnist: Path, visdom_server: servers.Server) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist, visdom={"smoothing": 0.8})), "--out", str(out),
                     env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["visdom_url"] == f"{visdom_server.url}/env/{summary['visdom_env']}"  # the exact address
    cost = summary["logging"]
    assert set(cost) == LOGGING and cost["requests"] > 0 and cost["bytes"] > 0
    ratio = cost["train_thread_seconds"] / summary["train_seconds"]  # both rounded: a run of milliseconds
    assert 0 < cost["overhead"] == pytest.approx(ratio, rel=0.02, abs=2e-4)
    assert cost["sender_cpu_seconds"] > 0
    assert "logging cost" in result.stdout

    held = windows(visdom_server.port, summary["visdom_env"])
    raw, smoothed = held["train_loss"]["content"]["data"]
    assert (raw["name"], smoothed["name"]) == ("train loss", "smoothed (0.8)")
    assert len(raw["y"]) == len(smoothed["y"]) == summary["steps"] and raw["x"] == smoothed["x"]
    assert smoothed["y"] == pytest.approx(ema(raw["y"], 0.8))
    pane = held["run"]["content"]
    assert ">finished<" in pane and "epoch 2 of 2" in pane and "logging cost" in pane and str(out) in pane


def test_smoothing_zero_draws_the_raw_trace_only(tmp_path: Path, tiny_mnist: Path,
                                                 visdom_server: servers.Server) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist, visdom={"smoothing": 0})), "--out", str(out),
                     env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 0, result.stderr
    held = windows(visdom_server.port, json.loads((out / "summary.json").read_text())["visdom_env"])
    assert len(held["train_loss"]["content"]["data"]) == 1


def test_the_null_logger_costs_no_requests(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    assert run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--out", str(out)).returncode == 0
    cost = json.loads((out / "summary.json").read_text())["logging"]
    assert set(cost) == LOGGING and cost["requests"] == cost["bytes"] == 0 and cost["sender_cpu_seconds"] == 0


def test_a_stopped_run_says_stopped_and_how_to_continue(tmp_path: Path, tiny_mnist: Path,
                                                        visdom_server: servers.Server) -> None:
    out = tmp_path / "run"
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 200, "log_every": 1})
    process = subprocess.Popen([sys.executable, "-m", "runner", str(spec), "--out", str(out)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "VISDOM_PORT": str(visdom_server.port)})
    journal = out / "metrics.jsonl"
    wait_until(lambda: journal.exists() and journal.read_text().count('"evaluation"') >= 1, timeout=120)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert not (out / "summary.json").exists()  # it can be resumed
    pane = windows(visdom_server.port, "tiny_run")["run"]["content"]
    assert ">stopped: stopped by SIGINT after step" in pane, pane
    assert f"python -m runner --resume {out}" in pane
    # and as a person sees it
    from test_browser import ARTIFACTS, render, require_browser

    require_browser()
    drawn, problems = render(f"{visdom_server.url}/env/tiny_run", ARTIFACTS / "dashboard-stopped.png")
    text = dict(drawn)["run"]["text"]
    assert not problems and "status\tstopped: stopped by SIGINT" in text, (problems, text)
    assert f"python -m runner --resume {out}" in text


def test_a_failed_run_is_marked_on_disk_and_on_its_dashboard(tmp_path: Path, tiny_mnist: Path,
                                                             visdom_server: servers.Server) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--set", "optim.lr=1e6", "--out", str(out),
                     env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 3, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["error"].startswith("the training loss became")
    assert ">diverged: the training loss became" in windows(visdom_server.port, "tiny_run")["run"]["content"]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
def test_the_console_of_a_visdom_run_keeps_messages_off_the_progress_bar(
        tmp_path: Path, tiny_mnist: Path, visdom_server: servers.Server) -> None:
    """A real terminal (tmux), a real run streaming to a real server: the screen as a person sees it."""
    out, done = tmp_path / "run", tmp_path / "done"
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 8, "log_every": 1},
                     data={"train_limit": None, "batch_size": 10})
    session = f"console-{os.getpid()}"
    command = (f"cd {ROOT} && VISDOM_PORT={visdom_server.port} {sys.executable} -m runner {spec} --out {out}; "
               f"echo exit=$? > {done}; sleep 60")  # the pane stays up to be read
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", command], check=True)
    screens = []  # the screen (and scrollback) while the bar is live, and at the end
    try:
        end = time.monotonic() + 180
        while not done.exists() and time.monotonic() < end:
            screens.append(subprocess.run(["tmux", "capture-pane", "-p", "-t", session, "-S", "-1000"],
                                          capture_output=True, text=True).stdout)
            if "samples/s" in screens[-1] and "live dashboard at" in screens[-1] \
                    and servers.status(visdom_server.port, visdom_server.home):
                visdom_server.stop()  # the sender now has news to print while the bar is live
            time.sleep(0.1)
        screens.append(subprocess.run(["tmux", "capture-pane", "-p", "-t", session, "-S", "-1000"],
                                      capture_output=True, text=True).stdout)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    screen = next((s for s in reversed(screens) if s.strip()), "")
    assert done.exists() and done.read_text().strip() == "exit=0", screen
    assert any(line.startswith("visdom: lost the server at") for line in screen.splitlines()), screen
    assert any("samples/s" in s for s in screens), "the progress bar was never seen"
    assert any(line.startswith("visdom: live dashboard at") for line in screen.splitlines()), "\n---\n".join(screens[-3:])
    lines = [line for s in screens for line in s.splitlines() if line.strip()]
    for line in lines:
        # a message and the bar ("epoch 1/3 ━━━ 12/60 loss ...") never share a line
        assert not (re.search(r"epoch \d+/\d+ .*samples/s", line) and "visdom:" in line), screen
        assert "loss nan" not in line and "nan samples" not in line, line
