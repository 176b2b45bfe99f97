"""Your own training loop, watched the same way as the runner's: `from runner import track`.

    from runner import track

    with track.run("my-ae", config={"lr": 1e-3, "width": 64}) as run:
        for step, x in enumerate(loader, 1):
            ...
            run.log({"train/loss": loss, "train/kl": kl}, step=step)    # tensors or numbers
            if step % 500 == 0:
                run.images("reconstructions", recon[:16], step=step)  # [N, C, H, W], float 0..1 or uint8
        run.log({"test/loss": test_loss}, step=step)
        run.summary["best_psnr"] = best

A tracked run is a run directory like the runner's own: `spec.json` is the config, `metrics.jsonl`
the journal (every value, `replay`able), `summary.json` the end (the summary given, each scalar's
last value, the status, the logging cost); the dashboard is the same live Visdom env (one chart per
group of names: `train/loss` and `train/kl` share the `train` chart), and `compare` and `report` read
it as they read any run.

Reading a value on a GPU waits for the GPU, so values are kept as they are given (tensors stay on
their device) and read together every `every` calls or `seconds` seconds, whichever comes first, as
the runner reads its losses. The loop must never die because of its tracker: a value that is not a
number, an image of the wrong shape or a name that cannot title a chart is warned about once and
ignored; a non-finite value is recorded as it is; a dashboard that is down is the sender's business
(one warning); a journal that can no longer be written (a full disk) is warned about once and the
run goes on without it. Only `track.run` itself refuses bad arguments (a name, a config that is not
JSON or is nested more than 64 levels deep, a directory that is not a new run's), before anything is
written. The summary given is written as JSON whatever it holds, bounded (runner.tracked.plain).
A run has at most MAX_NAMES (10,000) distinct names, so that its summary.json, its dashboard and
its report stay bounded: the values of later new names are warned about once, counted in
summary.json's `names_left_out` (with the first of them) and not recorded.

Importing this module imports neither torch nor any dashboard; a run imports what its loggers need.
Calls are expected from one thread (the loop's).
"""

from __future__ import annotations

import atexit
import math
import numbers
import operator
import re
import reprlib
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from runner import tracked
from runner.tracked import TrackError

NAME = re.compile(r"[\w.\-/ ]{1,100}")  # a scalar's, images' or text's name: it titles a chart
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # as an experiment's: it names a directory
MAX_IMAGES = 64  # per images call; more are dropped
MAX_SIDE = 128  # pixels a side; larger images are refused (the journal keeps every pixel as a number)
MAX_TEXT = 10_000  # characters of a text call; more are cut
MAX_NAMES = 10_000  # distinct names of a run (scalars, images, texts); later new ones are warned about and ignored
EPOCH = 0  # a tracked run counts steps, not epochs


def run(name: str, config: Mapping[str, Any] | None = None, *, out: str | Path | None = None,
        logger: str = "visdom", every: int = 20, seconds: float = 1.0) -> "Run":
    """Start a tracked run: runs/<name>-<timestamp>/ (or `out`), its journal and its loggers (`logger`:
    kinds as `--logger` takes them: visdom, tensorboard, null). Values are read every `every` calls
    of `log` or `seconds` seconds. Use it as a context manager, or call `finish()`; a run left open
    is finished when the interpreter exits."""
    return Run(name, config, out=out, logger=logger, every=every, seconds=seconds)


