"""Reports: one self-contained HTML file for a run or a sweep, to share without a server.

Built from the files in the directory only (spec.json, the metrics.jsonl journal replayed through
`runner.loggers.replay`, summary.json; sweep.json for a sweep), so it works for runs made with the
null logger and for run directories copied from other machines. Nothing in the page asks the
network for anything: plotly.js is inlined from the npm tarball pinned for the dashboard in
`assets.json` (the same bytes Visdom serves), images are PNG data URIs, and every text taken from
the run is HTML-escaped.

A run's report: the train loss per step with a smoothed trace, test loss and accuracy per epoch,
every `metrics` value of the journal (the learning rate), the sample images with their predictions
(class names when the journal names them), the per-epoch numbers, the summary and the spec. A
sweep's report: one chart per metric with a trace per variant (seeds as mean and min-max band, as in
the comparison env) and a sortable results table.

Charts keep at most MAX_POINTS points per trace (a min/max envelope of the raw curve, so spikes
survive); tables, and the per-step CSV the page offers for download, hold every value exactly.

The page itself (inline plotly.js, escaping, PNG data URIs) is `report_page`'s. This lives in
`dashboards/` because the page reads the plotly pin from `assets.json` (runner/ never imports
dashboards/ but for the CLI's lazy imports); it imports no torch and no visdom, so `python -m runner report` answers in well under a second. `python -m runner`
writes a report at the end of every run and sweep (`ReportOnClose`, `write_or_warn`).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO
from urllib.parse import quote

from dashboards.report_page import ReportError, cell, charts, header, page, png, summary_html, table_html
from runner import runs
from runner.loggers import BaseLogger, Info, JournalError, replay
from runner.smoothing import ema

REPORT = "report.html"
MAX_POINTS = 2000  # per trace on a chart
SWEEP_MAX_POINTS = 1000  # per trace on a sweep's charts: three traces per variant
DEFAULT_SMOOTHING = 0.6  # TensorBoard's default; a spec's visdom.smoothing overrides it
MAX_IMAGES = 100  # as many as train.samples allows
IMAGE_BOX = 84  # CSS pixels of the longer side of a sample image
# Plotly's default colours, given explicitly so a seed band has its line's colour.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
METRIC_TITLES = {"lr": "learning rate"}


# ----- reading a run back from its journal -------------------------------------------------------

class Journal(BaseLogger):
    """A Logger that keeps every event it is given: what a report draws."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.pixels: list[Any] = []
        self.epochs: list[int] = []  # per train step
        self.steps: list[int] = []
        self.losses: list[float | None] = []
        self.evaluations: list[dict[str, Any]] = []
        self.series: dict[str, tuple[list[int], list[float | None]]] = {}  # metrics events: key -> (steps, values)
        self.last_predictions: dict[str, Any] | None = None
        self.closed = False
        self.summary: dict[str, Any] | None = None

    def start(self, info: Info) -> None:
        self.info = dict(info)

    def images(self, pixels: Sequence[Any]) -> None:
        self.pixels = list(pixels)

    def train_loss(self, epoch: int, steps: Sequence[int], losses: Sequence[float]) -> None:
        self.epochs += [epoch] * len(steps)
        self.steps += steps
        self.losses += [_finite(v) for v in losses]

    def evaluation(self, epoch: int, step: int, test_loss: float, test_accuracy: float) -> None:
        self.evaluations.append({"epoch": epoch, "step": step, "test_loss": test_loss,
                                 "test_accuracy": test_accuracy})

    def metrics(self, epoch: int, step: int, values: Info) -> None:
        for key, value in values.items():
            xs, ys = self.series.setdefault(str(key), ([], []))
            xs.append(step)
            ys.append(_finite(value) if isinstance(value, (int, float)) else None)

    def predictions(self, epoch: int, predicted: Sequence[int], truth: Sequence[int]) -> None:
        self.last_predictions = {"epoch": epoch, "predicted": list(predicted), "truth": list(truth)}

    def close(self, summary: Info | None) -> None:
        super().close(summary)
        self.closed = True
        self.summary = None if summary is None else dict(summary)


@dataclass
class Run:
    """What a run directory holds, read back."""

    path: Path
    spec: dict[str, Any]
    journal: Journal
    summary: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # what could not be read

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.journal.info.get("name") or self.path.name)

    @property
    def status(self) -> str:
        if self.summary is not None:
            return str(self.summary.get("status", "finished"))
        if self.journal.losses and self.journal.losses[-1] is None:
            return "diverged"
        return "stopped" if self.journal.closed else "unfinished"


