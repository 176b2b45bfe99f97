"""Benchmark: how the Visdom server grows with saved runs, and how fast its env list loads.

Starts a fresh server (temporary home, free port), then trains N runs of relu.json one after
another in this process, each through the real run path (runner.session.execute with the real
VisdomLogger: one env per run, saved at each epoch end and at close). Every run has 10 real epochs
of 300 steps (3,000 train-loss points, as relu.json on the full set), but each epoch sees only
`--train-limit` images at batch `--batch-size` to keep the time down. Measures the server's RSS
after every `--every` runs, then kills it with SIGKILL, starts it again (saved envs load lazily)
and measures its RSS after restart, after opening one env, the time for headless Chromium to load
the page with its env list, and the time to open one run's env. Writes a section of
docs/BENCHMARKS.md between the SERVER-GROWTH markers (the rest of the file is left alone).

Usage: python benchmarks/server_growth.py [--runs 50] [--every 10] [--train-limit 600] [--batch-size 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # headless Chromium, as the browser tests drive it

from chromium import open_env_list, page as chromium_page  # noqa: E402
from dashboards.visdom import server as servers  # noqa: E402
from dashboards.visdom.process import alive  # noqa: E402
from runner.loggers import registry  # noqa: E402
from runner import data, session, spec, train  # noqa: E402

BEGIN, END = "<!-- SERVER-GROWTH BEGIN -->", "<!-- SERVER-GROWTH END -->"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def env_list_seconds(url: str) -> tuple[float, int]:
    """Seconds from navigation until the env selector lists the envs; how many it lists."""
    with chromium_page() as page:
        started = time.monotonic()
        open_env_list(page, url)
        seconds = time.monotonic() - started
        count = len(page.query_selector_all(".rc-tree-select-tree-title"))
    return seconds, count


def env_open_seconds(url: str) -> float:
    """Seconds until one run's env shows its train-loss lines."""
    with chromium_page() as page:
        started = time.monotonic()
        page.goto(url)
        page.wait_for_function("() => document.querySelectorAll('.scatterlayer .trace path.js-line').length >= 3",
                               timeout=60_000)
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()

    base = json.loads((ROOT / "experiments" / "relu.json").read_text())
    base["data"] = {**base.get("data", {}), "train_limit": args.train_limit, "batch_size": args.batch_size}
    base["train"] = {**base.get("train", {}), "epochs": 10, "device": "cpu"}
    experiment = spec.parse(base, "relu.json (benchmark)")
    device = train.pick_device(experiment.train)
    dataset = data.load(experiment.data, device)
    steps = 10 * -(-args.train_limit // args.batch_size)

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="visdom-growth-") as tmp:
        home, runs_dir = Path(tmp) / "visdom", Path(tmp) / "runs"
        port = servers.free_port()
        os.environ["VISDOM_PORT"] = str(port)
        server = servers.start(port, home)
        live = [rss_mb(server.pid)]
        rows.append(("fresh server", f"{live[0]:.0f} MB"))
        started = time.monotonic()
        last_env = ""
        for n in range(1, args.runs + 1):
            out = runs_dir / f"relu-{n:03d}"
            summary = session.execute(experiment, lambda run_dir: registry.make(("null", "visdom"), experiment,
                                                                                registry.Place(run_dir)),
                                      out=out, dataset=dataset)
            last_env = summary["visdom_env"]
            assert summary["steps"] == steps and summary["epochs"] == 10, summary
            if n % args.every == 0 or n == args.runs:
                live.append(rss_mb(server.pid))
                rows.append((f"after {n} runs (live)", f"{rss_mb(server.pid):.0f} MB"))
                print(f"{n} runs, {time.monotonic() - started:.0f} s, server RSS {rss_mb(server.pid):.0f} MB",
                      flush=True)
        saved = sorted((home / "envs").glob("relu_*.json"))
        size = sum(p.stat().st_size for p in saved)
        rows.append(("envs saved", f"{len(saved)} files, {size / 1e6:.1f} MB"))
        rows.append(("time for the runs", f"{time.monotonic() - started:.0f} s"))

        os.kill(server.pid, signal.SIGKILL)
        while alive(server.pid):
            time.sleep(0.05)
        server = servers.start(port, home)
        rows.append(("after kill -9 and restart (lazy loading)", f"{rss_mb(server.pid):.0f} MB"))
        seconds, listed = env_list_seconds(f"http://localhost:{port}")
        rows.append(("page load until the env list shows", f"{seconds:.2f} s ({listed} entries)"))
        opened = env_open_seconds(f"http://localhost:{port}/env/{last_env}")
        rows.append((f"open one run's env ({steps:,} points)", f"{opened:.2f} s"))
        rows.append(("after opening that env", f"{rss_mb(server.pid):.0f} MB"))
        server.stop()
        total = time.monotonic() - started

    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    grown = (live[-1] - live[0]) / args.runs
    reading = (f"A fresh server already holds {live[0]:.0f} MB: `visdom.server` imports torch (visdom's client "
               f"module does), so most of the 548 MB seen after three runs in issue 11 is that floor. Each live run's "
               f"env adds about {grown:.2f} MB ({args.runs} runs: {live[-1] - live[0]:.0f} MB). A restarted server "
               "loads saved envs only when one is opened, so after a restart it is back at the floor whatever the "
               "number of saved runs; the env folder grows by the saved JSON (above), which `make visdom-prune` "
               "trims.")
    section = f"""{BEGIN}
## Visdom server growth with saved runs

`python benchmarks/server_growth.py --runs {args.runs} --train-limit {args.train_limit} --batch-size {args.batch_size}`
({time.strftime('%Y-%m-%d')}, {total / 60:.0f} min): {args.runs} runs of relu.json one after another, each
with its own env saved at every epoch end and at close. Each run has 10 real epochs of
{steps // 10:,} steps ({steps:,} train-loss points, as many as relu.json on the full 60,000 images) but an
epoch sees only the first {args.train_limit:,} images at batch {args.batch_size}, to keep the time down;
test loss and accuracy are on the full 10,000 test images. The runs use one thread
(OMP_NUM_THREADS=1; the 2-core machine was shared with other work). Server RSS from /proc; page
times from headless Chromium on the same machine.

| | |
|---|---|
{table}

{reading}
{END}"""
    text = args.output.read_text() if args.output.exists() else "# Benchmarks\n"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S) \
        if BEGIN in text else text.rstrip() + "\n\n" + section + "\n"
    args.output.write_text(text)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
