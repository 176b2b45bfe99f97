"""One Tune trial: its experiment built from the variant (or the search's draw) Tune gives it, its
data taken from Ray's object store (or read on its node), trained with `train.fit`, and everything
it does sent to the relay: events, checkpoints, its ending. Trials only compute.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import traceback
from typing import Any

from runner import spec as specs
from runner import status
from runner.executors import expected, failure
from runner.executors.ray.relay import Link, to_bytes
from runner.sweeps import search

DECISION_TIMEOUT = 120.0  # seconds a trial waits for the scheduler's word before going on


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


def data_key(experiment: specs.Experiment) -> str:
    """Which tensors a variant trains on (its batch sizes aside)."""
    return json.dumps(experiment.data.model_dump(mode="json", exclude={"batch_size", "test_batch_size"}),
                      sort_keys=True)


def _experiment(config: dict[str, Any], base: dict[str, Any], space: dict[str, Any] | None,
                source: str) -> specs.Experiment:
    """The experiment a trial trains: its listed variant's, or the search's with the drawn values."""
    variant = config.get("variant")
    if variant is not None:
        return specs.parse(base[variant], f"variant {variant}")
    drawn = search.variant(specs.parse(base[""], source), source, search.values(space or {}, config), 0)
    if drawn.experiment is None:
        raise specs.SpecError(drawn.error or "invalid variant")
    return drawn.experiment


def _judge(relay: Any, trial_id: str, metric: str, decide: bool) -> Any:
    """After each epoch: report the metric to Tune and, under a scheduler, wait for its word (at most
    DECISION_TIMEOUT) on whether the trial goes on."""
    import ray
    from ray import tune

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

    return go_on


def trial(config: dict[str, Any], *, relay: Any, base: dict[str, Any], shipped: dict[str, Any],
          space: dict[str, Any] | None, source: str, metric: str, decide: bool) -> None:
    """One Tune trial: build its experiment, train it, and send everything to the relay."""
    import ray
    import torch
    from ray import tune

    from runner import session, train

    began = time.perf_counter()
    trial_id = tune.get_context().get_trial_id()
    key = config.get("variant") or trial_id
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
        experiment = _experiment(config, base, space, source)
        torch.set_num_threads(max(1, round(experiment.train.cpus)))
        device = train.pick_device(experiment.train)
        dataset = _dataset(shipped, experiment, device)
        built = train.build_model(experiment, dataset)
        if resume is None:
            link.start({**session.start_info(dataset, experiment, device), "node": node})

        def checkpoint(payload: dict[str, Any]) -> None:
            link.send("checkpoint", to_bytes(payload), wait=True)

        model, results = train.fit(experiment, dataset, device, link, resume=resume, checkpoint=checkpoint,
                                   should_stop=link.should_stop, built=built,
                                   go_on=_judge(relay, trial_id, metric, decide))
        weights = to_bytes({k: v.cpu() for k, v in model.state_dict().items()})
        link.send("end", {"status": status.FINISHED, "results": results, "weights": weights,
                          "trial_seconds": time.perf_counter() - began}, wait=True)
        if not results.get("stopped_early"):
            tune.report({metric: results[metric], "epoch": results["epochs"]})
    except train.Stopped as stopped:
        link.send("end", {"status": status.STOPPED, "error": str(stopped), "step": stopped.step}, wait=True)
    except train.Diverged as diverged:
        link.send("end", {"status": status.DIVERGED, "error": str(diverged)}, wait=True)
    except Exception as exc:  # noqa: BLE001 - an error is a row in the table; retrying would fail again
        link.send("end", {"status": status.FAILED, "error": failure(exc),
                          "traceback": "" if expected(exc) else traceback.format_exc()}, wait=True)
