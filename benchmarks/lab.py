"""Benchmark: how long `python -m runner runs` takes to list 1,000 run directories, cold (no index:
every directory read) and warm (the index in place: every directory looked at, none read), as a
person runs it (a new process each time, the table or --json), and in-process. Prints a table;
`--write` puts it in docs/BENCHMARKS.md (its own section); `--screenshot docs/lab.png` also saves a
screenshot of the notebook's page (`python -m runner report DIR`) in headless Chromium.

The 1,000 directories are made as the tests make them (`make_notebook`): copies, with small edits to
their specs and summaries (learning rate, seed, accuracy, status, tags), of a few real runs of the
tiny data (`make_real_runs`: a sweep of four learning rates, a CNN run and a tracked run), the
journals linked rather than copied.

Usage: python benchmarks/lab.py [--runs 1000] [--rounds 5] [--write] [--screenshot docs/lab.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny data and headless Chromium, as the tests make them

import sections  # noqa: E402

BEGIN, END = "<!-- LAB BEGIN -->", "<!-- LAB END -->"
TRACKED = """
from runner import track
with track.run("tracked", {"lr": 0.1, "width": 8}, out=%r, logger="null") as run:
    for step in range(1, 41):
        run.log({"train/loss": 2.0 / step, "test/accuracy": 1 - 1.0 / step}, step=step)
