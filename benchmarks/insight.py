"""Benchmark: what the views of the spec's `insight` section cost a run. Prints a table; `--write`
puts it in docs/BENCHMARKS.md (its own section, which bench.py keeps).

For relu.json (the tutorial's MLP) and lenet5.json (LeNet-5), epochs as the runner makes them (the
training steps, then the evaluation), on real MNIST, with the journal written as every run writes it,
and either the null logger or a live Visdom dashboard on a fresh local server; each with the insight
section as the spec defaults it (histograms every 100 steps, per-class views, activations, the
system sampler every 5 s) and with all of it off. Contenders alternate (round-robin), so machine
drift hits them alike; the cost is the ratio of median epoch times, and beside it the training
thread's own seconds inside the insight code (`inside`: the looks at the weights, the reads with the
losses, what the evaluation sends), which noise does not blur.

Usage: python benchmarks/insight.py [--rounds 15] [--cnn-rounds 4] [--no-visdom] [--limit N] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sections  # noqa: E402
from runner import data, insight, steps, system, train  # noqa: E402
from runner.loggers import FanOut, JsonlLogger, Logger, NullLogger  # noqa: E402
from runner.spec import Experiment  # noqa: E402

BEGIN, END = "<!-- INSIGHT BEGIN -->", "<!-- INSIGHT END -->"
DEVICE = torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda")


def spec_of(name: str) -> Experiment:
    return Experiment.model_validate(json.loads((ROOT / "experiments" / f"{name}.json").read_text()))


class Clocked(insight.Insight):
    """The run's Insight, adding up the seconds the training thread spends in it."""

    seconds = 0.0

    def _timed(self, method: Callable[..., Any], *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def look(self, epoch: int, step: int) -> None:
        # Timed only when it looks: a clock around each of the other steps' one modulo would cost
        # more than the modulo (the untimed remainder is about 0.2 us a step).
        if self.layers is not None and not step % self.layers.every:
            self._timed(super().look, epoch, step)

    def flush(self, *args: Any) -> None:
        self._timed(super().flush, *args)

    def evaluated(self, *args: Any) -> None:
        self._timed(super().evaluated, *args)


def runner_epoch(spec: Experiment, dataset: data.Dataset, logger: Logger, on: bool) -> tuple[Callable[[], None],
                                                                                             Clocked]:
    """One epoch as fit makes it: train_one_epoch, then the evaluation, with insight `on` or off."""
    torch.manual_seed(spec.seed)
    model, _ = train.build_model(spec, dataset)
    model = model.to(DEVICE)
    optimizer = train.make_optimizer(spec.optim, model.parameters())
    loss_fn = train.loss_function(spec.loss, 10)
    step = steps.make(model, optimizer, loss_fn, DEVICE, compile=False, cuda_graphs=False,
                      batch_size=spec.data.batch_size)
    steps_per_epoch = -(-len(dataset.train) // spec.data.batch_size)
    schedule = train.make_schedule(spec.optim, optimizer, steps_per_epoch, 1000)
    sampler = system.sampler(spec.insight.system if on else 0, DEVICE).__enter__()  # a daemon thread: left on
    seen = Clocked(spec.insight if on else insight.NOTHING, model, 10, sampler if on else None)
    generator = torch.Generator().manual_seed(0)
    state = train.State(epoch=0)
    truth = dataset.test.y[:spec.train.samples].tolist()

    def epoch() -> None:
        state.epoch, state.batch = state.epoch + 1, 0
        train.train_one_epoch(step, dataset.train, spec.data.batch_size, generator, state, spec.train.log_every,
                              logger, optimizer=optimizer, schedule=schedule, insight=seen)
        train._evaluate_epoch(model, loss_fn, dataset, spec.data.test_batch_size, state, logger, truth, seen)
    return epoch, seen


def measure(names: list[str], rounds: dict[str, int], limit: int | None, visdom_port: int | None,
            folder: Path) -> list[dict[str, Any]]:
    dataset = data.load(spec_of("relu").data.model_copy(update={"train_limit": limit}), DEVICE)
    rows = []
    for name in names:
        spec = spec_of(name)
        contenders: dict[str, tuple[Callable[[], None], Clocked]] = {}
        for shown in ("null", "visdom") if visdom_port else ("null",):
            for on in (False, True):
                label = f"{shown}{'+insight' if on else ''}"
                journal = JsonlLogger(folder / f"{name}-{label}.jsonl")
                if shown == "visdom":
                    from dashboards.visdom.logger import VisdomLogger

                    board = VisdomLogger(env=f"bench-insight-{name}-{label.replace('+', '-')}", port=visdom_port,
                                         out=sys.stderr)
                    board.start({"name": name, "spec": spec.model_dump(mode="json"), "device": str(DEVICE),
                                 "dataset": dataset.info.describe(), "run_dir": "-"})
                    logger: Logger = FanOut(journal, board)
                else:
                    logger = FanOut(journal, NullLogger())
                contenders[label] = runner_epoch(spec, dataset, logger, on)
        for fn, _ in contenders.values():  # warm-up
            fn()
        seconds: dict[str, list[float]] = {label: [] for label in contenders}
        inside = {label: seen.seconds for label, (_, seen) in contenders.items()}
        for _ in range(rounds[name]):
            for label, (fn, _) in contenders.items():
                seconds[label].append(train_time(fn))
        for label, (_, seen) in contenders.items():
            median = statistics.median(seconds[label])
            base = statistics.median(seconds[label.replace("+insight", "")])
            rows.append({"spec": name, "contender": label, "median": median, "low": min(seconds[label]),
                         "high": max(seconds[label]), "cost": median / base - 1,
                         "inside": (seen.seconds - inside[label]) / sum(seconds[label])})
    return rows


def train_time(fn: Callable[[], None]) -> float:
    train._sync(DEVICE)
    started = time.perf_counter()
    fn()
    train._sync(DEVICE)
    return time.perf_counter() - started


def render(rows: list[dict[str, Any]], rounds: dict[str, int], load: list[float]) -> str:
    lines = [BEGIN, "## What the insight views cost", "",
             f"`python benchmarks/insight.py --write` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
             f"{os.cpu_count()} cores, torch {torch.__version__}, {DEVICE}): an epoch as the runner makes it "
             "(its training steps, then the evaluation over the 10,000 test images), the journal written, "
             "with the spec's `insight` defaults on (`+insight`) or all of it off; "
             f"{' and '.join(f'{n} rounds of {s}.json' for s, n in rounds.items())}, alternating, medians. "
             "`cost`: the ratio of median epoch times less 1; `inside`: the training thread's seconds in the "
             f"insight code over the epochs' seconds. Load average (1 min) before and after: "
             f"{load[0]:.1f} / {load[1]:.1f}.", "",
             "| spec | contender | median s/epoch | min | max | cost | inside |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cost = f"{r['cost']:+.2%}" if "+insight" in r["contender"] else ""
        inside = f"{r['inside']:.2%}" if "+insight" in r["contender"] else ""
        lines.append(f"| {r['spec']}.json | {r['contender']} | {r['median']:.3f} | {r['low']:.3f} | "
                     f"{r['high']:.3f} | {cost} | {inside} |")
    return "\n".join([*lines, END]) + "\n"


def write(text: str, path: Path) -> None:
    sections.write(text, path, BEGIN, END)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed epochs per relu.json contender")
    parser.add_argument("--cnn-rounds", type=int, default=4, help="timed epochs per lenet5.json contender")
    parser.add_argument("--no-visdom", action="store_true", help="the null logger only")
    parser.add_argument("--no-cnn", action="store_true")
    parser.add_argument("--limit", type=int, help="train on the first N examples only (a quick check)")
    parser.add_argument("--write", action="store_true", help="put the table in docs/BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    rounds = {"relu": args.rounds, **({} if args.no_cnn else {"lenet5": args.cnn_rounds})}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        if args.no_visdom:
            rows = measure(list(rounds), rounds, args.limit, None, Path(tmp))
        else:
            from dashboards.visdom import server as visdom_server

            with visdom_server.running() as handle:
                rows = measure(list(rounds), rounds, args.limit, handle.port, Path(tmp))
    load.append(os.getloadavg()[0])
    text = render(rows, rounds, load)
    print(text)
    if args.write:
        write(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
