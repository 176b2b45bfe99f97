"""Benchmark: what the tracking API and its Lightning logger cost a training loop. Prints two tables;
`--write` puts them in docs/BENCHMARKS.md (its own section, which bench.py keeps).

(a) A plain loop of one's own: one epoch of the tutorial's 784-200-200-10 MLP on real MNIST (batch
    200, SGD, 300 steps) over tensors in memory, computing its loss, batch accuracy and learning
    rate each step; `bare` logs nothing, the others call `run.log({...3 scalars...}, step=step)`
    every step into a `track.run` with `logger="null"` (the journal only) or `logger="visdom"` (a
    live dashboard on a private Visdom server started for the benchmark).
(b) A small loop whose steps take well under a millisecond: a 784-64-784 autoencoder (Adam, batch 64,
    3,000 steps) on real MNIST pixels, logging two scalars (both tensors) every step and 16
    reconstructions every 500 steps; `bare` logs nothing, the others make a fresh `track.run` each
    round (null, or visdom on the benchmark's server), and the round's time covers `track.run`, the
    loop and `finish()`. Besides the times: the loop thread's CPU seconds inside `run.log` and
    `run.images`, the sender thread's CPU seconds, and the Visdom server's (from /proc; the server
    shares the cores with torch's threads), which are steadier than times on a shared machine.
(c) The same MLP as a LightningModule (examples/lightning_mlp.py) trained one epoch by a Trainer with
    no logger, Lightning's CSVLogger, its TensorBoardLogger, or our RunnerLogger (null, visdom),
    `log_every_n_steps` the same for all and Lightning's overhead-free settings (no progress bar, no
    checkpointing, no model summary, no validation); a fresh Trainer, logger and model (same seed)
    each time, `trainer.fit` timed.
Contenders alternate (round-robin), so machine drift hits them alike; the cost is the ratio of
median times. `inside`: the loop's own seconds in run.log over the epochs' (from each run's summary).

Usage: python benchmarks/tracking.py [--rounds 15] [--small-rounds 7] [--small-steps 3000] [--small-only]
                                     [--lightning-rounds 7] [--log-every 1] [--no-visdom]
                                     [--no-lightning] [--limit N] [--threads N] [--write]
`--small-only --write` replaces only (b)'s table in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sections  # noqa: E402
from runner import data, track  # noqa: E402
from runner.spec import DataSpec  # noqa: E402

BEGIN, END = "<!-- TRACKING BEGIN -->", "<!-- TRACKING END -->"
SMALL_BEGIN, SMALL_END = "<!-- TRACKING SMALL BEGIN -->", "<!-- TRACKING SMALL END -->"
LR, BATCH = 0.01, 200
AE_BATCH, AE_IMAGES_EVERY = 64, 500
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 200), torch.nn.ReLU(), torch.nn.Linear(200, 200), torch.nn.ReLU(),
                               torch.nn.Linear(200, 10))


def plain_epoch(split: data.Split, run: track.Run | None) -> Callable[[], None]:
    """One epoch of a plain loop; every step's three scalars go to `run` (or nowhere)."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(0)
    x_all = split.x.flatten(1)
    step = 0

    def epoch() -> None:
        nonlocal step
        for x, y in data.batches(data.Split(x_all, split.y), BATCH, generator):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            values = {"train/loss": loss.detach(), "train/accuracy": (logits.argmax(1) == y).float().mean(),
                      "train/lr": optimizer.param_groups[0]["lr"]}
            step += 1
            if run is not None:
                run.log(values, step=step)
    return epoch


