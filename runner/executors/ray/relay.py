"""The relay between trials and the driver: `Relay`, a small actor on the driver's node holding
the trials' messages, their latest checkpoints and the scheduler's decisions; `Link`, the logger a
trial trains with, batching its events to the relay per chunk of steps.

Calls from one trial to one actor arrive in the order sent, and Ray's transport is the cluster's own
(token-authenticated where the cluster is), so nothing new is opened to the network.
"""

from __future__ import annotations

import io
from typing import Any

from runner.loggers import BaseLogger
from runner.loggers.base import each_event, plain


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


@each_event("_relay")
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

    def _relay(self, name: str, args: tuple[Any, ...]) -> None:
        self.send("event", (name, tuple(plain(a) for a in args)))

    def close(self, summary: Any) -> None:
        """The trial's end goes to the driver as its own message ("end"), not as an event."""
        super().close(summary)


def to_bytes(payload: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()
