"""Benchmark: what the tracking API and its Lightning logger cost a training loop. Prints two tables;
`--write` puts them in docs/BENCHMARKS.md (its own section, which bench.py keeps).

(a) A plain loop of one's own: one epoch of the tutorial's 784-200-200-10 MLP on real MNIST (batch
    200, SGD, 300 steps) over tensors in memory, computing its loss, batch accuracy and learning
    rate each step; `bare` logs nothing, the others call `run.log({...3 scalars...}, step=step)`
    every step into a `track.run` with `logger="null"` (the journal only) or `logger="visdom"` (a
    live dashboard on a private Visdom server started for the benchmark).
(b) The same MLP as a LightningModule (examples/lightning_mlp.py) trained one epoch by a Trainer with
    no logger, Lightning's CSVLogger, its TensorBoardLogger, or our RunnerLogger (null, visdom),
    `log_every_n_steps` the same for all and Lightning's overhead-free settings (no progress bar, no
    checkpointing, no model summary, no validation); a fresh Trainer, logger and model (same seed)
    each time, `trainer.fit` timed.
Contenders alternate (round-robin), so machine drift hits them alike; the cost is the ratio of
median times. `inside`: the loop's own seconds in run.log over the epochs' (from each run's summary).

Usage: python benchmarks/tracking.py [--rounds 15] [--lightning-rounds 7] [--log-every 1] [--no-visdom]
                                     [--no-lightning] [--limit N] [--threads N] [--write]
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
LR, BATCH = 0.01, 200


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


def render(plain_rows: list[dict[str, Any]], pl_rows: list[dict[str, Any]], args: argparse.Namespace,
           load: list[float]) -> str:
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
    if pl_rows:
        lines += ["", f"Lightning, {args.lightning_rounds} rounds of `trainer.fit` for one epoch (a fresh Trainer, "
                  f"logger and model each), `log_every_n_steps={args.log_every}`, no progress bar, checkpointing, "
                  "model summary or validation:", "",
                  "| logger | median s/fit | min | max | x no logger | paired | x CSVLogger |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['contender']} | {r['median']:.3f} | {r['low']:.3f} | {r['high']:.3f} | {r['ratio']:.3f} | "
                  f"{r['paired']:.3f} | {r['csv']:.3f} |" for r in pl_rows]
    return "\n".join([*lines, END]) + "\n"


def write(text: str, path: Path) -> None:
    sections.write(text, path, BEGIN, END)


def measure(args: argparse.Namespace, port: int | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    split = data.load(DataSpec(root=str(ROOT / "data"), train_limit=args.limit), torch.device("cpu")).train
    args.samples = len(split)
    kinds = ["null", "visdom"] if port else ["null"]
    with tempfile.TemporaryDirectory() as tmp:
        plain_rows = plain(split, kinds, args.rounds, Path(tmp))
        pl_rows = [] if args.no_lightning else lightning(split, kinds, args.lightning_rounds, args.log_every, Path(tmp))
    return plain_rows, pl_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed epochs per plain-loop contender")
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
        plain_rows, pl_rows = measure(args, None)
    else:
        from dashboards.visdom import server as visdom_server

        with visdom_server.running() as handle:
            os.environ["VISDOM_PORT"] = str(handle.port)  # the runs' dashboards: this private server
            plain_rows, pl_rows = measure(args, handle.port)
    load.append(os.getloadavg()[0])
    text = render(plain_rows, pl_rows, args, load)
    print(text)
    if args.write:
        write(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