def alternate(contenders: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """One warm-up each, then `rounds` timed calls each, round-robin; the warm-up's seconds first."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds + 1):
        for name, fn in contenders.items():
            started = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def plain(split: data.Split, kinds: list[str], rounds: int, folder: Path) -> list[dict[str, Any]]:
    runs = {kind: track.run("bench-tracking", {"lr": LR, "batch_size": BATCH}, out=folder / f"plain-{kind}",
                            logger=kind) for kind in kinds}
    contenders = {"bare": plain_epoch(split, None), **{f"run.log, {k}": plain_epoch(split, r) for k, r in runs.items()}}
    seconds = alternate(contenders, rounds)
    base = statistics.median(seconds["bare"][1:])
    rows = []
    for name, (warm_up, *times) in seconds.items():
        inside = ""
        if name != "bare":  # the run's own count covers the warm-up too
            done = runs[name.split(", ")[1]].finish()
            inside = f"{done['logging']['train_thread_seconds'] / (warm_up + sum(times)):.2%}"
        rows.append({"contender": name, "median": statistics.median(times), "low": min(times), "high": max(times),
                     "ratio": statistics.median(times) / base, "paired": paired(times, seconds["bare"][1:]),
                     "inside": inside})
    return rows


class Timed:
    """A run whose `log` and `images` count the loop thread's CPU seconds spent inside them."""

    def __init__(self, run: track.Run) -> None:
        self.run, self.cpu = run, 0.0

    def log(self, values: dict[str, Any], step: int) -> None:
        started = time.thread_time()
        self.run.log(values, step=step)
        self.cpu += time.thread_time() - started

    def images(self, name: str, images: torch.Tensor, step: int) -> None:
        started = time.thread_time()
        self.run.images(name, images, step=step)
        self.cpu += time.thread_time() - started


def autoencoder_steps(x_all: torch.Tensor, steps: int, run: Timed | None) -> None:
    """A fresh 784-64-784 autoencoder trained `steps` steps; two scalars to `run` every step and 16
    reconstructions every AE_IMAGES_EVERY steps."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 784))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(0))
    for step in range(1, steps + 1):
        start = (step - 1) * AE_BATCH % (len(x_all) - AE_BATCH)
        x = x_all[order[start:start + AE_BATCH]]
        logits = model(x)
        loss = F.binary_cross_entropy_with_logits(logits, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        l1 = (torch.sigmoid(logits.detach()) - x).abs().mean()
        if run is not None:
            run.log({"train/loss": loss.detach(), "train/l1": l1}, step=step)
            if step % AE_IMAGES_EVERY == 0:
                run.images("reconstructions", torch.sigmoid(logits.detach()[:16]).view(-1, 1, 28, 28), step=step)


def process_cpu(pid: int | None) -> float:
    """A process's CPU seconds (user and system) from /proc, or 0 where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def small_round(x_all: torch.Tensor, steps: int, kind: str | None, out: Path, server: int | None
                ) -> dict[str, float]:
    """One round of one contender: seconds in all, and for a tracked one what its parts cost."""
    server_cpu = process_cpu(server)
    started = time.perf_counter()
    if kind is None:
        autoencoder_steps(x_all, steps, None)
        return {"seconds": time.perf_counter() - started}
    run = Timed(track.run("bench-small", {"batch_size": AE_BATCH}, out=out, logger=kind))
    began = time.perf_counter()
    autoencoder_steps(x_all, steps, run)
    ended = time.perf_counter()
    done = run.run.finish()
    finished = time.perf_counter()
    return {"seconds": finished - started, "start": began - started, "finish": finished - ended, "inside": run.cpu,
            "sender": done["logging"]["sender_cpu_seconds"], "server": process_cpu(server) - server_cpu}


def small(kinds: list[str], rounds: int, steps: int, folder: Path, server: int | None) -> list[dict[str, Any]]:
    """(b): the contenders round-robin, a warm-up round first (its start pays the imports)."""
    dataset = data.load(DataSpec(root=str(ROOT / "data")), torch.device("cpu"))
    x_all = (dataset.train.x * dataset.info.std[0] + dataset.info.mean[0]).flatten(1).clamp(0, 1)
    names: dict[str, str | None] = {"bare": None, **{f"track, {k}": k for k in kinds}}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for n in range(rounds + 1):
        for name, kind in names.items():
            results[name].append(small_round(x_all, steps, kind, folder / f"small-{kind}-{n}", server))
    base = [r["seconds"] for r in results["bare"][1:]]
    rows = []
    for name, (warm_up, *timed) in results.items():
        times = [r["seconds"] for r in timed]
        row = {"contender": name, "median": statistics.median(times), "low": min(times), "high": max(times),
               "ratio": statistics.median(times) / statistics.median(base), "paired": paired(times, base)}
        if name != "bare":
            row.update({part: statistics.median(r[part] for r in timed) for part in timed[0] if part != "seconds"})
            row["cold_start"] = warm_up["start"]
        rows.append(row)
    return rows


