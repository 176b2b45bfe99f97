"""What the text and image panes of a run's env say, as escaped HTML, and the lease the run pane carries.

    run          status, progress, speed, device, run directory, logging cost, the latest system load
                 (`Progress`, `run_pane_html`); an HTML comment in it holds the run's lease: which live
                 process writes this env, and when it last said so
    predictions  predicted vs true class names laid out like the image grid, wrong ones marked
    mistake_captions  the captions of the mistakes' grid, laid out like it: 'Sneaker ✗ (Sandal) 0.97'
    images, mistakes  image grids (`image_grid`): at most MAX_IMAGE_SIDE pixels a side, grey or colour
    media_NAME   a tracked run's latest images of one name, a grid too (up to MAX_MEDIA_SIDE a side)
    text_NAME    a tracked run's latest text of one name (`text_html`)

A tracked run (runner.track: a loop of one's own, no epochs) gets a run pane without epochs or ETA:
its step, its speed in steps/s, elapsed time, the logging cost.

`lease` reads a lease back (dashboards.visdom.runs asks before a run takes an env name): a pane that
says "running" and was refreshed in the last LEASE_SECONDS marks an env a live run holds. Every text
taken from the run is escaped (docs/SECURITY.md).
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from dashboards.charts import mistake_caption
from dashboards.visdom.connection import Connection, Refused
from dashboards.visdom.windows import Message

IMAGES_PER_ROW = 8  # the image grid and the prediction table share this layout
MAX_IMAGE_SIDE = 64  # pixels; MNIST's are 28. Larger images are not sent at all
MAX_MEDIA_SIDE = 128  # pixels a side of a tracked run's images, as many as runner.track lets through
LEASE_SECONDS = 60.0  # a run pane that says "running" and is younger than this marks a live run


@dataclass
class Progress:
    """What the run pane shows; written by the training thread, read by the sender under the lock."""

    name: str = ""
    device: str = ""
    run_dir: str = ""
    epochs: int = 0
    steps_per_epoch: int = 0
    batch_size: int = 0
    epoch: int = 0  # the last epoch seen in an event
    step: int = 0  # the last global step seen
    status: str = "running"  # running, finished, stopped early, failed, stopped, diverged
    detail: str = ""  # the error, or how the run stopped
    resume: str = ""  # the command that continues a stopped run
    cost: str = ""  # "logging cost 0.4% of training"
    started: float = field(default_factory=time.monotonic)
    rate_since: tuple[float, int] | None = None  # (time, step) the speed is measured from
    rate: float | None = None  # steps per second
    ended: float | None = None
    system: Mapping[str, Any] = field(default_factory=dict)  # the latest `system` event's values
    tracked: bool = False  # a loop of one's own (runner.track): steps, no epochs


def lease(conn: Connection, env: str) -> dict[str, Any] | None:
    """The lease in `env`'s run pane if a live run holds it (status running, recent), else None."""
    try:
        window = json.loads(conn.post({"eid": env, "win": "run"}, "win_data"))
    except (Refused, ValueError):  # no such env or window
        return None
    found = re.search(r"<!--lease (\{.*?\})-->", str(window.get("content", "")) if isinstance(window, dict) else "")
    if not found:
        return None
    try:
        held = json.loads(html.unescape(found.group(1)))
        fresh = time.time() - float(held["beat"]) < LEASE_SECONDS
    except (ValueError, KeyError, TypeError):
        return None
    return held if held.get("status") == "running" and fresh else None


def predictions_html(epoch: int, predicted: list[int], truth: list[int], classes: list[str] | None = None) -> str:
    """A table laid out like the image grid: each cell is the predicted class, wrong ones red with the
    true class ("Sneaker ✗ (Sandal)")."""
    def name(label: int) -> str:
        known = classes is not None and 0 <= label < len(classes)
        return html.escape(classes[label] if known else str(label))  # type: ignore[index]

    right = sum(p == t for p, t in zip(predicted, truth))
    cells = [f"<td>{name(p)}</td>" if p == t else
             f'<td style="color:#d00;font-weight:bold">{name(p)} &#10007; ({name(t)})</td>'
             for p, t in zip(predicted, truth)]
    rows = "".join(f"<tr>{''.join(cells[i:i + IMAGES_PER_ROW])}</tr>" for i in range(0, len(cells), IMAGES_PER_ROW))
    return (f"<b>epoch {html.escape(str(epoch))}</b>: {right} of {len(truth)} right; cells follow the test batch "
            "image, wrong ones read predicted &#10007; (true)"
            f'<table style="text-align:center;white-space:nowrap;border-collapse:separate;border-spacing:10px 4px">'
            f"{rows}</table>")


def mistakes_html(epoch: int, predicted: Sequence[int], truth: Sequence[int], confidence: Sequence[Any],
                  classes: list[str] | None = None) -> str:
    """The captions of the mistakes' image grid, laid out like it, most confident first."""
    def name(label: int) -> str:
        known = classes is not None and isinstance(label, int) and 0 <= label < len(classes)
        return classes[label] if known else str(label)  # type: ignore[index]

    cells = [f"<td>{html.escape(mistake_caption(name(p), name(t), c))}</td>"
             for p, t, c in zip(predicted, truth, list(confidence) + [None] * len(truth))]
    if not cells:
        return f"<b>epoch {html.escape(str(epoch))}</b>: no mistakes"
    rows = "".join(f"<tr>{''.join(cells[i:i + IMAGES_PER_ROW])}</tr>" for i in range(0, len(cells), IMAGES_PER_ROW))
    return (f"<b>epoch {html.escape(str(epoch))}</b>: the test set's {len(cells)} most confident mistakes, "
            "read predicted &#10007; (true) and the probability given to the prediction; cells follow the image"
            f'<table style="text-align:center;white-space:nowrap;border-collapse:separate;border-spacing:10px 4px;'
            f'color:#d00">{rows}</table>')


