"""A sweep's variants (and a search's draws) as Ray Tune trials: the data loaded once on the driver
and shipped through Ray's object store, the relay started on the driver's node, Tune's searcher and
ASHA scheduler wired to it, and the driver fed every Tune step (about 0.1 s).

A trial whose process dies is retried by Tune (FailureConfig), from the last checkpoint the relay
holds for it. Tune's ASHA decides after each epoch; the decision goes back to the trial through the
relay, so a trial stopped early ends at that epoch with a summary that says so. Ctrl-C: the relay
tells each trial at its next chunk of steps; trials checkpoint and end (at most STOP_GRACE), then
Tune stops.
"""

from __future__ import annotations

import importlib
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from runner import runs
from runner.executors import LoggersFor
from runner.executors.ray.cluster import check_resources
from runner.executors.ray.driver import Driver
from runner.executors.ray.relay import Relay
from runner.executors.ray.trials import data_key, trial
from runner.sweeps import search
from runner.sweeps.plan import Plan
from runner.sweeps.record import Resumed
from runner.sweeps.results import Result, starting_results, to_run

STOP_GRACE = 60.0  # seconds the driver waits for trials to checkpoint after Ctrl-C
RETRIES = 3  # times a trial whose process died is started again


def load_while(ready: Callable[[], None], experiments: list[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The data of `experiments`, loaded and checked on another thread while `ready` starts Ray on this
    one: (data key -> dataset, data key -> why it cannot be read). Data that cannot be read fails the
    variants that train on it, each a row, as with the local executor."""
    import torch

    from runner import data

    loaded: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    failed: list[BaseException] = []

    def load() -> None:
        try:
            importlib.import_module("ray.tune")  # a second's import, overlapping Ray's start too
            for experiment in experiments:
                key = data_key(experiment)
                if key not in loaded and key not in unreadable:
                    try:
                        loaded[key] = data.load(experiment.data, torch.device("cpu"))
                    except data.DataError as exc:
                        unreadable[key] = str(exc)
        except BaseException as exc:  # noqa: BLE001 - raised on the main thread below
            failed.append(exc)

    loading = threading.Thread(target=load, name="load-data")
    loading.start()
    try:
        ready()
    finally:
        loading.join()
    if failed:
        raise failed[0]
    return loaded, unreadable


class Tuning:
    """One sweep on Tune: the relay, the driver, and whether (since when) the sweep is stopping."""

    def __init__(self, plan: Plan, out: Path, driver: Driver, shipped: dict[str, Any],
                 should_stop: Callable[[], str | None], max_concurrent: int | None) -> None:
        import ray

        self.plan, self.out, self.driver, self.shipped = plan, out, driver, shipped
        self.should_stop, self.max_concurrent = should_stop, max_concurrent
        here = ray.get_runtime_context().get_node_id()
        self.relay = ray.remote(num_cpus=0)(Relay).options(scheduling_strategy=ray.util.scheduling_strategies.
                                                           NodeAffinitySchedulingStrategy(here, soft=False)).remote()
        self.since: float | None = None
        self.hooks = _hooks()

    def drain(self) -> None:
        import ray

        self.driver.handle(ray.get(self.relay.take.remote()))
        reason = self.should_stop()
        if reason and self.since is None:
            self.since = time.monotonic()
            self.relay.stop.remote(reason)

    def lost(self, trial: Any) -> None:
        error = (getattr(trial, "error_msg", None) or "").strip().splitlines()
        self.driver.lost(trial.trial_id, trial.config.get("variant"), f"its trial failed {RETRIES + 1} times"
                         + (f" ({error[-1][:200]})" if error else ""))

    def stop_all(self) -> bool:
        return self.since is not None and (not self.driver.training() or time.monotonic() - self.since > STOP_GRACE)

    def fit(self, param_space: dict[str, Any], samples: int, search_alg: Any, scheduler: Any, base: dict[str, Any],
            space: dict[str, Any] | None, metric: str, mode: str) -> None:
        from ray import tune

        source = self.plan.search[1] if self.plan.search is not None else ""
        Feed, Quiet, Stop, _ = self.hooks

        def resources(config: dict[str, Any]) -> dict[str, float]:
            """What a variant reserves: its own train.cpus and train.gpus, drawn ones included."""
            if "variant" in config:
                chosen = base[config["variant"]]["train"]
            else:
                chosen = {**base[""]["train"], **{k.split(".", 1)[1]: v for k, v in search.values(
                    space or {}, config).items() if k.startswith("train.")}}
            return {"cpu": float(chosen.get("cpus", 1.0)), "gpu": float(chosen.get("gpus", 0.0))}

        trainable = tune.with_resources(tune.with_parameters(
            trial, relay=self.relay, base=base, shipped=self.shipped, space=space, source=source, metric=metric,
            decide=scheduler is not None), resources)
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune.TuneConfig(
            metric=metric, mode=mode, num_samples=samples, search_alg=search_alg, scheduler=scheduler,
            max_concurrent_trials=self.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name="tune", storage_path=str((self.out / ".ray").resolve()), verbose=0,
                                      callbacks=[Feed(self.drain, self.lost), Quiet()], stop=Stop(self.stop_all),
                                      log_to_file=False, failure_config=tune.FailureConfig(max_failures=RETRIES),
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)))
        tuner.fit()
        self.drain()

    def listed(self, runnable: list[Any]) -> None:
        """The listed variants (a resumed search's unfinished draws among them), one trial each."""
        from ray import tune

        self.fit({"variant": tune.grid_search([v.name for v in runnable])}, 1, None, None,
                 {v.name: v.experiment.model_dump(mode="json") for v in runnable if v.experiment is not None},
                 None, "test_accuracy", "max")

    def drawn(self) -> None:
        """A search's draws still to make: Tune's random search or OptunaSearch, ASHA if asked."""
        assert self.plan.search is not None
        searched = self.plan.search[0]
        s = searched.search
        assert s is not None
        if s.searcher == "tpe":
            from ray.tune.search.optuna import OptunaSearch

            done = search.done(self.driver.variants, self.driver.results, searched)
            known = [(search.drawn(s.space, point), value) for point, value in done if value is not None]
            searcher: Any = OptunaSearch(seed=searched.seed + len(done), points_to_evaluate=[p for p, _ in known]
                                         or None, evaluated_rewards=[v for _, v in known] or None)
        else:
            from ray.tune.search.basic_variant import BasicVariantGenerator

            searcher = BasicVariantGenerator(random_state=searched.seed + len(self.driver.variants))
        Decisions = self.hooks[3]
        scheduler = Decisions(self.relay, time_attr="epoch", grace_period=s.grace_period,
                              reduction_factor=s.reduction_factor, max_t=searched.train.epochs
                              ) if s.scheduler == "asha" else None
        self.fit(_space(s.space), self.plan.to_draw, searcher, scheduler, {"": searched.model_dump(mode="json")},
                 s.space, s.metric, s.direction)


def run(plan: Plan, out: Path, loggers_for: LoggersFor, board: Any, should_stop: Callable[[], str | None],
        say: Callable[[str], None] = print, resumed: Resumed | None = None, max_concurrent: int | None = None,
        ready: Callable[[], None] = lambda: None) -> tuple[list[Result], BaseException | None]:
    """The local executor's contract, on Ray Tune. `ready` starts Ray (cluster.connected's); the data
    is loaded meanwhile."""
    import ray

    from runner import train
    from runner.loggers.console import shared_progress

    results = starting_results(plan.variants, resumed)
    runnable = [plan.variants[i] for i in to_run(plan.variants, results)]
    searched = plan.search[0] if plan.search is not None and plan.to_draw else None
    experiments = [v.experiment for v in runnable] + ([searched] if searched is not None else [])
    loaded, unreadable = load_while(ready, experiments)
    largest_draw = [search.most_resources(searched)] if searched is not None else []
    check_resources([v.experiment for v in runnable if v.experiment is not None] + largest_draw, ray.nodes())
    shipped: dict[str, Any] = {key: ray.put({"train_x": d.train.x.numpy(), "train_y": d.train.y.numpy(),
                                             "test_x": d.test.x.numpy(), "test_y": d.test.y.numpy(), "info": d.info})
                               for key, d in loaded.items()}
    shipped.update(unreadable)
    loaded.clear()
    progress = shared_progress()
    tuning = Tuning(plan, out, Driver(plan, out, loggers_for, board, say, results, progress), shipped, should_stop,
                    max_concurrent)
    for variant in runnable:
        if (out / variant.name / runs.CHECKPOINT).is_file():  # a stopped sweep: its variants go on from here
            tuning.relay.seed.remote(variant.name, (out / variant.name / runs.CHECKPOINT).read_bytes())
    tuning.driver.record()
    if should_stop():  # Ctrl-C while Ray started: nothing has run
        tuning.since = time.monotonic()
    try:
        with progress:
            if runnable and tuning.since is None:
                tuning.listed(runnable)
            if searched is not None and tuning.since is None:
                tuning.drawn()
    finally:
        shutil.rmtree(out / ".ray", ignore_errors=True)
        tuning.driver.close_all("the sweep ended while it trained")
        tuning.driver.record()
    if tuning.since is None:
        return tuning.driver.results, None
    stopped = train.Stopped(str(should_stop()), 0)
    stopped.args = (f"stopped by {should_stop()}",)  # several trials, each at its own step
    return tuning.driver.results, stopped


def _hooks() -> tuple[type, type, type, type]:
    """Tune's callbacks, stopper and scheduler that connect it to the driver. Tune pickles its
    settings (to restore an experiment, which this executor does itself): they pickle as empty."""
    from ray import tune
    from ray.tune.progress_reporter import TrialProgressCallback
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class Unpickled:
        def __getstate__(self) -> dict[str, Any]:
            return {}

    class Feed(Unpickled, tune.Callback):
        """Takes the relay's inbox every Tune step, and when a trial ends."""

        def __init__(self, drain: Callable[[], None], lost: Callable[[Any], None]) -> None:
            self.drain, self.lost = drain, lost

        def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
            self.drain()

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.drain()

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.drain()
            self.lost(trial)

    class Quiet(Unpickled, TrialProgressCallback):
        """In place of Tune's console callback, which prints "Trial ... completed" for a trial that
        reported nothing (one a stopping sweep skips), whatever `verbose` says."""

        def _print(self, msg: str) -> None:
            pass

    class Stop(Unpickled, tune.Stopper):
        """Ends the whole run once a stopping sweep's trials have checkpointed."""

        def __init__(self, stop_all: Callable[[], bool]) -> None:
            self.stop_all = stop_all  # type: ignore[method-assign]

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

    class Decisions(ASHAScheduler):
        """ASHA, telling each trial (through the relay) whether it goes on after an epoch. Tune itself
        is told to go on: a trial ASHA stops ends itself at that epoch, its summary and journal whole,
        rather than being cut off wherever its process happens to be."""

        def __init__(self, relay: Any, **options: Any) -> None:
            super().__init__(**options)
            self.relay = relay

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            self.relay.decide.remote(trial.trial_id, int(result["epoch"]), decision == TrialScheduler.CONTINUE)
            return TrialScheduler.CONTINUE

    return Feed, Quiet, Stop, Decisions


def _space(space: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
    """A search space in Tune's terms; choices drawn as indices (search.values maps them back)."""
    from ray import tune

    out = {}
    for key, dist in space.items():
        (kind, args), = dist.items()
        out[key] = {"uniform": lambda: tune.uniform(*args), "loguniform": lambda: tune.loguniform(*args),
                    "randint": lambda: tune.randint(args[0], args[1] + 1),
                    "choice": lambda: tune.choice(list(range(len(args))))}[kind]()
    return out