def lightning_fit(split: data.Split, make_logger: Callable[[], Any], log_every: int) -> Callable[[], None]:
    """A fresh Trainer, logger and model each call: one epoch of `fit`, the overhead-free settings."""
    import lightning.pytorch as pl
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

    sys.path.insert(0, str(ROOT / "examples"))
    from lightning_mlp import MLP

    train = TensorDataset(split.x, split.y)

    def fit() -> None:
        torch.manual_seed(0)
        sampler = BatchSampler(RandomSampler(train, generator=torch.Generator().manual_seed(0)), BATCH, False)
        logger = make_logger()
        trainer = pl.Trainer(max_epochs=1, logger=logger, log_every_n_steps=log_every, accelerator="cpu",
                             enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        with logger if hasattr(logger, "__exit__") else contextlib.nullcontext():  # a RunnerLogger's run ends here
            trainer.fit(MLP(lr=LR), DataLoader(train, sampler=sampler, batch_size=None))
    return fit


def lightning(split: data.Split, kinds: list[str], rounds: int, log_every: int, folder: Path) -> list[dict[str, Any]]:
    import logging

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from runner.adapters.lightning import RunnerLogger

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # its per-fit notices
    made = iter(range(1_000_000))
    loggers: dict[str, Callable[[], Any]] = {
        "no logger": lambda: False,
        "CSVLogger": lambda: CSVLogger(folder / "csv", name="mlp"),
        "TensorBoardLogger": lambda: TensorBoardLogger(folder / "tb", name="mlp"),
        **{f"RunnerLogger, {k}": (lambda k=k: RunnerLogger("bench-lightning", out=folder / f"pl-{k}-{next(made)}",
                                                            logger=k)) for k in kinds}}
    seconds = {name: times[1:] for name, times in alternate(
        {name: lightning_fit(split, make, log_every) for name, make in loggers.items()}, rounds).items()}
    floor, csv = statistics.median(seconds["no logger"]), statistics.median(seconds["CSVLogger"])
    return [{"contender": name, "median": statistics.median(t), "low": min(t), "high": max(t),
             "ratio": statistics.median(t) / floor, "paired": paired(t, seconds["no logger"]),
             "csv": statistics.median(t) / csv} for name, t in seconds.items()]


def paired(times: list[float], base: list[float]) -> float:
    """The median of each round's ratio: the contenders of a round ran back to back, so drift cancels."""
    return statistics.median(t / b for t, b in zip(times, base))


def render_small(rows: list[dict[str, Any]], args: argparse.Namespace, load: list[float]) -> str:
    """(b)'s paragraph and table, between their own markers."""
    lines = [SMALL_BEGIN, f"A small loop ({time.strftime('%Y-%m-%d')}, torch {torch.get_num_threads()} threads, load "
             f"average {load[0]:.1f} / {load[1]:.1f}), {args.small_rounds} rounds: a 784-64-784 autoencoder (Adam, batch 64, "
             f"{args.small_steps:,} steps, {rows[0]['median'] / args.small_steps * 1e3:.2f} ms each bare), logging two tensors every step and 16 "
             f"reconstructions every {AE_IMAGES_EVERY} steps, a fresh `track.run` each round, its time from "
             "`track.run` to the end of `finish()`. `start` and `finish`: their seconds; `in calls`: the loop "
             "thread's CPU in `run.log` and `run.images`, per step; `sender` and `server`: CPU seconds of the "
             "sender thread and of the Visdom server process during the round (both share the cores with torch's "
             "threads). Medians; the first round's `track.run` (its imports) took "
             + ", ".join(f"{r['cold_start']:.2f} s ({r['contender']})" for r in rows if "cold_start" in r) + ".", "",
             "| contender | median s | min | max | x bare | paired | start s | finish s | in calls, us/step | "
             "sender CPU s | server CPU s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parts = ("| | | | |" if "inside" not in r else
                 f"| {r['start']:.3f} | {r['finish']:.3f} | {r['inside'] / args.small_steps * 1e6:.1f} | "
                 f"{r['sender']:.3f} | {r['server']:.3f} |")
        lines.append(f"| {r['contender']} | {r['median']:.3f} | {r['low']:.3f} | {r['high']:.3f} | {r['ratio']:.3f} | "
                     f"{r['paired']:.3f} {parts}")
    return "\n".join([*lines, SMALL_END])


def render(plain_rows: list[dict[str, Any]], pl_rows: list[dict[str, Any]], args: argparse.Namespace,
           load: list[float], small_rows: list[dict[str, Any]]) -> str:
    versions = ""
    if pl_rows:
        import lightning

        versions = f", Lightning {lightning.__version__}"
    lines = [BEGIN, "## Tracking your own loop: `runner.track` and the Lightning logger", "",
             f"`python benchmarks/tracking.py --write` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
             f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''}){versions}, "
             f"CPU). One epoch of the tutorial's 784-200-200-10 MLP on real MNIST (batch 200, "
             f"{-(-args.samples // BATCH)} steps), contenders alternated, medians after a warm-up. Load average "
             f"(1 min) before and after: {load[0]:.1f} / {load[1]:.1f} (the machine is shared).", "",
             f"A plain loop, {args.rounds} rounds: `bare` computes the loss, batch accuracy and learning rate and "
             "logs nothing; the others pass those three (two of them tensors) to `run.log` every step. `inside`: "
             "the loop's seconds in `run.log` over the epochs'. `x bare`: the ratio of medians; `paired`: the "
             "median of each round's ratio (a round runs the contenders back to back, so drift cancels).", "",
             "| contender | median s/epoch | min | max | x bare | paired | inside |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['contender']} | {r['median']:.3f} | {r['low']:.3f} | {r['high']:.3f} | {r['ratio']:.3f} | "
              f"{r['paired']:.3f} | {r['inside']} |" for r in plain_rows]
    if small_rows:
        lines += ["", render_small(small_rows, args, load)]
    if pl_rows:
        lines += ["", f"Lightning, {args.lightning_rounds} rounds of `trainer.fit` for one epoch (a fresh Trainer, "
                  f"logger and model each), `log_every_n_steps={args.log_every}`, no progress bar, checkpointing, "
                  "model summary or validation:", "",
                  "| logger | median s/fit | min | max | x no logger | paired | x CSVLogger |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['contender']} | {r['median']:.3f} | {r['low']:.3f} | {r['high']:.3f} | {r['ratio']:.3f} | "
                  f"{r['paired']:.3f} | {r['csv']:.3f} |" for r in pl_rows]
    return "\n".join([*lines, END]) + "\n"


