"""Benchmark: a long run on the live dashboard, against the same run with the null logger.

relu.json at batch 1 for --steps train steps (1,000,000 by default: 20 epochs of the first 50,000
training images; 60,000 steps or fewer are one epoch), trained through the command line with
`--logger null` and with `--logger visdom` against a fresh Visdom server (temporary home, free port,
no login), --rounds times each, alternating which goes first. It prints a table:
- events delivered, N of N (the logger's line at close), and the requests and bytes sent;
- points per trace that the server holds, per window (what a browser is sent);
- the server's RSS (fresh, largest while the run trains, at the end) and its CPU seconds meanwhile,
  against what it uses idle in as long (watched for IDLE seconds before the run);
- headless Chromium: seconds from opening the env until its lines are drawn;
- train seconds with each logger (median of the rounds), and the logging cost the live run reports
  (summary.json's `logging.overhead`) against the one the runs measure (live / null - 1).
With --write it also puts the table in docs/BENCHMARKS.md between the LONG-RUN markers of that step
count (a section per step count).

Usage: python benchmarks/long_run.py [--steps 1000000] [--rounds 1] [--write]   (--steps 20000: a quick check)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # headless Chromium, as the browser tests drive it
sys.path.insert(0, str(ROOT / "benchmarks"))

import sections  # noqa: E402
from chromium import page as chromium_page  # noqa: E402
from dashboards.visdom import server as servers  # noqa: E402

TRAIN_SIZE = 60_000
TICK = os.sysconf("SC_CLK_TCK")
IDLE = 10.0  # seconds the fresh server is watched doing nothing, for its idle CPU


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


class Watch:
    """The server's largest RSS, sampled every second on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.pid, self.largest, self._stop = pid, rss_mb(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.largest = max(self.largest, rss_mb(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def train(logger: str, out: Path, epochs: int, limit: int, env: dict[str, str]) -> tuple[dict[str, Any], str, float]:
    """One run of relu.json at batch 1 through the CLI: its summary, its stderr, its wall seconds."""
    command = [sys.executable, "-m", "runner", str(ROOT / "experiments" / "relu.json"), "--logger", logger,
               "--out", str(out), "--set", "data.batch_size=1", "--set", f"data.train_limit={limit}",
               "--set", f"train.epochs={epochs}", "--set", "train.device=cpu"]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{logger} run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads((out / "summary.json").read_text()), result.stderr, wall


def points_per_trace(port: int, env: str) -> dict[str, list[int]]:
    from visdom import Visdom

    viz = Visdom(server="http://localhost", port=port, use_incoming_socket=False, raise_exceptions=True)
    held = json.loads(viz.get_window_data(env=env))
    return {win: [len(t["x"]) for t in w["content"]["data"]] for win, w in held.items() if w["type"] == "plot"}


def draw_seconds(url: str, lines: int) -> float:
    """Seconds from opening the env until Plotly has drawn `lines` lines in it."""
    with chromium_page() as page:
        started = time.monotonic()
        page.goto(url)
        page.wait_for_function(f"() => document.querySelectorAll('.scatterlayer .trace path.js-line').length >= {lines}",
                               timeout=120_000)
        return time.monotonic() - started


def live_run(tmp: Path, epochs: int, limit: int, env: dict[str, str]) -> dict[str, Any]:
    """The run with the live dashboard, and what its server and a browser saw of it."""
    port = servers.free_port()
    server = servers.start(port, tmp / "visdom")
    try:
        idle = cpu_seconds(server.pid)
        time.sleep(IDLE)
        idle = cpu_seconds(server.pid) - idle
        fresh, cpu0, watch = rss_mb(server.pid), cpu_seconds(server.pid), Watch(server.pid)
        summary, said, wall = train("visdom", tmp / "live", epochs, limit, {**env, "VISDOM_PORT": str(port)})
        watch.stop()
        cpu, end_rss = cpu_seconds(server.pid) - cpu0, rss_mb(server.pid)
        name = summary["visdom_env"]
        held = points_per_trace(port, name)
        lines = sum(n >= 2 for v in held.values() for n in v)  # a trace of one point draws no line
        drawn = draw_seconds(f"http://localhost:{port}/env/{name}", lines)
    finally:
        server.stop()
    return {"summary": summary, "said": said, "wall": wall, "idle": idle * wall / IDLE, "fresh": fresh,
            "largest": watch.largest, "cpu": cpu, "end_rss": end_rss, "held": held, "drawn": drawn}


