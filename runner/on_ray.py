"""The Ray executor (`--executor ray`): a sweep's or search's variants as Ray Tune trials.

Design: the driver keeps everything a person looks at, and trials only compute.

- Each trial trains with `train.fit` wherever Tune places it. Its events (every step's loss, the
  evaluations, the predictions), its checkpoints (bytes) and its ending go, in order, to the *relay*:
  a small actor without a CPU of its own, pinned to the driver's node. Calls from one trial to one
  actor arrive in the order sent, and Ray's transport is the cluster's own (token-authenticated
  where the cluster is), so nothing new is opened to the network.
- The driver takes the relay's inbox every Tune step (~0.1 s) and feeds it to one session.Recorder
  per trial: the same journal, checkpoint file, summary, loggers and comparison board as a local
  run. So the dashboard stays bound to 127.0.0.1 on the driver, trials need neither to reach it nor
  a shared filesystem, and a trial's run directory is complete on the driver's disk.
- The data is loaded (and checked) once on the driver and shipped through Ray's object store;
  a variant whose data cannot be read fails with the reason, a row like any other.
- A trial whose process dies is retried by Tune (FailureConfig); it continues from the last
  checkpoint the relay holds for it, and the driver cuts the journal back to that checkpoint, as
  `--resume` does. A trial whose training raises sends the error and ends normally: an error is a
  row in the table, and retrying it would fail again.
- Tune's ASHAScheduler decides after each epoch; the decision goes back to the trial through the
  relay, so a trial stopped early ends at that epoch with a summary that says so.
- Ctrl-C: the relay tells each trial at its next chunk of steps; trials checkpoint and end, then
  Tune stops; `--resume SWEEP_DIR` continues from those checkpoints (read from the run directories
  and handed to the trials through the relay).

Ray is imported only here, and only by `--executor ray`.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from runner import runs, search, sweep
from runner import spec as specs
from runner.loggers import BaseLogger

CONNECT_TIMEOUT = 10.0  # seconds to reach --ray-address before giving up
DECISION_TIMEOUT = 120.0  # seconds a trial waits for the scheduler's word before going on
STOP_GRACE = 60.0  # seconds the driver waits for trials to checkpoint after Ctrl-C
RETRIES = 3  # times a trial whose process died is started again


class RayError(Exception):
    """Ray is missing or the cluster cannot be reached; the message says what to do."""


def available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.tune") is not None
    except (ImportError, ValueError):
        return False


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse an address that is not HOST:PORT or does not answer within `timeout` seconds."""
    if address == "auto":  # Ray's own: the cluster `ray start` made on this machine
        return
    if address.startswith("ray://"):
        raise RayError(f"--ray-address {address}: Ray Client addresses (ray://) are not supported, since the "
                       "driver must run where the dashboard is; give the head's HOST:PORT (default port 6379) "
                       "and run the runner on a machine of the cluster.")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayError(f"--ray-address {address!r}: expected HOST:PORT of a cluster's head, e.g. 10.0.0.5:6379 "
                       "(the address `ray start --head` prints).")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayError(f"--ray-address {address}: no Ray cluster answered within {timeout:g} s ({exc.strerror or exc})."
                       f" Start one with `ray start --head --port={port}` there, check the address and firewall, "
                       "or leave --ray-address (and RAY_ADDRESS) out to run Ray on this machine alone.") from None