def write(text: str, path: Path, small_only: bool = False) -> None:
    if not small_only:
        sections.write(text, path, BEGIN, END)
        return
    old = path.read_text()
    if SMALL_BEGIN not in old:  # the first time: (b)'s block goes at the end of the tracking section
        path.write_text(old.replace(END, f"{SMALL_BEGIN}\n{SMALL_END}\n{END}"))
    sections.write(text, path, SMALL_BEGIN, SMALL_END)


Rows = list[dict[str, Any]]


def measure(args: argparse.Namespace, server: Any) -> tuple[Rows, Rows, Rows]:
    split = data.load(DataSpec(root=str(ROOT / "data"), train_limit=args.limit), torch.device("cpu")).train
    args.samples = len(split)
    kinds = ["null", "visdom"] if server else ["null"]
    with tempfile.TemporaryDirectory() as tmp:
        small_rows = small(kinds, args.small_rounds, args.small_steps, Path(tmp), server and server.pid)
        if args.small_only:
            return [], [], small_rows
        plain_rows = plain(split, kinds, args.rounds, Path(tmp))
        pl_rows = [] if args.no_lightning else lightning(split, kinds, args.lightning_rounds, args.log_every, Path(tmp))
    return plain_rows, pl_rows, small_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed epochs per plain-loop contender")
    parser.add_argument("--small-rounds", type=int, default=7, help="timed rounds per small-loop contender")
    parser.add_argument("--small-steps", type=int, default=3000, help="steps of the small loop")
    parser.add_argument("--small-only", action="store_true", help="the small loop only")
    parser.add_argument("--lightning-rounds", type=int, default=7, help="timed fits per Lightning contender")
    parser.add_argument("--log-every", type=int, default=1, help="Lightning's log_every_n_steps")
    parser.add_argument("--no-visdom", action="store_true", help="the null logger only")
    parser.add_argument("--no-lightning", action="store_true")
    parser.add_argument("--limit", type=int, help="train on the first N examples only (a quick check)")
    parser.add_argument("--threads", type=int, help="torch's threads (default: its own choice); 1 is steadier "
                                                     "on a machine shared with other work")
    parser.add_argument("--write", action="store_true", help="put the tables in docs/BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    if not args.no_lightning and importlib.util.find_spec("lightning") is None:
        print("Lightning is not installed (`make install-extras` installs it): the plain loop only.", file=sys.stderr)
        args.no_lightning = True
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="lightning")  # a validation_step without validation data, ...
    load = [os.getloadavg()[0]]
    if args.no_visdom:
        plain_rows, pl_rows, small_rows = measure(args, None)
    else:
        from dashboards.visdom import server as visdom_server

        with visdom_server.running() as handle:
            os.environ["VISDOM_PORT"] = str(handle.port)  # the runs' dashboards: this private server
            plain_rows, pl_rows, small_rows = measure(args, handle)
    load.append(os.getloadavg()[0])
    text = render_small(small_rows, args, load) if args.small_only else render(plain_rows, pl_rows, args, load, small_rows)
    print(text)
    if args.write:
        write(text, args.output, args.small_only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