class Run:
    """One tracked run: `log`, `images`, `text`, `summary`, `finish`."""

    def __init__(self, name: str, config: Mapping[str, Any] | None, *, out: str | Path | None, logger: str,
                 every: int, seconds: float) -> None:
        from runner import runs
        from runner.loggers import JsonlLogger

        config, kinds = check(name, config, logger=logger, every=every, seconds=seconds)
        self.name, self.config, self.every, self.seconds = name, config, every, float(seconds)
        self.run_dir = tracked.new_dir(name, Path(out) if out is not None else None, config)
        self.summary: dict[str, Any] = {}  # yours: merged into summary.json at the end
        self.last: dict[str, float] = {}  # each scalar's last value
        self.step = 0
        self.finished = False
        self._warned: set[str] = set()
        self._names: set[str] = set()  # names already found good
        self._names_left_out: dict[str, Any] = {"after": MAX_NAMES, "values": 0, "first": []}
        self._dtypes: dict[Any, bool] = {}  # array and tensor element types, found numeric or not
        self._tensor_types: set[type] = set()  # of CPU tensors read by `_number`: log reads them at once
        self._cpu_dtypes: set[Any] = set()  # their numeric element types
        self._pending: list[tuple[int, str, Any]] = []
        self._calls = 0  # log calls since the last flush
        self._flushed_at = time.perf_counter()
        self._started = time.perf_counter()
        self._inside = 0.0  # seconds of the loop's thread spent in these calls
        self._held = runs.lock(self.run_dir, runs.OWN)
        self._held.__enter__()
        self._loggers: list[Any] = []
        try:
            self._loggers.append(JsonlLogger(self.run_dir / runs.JOURNAL))
            self._loggers += tracked.make_loggers(kinds, name, self.run_dir)
            made = tracked.provenance_now()
        except BaseException:  # nothing half-made is left held: the loggers closed, the directory let go
            for logger in self._loggers:
                logger.close(None)
            self._held.__exit__(None, None, None)
            raise
        self._provenance = tracked.brief(made)
        info = {"name": name, "tracked": True, "spec": config, "run_dir": str(self.run_dir),
                "python": sys.version.split()[0], **self._where(), "provenance": made}
        self._each("start", info)
        atexit.register(self._at_exit)

    # ----- the loop's calls -----

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Scalars at a step (default: the step after the last one): numbers, or one-element tensors
        on any device, read later in batches."""
        # The hot path of a fast loop: each Python operation here costs the loop about a microsecond
        # (its caches are cold after torch's kernels), so plain numbers and CPU tensors of a kind seen
        # before take the shortest way; everything else is checked, and warned about, in `_number`.
        started = time.perf_counter()
        try:
            if type(step) is int and step > self.step:  # the usual: the next step, given
                self.step = step
            else:
                step = self._step(step)
            if type(values) is not dict and not isinstance(values, Mapping):
                self._warn("values", f"run.log takes a dict of names to numbers, not {type(values).__name__}; "
                                     "ignored")
                return
            names, pending, tensors, dtypes = self._names, self._pending, self._tensor_types, self._cpu_dtypes
            for key, value in values.items():
                if key not in names and not self._name_ok(key):
                    continue
                kind = type(value)
                if kind is not float and kind is not int:
                    if kind in tensors and value.is_cpu and value.dtype in dtypes and value.numel() == 1:
                        value = value.item()  # as it is now: a tensor updated in place later must not change it
                    else:
                        value = self._number(key, value)
                        if value is None:
                            continue
                pending.append((step, key, value))
            self._calls += 1
            if self._calls >= self.every or started - self._flushed_at >= self.seconds:
                self.flush()
        finally:
            self._inside += time.perf_counter() - started

    def images(self, name: str, images: Any, step: int | None = None) -> None:
        """Images [N, C, H, W] (or one [C, H, W]), float in 0..1 or uint8, C 1 or 3; the first
        MAX_IMAGES of them."""
        started = time.perf_counter()
        try:
            step = self._step(step, same=True)
            pixels = self._pixels(name, images) if self._name_ok(name) else None
            if pixels is not None:
                self.flush()
                self._each("media", EPOCH, step, name, pixels)
        finally:
            self._inside += time.perf_counter() - started

    def text(self, name: str, text: str, step: int | None = None) -> None:
        started = time.perf_counter()
        try:
            step = self._step(step, same=True)
            words = self._words(name, text) if self._name_ok(name) else None
            if words is not None:
                self.flush()
                self._each("text", EPOCH, step, name, words)
        finally:
            self._inside += time.perf_counter() - started

    def flush(self) -> None:
        """Read the values kept so far (one device read per device) and send them on."""
        pending, self._pending = self._pending, []
        self._flushed_at, self._calls = time.perf_counter(), 0
        if not pending:
            return
        try:
            values = tracked.read([value for _, _, value in pending])
        except Exception as exc:  # noqa: BLE001 - never into the loop: read one by one, drop what fails
            self._warn("read", f"values could not be read together ({exc!r}); read one by one")
            values, kept = [], []
            for entry in pending:
                try:
                    values += tracked.read([entry[2]])
                    kept.append(entry)
                except Exception:  # noqa: BLE001
                    self._warn(f"read {entry[1]}", f"{entry[1]} could not be read; its value at step {entry[0]} "
                                                   "is dropped")
            pending = kept
        by_step: dict[int, dict[str, float]] = {}
        for (step, key, given), value in zip(pending, values):
            if value is None:  # an int past a float's range, a signalling NaN
                self._warn(f"value {key}", f"{key}: {_shown(given)} cannot be read as a number; ignored")
                continue
            by_step.setdefault(step, {})[key] = value
            self.last[key] = value
            if not math.isfinite(value):
                self._warn(f"finite {key}", f"{key} is {value} at step {step}; recorded as it is (a gap on the charts)")
        self._each("metrics_of_steps", [(EPOCH, step, scalars) for step, scalars in by_step.items()])

    # ----- the end -----

    def finish(self, status: str = "finished", error: str = "") -> dict[str, Any]:
        """End the run: the values still kept, summary.json, the loggers closed. Once; returns the summary."""
        if self.finished:
            return self._summary
        self.finished = True
        atexit.unregister(self._at_exit)
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - a value that cannot be read must not lose the rest
            self._warn("flush", f"the last values could not be read ({exc!r})")
        wall = time.perf_counter() - self._started
        self._summary = {**tracked.plain(self.summary), "name": self.name, "tracked": True, "status": status,
                         **({"error": error} if error else {}), "steps": self.step, "last": dict(self.last),
                         "wall_seconds": round(wall, 4), "run_dir": str(self.run_dir), **self._where(),
                         "provenance": self._provenance, "logging": self._cost(wall),
                         **({"names_left_out": self._names_left_out} if self._names_left_out["values"] else {})}
        self._write_summary()
        loggers = list(self._loggers)
        self._each("close", self._summary)
        # The dashboard's part of the cost is known once its sender has drained, as for a runner run.
        self._loggers = loggers
        self._summary["logging"] = self._cost(wall)
        self._loggers = []
        self._write_summary()
        self._held.__exit__(None, None, None)
        return self._summary

    def _write_summary(self) -> None:
        from runner import runs
        from runner.files import write_json

        try:
            write_json(self.run_dir / runs.SUMMARY, self._summary)
        except OSError as exc:
            self._warn("summary", f"{self.run_dir / runs.SUMMARY} could not be written ({exc.strerror})")

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.finish()
        elif isinstance(exc, KeyboardInterrupt):
            self.finish("stopped", "stopped by Ctrl-C")
        else:
            text = (str(exc).strip().splitlines() or [""])[0]
            self.finish("failed", f"{type(exc).__name__}: {text}" if text else type(exc).__name__)

    def _at_exit(self) -> None:
        """A run left open: failed if the script died of an error (Python keeps it in sys.last_value)."""
        error = getattr(sys, "last_value", None)
        if isinstance(error, BaseException):
            self.__exit__(type(error), error, None)
        else:
            self.finish()

    # ----- the rest -----

    def _step(self, step: Any, same: bool = False) -> int:
        """`step`, or the next one (`same`: the current one, for images and texts beside the scalars)."""
        if step is not None:
            try:
                if isinstance(step, bool):
                    raise TypeError
                step = operator.index(step)
            except Exception:  # noqa: BLE001 - a tensor of several values, a float, NaN: never into the loop
                self._warn("step", f"step must be a whole number, not {str(step)[:60]}; the next step is used")
                step = None
        if step is None:
            step = max(self.step, 1) if same else self.step + 1
        self.step = max(self.step, step)
        return step

    def _name_ok(self, name: Any) -> bool:
        if isinstance(name, str) and name in self._names:
            return True
        if isinstance(name, str) and NAME.fullmatch(name):
            if len(self._names) < MAX_NAMES:
                self._names.add(name)
                return True
            self._left_out(name)
            return False
        self._warn(f"name {name!r}", f"{name!r} cannot name a chart (1 to 100 letters, digits, spaces and _ . - /); "
                                     "its values are ignored")
        return False

    def _left_out(self, name: str) -> None:
        """A value of a name past MAX_NAMES: counted in summary.json's `names_left_out`, not recorded."""
        left = self._names_left_out
        left["values"] += 1
        if len(left["first"]) < 10 and name not in left["first"]:
            left["first"].append(name)
        self._warn("names", f"more than {MAX_NAMES:,} names: the values of {name!r} and of every later new name "
                            "are ignored (not in the journal, the dashboard or the report); summary.json's "
                            "names_left_out counts them")

    def _number(self, key: str, value: Any) -> Any:
        """A value other than a float or an int as it is now, or None after a warning: a CPU tensor's
        number (read without a wait; its type and element type then take log's shortest way), a copy
        of another device's tensor (read later), an array's or a number type's value as given."""
        try:
            if not self._value_ok(key, value):
                return None
            if not hasattr(value, "detach"):
                return value
            if value.device.type != "cpu":
                return value.detach().clone()
            number = value.item()
        except Exception as exc:  # noqa: BLE001 - an odd tensor type: never into the loop
            self._warn(f"value {key}", f"{key} could not be read ({exc!r}); ignored")
            return None
        if getattr(value, "is_cpu", None) is True:
            self._tensor_types.add(type(value))
            self._cpu_dtypes.add(value.dtype)
        return number

    def _value_ok(self, key: str, value: Any) -> bool:
        kind = type(value)
        if kind is float or kind is int:
            return True
        try:  # whatever it is, a loop's value never raises here
            dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
            if dtype is not None and shape is not None:
                if math.prod(shape) == 1 and not getattr(value, "is_meta", False):
                    sort = (kind, dtype, getattr(value, "layout", None))
                    numeric = self._dtypes.get(sort)
                    if numeric is None:
                        numeric = self._dtypes[sort] = tracked.numeric(value)
                    if numeric:
                        return True
            elif isinstance(value, numbers.Real) and not isinstance(value, bool) or \
                    isinstance(value, numbers.Number) and not isinstance(value, numbers.Complex):  # a Decimal
                return True
            what = f"a {kind.__name__} of shape {tuple(shape)}" if shape is not None else _shown(value)
        except Exception:  # noqa: BLE001 - a nested tensor has no shape; a fake one may have anything
            what = f"a value of type {kind.__name__}"
        self._warn(f"value {key}", f"{key}: {what} is not a number (log one number, or a dense tensor of one "
                                   "element); ignored")
        return False

    def _words(self, name: str, text: Any) -> str | None:
        try:
            return str(text)[:MAX_TEXT]
        except Exception as exc:  # noqa: BLE001 - a huge int, a failing __str__: never into the loop
            self._warn(f"text {name}", f"run.text({name!r}): a {type(text).__name__} that has no text ({exc}); ignored")
            return None

    def _pixels(self, name: str, images: Any) -> list | None:
        """uint8 [N][C][H][W] lists, or None after a warning."""
        try:
            import numpy as np

            a = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
            if a.ndim == 3:
                a = a[None]
            if a.ndim != 4 or a.shape[1] not in (1, 3) or not a.size or max(a.shape[2:]) > MAX_SIDE:
                raise ValueError(f"of shape {a.shape}: images are [N, C, H, W] with C 1 or 3 and sides of at most "
                                 f"{MAX_SIDE} pixels")
            a = a[:MAX_IMAGES]
            if a.dtype != np.uint8:
                a = (np.nan_to_num(a.astype(np.float32), nan=0.0).clip(0, 1) * 255).round().astype(np.uint8)
            return a.tolist()
        except Exception as exc:  # noqa: BLE001 - never into the loop
            self._warn(f"images {name}", f"run.images({name!r}): {exc}; ignored")
            return None

    def _each(self, method: str, *args: Any) -> None:
        """An event to every logger; one that fails is warned about once and left out from then on.
        `metrics_of_steps`: a chunk of `metrics` events, in one write where the logger has it."""
        if self.finished and not self._loggers:
            self._warn("finished", f"the run has finished; its {method.replace('_of_steps', '')} after that are ignored")
        for logger in list(self._loggers):
            try:
                if method == "metrics_of_steps" and not hasattr(logger, method):
                    for calls in args[0]:
                        logger.metrics(*calls)
                else:
                    getattr(logger, method)(*args)
            except Exception as exc:  # noqa: BLE001 - the loop goes on whatever a logger does
                self._loggers.remove(logger)
                what = "the journal" if type(logger).__name__ == "JsonlLogger" else type(logger).__name__
                reason = getattr(exc, "strerror", None) or repr(exc)
                self._warn(f"logger {id(logger)}", f"{what} failed ({reason}); the run goes on without it")
                try:
                    logger.close(None)
                except Exception:  # noqa: BLE001
                    pass

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            print(f"warning: track {self.name}: {message}", file=sys.stderr)

    def _where(self) -> dict[str, Any]:
        return {k: v for logger in self._loggers if hasattr(logger, "where") for k, v in logger.where().items()}

    def _cost(self, wall: float) -> dict[str, Any]:
        """summary.json's `logging`, as a runner run's: the loop's seconds in these calls over the run's."""
        from runner.loggers.base import logging_cost

        return logging_cost(self._loggers, self._inside, wall)


