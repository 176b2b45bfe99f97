"""Sender: the one background loop that keeps a Visdom env up to date, shared by the run dashboard
(VisdomLogger) and the comparison env (ComparisonBoard).

A subclass says what the server lacks (`_send_changes`) and how to forget what it sent
(`_resend_all`); the core owns everything else:
- one daemon thread per env, so HTTP never runs on the training thread;
- pacing: after a round that took d seconds it waits at least `pace` * d, bounding the server's
  share of a core, and retries after a failure with a backoff of up to MAX_RETRY_DELAY;
- login (dashboards.visdom.connection), env creation, and clearing the windows an earlier run left under
  the same name;
- saving: `save()` asks for the env to be written to the server's env folder (Visdom's `save`
  call); it happens once everything asked for so far is delivered, and again after any failure, so
  an env refilled after a server restart is saved once more;
- one line per outage (absent, lost, back, refusing, login turned down), and none after close;
- a bounded close: whatever is left after `close_timeout` seconds stays undelivered;
- the cost: requests, bytes and the thread's own CPU seconds.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO
from urllib.parse import quote

import requests

from dashboards.visdom.connection import Connection, LoginRefused, Refused
from dashboards.visdom.names import safe_env

MAX_RETRY_DELAY = 2.0  # while the server is away; a refused connection is cheap, so retry often
# Visdom's server diffs the whole window on every append or update (deepcopy + jsonpatch: about 0.1 ms
# of its CPU per point held), so the run logger replaces a window whole through `events`, which the
# server just stores; and the server usually shares the machine's cores with training. After a flush
# that took d seconds the sender waits at least PACE * d, which keeps the sender's and the server's
# share of one core near 1 / PACE (2%) whatever a round costs.
PACE = 50

Say = Callable[[str], None]


@dataclass(frozen=True)
class SenderCost:
    """What keeping the env up to date cost, as summary.json's `logging` reports it."""

    requests: int  # HTTP requests sent, answered or not
    bytes: int  # request bodies, in bytes
    sender_cpu_seconds: float  # CPU time of the sender thread


def finite(v: float) -> float | None:
    """NaN or inf is not JSON the browser can parse; None becomes null, a gap in the line."""
    v = float(v)
    return v if math.isfinite(v) else None


def reason(exc: Exception) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def writer(out: TextIO | Say | None) -> Say:
    """A line printer: a callable as given, a stream, or stderr looked up at each line (so a live
    progress bar that redirects stderr prints our lines above itself)."""
    if callable(out) and not hasattr(out, "write"):
        return out  # type: ignore[return-value]

    def say(line: str) -> None:
        print(line, file=out or sys.stderr, flush=True)  # type: ignore[arg-type]

    return say


