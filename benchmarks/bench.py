"""Benchmark: how much of the machine goes into learning. Prints a table and writes docs/BENCHMARKS.md.

Contenders, one epoch of the tutorial's 784-200-200-10 MLP on real MNIST at batch 200, run in
alternation (round-robin) so machine drift hits all of them alike:
  seed      the tutorial's loop: torchvision DataLoader with per-sample ToTensor + Normalize
  floor     a bare loop over tensors already on the device (no logging, no host reads)
  null      the runner's train_one_epoch with the NullLogger
  visdom    the runner's train_one_epoch streaming every step to a live local Visdom server
The same for a convolutional net, LeNet-5 of lenet5.json (batch 128): its floor, the runner, and
the runner with `train.channels_last` and with `train.compile`.
Then: time from process start to first step and peak RSS of `python -m runner` as a user runs it,
and a scaling table over batch size and hidden width.

On CUDA a `null+cuda_graphs` contender is added; `--compile` adds `null+compile`.

Usage: python benchmarks/bench.py [--rounds 15] [--cnn-rounds 5] [--compile] [--no-seed] [--no-visdom] [--no-cnn] [--output docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import data, models, steps, train  # noqa: E402
from runner.loggers import Logger, NullLogger  # noqa: E402
from runner.spec import Experiment  # noqa: E402

SPEC = Experiment.model_validate(json.loads((ROOT / "experiments" / "relu.json").read_text()))
CNN = Experiment.model_validate(json.loads((ROOT / "experiments" / "lenet5.json").read_text()))
DEVICE = train.pick_device(SPEC.train)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    train._sync(device)
    started = time.perf_counter()
    fn()
    train._sync(device)
    return time.perf_counter() - started


def make_model(spec: Experiment) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(spec.seed)
    memory_format = torch.channels_last if spec.train.channels_last else torch.contiguous_format
    model = models.build(spec.model, data.MNIST).to(DEVICE, memory_format=memory_format)
    return model, train.make_optimizer(spec.optim, model.parameters())


def seed_epoch() -> Callable[[], object]:
    from torchvision import datasets, transforms

    loader = torch.utils.data.DataLoader(
        datasets.MNIST(str(ROOT / "data"), train=True, download=False, transform=transforms.Compose([
            transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])),
        batch_size=200, shuffle=True)
    model, optimizer = make_model(SPEC)
    criterion = torch.nn.CrossEntropyLoss()

    def epoch() -> None:
        for x, y in loader:
            x, y = x.view(-1, 28 * 28).to(DEVICE), y.to(DEVICE)
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return epoch


def floor_epoch(split: data.Split, spec: Experiment = SPEC) -> Callable[[], object]:
    model, optimizer = make_model(spec)
    generator = torch.Generator().manual_seed(0)
    bs = spec.data.batch_size

    def epoch() -> None:
        order = torch.randperm(len(split), generator=generator).to(DEVICE)
        for start in range(0, len(split), bs):
            index = order[start:start + bs]
            loss = torch.nn.functional.cross_entropy(model(split.x[index]), split.y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return epoch


def runner_epoch(split: data.Split, logger: Logger, spec: Experiment = SPEC) -> Callable[[], object]:
    """One epoch as the runner trains it: its step, its schedule, the loss and learning rate logged."""
    model, optimizer = make_model(spec)
    generator = torch.Generator().manual_seed(0)
    step = steps.make(model, optimizer, train.loss_function(spec.loss, 10), DEVICE, compile=spec.train.compile,
                      cuda_graphs=spec.train.cuda_graphs, batch_size=spec.data.batch_size)
    steps_per_epoch = -(-len(split) // spec.data.batch_size)
    # Long enough that the schedule never runs out however many epochs the benchmark times.
    schedule = train.make_schedule(spec.optim, optimizer, steps_per_epoch, 100)
    state = train.State(epoch=0)
    if spec.train.channels_last:
        split = data.Split(split.x.contiguous(memory_format=torch.channels_last), split.y)

    def epoch() -> None:
        state.epoch, state.batch = state.epoch + 1, 0
        train.train_one_epoch(step, split, spec.data.batch_size, generator, state, spec.train.log_every, logger,
                              optimizer=optimizer, schedule=schedule)
    return epoch


def with_train(spec: Experiment = SPEC, **changes: object) -> Experiment:
    return spec.model_copy(update={"train": spec.train.model_copy(update=changes)})


def alternate(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each contender's epochs: one warm-up each, then `rounds` rounds in turn."""
    for fn in contenders.values():  # warm-up: first-touch allocations, lazy inits, compilation
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            seconds[name].append(timed(DEVICE, fn))
    return seconds


