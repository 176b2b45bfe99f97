"""The driver's side of a Ray sweep: the trials' variants, run directories and results, fed from the
relay's inbox. Each trial gets one session.Recorder here: the same journal, checkpoint file, summary,
loggers and comparison board as a local run, so the dashboard stays on the driver and a trial's run
directory is complete on the driver's disk. A trial whose process died and is retried continues from
its last checkpoint, and its journal is cut back to that checkpoint, as `--resume` does.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Callable

from runner import files, runs, status
from runner.executors import LoggersFor
from runner.sweeps import search
from runner.sweeps.plan import Plan
from runner.sweeps.record import publish
from runner.sweeps.results import Result


class Driver:
    """The driver's side of the trials: their variants, recorders and results, fed from the relay."""

    def __init__(self, plan: Plan, out: Path, loggers_for: LoggersFor, board: Any,
                 say: Callable[[str], None], results: list[Result], progress: Any) -> None:
        self.plan, self.out, self.loggers_for, self.board, self.say = plan, out, loggers_for, board, say
        self.variants = list(plan.variants)
        self.results = results
        self.progress = progress
        self.by_trial: dict[str, int] = {}  # Tune trial id -> variant index
        self.recorders: dict[int, Any] = {}  # variant index -> its session.Recorder while it trains
        self.attempts: dict[int, int] = {}
        self.node: dict[int, dict[str, Any]] = {}

    def record(self) -> None:
        publish(self.out, self.plan, self.variants, self.results, self.board)

    def handle(self, messages: list[tuple[str, str, Any]]) -> None:
        for trial_id, kind, payload in messages:
            try:
                getattr(self, f"_{kind}")(trial_id, payload)
            except Exception as exc:  # noqa: BLE001 - one trial's trouble here must not end the sweep
                i = self.by_trial.get(trial_id)
                if i is None:
                    continue
                why = f"its run directory could not be written ({type(exc).__name__}: {exc})"
                self.say(f"variant {self.variants[i].name} failed: {why}")
                recorder = self.recorders.pop(i, None)
                if recorder is not None:
                    recorder.__exit__(None, None, None)
                self.results[i] = Result.of(self.variants[i], status.FAILED, error=why)
                self.record()

    def _variant(self, trial_id: str, config: dict[str, Any]) -> int:
        if trial_id in self.by_trial:
            return self.by_trial[trial_id]
        name = config.get("variant")
        if name is not None:
            i = next(i for i, v in enumerate(self.variants) if v.name == name)
        else:
            assert self.plan.search is not None
            experiment, source = self.plan.search
            assert experiment.search is not None
            number = search.next_number(self.variants)
            self.variants.append(search.variant(experiment, source, search.values(experiment.search.space, config),
                                                number))
            self.results.append(Result.of(self.variants[-1], status.NOT_RUN))
            i = len(self.variants) - 1
        self.by_trial[trial_id] = i
        return i

    def _begin(self, trial_id: str, payload: dict[str, Any]) -> None:
        i = self._variant(trial_id, payload["config"])
        variant = self.variants[i]
        if self.results[i].status in status.SETTLED:
            return  # a late retry of a trial that had ended
        self.attempts[i] = self.attempts.get(i, 0) + 1
        self.node[i] = payload["node"]
        run_dir = self.out / variant.name
        if i in self.recorders:  # its process died: a retry
            self.recorders.pop(i).__exit__(None, None, None)
            self.say(f"{variant.name}: its process died; retrying"
                     f"{' from its last checkpoint' if payload['resumed'] else ' from the start'}")
        if variant.experiment is None:
            return
        if payload["resumed"]:
            _, checkpoint = runs.load_checkpoint(run_dir)
            self._recorder(i, checkpoint)
        self.results[i] = Result.of(variant, status.RUNNING, run_dir=run_dir)
        self.record()

    def _recorder(self, i: int, resume: dict[str, Any] | None) -> Any:
        from runner import session

        variant = self.variants[i]
        assert variant.experiment is not None
        run_dir = self.out / variant.name
        if not (run_dir / runs.SPEC).exists():
            runs.create(variant.experiment, run_dir)
        loggers = self.loggers_for(variant, run_dir, progress=self.progress)
        self.recorders[i] = session.Recorder(variant.experiment, run_dir, loggers, None, resume).__enter__()
        return self.recorders[i]

    def _event(self, trial_id: str, payload: tuple[str, tuple[Any, ...]]) -> None:
        i = self.by_trial[trial_id]
        method, args = payload
        if method == "start":
            recorder = self._recorder(i, None)
            recorder.start(args[0])
        elif i in self.recorders:
            getattr(self.recorders[i].logger, method)(*args)

    def _checkpoint(self, trial_id: str, blob: bytes) -> None:
        import torch

        i = self.by_trial[trial_id]
        if i in self.recorders:
            self.recorders[i].checkpoint(torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu"))

    def _end(self, trial_id: str, payload: dict[str, Any]) -> None:
        i = self.by_trial[trial_id]
        recorder = self.recorders.pop(i, None)
        try:
            self._settle(i, recorder, payload)
        finally:  # its loggers and the run directory's lock let go, however the ending went
            if recorder is not None:
                recorder.__exit__(None, None, None)
        self.record()

    def _settle(self, i: int, recorder: Any, payload: dict[str, Any]) -> None:
        """The run directory and the row of a trial that ended, as it says it ended."""
        variant = self.variants[i]
        run_dir = self.out / variant.name
        state = payload["status"]
        where = {"node": self.node.get(i), "attempts": self.attempts.get(i, 1),
                 **({"trial_seconds": payload["trial_seconds"]} if "trial_seconds" in payload else {})}
        if state == status.FINISHED and recorder is not None:
            blob = payload["weights"]
            summary = recorder.finished({**payload["results"], **where}, lambda path: files.write_bytes(path, blob))
            self.results[i] = Result.of(variant, status.FINISHED, summary, run_dir=run_dir)
        elif state == status.STOPPED and recorder is not None:
            recorder.ended(status.STOPPED, payload["error"], reason=payload["error"],
                           resume=f"python -m runner --resume {self.out}", **where)
            self.results[i] = Result.of(variant, status.STOPPED, error=payload["error"], run_dir=run_dir)
        else:
            if payload.get("traceback"):
                print(payload["traceback"], file=sys.stderr, end="")
            error = payload.get("error") or f"it ended ({state}) before its run directory was made"
            if recorder is not None:
                recorder.ended(state, error.splitlines()[0], **where)
            self.say(f"variant {variant.name} failed: {error}")
            self.results[i] = Result.of(variant, status.FAILED, error=error,
                                              run_dir=run_dir if run_dir.exists() else None)

    def lost(self, trial_id: str, name: str | None, why: str) -> None:
        """A trial Tune gave up on (its process died more often than retried, or it failed before it
        could say anything)."""
        i = self.by_trial.get(trial_id)
        if i is None and name is not None:
            i = next((i for i, v in enumerate(self.variants) if v.name == name), None)
        if i is None or self.results[i].status in status.SETTLED:
            return
        recorder = self.recorders.pop(i, None)
        if recorder is not None:
            try:
                recorder.ended(status.FAILED, why)
            finally:
                recorder.__exit__(None, None, None)
        variant = self.variants[i]
        run_dir = self.out / variant.name
        self.results[i] = Result.of(variant, status.FAILED, error=why,
                                          run_dir=run_dir if run_dir.exists() else None)
        self.record()

    def training(self) -> bool:
        return any(r.status == status.RUNNING for r in self.results)

    def close_all(self, why: str) -> None:
        """Whatever is still open when Tune has returned: its loggers closed, its row unfinished."""
        for i in list(self.recorders):
            self.recorders.pop(i).__exit__(None, None, None)
        for i, result in enumerate(self.results):
            if result.status == status.RUNNING:
                run_dir = self.out / self.variants[i].name
                self.results[i] = Result.of(self.variants[i], status.UNFINISHED, error=why,
                                                  run_dir=run_dir if run_dir.exists() else None)