@contextmanager
def connected(address: str | None, last_words: list[Callable[[], None]] | None = None
              ) -> Iterator[Callable[[], None]]:
    """Ray for this sweep: joined to the cluster at `address`, or started here for the sweep alone
    (on loopback, its temporary files in a directory of its own, deleted afterwards, and by a hard
    exit too when `last_words` is StopOnSignal's; its processes end with this one). Usage stats
    stay off. The context gives `ready()`, which starts Ray (or raises RayError) on the calling
    thread, Ray's own (its client must live on the main thread): the caller decides what runs
    meanwhile on others."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C is the runner's to handle
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"  # the run directories hold the results
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ["RAY_DEDUP_LOGS"] = "0"
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ core: no warnings on the console
    if address:
        check_address(address)
    import ray

    runtime_env = {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_USAGE_STATS_ENABLED": "0",
                                "PYTHONWARNINGS": "ignore"}}
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR, "runtime_env": runtime_env}
    if not address or address.rpartition(":")[0] in ("127.0.0.1", "localhost"):
        options["_node_ip_address"] = "127.0.0.1"  # Ray on this machine alone: on loopback, reachable from nowhere
    temp = None if address else tempfile.mkdtemp(prefix="ray-")  # short: socket paths must fit in 107 bytes
    if temp is not None and last_words is not None:
        last_words.append(lambda: shutil.rmtree(temp, ignore_errors=True))

    def ready() -> None:
        if ray.is_initialized():
            return
        print(f"joining the Ray cluster at {address}" if address else "starting Ray on this machine", flush=True)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # ray.init takes SIGTERM
        chatter, started = _Chatter(), False
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(address="local", include_dashboard=False, _temp_dir=temp, **options)
            started = True
        except Exception as exc:  # noqa: BLE001 - a version mismatch, a port that is not Ray's, no memory...
            where = f"join the Ray cluster at {address}" if address else "start Ray on this machine"
            first = (str(exc).strip().splitlines() or [""])[0]
            raise RayError(f"could not {where}: {type(exc).__name__}: {first}. Ray's own messages are above; every "
                           "node must run the same Ray version (2.60.0, `make install`) and, with "
                           "RAY_AUTH_MODE=token, have the cluster's token.") from None
        finally:
            chatter.restore(everything=not started)
            for s, handler in handlers.items():
                signal.signal(s, handler)
        for name in ("ray", "ray.tune", "ray.train", "ray.air"):  # what goes wrong is the runner's to say
            logging.getLogger(name).setLevel(logging.CRITICAL)

    try:
        yield ready
    finally:
        ray.shutdown()  # also what a failed start left running
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


class _Chatter:
    """Ray's C++ core writes start-up warnings straight to file descriptor 2 (e.g. that it found no
    route to the internet, on an offline machine). While Ray starts, fd 2 goes to a file; `restore`
    puts it back and shows what else was written meanwhile (everything, if starting failed)."""

    LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,]+ [DIWE] \d+ \d+\] \S+\.cc:\d+: ")

    def __init__(self) -> None:
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved: int | None = os.dup(2)
        os.dup2(self.file.fileno(), 2)

    def restore(self, everything: bool) -> None:
        if self.saved is None:
            return
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.saved = None
        self.file.seek(0)
        lines = self.file.read().splitlines(keepends=True)
        self.file.close()
        shown = b"".join(line for line in lines if everything or not self.LINE.match(line))
        if shown:
            sys.stderr.write(shown.decode(errors="replace"))
            sys.stderr.flush()


# ----- the relay: trials -> driver ----------------------------------------------------------------

class Relay:
    """The inbox between trials and the driver (a Ray actor on the driver's node)."""

    def __init__(self) -> None:
        self.inbox: list[tuple[str, str, Any]] = []
        self.checkpoints: dict[str, bytes] = {}
        self.decisions: dict[tuple[str, int], bool] = {}
        self.stopping: str | None = None
        self.ended: set[str] = set()  # keys of trials that sent their end: a retry has nothing to do

    def put(self, messages: list[tuple[str, str, Any]], key: str | None = None) -> str | None:
        """Queue a trial's messages (keeping its latest checkpoint under `key`); the answer is the
        reason to stop, once the sweep is stopping."""
        for _, kind, payload in messages:
            if kind == "checkpoint" and key is not None:
                self.checkpoints[key] = payload
            elif kind == "end" and key is not None and payload["status"] != "stopped":
                self.checkpoints.pop(key, None)  # it ended: nothing to retry from
                self.ended.add(key)
        self.inbox.extend(messages)
        return self.stopping

    def take(self) -> list[tuple[str, str, Any]]:
        messages, self.inbox = self.inbox, []
        return messages

    def checkpoint(self, key: str) -> bytes | None:
        return self.checkpoints.get(key)

    def seed(self, key: str, blob: bytes) -> None:
        self.checkpoints[key] = blob

    def decide(self, trial_id: str, epoch: int, go_on: bool) -> None:
        self.decisions[(trial_id, epoch)] = go_on

    def decision(self, trial_id: str, epoch: int) -> bool | None:
        return self.decisions.pop((trial_id, epoch), None)

    def stop(self, reason: str) -> None:
        self.stopping = reason

    def to_do(self, key: str) -> bool:
        """Whether a trial starting under `key` has work: not once the sweep stops or the trial ended."""
        return self.stopping is None and key not in self.ended


class Link(BaseLogger):
    """A trial's logger: its events, batched per chunk of steps, to the relay. The relay's answer
    to the previous batch says whether the sweep is stopping (read without waiting)."""

    def __init__(self, relay: Any, trial_id: str, key: str) -> None:
        self.relay, self.trial_id, self.key = relay, trial_id, key
        self.pending: list[tuple[str, str, Any]] = []
        self.answer: Any = None
        self.stop_reason: str | None = None

    def send(self, kind: str, payload: Any, wait: bool = False) -> None:
        import ray

        self.pending.append((self.trial_id, kind, payload))
        if not wait and kind == "event" and payload[0] != "start" and len(self.pending) < 4:
            return
        ref = self.relay.put.remote(self.pending, self.key)
        self.pending = []
        if wait:
            self.stop_reason = ray.get(ref) or self.stop_reason
            self.answer = None
        else:
            self._read_answer()
            self.answer = self.answer or ref

    def _read_answer(self) -> None:
        import ray

        if self.answer is not None and ray.wait([self.answer], timeout=0)[0]:
            self.stop_reason = ray.get(self.answer) or self.stop_reason
            self.answer = None

    def should_stop(self) -> str | None:
        return self.stop_reason

    def start(self, info: Any) -> None:
        self.send("event", ("start", (dict(info),)))

    def images(self, pixels: Any) -> None:
        self.send("event", ("images", (pixels,)))

    def train_loss(self, epoch: int, steps: Any, losses: Any) -> None:
        self.send("event", ("train_loss", (epoch, list(steps), list(losses))))

    def metrics(self, epoch: int, step: int, values: Any) -> None:
        self.send("event", ("metrics", (epoch, step, dict(values))))

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        self.send("event", ("evaluation", (epoch, step, test_loss, test_accuracy)))

    def predictions(self, epoch: int, predicted: Any, truth: Any) -> None:
        self.send("event", ("predictions", (epoch, list(predicted), list(truth))))


def _to_bytes(payload: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


_DATA: dict[str, Any] = {}  # a worker's datasets, by key: reused actors load each once


def _dataset(shipped: dict[str, Any], experiment: specs.Experiment, device: Any) -> Any:
    import ray
    import torch

    from runner import data

    key = data_key(experiment)
    if isinstance(shipped.get(key), str):  # the driver could not read it, and says why
        raise data.DataError(shipped[key])
    if key not in _DATA:
        _DATA.clear()
        if key in shipped:
            arrays = ray.get(shipped[key])
            _DATA[key] = data.Dataset(data.Split(torch.from_numpy(arrays["train_x"].copy()),
                                                 torch.from_numpy(arrays["train_y"].copy())),
                                      data.Split(torch.from_numpy(arrays["test_x"].copy()),
                                                 torch.from_numpy(arrays["test_y"].copy())), arrays["info"])
        else:  # a searched data key: read here (the files must be on this node)
            _DATA[key] = data.load(experiment.data, torch.device("cpu"))
    dataset = _DATA[key]
    if device.type == "cpu":
        return dataset
    return data.Dataset(*(data.Split(s.x.to(device), s.y.to(device)) for s in (dataset.train, dataset.test)),
                        dataset.info)


def stop_processes_under(temp: str | Path) -> None:
    """Kill the processes of a Ray cluster started on this machine with `ray start --temp-dir=TEMP`
    (tests, benchmarks): those whose command line or open files lie under TEMP. `ray stop` would
    stop every Ray of the machine."""
    temp = str(temp)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            if temp in cmdline or any(f.startswith(temp) for f in files):
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            continue


def check_resources(experiments: list[specs.Experiment], nodes: list[dict[str, Any]]) -> None:
    """Refuse variants no node of the cluster can hold (Tune would wait for them for ever)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    for experiment in experiments:
        wanted = {"CPU": experiment.train.cpus, "GPU": experiment.train.gpus}
        if not any(all(have.get(k, 0.0) >= v for k, v in wanted.items() if v) for have in alive):
            most = {k: max((have.get(k, 0.0) for have in alive), default=0.0) for k in wanted}
            raise RayError(f"{experiment.name}: train.cpus {experiment.train.cpus:g} and train.gpus "
                           f"{experiment.train.gpus:g} fit no node of this Ray cluster (its nodes have at most "
                           f"{most['CPU']:g} CPUs and {most['GPU']:g} GPUs); lower them, or add a node that has them.")


def data_key(experiment: specs.Experiment) -> str:
    """Which tensors a variant trains on (its batch sizes aside)."""
    return json.dumps(experiment.data.model_dump(mode="json", exclude={"batch_size", "test_batch_size"}),
                      sort_keys=True)


def trial(config: dict[str, Any], *, relay: Any, base: dict[str, Any], shipped: dict[str, Any],
          space: dict[str, Any] | None, source: str, metric: str, decide: bool) -> None:
    """One Tune trial: build its experiment, train it, and send everything to the relay."""
    import ray
    import torch
    from ray import tune

    from runner import session, train

    began = time.perf_counter()
    trial_id = tune.get_context().get_trial_id()
    variant = config.get("variant")
    key = variant or trial_id
    if not ray.get(relay.to_do.remote(key)):
        return  # the sweep is stopping (this variant stays as it is), or this trial already ended
    link = Link(relay, trial_id, key)
    blob = ray.get(relay.checkpoint.remote(key))
    context = ray.get_runtime_context()
    node = {"id": context.get_node_id(), "ip": ray.util.get_node_ip_address(), "host": socket.gethostname(),
            "pid": os.getpid()}
    link.send("begin", {"config": config, "node": node, "resumed": blob is not None}, wait=True)
    try:
        resume = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu") if blob else None
        if variant is not None:
            experiment = specs.parse(base[variant], f"variant {variant}")
        else:
            drawn = search.variant(specs.parse(base[""], source), source, search.values(space or {}, config), 0)
            if drawn.experiment is None:
                raise specs.SpecError(drawn.error or "invalid variant")
            experiment = drawn.experiment
        torch.set_num_threads(max(1, round(experiment.train.cpus)))
        device = train.pick_device(experiment.train)
        dataset = _dataset(shipped, experiment, device)
        built = train.build_model(experiment, dataset)
        if resume is None:
            link.start({**session.start_info(dataset, experiment, device), "node": node})

        def checkpoint(payload: dict[str, Any]) -> None:
            link.send("checkpoint", _to_bytes(payload), wait=True)

        def go_on(epoch: dict[str, Any]) -> bool:
            tune.report({metric: epoch[metric], "epoch": epoch["epoch"]})
            if not decide:
                return True
            waited = time.monotonic()
            while time.monotonic() - waited < DECISION_TIMEOUT:
                answer = ray.get(relay.decision.remote(trial_id, epoch["epoch"]))
                if answer is not None:
                    return answer
                time.sleep(0.02)
            return True

        model, results = train.fit(experiment, dataset, device, link, resume=resume, checkpoint=checkpoint,
                                   should_stop=link.should_stop, built=built, go_on=go_on)
        weights = _to_bytes({k: v.cpu() for k, v in model.state_dict().items()})
        link.send("end", {"status": "finished", "results": results, "weights": weights,
                          "trial_seconds": time.perf_counter() - began}, wait=True)
        if not results.get("stopped_early"):
            tune.report({metric: results[metric], "epoch": results["epochs"]})
    except train.Stopped as stopped:
        link.send("end", {"status": "stopped", "error": str(stopped), "step": stopped.step}, wait=True)
    except train.Diverged as diverged:
        link.send("end", {"status": "diverged", "error": str(diverged)}, wait=True)
    except Exception as exc:  # noqa: BLE001 - an error is a row in the table; retrying would fail again
        known = sweep.known_errors()
        message = str(exc) if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        link.send("end", {"status": "failed", "error": message,
                          "traceback": "" if isinstance(exc, known) else traceback.format_exc()}, wait=True)


# ----- the driver ---------------------------------------------------------------------------------

class Driver:
    """The driver's side of the trials: their variants, recorders and results, fed from the relay."""

    def __init__(self, plan: sweep.Plan, out: Path, loggers_for: Callable[..., list[Any]], board: Any,
                 say: Callable[[str], None], results: list[sweep.Result], progress: Any) -> None:
        self.plan, self.out, self.loggers_for, self.board, self.say = plan, out, loggers_for, board, say
        self.variants = list(plan.variants)
        self.results = results
        self.progress = progress
        self.by_trial: dict[str, int] = {}  # Tune trial id -> variant index
        self.recorders: dict[int, Any] = {}  # variant index -> its session.Recorder while it trains
        self.attempts: dict[int, int] = {}
        self.node: dict[int, dict[str, Any]] = {}

    def record(self) -> None:
        sweep.publish(self.out, self.plan, self.variants, self.results, self.board)

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
                self.results[i] = sweep.Result.of(self.variants[i], sweep.FAILED, error=why)
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
            self.results.append(sweep.Result.of(self.variants[-1], sweep.NOT_RUN))
            i = len(self.variants) - 1
        self.by_trial[trial_id] = i
        return i

    def _begin(self, trial_id: str, payload: dict[str, Any]) -> None:
        i = self._variant(trial_id, payload["config"])
        variant = self.variants[i]
        if self.results[i].status in sweep.DONE:
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
        self.results[i] = sweep.Result.of(variant, sweep.RUNNING, run_dir=run_dir)
        self.record()

    def _recorder(self, i: int, resume: dict[str, Any] | None) -> Any:
        from runner import session

        variant = self.variants[i]
        assert variant.experiment is not None
        run_dir = self.out / variant.name
        if not (run_dir / runs.SPEC).exists():
            runs.create(variant.experiment, run_dir)
        loggers = [*self.loggers_for(variant.experiment, run_dir, progress=self.progress),
                   *([self.board.run(variant.name, variant.label)] if self.board is not None else [])]
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
        variant, recorder = self.variants[i], self.recorders.pop(i, None)
        run_dir = self.out / variant.name
        status = payload["status"]
        where = {"node": self.node.get(i), "attempts": self.attempts.get(i, 1),
                 **({"trial_seconds": payload["trial_seconds"]} if "trial_seconds" in payload else {})}
        if status == "finished" and recorder is not None:
            blob = payload["weights"]
            summary = recorder.finished({**payload["results"], **where}, lambda path: path.write_bytes(blob))
            self.results[i] = sweep.Result.of(variant, sweep.OK, summary, run_dir=run_dir)
        elif status == "stopped" and recorder is not None:
            recorder.ended("stopped", payload["error"], reason=payload["error"],
                           resume=f"python -m runner --resume {self.out}", **where)
            self.results[i] = sweep.Result.of(variant, sweep.STOPPED, error=payload["error"], run_dir=run_dir)
        else:
            if payload.get("traceback"):
                print(payload["traceback"], file=sys.stderr, end="")
            error = payload.get("error") or f"it ended ({status}) before its run directory was made"
            if recorder is not None:
                recorder.ended(status, error.splitlines()[0], **where)
            self.say(f"variant {variant.name} failed: {error}")
            self.results[i] = sweep.Result.of(variant, sweep.FAILED, error=error,
                                              run_dir=run_dir if run_dir.exists() else None)
        self.record()

    def lost(self, trial_id: str, name: str | None, why: str) -> None:
        """A trial Tune gave up on (its process died more often than retried, or it failed before it
        could say anything)."""
        i = self.by_trial.get(trial_id)
        if i is None and name is not None:
            i = next((i for i, v in enumerate(self.variants) if v.name == name), None)
        if i is None or self.results[i].status in sweep.DONE:
            return
        recorder = self.recorders.pop(i, None)
        if recorder is not None:
            recorder.ended("failed", why)
        variant = self.variants[i]
        run_dir = self.out / variant.name
        self.results[i] = sweep.Result.of(variant, sweep.FAILED, error=why,
                                          run_dir=run_dir if run_dir.exists() else None)
        self.record()

    def training(self) -> bool:
        return any(r.status == sweep.RUNNING for r in self.results)

    def close_all(self, why: str) -> None:
        """Whatever is still open when Tune has returned: its loggers closed, its row unfinished."""
        for i in list(self.recorders):
            self.recorders.pop(i).__exit__(None, None, None)
        for i, result in enumerate(self.results):
            if result.status == sweep.RUNNING:
                run_dir = self.out / self.variants[i].name
                self.results[i] = sweep.Result.of(self.variants[i], sweep.UNFINISHED, error=why,
                                                  run_dir=run_dir if run_dir.exists() else None)


def run(plan: sweep.Plan, out: Path, loggers_for: Callable[..., list[Any]], board: Any,
        should_stop: Callable[[], str | None] = lambda: None, say: Callable[[str], None] = print,
        resumed: sweep.Resumed | None = None, max_concurrent: int | None = None,
        ready: Callable[[], None] = lambda: None) -> tuple[list[sweep.Result], Exception | None]:
    """sweep.run's contract, on Ray Tune: the plan's variants (and a search's draws) as trials.
    `ready` waits for Ray to have started (connected's); the data is loaded before that."""
    import ray
    import torch

    from runner import data, train
    from runner.console import shared_progress

    results = sweep.first_results(plan, resumed)
    runnable = [plan.variants[i] for i in sweep.to_run(plan.variants, results)]
    searched = plan.search[0] if plan.search is not None else None
    experiments = [v.experiment for v in runnable] + ([searched] if searched is not None and plan.to_draw else [])
    # The data, loaded and checked here once (on another thread while Ray starts), shipped to the trials.
    # Data that cannot be read fails the variants that train on it, each a row, as with the local executor.
    loaded: dict[str, Any] = {}
    unreadable: dict[str, str] = {}
    failed: list[BaseException] = []

    def load() -> None:
        try:
            importlib.import_module("ray.tune")  # a second's import, overlapping Ray's start too

            for experiment in experiments:
                assert experiment is not None
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
    largest_draw = [search.most_resources(searched)] if searched is not None and plan.to_draw else []
    check_resources([v.experiment for v in runnable if v.experiment is not None] + largest_draw, ray.nodes())
    shipped = {key: ray.put({"train_x": d.train.x.numpy(), "train_y": d.train.y.numpy(), "test_x": d.test.x.numpy(),
                             "test_y": d.test.y.numpy(), "info": d.info}) for key, d in loaded.items()}
    shipped.update(unreadable)
    loaded.clear()
    from ray import tune

    here = ray.get_runtime_context().get_node_id()
    relay = ray.remote(num_cpus=0)(Relay).options(
        scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(here, soft=False)).remote()
    for variant in runnable:
        if (out / variant.name / runs.CHECKPOINT).is_file():  # a stopped sweep: its variants go on from here
            relay.seed.remote(variant.name, (out / variant.name / runs.CHECKPOINT).read_bytes())
    progress = shared_progress()
    driver = Driver(plan, out, loggers_for, board, say, results, progress)
    stopping: dict[str, Any] = {}

    def drain() -> None:
        driver.handle(ray.get(relay.take.remote()))
        reason = should_stop()
        if reason and not stopping:
            stopping["since"] = time.monotonic()
            relay.stop.remote(reason)

    def lost(trial: Any) -> None:
        error = (getattr(trial, "error_msg", None) or "").strip().splitlines()
        driver.lost(trial.trial_id, trial.config.get("variant"), f"its trial failed {RETRIES + 1} times"
                    + (f" ({error[-1][:200]})" if error else ""))

    def stop_all() -> bool:
        return bool(stopping) and (not driver.training() or time.monotonic() - stopping["since"] > STOP_GRACE)

    Feed, Quiet, Stop, Decisions = _hooks()

    def fit(param_space: dict[str, Any], samples: int, search_alg: Any, scheduler: Any, base: dict[str, Any],
            space: dict[str, Any] | None, metric: str, mode: str) -> None:
        source = plan.search[1] if plan.search is not None else ""

        def resources(config: dict[str, Any]) -> dict[str, float]:
            """What a variant reserves: its own train.cpus and train.gpus, drawn ones included."""
            if "variant" in config:
                chosen = base[config["variant"]]["train"]
            else:
                chosen = {**base[""]["train"], **{k.split(".", 1)[1]: v for k, v in search.values(
                    space or {}, config).items() if k.startswith("train.")}}
            return {"cpu": float(chosen.get("cpus", 1.0)), "gpu": float(chosen.get("gpus", 0.0))}

        trainable = tune.with_resources(tune.with_parameters(
            trial, relay=relay, base=base, shipped=shipped, space=space, source=source, metric=metric,
            decide=scheduler is not None), resources)
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune.TuneConfig(
            metric=metric, mode=mode, num_samples=samples, search_alg=search_alg, scheduler=scheduler,
            max_concurrent_trials=max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name="tune", storage_path=str((out / ".ray").resolve()), verbose=0,
                                      callbacks=[Feed(drain, lost), Quiet()], stop=Stop(stop_all),
                                      log_to_file=False,
                                      failure_config=tune.FailureConfig(max_failures=RETRIES),
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)))
        tuner.fit()
        drain()

    driver.record()
    if should_stop():  # Ctrl-C while Ray started: nothing has run
        stopping["since"] = time.monotonic()
    try:
        with progress:
            if runnable and not stopping:  # the listed variants (a resumed search's unfinished draws among them)
                fit({"variant": tune.grid_search([v.name for v in runnable])}, 1, None, None,
                    {v.name: v.experiment.model_dump(mode="json") for v in runnable if v.experiment is not None},
                    None, "test_accuracy", "max")
            if searched is not None and searched.search is not None and plan.to_draw and not stopping:
                s = searched.search
                if s.searcher == "tpe":
                    from ray.tune.search.optuna import OptunaSearch

                    done = search.done(driver.variants, driver.results, searched)
                    known = [(search.drawn(s.space, point), value) for point, value in done if value is not None]
                    searcher: Any = OptunaSearch(seed=searched.seed + len(done),
                                                 points_to_evaluate=[p for p, _ in known] or None,
                                                 evaluated_rewards=[v for _, v in known] or None)
                else:
                    from ray.tune.search.basic_variant import BasicVariantGenerator

                    searcher = BasicVariantGenerator(random_state=searched.seed + len(driver.variants))
                scheduler = Decisions(relay, time_attr="epoch", grace_period=s.grace_period,
                                      reduction_factor=s.reduction_factor, max_t=searched.train.epochs
                                      ) if s.scheduler == "asha" else None
                fit(_space(s.space), plan.to_draw, searcher, scheduler, {"": searched.model_dump(mode="json")},
                    s.space, s.metric, s.direction)
    finally:
        shutil.rmtree(out / ".ray", ignore_errors=True)
        driver.close_all("the sweep ended while it trained")
        driver.record()
    stopped = None
    if stopping:
        stopped = train.Stopped(str(should_stop()), 0)
        stopped.args = (f"stopped by {should_stop()}",)  # several trials, each at its own step
    return driver.results, stopped


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