def start_to_first_step() -> tuple[float, float]:
    """(seconds from process start to the first logged step, peak RSS in MB) of a real CLI run."""
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "metrics.jsonl"
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "runner", "experiments/relu.json", "--logger", "null",
                                    "--set", "train.epochs=1", "--set", "train.log_every=1", "--out", tmp],
                                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = None
        while process.poll() is None and first is None:
            if journal.exists() and '"train_loss"' in journal.read_text():
                first = time.perf_counter() - started
            time.sleep(0.01)
        process.wait()
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return first if first is not None else float("nan"), peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed epochs per MLP contender (about 0.5 s each)")
    parser.add_argument("--cnn-rounds", type=int, default=5, help="timed epochs per LeNet-5 contender (about 4 s each)")
    parser.add_argument("--no-seed", action="store_true", help="skip the slow DataLoader loop")
    parser.add_argument("--no-visdom", action="store_true", help="skip the live-server contender")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--compile", action="store_true", help="add the runner with train.compile")
    parser.add_argument("--no-cnn", action="store_true", help="skip the LeNet-5 table")
    parser.add_argument("--limit", type=int, help="train on the first N examples only (a quick check of the script)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()

    dataset = data.load(SPEC.data.model_copy(update={"train_limit": args.limit}), DEVICE)
    contenders: dict[str, Callable[[], object]] = {}
    if not args.no_seed:
        contenders["seed"] = seed_epoch()
    contenders["floor"] = floor_epoch(dataset.train)
    contenders["null"] = runner_epoch(dataset.train, NullLogger())
    if args.compile:
        contenders["null+compile"] = runner_epoch(dataset.train, NullLogger(), with_train(compile=True))
    if DEVICE.type == "cuda":
        contenders["null+cuda_graphs"] = runner_epoch(dataset.train, NullLogger(), with_train(cuda_graphs=True))
    server = visdom_logger = None
    if not args.no_visdom:
        from dashboards.visdom import server as visdom_server
        from dashboards.visdom.logger import VisdomLogger

        server = visdom_server.running()
        handle = server.__enter__()
        visdom_logger = VisdomLogger(env="bench", port=handle.port, out=sys.stderr)
        visdom_logger.start({"name": "bench", "spec": SPEC.model_dump(mode="json"), "device": str(DEVICE),
                             "run_dir": "-", "steps_per_epoch": 300})
        contenders["visdom"] = runner_epoch(dataset.train, visdom_logger)

    seconds = alternate(contenders, args.rounds)
    requests = None
    if visdom_logger is not None:
        visdom_logger.close(None)
        requests = visdom_logger.stats().requests / (args.rounds + 1)  # every epoch, warm-up included
        server.__exit__(None, None, None)

    steps = -(-len(dataset.train) // SPEC.data.batch_size)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    rows = [(name, median[name], min(seconds[name]), max(seconds[name]), steps / median[name],
             median[name] / median["floor"], median["seed"] / median[name] if "seed" in median else None)
            for name in contenders]
    first_step, peak = start_to_first_step()

    cnn_rows = []
    if not args.no_cnn:
        cnn = {"floor": floor_epoch(dataset.train, CNN), "null": runner_epoch(dataset.train, NullLogger(), CNN),
               "null+channels_last": runner_epoch(dataset.train, NullLogger(), with_train(CNN, channels_last=True)),
               "null+compile": runner_epoch(dataset.train, NullLogger(), with_train(CNN, compile=True))}
        cnn_seconds = alternate(cnn, args.cnn_rounds)
        cnn_median = {name: statistics.median(s) for name, s in cnn_seconds.items()}
        cnn_steps = -(-len(dataset.train) // CNN.data.batch_size)
        cnn_rows = [(name, cnn_median[name], min(cnn_seconds[name]), max(cnn_seconds[name]),
                     cnn_steps / cnn_median[name], cnn_median[name] / cnn_median["floor"],
                     cnn_median["null"] / cnn_median[name]) for name in cnn]

    scaling = []
    if not args.no_scaling:
        for hidden in (200, 1024):
            for batch in (64, 200, 1024):
                spec = SPEC.model_copy(update={
                    "model": SPEC.model.model_copy(update={"hidden": (hidden, hidden)}),
                    "data": SPEC.data.model_copy(update={"batch_size": batch})})
                fn = runner_epoch(dataset.train, NullLogger(), spec)
                fn()
                t = statistics.median(timed(DEVICE, fn) for _ in range(2))
                scaling.append((hidden, batch, t, len(dataset.train) / t))

    report = render(rows, requests, first_step, peak, scaling, args.rounds, cnn_rows, args.cnn_rounds)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # Keep the sections other benchmarks write into the same file (report_bench.py's, server_growth.py's).
    previous = args.output.read_text() if args.output.exists() else ""
    kept = [m.group(0) for m in re.finditer(
        r"<!-- (reports:|[A-Z][A-Z0-9 -]* BEGIN).*?<!-- (end of reports|[A-Z][A-Z0-9 -]* END) -->", previous, re.S)]
    args.output.write_text("\n\n".join([report.rstrip("\n"), *kept]) + "\n")
    print(f"written to {args.output}")
    return 0


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if DEVICE.type == "cuda" else ""
    return (f"{cpu}, {os.cpu_count()} cores{gpu}; device {DEVICE}; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads); Python {platform.python_version()}")


def render(rows: list, requests: float | None, first_step: float, peak: float, scaling: list, rounds: int,
           cnn_rows: list, cnn_rounds: int) -> str:
    lines = ["# Benchmarks", "", f"Machine: {machine()}.", "",
             f"One training epoch of relu.json (784-200-200-10, batch 200, 300 steps) on real MNIST; median of "
             f"{rounds} rounds after a warm-up, contenders alternated. Made by `make bench` on "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| contender | s/epoch (median) | min | max | steps/s | x floor | speed-up vs seed |",
             "|---|---|---|---|---|---|---|"]
    for name, med, lo, hi, rate, floor, seed in rows:
        lines.append(f"| {name} | {med:.3f} | {lo:.3f} | {hi:.3f} | {rate:,.0f} | {floor:.2f} | "
                     f"{'' if seed is None else f'{seed:.1f}x'} |")
    lines += ["", f"- Start of `python -m runner experiments/relu.json` to its first training step: {first_step:.2f} s "
                  f"(data already fetched); peak RSS of that process: {peak:,.0f} MB."]
    by_name = {row[0]: row[1] for row in rows}
    if "visdom" in by_name:
        lines.append(f"- Streaming every step to the live dashboard: visdom / null = "
                     f"{by_name['visdom'] / by_name['null']:.3f} (medians).")
    if requests is not None:
        lines.append(f"- VisdomLogger: {requests:.1f} HTTP requests per epoch of 300 steps (set-up included), "
                     "against 600 for one synchronous `viz.line(update='append')` per step.")
    if cnn_rows:
        lines += ["", f"One training epoch of lenet5.json (LeNet-5, batch {CNN.data.batch_size}, "
                      f"{-(-60000 // CNN.data.batch_size)} steps, SGD with a cosine schedule); the floor is a bare "
                      "loop over device tensors with the same model. Median of "
                      f"{cnn_rounds} rounds after a warm-up, contenders alternated.", "",
                  "| contender | s/epoch (median) | min | max | steps/s | x floor | speed vs null |",
                  "|---|---|---|---|---|---|---|"]
        for name, med, lo, hi, rate, floor, relative in cnn_rows:
            lines.append(f"| {name} | {med:.3f} | {lo:.3f} | {hi:.3f} | {rate:,.0f} | {floor:.2f} | {relative:.2f}x |")
    if scaling:
        lines += ["", "Scaling (runner with NullLogger, one epoch, median of 2):", "",
                  "| hidden | batch | s/epoch | samples/s |", "|---|---|---|---|"]
        lines += [f"| {h}x{h} | {b} | {t:.3f} | {r:,.0f} |" for h, b, t, r in scaling]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
