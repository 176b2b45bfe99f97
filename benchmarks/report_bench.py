"""Benchmark of reports: size and write time for a real run and a real 4-variant sweep; the README's
screenshot. Updates the "Reports" section of docs/BENCHMARKS.md (bench.py keeps it).

Trains, as a user would and on real MNIST, experiments/relu.json and the 4-variant
experiments/activations.json (`--epochs` each, null logger, no report), then times, `--rounds` times
each, median reported:
  write   a fresh Python process importing dashboards.report and writing the report: what the end of
          a run pays, plotly.js read from its tarball included (the process starts with it unread)
  cli     `python -m runner report DIR` from start to exit, interpreter start-up included
and for the sweep also the five reports its end writes (one per variant, then the sweep's).
With --screenshot, the run's report opened in headless Chromium (network blocked) is saved there.

Usage: python benchmarks/report_bench.py [--epochs 10] [--rounds 5] [--screenshot docs/report.png]
                                         [--output docs/BENCHMARKS.md] [--keep DIR]
Needs real MNIST in data/ (`make data`); --screenshot needs playwright and Chromium (CHROMIUM).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- reports: written by benchmarks/report_bench.py -->", "<!-- end of reports -->"

WRITE = """
import sys, time
t = time.perf_counter()
from pathlib import Path
from dashboards.report import write
for path in sys.argv[1:]:
    write(Path(path))
print(time.perf_counter() - t)
"""


def train(args: list[str], out: Path) -> float:
    if out.is_dir() and any(out.iterdir()):  # --keep of an earlier round: reuse what it trained
        print(f"reusing {out}", flush=True)
        return float("nan")
    command = [sys.executable, "-m", "runner", *args, "--logger", "null", "--no-report", "--out", str(out)]
    print("$ python " + " ".join(command[1:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def write_seconds(paths: list[Path], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        done = subprocess.run([sys.executable, "-c", WRITE, *map(str, paths)], cwd=ROOT, check=True,
                              capture_output=True, text=True)
        times.append(float(done.stdout.strip()))
    return statistics.median(times)


def cli_seconds(path: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "runner", "report", str(path)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def plotly_bytes() -> int:
    sys.path.insert(0, str(ROOT))
    from dashboards.report.page import plotly_js

    return len(plotly_js().encode())


def screenshot(report: Path, output: Path, width: int = 1300, height: int = 1280) -> None:
    """The top of the report (header, charts, samples) as the browser draws it, offline."""
    sys.path.insert(0, str(ROOT / "tests"))
    from chromium import page as chromium_page

    with chromium_page({"width": width, "height": height}) as page:
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.goto(report.resolve().as_uri())
        page.wait_for_function("() => Array.from(document.querySelectorAll('.chart')).every("
                               "c => c.querySelector('svg.main-svg .scatterlayer'))", timeout=30_000)
        time.sleep(0.5)
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(output))
    print(f"screenshot: {output}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--keep", type=Path, help="train into this directory and keep it (default: a temporary one)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="report-bench-")) if args.keep is None else args.keep
    try:
        epochs = f"train.epochs={args.epochs}"
        run, sweep = tmp / "relu", tmp / "activations"
        train_run = train(["experiments/relu.json", "--set", epochs], run)
        train_sweep = train(["experiments/activations.json", "--set", epochs], sweep)
        variants = sorted(p for p in sweep.iterdir() if (p / "metrics.jsonl").is_file())
        rows = []
        for name, path, trained in ((f"relu.json, {args.epochs} epochs", run, train_run),
                                    (f"activations.json, {len(variants)} variants x {args.epochs} epochs", sweep,
                                     train_sweep)):
            write = write_seconds([path], args.rounds)
            cli = cli_seconds(path, args.rounds)
            size = (path / "report.html").stat().st_size
            steps = sum(1 for line in open(variants[0] / "metrics.jsonl" if path == sweep else
                                           path / "metrics.jsonl") if '"event": "train_loss"' in line)
            rows.append((name, steps, size, write, cli, trained))
            print(f"{name}: {size / 1e6:.2f} MB, write {write:.2f} s, cli {cli:.2f} s", flush=True)
        all_five = write_seconds([*variants, sweep], args.rounds)
        five_size = sum((p / "report.html").stat().st_size for p in [*variants, sweep])
        print(f"end of the sweep, {len(variants) + 1} reports: {all_five:.2f} s, {five_size / 1e6:.1f} MB")
        if args.screenshot:
            screenshot(run / "report.html", args.screenshot)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    js = plotly_bytes()
    lines = [BEGIN, "## Reports", "",
             f"Machine: {cpu()}, {os.cpu_count()} cores; Python "
             f"{platform.python_version()}. Made by `python benchmarks/report_bench.py` on "
             f"{time.strftime('%Y-%m-%d')}; median of {args.rounds} rounds.", "",
             "| report of | train steps per run | size | of which plotly.js | write (fresh process) | "
             "`python -m runner report` (wall) |", "|---|---|---|---|---|---|"]
    for name, steps, size, write, cli, _ in rows:
        lines.append(f"| {name} | {steps:,} | {size / 1e6:.2f} MB | {js / 1e6:.2f} MB | {write:.2f} s | {cli:.2f} s |")
    lines += ["",
              f"- The end of that sweep writes {len(variants) + 1} reports (one per variant, then the sweep's): "
              f"{all_five:.2f} s in all, {five_size / 1e6:.1f} MB.",
              "- write: a new Python process imports `dashboards.report`, reads plotly.js out of its npm tarball "
              "and writes the file, as the end of a run does; the wall time adds the interpreter's start-up.",
              "- Charts keep at most 2,000 points per trace (1,000 per trace on a sweep's); the per-epoch table and "
              "the per-step CSV in the page are exact.", END]
    section = "\n".join(lines) + "\n"
    text = args.output.read_text() if args.output.exists() else "# Benchmarks\n"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    args.output.write_text(text)
    print(section)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
