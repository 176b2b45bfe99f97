"""A Lightning logger that writes a tracked run (runner.track): the Trainer's metrics into the journal
and the live dashboard, its hyperparameters into spec.json, how training ended into summary.json.

    from lightning.pytorch import Trainer
    from runner.adapters.lightning import RunnerLogger

    trainer = Trainer(max_epochs=3, logger=RunnerLogger("mnist-mlp", logger="visdom"))
    trainer.fit(model, train_loader, val_loader)      # runs/mnist-mlp-<timestamp>/
    trainer.test(model, test_loader)                  # the same run: test/... beside train/... and val/...

`RunnerLogger(name, config=None, **track_options)` takes what `track.run` takes (`out`, `logger`,
`every`, `seconds`). The run directory is chosen when the logger is made (its name is `version`, its
parent `save_dir`; `name` is empty, so that what Lightning writes at save_dir/name/version, as
ModelCheckpoint's checkpoints/, lands inside the run) but the run starts when the Trainer starts
(`log_graph`, called right after `log_hyperparams`) or at the first value logged, so the
hyperparameters the Trainer logs (`self.save_hyperparameters()`) become spec.json, merged over
`config`; any new ones logged after the run started go into the summary, under "hyperparameters".

One logger is one run, however many of `fit`, `validate` and `test` the Trainer runs with it: Lightning
calls `finalize("success")` as each of them ends, and there the values are written out and the run
stays open for the next (`python -m runner runs` shows it running). It ends once: when the script
exits (failed if it died of an error, as a `track.run` left open) or the ddp worker holding it does,
at the end of a `with RunnerLogger(...) as logger:` block (for a notebook, or a loop of runs in one
process), or as soon as a call fails (`finalize("failed")`: failed with the exception's first line, stopped for
Ctrl-C). What is logged to it after its end is dropped with one warning.

Only the process of global rank 0 writes (`rank_zero_only`, as Lightning's own loggers); elsewhere
`experiment` is Lightning's do-nothing stand-in. As `track.run`, the logger refuses a bad name,
config or logger kind when it is made; after that nothing it does raises into the Trainer.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.util
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any, Mapping

try:
    from lightning.fabric.loggers.logger import _DummyExperiment
    from lightning.fabric.utilities.logger import _convert_params, _sanitize_callable_params
    from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
    from lightning.pytorch.utilities.rank_zero import rank_zero_only
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"runner.adapters.lightning needs Lightning ({exc}); it comes with the project's `test` extra: "
                      "`pip install -e '.[test]'` (or `make install-extras`), or `pip install lightning`.") from exc

from runner import track

OPTIONS = ("out", "logger", "every", "seconds")  # track.run's keyword arguments


class RunnerLogger(Logger):
    """Lightning's Logger API over one tracked run (`experiment` is the `track.Run`)."""

    def __init__(self, name: str, config: Mapping[str, Any] | None = None, **track_options: Any) -> None:
        super().__init__()
        _check(name, config, track_options)
        self._name = name
        self._config: dict[str, Any] = dict(config or {})
        self._options = {k: v for k, v in track_options.items() if k != "out"}
        self._dir = _chosen_dir(name, track_options.get("out"))
        self._run: track.Run | None = None
        self._broken = False  # the run could not be made: the Trainer goes on without it
        self._warned: set[str] = set()

    # ----- what Lightning reads -----

    @property
    def name(self) -> str:
        """Empty: Lightning's callbacks write at save_dir/name/version (ModelCheckpoint: its checkpoints/),
        and that is the run directory only without a name between (the run's name is in `version`)."""
        return ""

    @property
    def version(self) -> str:
        """The run directory's name."""
        return self._dir.name

    @property
    def save_dir(self) -> str:
        """The folder holding the run directory."""
        return str(self._dir.parent)

    @property
    def log_dir(self) -> str:
        """The run directory."""
        return str(self._dir)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The `track.Run`. Lightning asks for it as `fit` sets up, before it logs the hyperparameters, so
        until the run has started this is a stand-in that starts it at its first use (`.log`, `.images`,
        `.summary`, ...); on ranks other than 0, Lightning's do-nothing stand-in."""
        if self._run is not None:
            return self._run
        return _Unstarted(self) if not self._broken else _DummyExperiment()

    def _start(self) -> Any:
        """The run, started now if it has not been (the Run, or Lightning's stand-in if it cannot start)."""
        if self._run is None and not self._broken:
            try:
                self._run = track.run(self._name, self._config, out=self._dir, **self._options)
            except Exception as exc:  # noqa: BLE001 - the Trainer goes on without its tracker
                self._broken = True
                self._warn("start", f"the run {self._dir} could not be started ({exc}); training goes on without it")
            else:
                if multiprocessing.parent_process() is not None:  # a ddp_spawn or ddp_fork worker: a forked one
                    # leaves without running atexit, so the run ends as multiprocessing ends the process
                    multiprocessing.util.Finalize(None, self._run.finish, exitpriority=0)
        return self._run if self._run is not None else _DummyExperiment()

    # ----- what Lightning calls -----

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        values = _jsonable(_sanitize_callable_params(_convert_params(params)))
        if self._run is None:  # not started: they are the run's config
            self._config.update(values)
            return
        new = {k: v for k, v in values.items() if k not in self._run.config or self._run.config[k] != v}
        if new and self._open("hyperparameters"):  # a `test` after `fit` logs the same ones again
            self._run.summary["hyperparameters"] = {**self._run.summary.get("hyperparameters", {}), **new}

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """The Trainer calls it as it starts, right after log_hyperparams: the run starts here, so its
        dashboard is live from the first step and spec.json holds those hyperparameters."""
        self._start()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._open("metrics"):
            self._run.log(metrics, step=step)

    def save(self) -> None:
        """Nothing: the Trainer calls it after every log_metrics, and the run reads and writes its values
        in batches of its own (`every`, `seconds`) and at its end."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Lightning calls it as each `fit`, `validate` or `test` ends. "success": the values so far are
        written and the run stays open for the next call (it ends at the script's exit or the `with`
        block's end); otherwise the run ends now."""
        if status == "success":
            if self._run is not None and not self._run.finished:  # a tuner's trial fits start none
                self._run.flush()
            return
        run = self._start()  # a fit that failed before logging anything still leaves a failed run
        if not isinstance(run, track.Run) or run.finished:
            return
        if status == "failed" and sys.exc_info()[1] is not None:
            run.__exit__(*sys.exc_info())  # as `with track.run(...)` ends: failed, or stopped for Ctrl-C
        else:
            run.finish("failed" if status == "failed" else "stopped", f"Lightning ended the run ({status})")

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._run is not None and not self._run.finished:
            best = getattr(checkpoint_callback, "best_model_path", "") or getattr(checkpoint_callback,
                                                                                  "last_model_path", "")
            if best:
                self._run.summary["checkpoint"] = str(best)

    def __enter__(self) -> "RunnerLogger":
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        """The run ends with the block, as a `with track.run(...)` block ends it (failed on an exception)."""
        if self._run is not None:
            self._run.__exit__(kind, exc, tb)

    def __getstate__(self) -> dict[str, Any]:
        """A copy for another process (ddp_spawn) carries no open run."""
        return {**self.__dict__, "_run": None}

    # ----- the rest -----

    def _open(self, what: str) -> bool:
        """Whether the run takes values now (starting it if need be)."""
        run = self._start()
        if not isinstance(run, track.Run):
            return False
        if run.finished:
            self._warn("finished", f"the run {run.run_dir} has ended; {what} logged after its end are not "
                                   "recorded: give what comes next a RunnerLogger of its own")
            return False
        return True

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            print(f"warning: RunnerLogger {self._name}: {message}", file=sys.stderr)