"""


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def make_real_runs(folder: Path, lrs: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01), cnn: bool = True) -> dict[str, Path]:
    """Real runs of the tiny data under `folder`/runs, made at once: a sweep of the learning rates `lrs`
    (one process), a CNN run (with `cnn`) and a tracked run. Returns {what: its directory}: `sweep`,
    `variant0`..., `cnn`, `tracked`."""
    from helpers import make_tiny_mnist, tiny_spec

    data = make_tiny_mnist(folder / "data")
    real = folder / "runs"
    made = {"sweep": real / "lrs-20261125-171800", "tracked": real / "tracked-20261125-172100"}
    sweep = tiny_spec(folder, data, train={"epochs": 2}, sweep={"optim.lr": list(lrs)}, tags=["baseline"],
                      notes="learning rates of the tiny MLP")
    commands = [[sys.executable, "-m", "runner", str(sweep), "--logger", "null", "--out", str(made["sweep"])],
                [sys.executable, "-c", TRACKED % str(made["tracked"])]]
    if cnn:
        (folder / "cnn").mkdir(exist_ok=True)
        made["cnn"] = real / "tinycnn-20261125-172000"
        spec = tiny_spec(folder / "cnn", data, name="tinycnn", train={"epochs": 2},
                         model={"kind": "cnn", "channels": [4, 8], "hidden": [16]})
        commands.append([sys.executable, "-m", "runner", str(spec), "--logger", "null", "--out", str(made["cnn"])])
    jobs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        if job.returncode != 0:
            raise RuntimeError(f"a real run failed ({' '.join(map(str, job.args))}): {err[-2000:]}")
    variants = sorted(p for p in made["sweep"].iterdir() if (p / "metrics.jsonl").is_file())
    return {**made, **{f"variant{i}": v for i, v in enumerate(variants)}}


STATES = ["finished"] * 17 + ["failed", "diverged", None]  # None: no summary (unfinished)


def make_notebook(folder: Path, sources: list[Path], n: int = 1000) -> list[Path]:
    """`n` run directories in `folder`, each a copy of one of `sources` with small edits: its learning
    rate, seed, accuracy, start time (in its name), status and tags. Journals are hard links."""
    folder.mkdir(parents=True, exist_ok=True)
    read = [(json.loads((s / "spec.json").read_text()), json.loads((s / "summary.json").read_text()), s)
            for s in sources]
    made = []
    start = time.mktime(time.strptime("20261101-080000", "%Y%m%d-%H%M%S"))
    for i in range(n):
        spec, summary, source = read[i % len(read)]
        spec, summary = json.loads(json.dumps(spec)), json.loads(json.dumps(summary))
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(start + 600 * i))
        name = str(spec.get("name") or source.name.split("-")[0])
        target = folder / f"{name}-{stamp}"
        target.mkdir()
        if "optim" in spec:
            spec["optim"]["lr"] = round(0.001 * (1 + i % 97), 6)
            spec["seed"] = i % 5
        elif isinstance(spec.get("lr"), (int, float)):
            spec["lr"] = round(0.001 * (1 + i % 97), 6)
        spec["tags"] = ["best"] if i % 50 == 0 else ["draft"] if i % 7 == 0 else []
        state = STATES[i % len(STATES)]
        (target / "spec.json").write_text(json.dumps(spec, indent=2))
        if isinstance(summary.get("provenance"), dict):  # started when its name says
            summary["provenance"]["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 600 * i))
        if state is not None:
            if "test_accuracy" in summary:
                summary["test_accuracy"] = round(0.9 + (i * 7919 % 1000) / 10_000, 4)
            summary["status"] = state
            (target / "summary.json").write_text(json.dumps(summary, indent=2))
        try:
            os.link(source / "metrics.jsonl", target / "metrics.jsonl")
        except OSError:
            shutil.copyfile(source / "metrics.jsonl", target / "metrics.jsonl")
        made.append(target)
    return made


def timed(*args: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of `python -m runner ARGS` in a new process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = cli(*args)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return took, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def clocked(work: Any) -> tuple[float, float]:
    """Wall and CPU seconds of `work()` in this process."""
    started, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - started, time.process_time() - cpu


def measure(folder: Path, rounds: int) -> list[tuple[str, list[tuple[float, float]]]]:
    """(wall, CPU) seconds of each way of listing `folder`, cold and warm, alternating, `rounds` each."""
    from runner.lab.index import INDEX, listing

    ways: dict[str, list[tuple[float, float]]] = {}
    empty = folder.parent / "empty"
    empty.mkdir(exist_ok=True)
    for _ in range(rounds):
        for output in ("table", "json"):
            extra = ["--json"] if output == "json" else []
            (folder / INDEX).unlink(missing_ok=True)
            ways.setdefault(f"cold, {output} (new process)", []).append(timed("runs", str(folder), *extra))
            ways.setdefault(f"warm, {output} (new process)", []).append(timed("runs", str(folder), *extra))
        (folder / INDEX).unlink(missing_ok=True)
        ways.setdefault("cold, listing only (in process)", []).append(clocked(lambda: listing([folder])))
        ways.setdefault("warm, listing only (in process)", []).append(clocked(lambda: listing([folder])))
        ways.setdefault("an empty folder (new process: Python and the imports)", []).append(
            timed("runs", str(empty), "--json"))
    return list(ways.items())


def table(results: list[tuple[str, list[tuple[float, float]]]], n: int, rounds: int) -> str:
    load = os.getloadavg()[0]
    lines = [BEGIN, "## Listing runs", "",
             f"`python benchmarks/lab.py --write` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}): `python -m runner runs DIR` over {n:,} "
             "run directories copied, with small edits, from real runs of the tiny data; cold: no "
             "`.index.json` (every directory read), warm: the index in place (every directory looked at, none "
             f"read). {rounds} rounds, alternating; wall seconds and the process's CPU seconds (user + system, "
             f"which other work on the machine does not inflate as much). Load average (1 min) at the end: "
             f"{load:.1f}.", "",
             "| how | median wall s | min | max | median CPU s |", "|---|---|---|---|---|"]
    for how, values in results:
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        lines.append(f"| {how} | {statistics.median(walls):.3f} | {min(walls):.3f} | {max(walls):.3f} | "
                     f"{statistics.median(cpus):.3f} |")
    return "\n".join([*lines, END]) + "\n"


def write(text: str, path: Path) -> None:
    sections.write(text, path, BEGIN, END)


def screenshot(folder: Path, output: Path) -> None:
    """The notebook's page of `folder` in headless Chromium, offline, saved as `output`."""
    from chromium import page as chromium_page

    started = time.perf_counter()  # from the folder holding it, as a person would: the page names `runs`
    done = subprocess.run([sys.executable, "-m", "runner", "report", folder.name], cwd=folder.parent,
                          capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    page_file = folder.parent / done.stdout.split("report: ", 1)[1].strip()
    with chromium_page({"width": 1400, "height": 1000}) as page:
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
        page.goto(page_file.as_uri())
        page.wait_for_function("() => document.querySelectorAll('.chart svg.main-svg').length > 0", timeout=60_000)
        page.wait_for_timeout(500)
        output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(output), full_page=False)
    print(f"screenshot: {output} (the page written in {took:.2f} s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--write", action="store_true", help="put the table in docs/BENCHMARKS.md")
    p.add_argument("--screenshot", type=Path, metavar="PNG", help="also save a screenshot of the notebook's page")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        found: dict[str, Any] = make_real_runs(Path(tmp))
        sources = [v for k, v in found.items() if k.startswith(("variant", "cnn", "tracked"))]
        make_notebook(Path(tmp) / "notebook", sources, a.runs)
        text = table(measure(Path(tmp) / "notebook", a.rounds), a.runs, a.rounds)
        print(text)
        if a.write:
            write(text, ROOT / "docs" / "BENCHMARKS.md")
        if a.screenshot:
            screenshot(Path(tmp) / "runs", a.screenshot)


if __name__ == "__main__":
    main()