def _shown(value: Any) -> str:
    """A value as a warning shows it: short, and never an exception (a huge int has no digits to show)."""
    try:
        return reprlib.repr(value)[:60]
    except Exception:  # noqa: BLE001
        return f"a value of type {type(value).__name__}"


def check(name: Any, config: Any = None, *, logger: str = "visdom", every: Any = 20, seconds: Any = 1.0
          ) -> tuple[dict[str, Any], tuple[str, ...]]:
    """What `run` refuses (TrackError, or UserError for a logger kind or its missing package), checked
    without making anything; returns the config as JSON values and the logger kinds to make."""
    from runner.loggers.registry import check as check_kinds
    from runner.loggers.registry import parse

    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise TrackError(f"track.run's name is {name!r}; it names the run's directory and dashboard, so it "
                         "must be 1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit.")
    config = tracked.config(config)
    kinds = tuple(k for k in parse(logger) if k != "console")  # the console draws the runner's epochs only
    if isinstance(every, bool) or not isinstance(every, int) or every < 1 \
            or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise TrackError(f"track.run: every ({every!r}) must be a whole number >= 1 and seconds ({seconds!r}) "
                         "a number >= 0.")
    check_kinds(tuple(k for k in kinds if k != "null"))
    return config, kinds


__all__ = ["Run", "TrackError", "run"]