class _Unstarted:
    """`experiment` before the run has started: the first attribute asked for starts it."""

    def __init__(self, logger: RunnerLogger) -> None:
        object.__setattr__(self, "_logger", logger)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger._start(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._logger._start(), name, value)


def _check(name: str, config: Mapping[str, Any] | None, options: Mapping[str, Any]) -> None:
    """What `track.run` refuses, refused when the logger is made rather than inside `fit`."""
    from runner import runs

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"RunnerLogger takes track.run's options ({', '.join(OPTIONS)}), not {', '.join(unknown)}")
    track.check(name, config, **{k: v for k, v in options.items() if k != "out"})
    if options.get("out") is not None:
        try:
            runs.check_new(Path(options["out"]))
        except runs.RunDirError as exc:
            raise track.TrackError(str(exc).replace("--out", "out")) from None


def _chosen_dir(name: str, out: Any) -> Path:
    """`out`, or runs/<name>-<timestamp> (then -2, -3, ...) as track.run names a new run's directory."""
    from runner import runs

    return Path(out) if out is not None else runs.fresh(name)


def _jsonable(value: Any) -> Any:
    """Hyperparameters as JSON can hold them: containers kept, one-element tensors as numbers, the
    rest (a class, a non-finite number) as its text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool)) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else str(value)
    if getattr(value, "shape", None) is not None and math.prod(value.shape) == 1 and hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


__all__ = ["RunnerLogger"]