def measure(steps: int, rounds: int) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    epochs = max(1, math.ceil(steps / TRAIN_SIZE))
    limit = math.ceil(steps / epochs)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    facts: dict[str, Any] = {"epochs": epochs, "limit": limit, "steps": epochs * limit, "load": [os.getloadavg()[0]]}
    nulls, lives = [], []
    for n in range(rounds):
        for kind in ("null", "live") if n % 2 == 0 else ("live", "null"):
            with tempfile.TemporaryDirectory(prefix="long-run-") as tmp:
                if kind == "null":
                    summary, _, wall = train("null", Path(tmp) / "null", epochs, limit, env)
                    nulls.append({"summary": summary, "wall": wall})
                else:
                    lives.append(live_run(Path(tmp), epochs, limit, env))
            facts["load"].append(os.getloadavg()[0])
    return rows(nulls, lives), facts


def rows(nulls: list[dict[str, Any]], lives: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    def each(runs: list[dict[str, Any]], value: Any, form: str) -> str:
        values = [value(r) for r in runs]
        return format(statistics.median(values), form) + (f" ({', '.join(format(v, form) for v in values)})"
                                                          if len(values) > 1 else "")

    def train_s(r: dict[str, Any]) -> float:
        return r["summary"]["train_seconds"]

    def overhead(r: dict[str, Any]) -> float:
        return r["summary"]["logging"]["overhead"]

    last = lives[-1]
    delivered = [re.search(r"visdom: (\d+) of (\d+) events delivered", r["said"]) for r in lives]
    logging = last["summary"]["logging"]
    measured = statistics.median(map(train_s, lives)) / statistics.median(map(train_s, nulls)) - 1
    return [
        ("train seconds (summary.json)", each(nulls, train_s, ".1f"), each(lives, train_s, ".1f")),
        ("wall seconds of the command", each(nulls, lambda r: r["wall"], ".1f"), each(lives, lambda r: r["wall"], ".1f")),
        ("logging cost the run reports (`logging.overhead`)", each(nulls, overhead, ".2%"), each(lives, overhead, ".2%")),
        ("the dashboard's part of it: live's reported - null's reported", "",
         f"{statistics.median(map(overhead, lives)) - statistics.median(map(overhead, nulls)):+.2%}"),
        ("the dashboard's cost measured: live / null train seconds - 1", "", f"{measured:+.2%}"),
        ("events delivered", "", ", ".join(f"{int(d.group(1)):,} of {int(d.group(2)):,}" if d else "line missing" for d in delivered)),
        ("requests, bytes sent", "", f"{logging['requests']:,}, {logging['bytes'] / 1e6:.1f} MB"),
        ("sender thread CPU seconds", "", each(lives, lambda r: r["summary"]["logging"]["sender_cpu_seconds"], ".2f")),
        ("points per trace on the server", "", ", ".join(f"{w} {'/'.join(f'{n:,}' for n in v)}"
                                                         for w, v in last["held"].items())),
        ("server RSS: fresh / largest while training / end", "",
         f"{last['fresh']:.0f} / {last['largest']:.0f} / {last['end_rss']:.0f} MB"),
        ("server CPU seconds during the run (an idle server in as long)", "",
         f"{last['cpu']:.1f} ({last['idle']:.1f})"),
        ("Chromium: open the env until its lines are drawn", "", each(lives, lambda r: r["drawn"], ".2f") + " s"),
    ]


def markers(steps: int) -> tuple[str, str]:
    return f"<!-- LONG-RUN {steps} BEGIN -->", f"<!-- LONG-RUN {steps} END -->"


def section(table_rows: list[tuple[str, str, str]], facts: dict[str, Any], steps: int, rounds: int) -> str:
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in table_rows)
    load = " / ".join(f"{v:.1f}" for v in facts["load"])
    begin, end = markers(steps)
    return f"""{begin}
## A long run on the live dashboard: {facts['steps']:,} steps

`python benchmarks/long_run.py --steps {steps} --rounds {rounds} --write` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, {os.cpu_count()} cores,
Python {platform.python_version()}): relu.json at batch 1, {facts['epochs']} epoch(s) of the first {facts['limit']:,}
training images ({facts['steps']:,} steps), on the CPU with one thread, with `--logger null` and with
`--logger visdom` and a fresh server on the same machine, {rounds} time(s) each, alternating which goes first
(medians, each run in brackets). Load average (1 min) before and after each run: {load}; the machine was
shared with other work.

| | null logger | live dashboard |
|---|---|---|
{table}
{end}"""


def write(text: str, path: Path, steps: int) -> None:
    sections.write(text, path, *markers(steps))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000, help="train steps of each run")
    parser.add_argument("--rounds", type=int, default=1, help="runs with each logger, alternating which goes first")
    parser.add_argument("--write", action="store_true", help="put the table in docs/BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    table_rows, facts = measure(args.steps, args.rounds)
    text = section(table_rows, facts, args.steps, args.rounds)
    print(text)
    if args.write:
        write(text, args.output, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