class Sender:
    """The background loop of one env; subclasses say what to send (see the module docstring)."""

    what = "dashboard"  # how this env is named in messages

    def __init__(self, env: str, server: str | None = None, port: int | None = None, *,
                 username: str | None = None, password: str | None = None, flush_interval: float = 0.25,
                 close_timeout: float = 10.0, pace: float = PACE, out: TextIO | Say | None = None,
                 thread_name: str = "visdom-sender") -> None:
        self._conn = Connection(server, port, username=username, password=password)
        self.env = safe_env(env)
        self.base = self._conn.base
        self.url = f"{self.base}/env/{quote(self.env)}"
        self.username = self._conn.username
        self._flush_interval, self._close_timeout, self._pace = flush_interval, close_timeout, pace
        self._say = writer(out)
        self._lock = threading.Lock()  # guards what the subclass shares with the training thread
        if self.env != env:
            self._say(f"visdom: env {env!r} is shown as {self.env!r}")
        if self._conn.half_login:
            self._say("visdom: only one of VISDOM_USERNAME and VISDOM_PASSWORD is set; sending no login.")

        self._save_wanted = 0  # bumped by save(); the sender writes the env when it lags behind
        # Touched by the sender thread only (cost() and the report read the counters).
        self._saved = 0
        self._env_ready = False  # the env exists and an earlier run's windows are closed
        self._logged_in = False  # the session holds a cookie the server accepted (or needs none)
        self._logins = 0
        self._login_noted = False
        self._reachable: bool | None = None  # None until the first answer or failure
        self._refusals = 0  # failed rounds in a row where the server answered with an error
        self._failures = 0
        self._flushes = 0
        self._cpu = 0.0
        self._reported = False  # close has printed its line: a late sender stays silent
        self._sender_closed = False

        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def _start_sender(self) -> None:
        """Start the thread; the subclass calls it once it is ready to be asked what to send."""
        self._thread.start()

    # ----- for the subclass and its callers -----

    def save(self) -> None:
        """Ask for the env to be written to the server's env folder once what is queued is sent."""
        with self._lock:
            self._save_wanted += 1

    def cost(self) -> SenderCost:
        return SenderCost(self._conn.requests, self._conn.bytes, round(self._cpu, 4))

    def _close_sender(self) -> None:
        """Save, drain for at most `close_timeout` seconds; afterwards the sender says nothing."""
        if self._sender_closed or not self._thread.is_alive() and self._thread.ident is None:
            self._sender_closed = True
            return
        self._sender_closed = True
        self.save()
        self._conn.deadline = time.monotonic() + self._close_timeout
        self._closing.set()
        self._thread.join(self._close_timeout)
        self._reported = True

    def _send_changes(self) -> bool:
        """Send what the server lacks; True if anything was sent. Raises at the first failure."""
        raise NotImplementedError

    def _resend_all(self) -> None:
        """After a failure the server's state is unknown: the next round sends every window whole."""
        raise NotImplementedError

    def _note(self, line: str) -> None:
        """The sender's news; after close's report (a request that outlived close) it is stale."""
        if not self._reported:
            self._say(line)

    def _post(self, msg: dict[str, Any], endpoint: str) -> str:
        return self._conn.post(msg, endpoint)

    # ----- the sender thread -----

    def _run(self) -> None:
        self._cpu_start = time.thread_time()
        try:
            self._send_until_closed()
        finally:
            self._cpu = time.thread_time() - self._cpu_start
            self._conn.close()

    def _send_until_closed(self) -> None:
        delay = 0.0  # first round at once: a missing server is reported right away
        while True:
            closing = self._closing.wait(delay)
            if closing and self._conn.deadline is not None and time.monotonic() >= self._conn.deadline:
                return
            started = time.monotonic()
            try:
                self._flush()
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, training goes on
                self._failures += 1
                unreachable = self._failed(exc)
                # At close an unreachable server will not come back in the seconds we have; a refusal
                # (a window or the env gone) is usually mended by re-sending everything once.
                if closing and (unreachable or self._refusals > 1):
                    return
                delay = min(MAX_RETRY_DELAY, max(2 * delay, self._flush_interval))
                continue
            self._refusals = 0
            if self._reachable is not True:
                self._found()
            if closing:
                return
            self._cpu = time.thread_time() - self._cpu_start
            delay = max(self._flush_interval, self._pace * (time.monotonic() - started))

    def _flush(self) -> None:
        """One round: log in, make the env, send what is new, save if asked. Raises at a failure."""
        sent_any = False
        if not self._logged_in and self._conn.login_body is not None:
            self._logins += self._conn.login()
            self._logged_in = True
        if not self._env_ready:
            # env/<name> creates the env if missing (closing windows of an unknown env is a 500);
            # closing every window makes a rerun under the same name start from a clean page.
            self._post({"eid": self.env}, f"env/{quote(self.env)}")
            self._post({"eid": self.env, "win": None}, "close")
            self._env_ready = sent_any = True
        # A round makes only the saves asked before it looks at what to send: a save asked meanwhile
        # (at the run's end) covers points this round may not carry, so the next round makes it.
        with self._lock:
            wanted = self._save_wanted
        sent_any |= self._send_changes()
        if wanted != self._saved:
            # What Visdom's client sends for viz.save([env]): the server writes <env_path>/<env>.json.
            self._post({"data": [self.env]}, "save")
            self._saved = wanted
        self._flushes += sent_any

    def _failed(self, exc: Exception) -> bool:
        """Everything goes again next time, and the env is saved again; says so once per outage.

        Returns whether the server was unreachable.
        """
        with self._lock:
            self._resend_all()
        self._saved = -1
        self._logged_in = False  # a restarted server may sign cookies with a new secret: log in again
        if isinstance(exc, LoginRefused):
            self._refusals += 1
            if not self._login_noted:
                self._login_noted = True
                self._note(f"visdom: the server at {self.base} refused the login of {self.username!r}; check "
                           "VISDOM_USERNAME and VISDOM_PASSWORD. Training goes on without the dashboard.")
            return False
        if not isinstance(exc, requests.RequestException):
            # The server answered but refused (a restart we did not see, a window closed in the
            # browser): re-sending mends that silently. Only a refusal that persists is news.
            self._refusals += 1
            if self._refusals == 2:
                hint = "its log may say why"
                if isinstance(exc, Refused) and exc.status == 400 and self._conn.login_body is None:
                    hint = "it may require a login: set VISDOM_USERNAME and VISDOM_PASSWORD"
                self._note(f"visdom: the server at {self.base} refuses updates of the {self.what} ({exc}); "
                           f"training goes on, {hint}.")
            return False
        if self._reachable is None:
            self._note(f"visdom: no dashboard server at {self.base} ({reason(exc)}); start one with "
                       "`make visdom`. Training goes on; the dashboard fills in once the server is up.")
        elif self._reachable:
            self._note(f"visdom: lost the server at {self.base} ({reason(exc)}); training goes on, "
                       f"the {self.what} is re-sent when the server returns.")
        self._reachable = False
        return True

    def _found(self) -> None:
        if self._reachable is False:
            self._note(f"visdom: the server at {self.base} is back; {self.what} re-sent: {self.url}")
        else:
            self._note(f"visdom: live {self.what} at {self.url}")
        self._reachable = True