def read_run(run_dir: Path) -> Run:
    notes: list[str] = []
    journal = Journal()
    try:
        replay(run_dir / runs.JOURNAL, journal)
    except JournalError as exc:
        notes.append(f"{exc} The report shows the events before that line.")
        line = re.search(r", line (\d+):", str(exc))
        if line:  # replay stops at the damage with the last steps unsent: read just the lines before it
            with open(run_dir / runs.JOURNAL, "rb") as f:
                limit = sum(map(len, f.read().splitlines(keepends=True)[:int(line.group(1)) - 1]))
            journal = Journal()
            replay(run_dir / runs.JOURNAL, journal, limit=limit)
    except OSError as exc:
        notes.append(f"{run_dir / runs.JOURNAL} cannot be read: {exc.strerror}.")
    spec = _read_json(run_dir / runs.SPEC, notes)
    if not isinstance(spec, dict):
        spec = dict(journal.info.get("spec") or {})
    summary = _read_json(run_dir / runs.SUMMARY, notes if (run_dir / runs.SUMMARY).exists() else None)
    if not isinstance(summary, dict):
        summary = journal.summary
    return Run(run_dir, spec, journal, summary, notes)


def _read_json(path: Path, notes: list[str] | None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if notes is not None:
            notes.append(f"{path.name} cannot be read ({type(exc).__name__}).")
        return None


def smoothing_weight(spec: dict[str, Any]) -> float:
    """The spec's visdom.smoothing, when it has one and it makes sense, else DEFAULT_SMOOTHING."""
    value = (spec.get("visdom") or {}).get("smoothing", DEFAULT_SMOOTHING)
    return float(value) if isinstance(value, (int, float)) and 0 <= value < 1 else DEFAULT_SMOOTHING


# ----- curves fit for a chart --------------------------------------------------------------------

def envelope(xs: Sequence[float], ys: Sequence[float | None], limit: int = MAX_POINTS
             ) -> tuple[list[float], list[float | None]]:
    """About `limit` points of the curve: per bucket of consecutive points, its lowest and its highest (in
    their order), so spikes and the spread stay visible; a bucket with a gap (None) also keeps the gap."""
    if len(xs) <= limit:
        return list(xs), list(ys)
    size = math.ceil(len(xs) / max(1, limit // 2))
    out_x: list[float] = []
    out_y: list[float | None] = []
    for start in range(0, len(xs), size):
        bucket = [i for i in range(start, min(start + size, len(xs))) if ys[i] is not None]
        if len(bucket) < min(size, len(xs) - start):  # a gap: keep it, so the line breaks there
            out_x.append(xs[start])
            out_y.append(None)
        if not bucket:
            continue
        low = min(bucket, key=lambda i: ys[i])  # type: ignore[arg-type, return-value]
        high = max(bucket, key=lambda i: ys[i])  # type: ignore[arg-type, return-value]
        for i in sorted({low, high}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    return out_x, out_y


def stride(xs: Sequence[Any], limit: int) -> list[int]:
    """Indices of at most `limit` evenly spread points, the last one always among them."""
    if len(xs) <= limit:
        return list(range(len(xs)))
    step = math.ceil(len(xs) / (limit - 1))
    return sorted({*range(0, len(xs), step), len(xs) - 1})


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _short(values: Iterable[float | None]) -> list[float | None]:
    # Five significant digits are plenty for a chart and halve the page's numbers; tables stay exact.
    return [None if v is None else float(f"{v:.5g}") for v in values]


# ----- figures -----------------------------------------------------------------------------------

def _layout(title: str, xtitle: str, ytitle: str, percent: bool = False) -> dict[str, Any]:
    return {"title": {"text": html.escape(title), "font": {"size": 15}}, "height": 340,
            "margin": {"l": 60, "r": 20, "t": 45, "b": 40}, "showlegend": True,
            # Legend below the axis title; the plot keeps its width however long the names are.
            "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"},
            "xaxis": {"title": {"text": xtitle, "standoff": 4}}, "yaxis": {"title": {"text": ytitle},
                                                           **({"tickformat": ".1%"} if percent else {})}}


def _figure(fid: str, title: str, xtitle: str, ytitle: str, data: list[dict[str, Any]],
            percent: bool = False) -> dict[str, Any]:
    layout = _layout(title, xtitle, ytitle, percent)
    values = {y for d in data for y in d["y"] if y is not None}
    if len(values) == 1:  # plotly would centre a flat line in [-1, 1]; show it against zero instead
        (v,) = values
        layout["yaxis"]["range"] = [0, 1.05] if percent and 0 <= v <= 1 else sorted([0, 1.5 * v]) if v else [-1, 1]
    if xtitle == "epoch":  # whole epochs only, at most about ten ticks
        last = max((x for d in data for x in d["x"]), default=1)
        layout["xaxis"]["dtick"] = max(1, math.ceil(last / 10))
    layout["height"] += 20 * max(0, len([d for d in data if d.get("showlegend", True)]) - 2) // 2
    return {"id": fid, "data": data, "layout": layout}


def run_figures(run: Run) -> list[dict[str, Any]]:
    j, weight = run.journal, smoothing_weight(run.spec)
    figures = []
    if j.steps:
        xs, ys = envelope(j.steps, j.losses)
        keep = stride(j.steps, MAX_POINTS)
        smooth = ema(j.losses, weight)
        data = [{"type": "scatter", "mode": "lines", "name": "loss per step" + (" (min/max envelope)" if
                                                                                len(j.steps) > MAX_POINTS else ""),
                 "x": xs, "y": _short(ys), "line": {"color": COLOURS[0], "width": 1}, "opacity": 0.35}]
        if weight > 0:
            data.append({"type": "scatter", "mode": "lines", "name": f"smoothed (EMA {weight:g})",
                         "x": [j.steps[i] for i in keep], "y": _short(smooth[i] for i in keep),
                         "line": {"color": COLOURS[0], "width": 2}})
        figures.append(_figure("train_loss", "train loss", "step", "loss", data))
    if j.evaluations:
        epochs = [e["epoch"] for e in j.evaluations]
        means = epoch_means(j)
        data = [{"type": "scatter", "mode": "lines+markers", "name": "test loss", "x": epochs,
                 "y": _short(_finite(e["test_loss"]) for e in j.evaluations), "line": {"color": COLOURS[1]}},
                {"type": "scatter", "mode": "lines+markers", "name": "train loss (epoch mean)", "x": epochs,
                 "y": _short(means.get(e) for e in epochs), "line": {"color": COLOURS[0], "dash": "dot"}}]
        figures.append(_figure("test_loss", "test loss", "epoch", "loss", data))
        figures.append(_figure("test_accuracy", "test accuracy", "epoch", "accuracy", [
            {"type": "scatter", "mode": "lines+markers", "name": "test accuracy", "x": epochs,
             "y": _short(_finite(e["test_accuracy"]) for e in j.evaluations), "line": {"color": COLOURS[2]}}],
            percent=True))
    for n, (key, (xs, ys)) in enumerate(sorted(j.series.items())):
        xs, ys = envelope(xs, ys)
        figures.append(_figure(f"metric_{n}", METRIC_TITLES.get(key, key), "step", key, [
            {"type": "scatter", "mode": "lines", "name": key, "x": xs, "y": _short(ys),
             "line": {"color": COLOURS[(3 + n) % len(COLOURS)]}}]))
    lr = _finite((run.spec.get("optim") or {}).get("lr"))
    if "lr" not in j.series and lr is not None and j.steps:  # journals from before the metrics event
        figures.append(_figure("lr", "learning rate (constant, optim.lr of the spec)", "step", "lr", [
            {"type": "scatter", "mode": "lines", "name": "lr", "x": [j.steps[0], j.steps[-1]], "y": [lr, lr],
             "line": {"color": COLOURS[3]}}]))
    return figures


def epoch_means(j: Journal) -> dict[int, float]:
    """The mean train loss of each epoch, from every step the journal holds (exact)."""
    sums: dict[int, list[float]] = {}
    for epoch, loss in zip(j.epochs, j.losses):
        if loss is not None:
            sums.setdefault(epoch, []).append(loss)
    return {epoch: math.fsum(v) / len(v) for epoch, v in sums.items()}


def band_traces(label: str, colour: str, per_run: list[dict[float, float | None]], limit: int,
                markers: bool) -> list[dict[str, Any]]:
    """One variant's curve: the run itself, or for several seeds their mean with a min-max band."""
    xs = sorted({x for points in per_run for x in points})
    columns = [[y for points in per_run if (y := points.get(x)) is not None] for x in xs]
    keep = stride(xs, limit)
    xs, columns = [xs[i] for i in keep], [columns[i] for i in keep]
    line = {"type": "scatter", "mode": "lines+markers" if markers else "lines", "x": xs,
            "line": {"color": colour}, "legendgroup": label}
    name = html.escape(label)
    if len(per_run) == 1:
        return [{**line, "name": name, "y": _short(c[0] if c else None for c in columns)}]
    band = {"type": "scatter", "mode": "lines", "x": xs, "legendgroup": label, "showlegend": False,
            "hoverinfo": "skip", "line": {"width": 0, "color": colour}}
    return [{**band, "name": f"{name} min", "y": _short(min(c) if c else None for c in columns)},
            {**band, "name": f"{name} max", "y": _short(max(c) if c else None for c in columns),
             "fill": "tonexty", "fillcolor": _translucent(colour)},
            {**line, "name": f"{name} (mean of {len(per_run)} seeds)",
             "y": _short(math.fsum(c) / len(c) if c else None for c in columns)}]


def sweep_figures(groups: dict[str, list[Run]], weight: float) -> list[dict[str, Any]]:
    charts: dict[str, tuple[str, str, str, bool, list[dict[str, Any]]]] = {
        "train_loss": (f"train loss (EMA {weight:g} of each run)" if weight else "train loss", "step", "loss",
                       False, []),
        "test_accuracy": ("test accuracy", "epoch", "accuracy", True, []),
        "test_loss": ("test loss", "epoch", "loss", False, []),
    }
    keys = sorted({key for members in groups.values() for run in members for key in run.journal.series})
    for n, key in enumerate(keys):
        charts[f"metric_{n}"] = (METRIC_TITLES.get(key, key), "step", key, False, [])
    for i, (label, members) in enumerate(groups.items()):
        colour = COLOURS[i % len(COLOURS)]
        curves: dict[str, list[dict[float, float | None]]] = {
            "train_loss": [dict(zip(r.journal.steps, ema(r.journal.losses, weight))) for r in members],
            "test_accuracy": [{e["epoch"]: _finite(e["test_accuracy"]) for e in r.journal.evaluations}
                              for r in members],
            "test_loss": [{e["epoch"]: _finite(e["test_loss"]) for e in r.journal.evaluations} for r in members],
        }
        for n, key in enumerate(keys):
            curves[f"metric_{n}"] = [dict(zip(*r.journal.series[key])) for r in members if key in r.journal.series]
        for chart, per_run in curves.items():
            per_run = [points for points in per_run if points]
            if per_run:
                charts[chart][4].extend(band_traces(label, colour, per_run, SWEEP_MAX_POINTS,
                                                    markers=not chart.startswith(("train", "metric"))))
    return [_figure(cid, title, x, y, data, percent) for cid, (title, x, y, percent, data) in charts.items() if data]


def _translucent(colour: str) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.2)"


# ----- images ------------------------------------------------------------------------------------

def class_name(index: Any, classes: Sequence[Any]) -> str:
    if isinstance(index, int) and 0 <= index < len(classes):
        return str(classes[index])
    return str(index)


def samples_html(j: Journal) -> str:
    if not j.pixels:
        return "<p class=note>The journal holds no sample images (train.samples is 0, or the run stopped " \
               "before they were drawn).</p>"
    classes = ((j.info.get("dataset") or {}).get("classes") or []) if isinstance(j.info.get("dataset"), dict) \
        else []
    p = j.last_predictions or {}
    predicted, truth = p.get("predicted") or [], p.get("truth") or []
    cells, wrong = [], 0
    for i, image in enumerate(j.pixels[:MAX_IMAGES]):
        try:
            data, width, height = png(image)
        except (ValueError, TypeError, IndexError) as exc:
            return f"<p class=note>The sample images cannot be drawn ({html.escape(str(exc))}).</p>"
        scale = max(1, IMAGE_BOX // max(width, height))
        caption = ""
        if i < len(predicted) and i < len(truth):
            guess, true = class_name(predicted[i], classes), class_name(truth[i], classes)
            ok = predicted[i] == truth[i]
            wrong += not ok
            caption = (f'<figcaption class="{"ok" if ok else "bad"}">{html.escape(guess)}'
                       + ("" if ok else f'<br><span class=truth>true: {html.escape(true)}</span>')
                       + "</figcaption>")
        cells.append(f'<figure><img alt="sample {i}" width={width * scale} height={height * scale} '
                     f'src="data:image/png;base64,{base64.b64encode(data).decode()}">{caption}</figure>')
    if predicted:
        head = (f"<p>Predictions after epoch {html.escape(str(p.get('epoch')))}: "
                f"{len(cells) - wrong} of {len(cells)} right; wrong ones in red, with the true class.</p>")
    else:
        head = "<p class=note>No predictions yet: the run stopped before its first evaluation.</p>"
    return head + '<div class=samples>' + "".join(cells) + "</div>"


# ----- run sections -------------------------------------------------------------------------------

def epochs_html(j: Journal) -> str:
    if not j.evaluations:
        return "<p class=note>No evaluation yet.</p>"
    means = epoch_means(j)
    lr_steps, lr_values = j.series.get("lr", ([], []))
    rows = []
    for e in j.evaluations:
        row = [e["epoch"], e["step"], means.get(e["epoch"]), e["test_loss"], e["test_accuracy"]]
        if lr_steps:
            last = [v for s, v in zip(lr_steps, lr_values) if s <= e["step"]]
            row.append(last[-1] if last else None)
        rows.append(row)
    header = ["epoch", "step", "train loss (mean)", "test loss", "test accuracy", *(["lr"] if lr_steps else [])]
    return table_html(header, rows, "numbers")


def steps_csv_link(j: Journal, name: str) -> str:
    """Every train step's loss, exactly, as a CSV the page offers for download (a data: URI, no request)."""
    if not j.steps:
        return ""
    csv = "epoch,step,loss\n" + "".join(f"{e},{s},{'' if v is None else repr(v)}\n"
                                        for e, s, v in zip(j.epochs, j.steps, j.losses))
    return (f'<p><a download="{html.escape(name)}-train-loss.csv" href="data:text/csv;charset=utf-8,'
            f'{quote(csv)}">Every train step\'s loss, exact (CSV, {len(j.steps):,} rows)</a></p>')


def run_report(run: Run) -> str:
    j, info, s = run.journal, run.journal.info, run.summary or {}
    dataset = info.get("dataset") if isinstance(info.get("dataset"), dict) else {}
    epochs_done = j.evaluations[-1]["epoch"] if j.evaluations else 0
    planned = (run.spec.get("train") or {}).get("epochs")
    meta = [f"run {run.path.name}", f"dataset {dataset.get('name') or (run.spec.get('data') or {}).get('dataset', '')}",
            f"{epochs_done} of {planned} epochs" if planned else f"{epochs_done} epochs",
            f"{len(j.steps):,} steps", f"device {info.get('device') or s.get('device', '?')}",
            f"torch {info.get('torch_version') or s.get('torch_version', '?')}"]
    if isinstance(s.get("test_accuracy"), (int, float)):
        meta.insert(0, f"final test accuracy {s['test_accuracy']:.2%}")
    notes = list(run.notes)
    if run.status == "stopped":
        notes.append(f"This run stopped before its end; continue it with: python -m runner --resume {run.path}")
    elif run.status == "diverged":
        notes.append("The training loss became NaN or infinite; the charts end there.")
    elif run.status == "unfinished":
        notes.append("The journal has no end: the process was killed, or is still running.")
    figures = run_figures(run)
    sections = [("Charts", charts(figures) if figures else "<p class=note>No training steps yet.</p>"),
                ("Samples", samples_html(j)),
                ("Per epoch", epochs_html(j) + steps_csv_link(j, run.name)),
                ("Summary", summary_html(run.summary)),
                ("Spec", f"<pre>{html.escape(json.dumps(run.spec, indent=2))}</pre>")]
    return page(f"{run.name}: report", header(run.name, str(run.spec.get("description") or ""), run.status, meta,
                                               notes), sections, figures, run.path)


def sweep_report(path: Path) -> str:
    from runner import sweep

    gathered = sweep.gather([path])
    plan, results = gathered.plan, gathered.results
    loaded: dict[str, Run] = {name: read_run(journal.parent) for name, journal in gathered.journals.items()}
    groups: dict[str, list[Run]] = {}
    for variant in plan.variants:
        if variant.name in loaded:
            groups.setdefault(variant.label, []).append(loaded[variant.name])
    first = next(iter(loaded.values()), None)
    weight = smoothing_weight(first.spec) if first else DEFAULT_SMOOTHING
    figures = sweep_figures(groups, weight)
    notes = [f"{r.name}: {n}" for r in loaded.values() for n in r.notes]
    ok = sum(r.status == sweep.OK for r in results)
    description = str(first.spec.get("description") or "") if first else ""
    meta = [f"sweep {path.name}", f"{len(results)} variants, {ok} finished",
            f"{len(groups)} curves" + (" (seeds as mean and min-max band)" if len(groups) < len(loaded) else "")]
    counts = Counter(r.status for r in results if r.status != sweep.OK)
    status = ", ".join(f"{n} {what}" for what, n in counts.items()) or "finished"
    sections = [("Charts", charts(figures) if figures else "<p class=note>No variant has trained yet.</p>"),
                ("Results", results_html(path, results)),
                ("Spec", spec_html(plan.variants, first))]
    return page(f"{plan.name}: report", header(plan.name, description, status, meta, notes), sections, figures,
                path)


def results_html(path: Path, results: Sequence[Any]) -> str:
    """The results table as the console prints it, sortable by any column on exact values, each variant
    linked to its own report when it has one."""
    from runner import sweep

    header, cells = sweep.rows(results)
    raw = {"variant": lambda r: r.label, "seed": lambda r: r.seed, "final acc": lambda r: r.test_accuracy,
           "best acc": lambda r: r.best_test_accuracy, "final loss": lambda r: r.test_loss,
           "train s": lambda r: r.train_seconds, "status": lambda r: r.status}
    body = []
    for result, row in zip(sweep.ranked(results), cells):
        tds = []
        for column, text in zip(header, row):
            value = raw[column](result) if column in raw else text
            sort = "" if value is None else cell(value)
            content = html.escape(text)
            if column == "variant" and result.run_dir:
                target = Path(result.run_dir) / REPORT
                if target.is_file():
                    link = os.path.relpath(target, path)
                    content = f'<a href="{html.escape(quote(link))}">{content}</a>'
            align = ' class="text"' if column in ("variant", "status") else ""
            tds.append(f'<td{align} data-v="{html.escape(sort)}">{content}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    head = "".join(f'<th{" class=text" if h in ("variant", "status") else ""}>{html.escape(h)}</th>' for h in header)
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in sweep.errors(results))
    return (f'<table class="sortable" id="results-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f"</table><p class=meta>Click a column to sort by it.</p>" + (f"<h3>Errors</h3><ul>{errors}</ul>"
                                                                         if errors else ""))


def spec_html(variants: Sequence[Any], first: Run | None) -> str:
    """The keys the variants vary, then the spec of the first run (the others differ only in those keys)."""
    flats = [v.flat for v in variants]
    keys = sorted({k for f in flats for k in f})
    varied = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1 and k != "name"]
    rows = [[k, ", ".join(dict.fromkeys(cell(f.get(k)) for f in flats))] for k in varied]
    text = table_html(["varied key", "values"], rows, "kv") if rows else ""
    if first is not None:
        text += (f"<h3>spec of {html.escape(first.name)}</h3>"
                 f"<pre>{html.escape(json.dumps(first.spec, indent=2))}</pre>")
    return text


# ----- writing -----------------------------------------------------------------------------------

def build(path: Path) -> str:
    """The report of a run directory, or of a sweep directory (or a directory of run directories).

    Raises runs.RunDirError for a path that is neither, ReportError when plotly.js cannot be had.
    """
    if (path / runs.JOURNAL).is_file():
        return run_report(read_run(path))
    return sweep_report(path)


def write(path: Path, output: Path | None = None) -> Path:
    """Write the report of `path` to `output` (default: path/report.html), atomically; returns where."""
    text = build(path)
    output = output or path / REPORT
    if output.is_dir():
        output = output / REPORT
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output.parent, delete=False, suffix=".tmp", encoding="utf-8") as tmp:
        tmp.write(text)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, output)
    return output


def write_or_warn(path: Path, out: TextIO | None = None, err: TextIO | None = None) -> Path | None:
    """Write the report and print where (to stdout and stderr as they are at the call); a failure is
    one warning, never an exception."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        written = write(path)
    except Exception as exc:  # noqa: BLE001 - a report is a convenience: the run's own files stand
        print(f"warning: no report written for {path} ({type(exc).__name__}: {exc}); "
              f"`python -m runner report {path}` tries again.", file=err, flush=True)
        return None
    print(f"report: {written}", file=out, flush=True)
    return written


class ReportOnClose(BaseLogger):
    """A Logger that writes the run's report when the run ends, however it ends (finished, stopped,
    diverged), once the journal is closed: give it after the journal to a FanOut."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir

    def start(self, info: Info) -> None:
        if self.run_dir is None:
            self.run_dir = Path(info["run_dir"])

    def close(self, summary: Info | None) -> None:
        if self._closed:
            return
        super().close(summary)
        if self.run_dir is not None and (self.run_dir / runs.JOURNAL).is_file():
            write_or_warn(self.run_dir)