def image_grid(viz: Any, env: str, win: str, title: str, pixels: Any, max_side: int = MAX_IMAGE_SIDE) -> Message:
    """A grid of uint8 [N][C][H][W] images, grey or colour, IMAGES_PER_ROW a row; small ones doubled."""
    import numpy as np

    # Sizes first, before numpy allocates anything for them.
    side = max((len(row) for image in pixels for channel in image for row in (channel, *channel)), default=0)
    if side > max_side:
        raise ValueError(f"images up to {max_side}x{max_side} pixels are sent, these have a side of {side}")
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"expected N images of 1 or 3 channels of H x W pixels, got an array of shape {a.shape}")
    a = np.clip(a, 0, 255) / 255.0
    if side <= 32:
        a = a.repeat(2, axis=2).repeat(2, axis=3)
    # Visdom sizes the pane to the image exactly and its frame then clips the edges: leave room.
    cell = a.shape[-1] + 2 * 2  # the grid pads each image by 2
    columns, rows = min(IMAGES_PER_ROW, len(a)), -(-len(a) // IMAGES_PER_ROW)
    opts = {"title": title, "width": columns * cell + 40, "height": rows * cell + 40}
    return viz.images(a, nrow=IMAGES_PER_ROW, padding=2, win=win, env=env, opts=opts)


# The run pane's system row: (the `system` event's key, how it is written)
SYSTEM_ROW = (("cpu_percent", "CPU {:.0f}%"), ("rss_mb", "RSS {:,.0f} MB"),
              ("device_allocated_mb", "GPU {:,.0f} MB allocated"), ("device_reserved_mb", "{:,.0f} MB reserved"),
              ("device_utilisation", "GPU busy {:.0f}%"))


def system_text(values: Mapping[str, Any]) -> str:
    """The latest system load in a line: 'CPU 93%, RSS 512 MB, GPU 1,024 MB allocated, ...' (escaped)."""
    parts = [how.format(values[key]) for key, how in SYSTEM_ROW
             if isinstance(values.get(key), (int, float)) and not isinstance(values.get(key), bool)
             and values[key] == values[key]]
    return html.escape(", ".join(parts))


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0 or seconds > 1e7:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


STATUS_COLOURS = {"running": "#1f77b4", "finished": "#2ca02c", "failed": "#d62728", "diverged": "#d62728",
                  "stopped": "#ff7f0e", "stopped early": "#8c8c8c"}


def text_html(name: str, step: int, text: str) -> str:
    """A tracked run's text pane: the step it was logged at, then the text as written, escaped."""
    shown = f"{step:,}" if isinstance(step, int) else str(step)
    return (f"<b>{html.escape(name)}</b>, step {html.escape(shown)}"
            f'<pre style="white-space:pre-wrap;margin:4px 0 0">{html.escape(text)}</pre>')


def run_pane_html(p: Progress, now: float, lease_record: Mapping[str, Any]) -> str:
    """The run pane: status, progress, speed, where the run is; every text escaped."""
    e = html.escape
    elapsed = (p.ended or now) - p.started
    status = p.status + (f": {p.detail}" if p.detail else "")
    colour = STATUS_COLOURS.get(p.status, "#333")
    rows = [("status", f'<b style="color:{colour}">{e(status)}</b>'), *_progress_rows(p, elapsed),
            *([("device", e(p.device or "–"))] if p.device or not p.tracked else []),
            ("run directory", e(p.run_dir or "–"))]
    if p.resume:
        rows.append(("continue with", f"<code>{e(p.resume)}</code>"))
    if p.system and system_text(p.system):
        rows.append(("system", system_text(p.system)))
    if p.cost:
        rows.append(("dashboard", e(p.cost)))
    cells = "".join(f'<tr><td style="padding:1px 12px 1px 0;color:#666">{k}</td><td>{v}</td></tr>' for k, v in rows)
    # The lease: which live process writes this env; a second run reads it before taking the name.
    record = html.escape(json.dumps(dict(lease_record)), quote=False).replace("--", "- -")
    return f'<b>{e(p.name)}</b><table style="border-collapse:collapse">{cells}</table><!--lease {record}-->'


def _progress_rows(p: Progress, elapsed: float) -> list[tuple[str, str]]:
    """How far the run is and how fast: epochs, samples/s and ETA for the runner's; for a tracked
    run, which has no planned end, its step and steps/s."""
    if p.tracked:
        speed = f"{p.rate:,.1f} steps/s" if p.rate else "–"
        return [("progress", f"step {p.step:,}"), ("speed", f"{speed}, elapsed {_clock(elapsed)}")]
    total = p.epochs * p.steps_per_epoch
    rate = p.rate if p.status == "running" else None
    eta = (total - p.step) / rate if rate and total else None
    speed = f"{p.rate * p.batch_size:,.0f} samples/s" if p.rate and p.batch_size else "–"
    return [("progress", f"epoch {p.epoch or '–'} of {p.epochs or '–'}, step {p.step:,}"
             + (f" of {total:,}" if total else "")),
            ("speed", f"{speed}, ETA {_clock(eta) if p.status == 'running' else '–'}, elapsed {_clock(elapsed)}")]
