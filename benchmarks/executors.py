"""Benchmark of the executors: experiments/activations.json (4 variants) for 3 epochs with the local
executor (one variant after another, torch on every core) against `--executor ray` (Ray started on
this machine for the sweep, one variant per CPU at a time, one torch thread each), alternating the
two. Prints a table and writes its section of docs/BENCHMARKS.md.

Each run is `python -m runner experiments/activations.json --set train.epochs=3 --logger null
--no-report --executor E`, timed from process start to exit. From the runs' summaries:
- compute: the variants' training and evaluation time, summed;
- per-trial overhead (Ray): (wall x slots - compute) / variants, the time each variant's CPU slot
  spent not training or evaluating: Ray's start, actor start, data transfer, event relay, the end;
- Ray's start alone is timed in the same process as `ray.init` (embedded, as the runner does).

Usage: python benchmarks/executors.py [--rounds 3] [--output docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- EXECUTORS BEGIN -->", "<!-- EXECUTORS END -->"
SPEC = ROOT / "experiments" / "activations.json"
EPOCHS = 3


def one(executor: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep"
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "runner", str(SPEC), "--set", f"train.epochs={EPOCHS}",
                                 "--logger", "null", "--no-report", "--executor", executor, "--out", str(out)],
                                cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"{executor} run failed:\n{result.stderr}")
        summaries = [json.loads(p.read_text()) for p in out.glob("*/summary.json")]
    compute = sum(s["train_seconds"] + s["eval_seconds"] for s in summaries)
    return {"wall": wall, "compute": compute, "variants": len(summaries),
            "accuracy": statistics.mean(s["test_accuracy"] for s in summaries)}


def ray_start() -> float:
    code = ("import time, sys; sys.path.insert(0, '.'); from runner import on_ray; t = time.perf_counter()\n"
            "with on_ray.connected(None):\n    print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    a = p.parse_args()
    slots = os.cpu_count() or 1
    runs: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    for r in range(a.rounds):
        for executor in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
            runs[executor].append(one(executor))
            print(f"round {r + 1} {executor}: {runs[executor][-1]['wall']:.1f} s", flush=True)
    starts = [ray_start() for _ in range(a.rounds)]
    med = {e: {k: statistics.median(x[k] for x in v) for k in v[0]} for e, v in runs.items()}
    variants = med["local"]["variants"]
    overhead = (med["ray"]["wall"] * slots - med["ray"]["compute"]) / variants
    local_overhead = (med["local"]["wall"] - med["local"]["compute"]) / variants
    ratio = med["ray"]["wall"] / med["local"]["wall"]
    rows = [
        "| executor | sweep wall s | compute s (train + eval, summed) | overhead per variant s | mean accuracy |",
        "|---|---|---|---|---|",
        f"| local (one after another, {slots} torch threads) | {med['local']['wall']:.1f} | "
        f"{med['local']['compute']:.1f} | {local_overhead:.2f} | {med['local']['accuracy']:.2%} |",
        f"| ray (embedded, {slots} at a time, 1 thread each) | {med['ray']['wall']:.1f} | {med['ray']['compute']:.1f} "
        f"| {overhead:.2f} | {med['ray']['accuracy']:.2%} |",
    ]
    table = "\n".join(rows)
    print(table)
    print(f"ray / local wall: {ratio:.2f}x; Ray's start alone: {statistics.median(starts):.1f} s")
    section = f"""{BEGIN}
## Executors: local against Ray on this machine

`python benchmarks/executors.py --rounds {a.rounds}`: experiments/activations.json, {variants} variants x {EPOCHS}
epochs on real MNIST, `--logger null`, the two executors alternating; medians of {a.rounds} runs each,
timed from process start to exit, on {slots} CPUs ({os.uname().machine}, torch threads as each executor sets them).

{table}

- Ray's sweep takes {ratio:.2f}x the local executor's wall time (target: at most 1.0x).
- Overhead per variant: the local executor's is its share of process start, data loading and
  writing; Ray's is (wall x {slots} slots - compute) / {variants}, each variant's CPU slot's time not
  training: Ray's start ({statistics.median(starts):.1f} s of the sweep, `ray.init` alone), worker and
  actor start (`import torch` in each worker), shipping the data, relaying events. Target: at most 2 s.
- What bounds the speed-up: {slots} cores. The local executor already uses both for one variant
  (torch's intra-op threads), which for this small MLP scales poorly; Ray runs {slots} variants side
  by side with one thread each, so it wins on compute and pays Ray's start once per sweep. With more
  variants the start is spread thinner; with more machines (`--ray-address`) the speed-up grows
  with the CPUs the cluster has, as long as each variant fits one of them.
{END}"""
    text = a.output.read_text() if a.output.exists() else "# Benchmarks\n"
    text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S) \
        if BEGIN in text else text.rstrip() + "\n\n" + section + "\n"
    a.output.write_text(text)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
