"""A run's report page: its charts, the sample images with their predictions (class names when the
journal names them), what the insight events show (dashboards.report.insight: classes, mistakes,
weights and gradients, activations, system; only those the journal has), the per-epoch numbers with
every step's loss as a CSV download, the summary and the spec, under a header that says how the run
ended and how to continue it.

A tracked run's page (runner.track: a loop of one's own) has its charts (one per group of names, as
the live dashboard groups them, of its first MAX_CHARTED names), every value as a CSV download, the latest images of each name and
the step they were logged at, its texts, its last values and summary, and its config (spec.json).
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from typing import Any, Sequence
from urllib.parse import quote

from dashboards.report.data import Journal, Run, Series, epoch_means
from dashboards.report.figures import run_figures, scalar_figures
from dashboards.report import record
from dashboards.report.insight import insight_sections
from dashboards.report.page import (
    chart_grid,
    header,
    page,
    png,
    summary_html,
    table_html,
)
from runner.track import MAX_NAMES

MAX_IMAGES = 100  # as many as train.samples allows
MAX_CHARTED = 200  # names of a tracked run drawn (one trace each); the rest are in its CSV
MAX_CELLS = 2_000_000  # of a tracked run's CSV as a table of steps by names; past it, a row per value
MAX_ROWS = 1_000  # names in a tracked run's table of last values
IMAGE_BOX = 84  # CSS pixels of the longer side of a sample image


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
    if run.tracked:
        return tracked_report(run)
    figures = run_figures(run)
    j = run.journal
    insight, insight_figures = insight_sections(run)
    sections = [("Charts", chart_grid(figures) if figures else "<p class=note>No training steps yet.</p>"),
                ("Samples", samples_html(j)),
                *insight,
                ("Per epoch", epochs_html(j) + steps_csv_link(j, run.name)),
                ("Summary", summary_html(run.summary)),
                *record.sections(run),
                ("Spec", f"<pre>{html.escape(json.dumps(run.spec, indent=2))}</pre>")]
    return page(f"{run.name}: report", header(run.name, str(run.spec.get("description") or ""), run.status,
                                               _meta(run), _notes(run)), sections, figures + insight_figures,
                run.path)


def _meta(run: Run) -> list[str]:
    """The header's facts: final accuracy, dataset, how far it got, where it ran."""
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
    return meta + _tags(run)


def _tags(run: Run) -> list[str]:
    tags, _ = record.tags_and_notes(run)
    return [f"tags {', '.join(tags)}"] if tags else []


def _notes(run: Run) -> list[str]:
    """What could not be read, and what an unfinished run's end means."""
    notes = list(run.notes)
    if run.status == "stopped":
        notes.append(f"This run stopped before its end; continue it with: python -m runner --resume {run.path}")
    elif run.status == "diverged":
        notes.append("The training loss became NaN or infinite; the charts end there.")
    elif run.status == "unfinished":
        notes.append("The journal has no end: the process was killed, or is still running.")
    return notes


# ----- a tracked run (runner.track) ----------------------------------------------------------------

def tracked_report(run: Run) -> str:
    j = run.journal
    figures = scalar_figures(dict(itertools.islice(j.series.items(), MAX_CHARTED)))
    charts = chart_grid(figures) + left_out_html(j) + values_csv_link(j, run.name) if figures else \
        "<p class=note>The journal holds no values yet.</p>"
    summary = {k: v for k, v in (run.summary or {}).items() if k != "last"} if run.summary is not None else None
    sections = [("Charts", charts), ("Images", media_html(j)), ("Texts", texts_html(j)),
                ("Summary", last_values_html(run) + summary_html(summary)), *record.sections(run),
                ("Config", f"<pre>{html.escape(json.dumps(run.spec, indent=2))}</pre>")]
    meta = [f"run {run.path.name}", "a loop of its own (runner.track)", f"{_steps(j):,} steps",
            f"{len(j.series)} scalars", *_cost(run.summary or {}), *_tags(run)]
    notes = [n for n in _notes(run) if "--resume" not in n]
    return page(f"{run.name}: report", header(run.name, "", run.status, meta, notes), sections, figures, run.path)


def _steps(j: Journal) -> int:
    return max((xs[-1] for xs, _ in j.series.values() if xs), default=0)


def _cost(summary: dict[str, Any]) -> list[str]:
    wall, overhead = summary.get("wall_seconds"), (summary.get("logging") or {}).get("overhead")
    return [*([f"{wall:,.1f} s"] if isinstance(wall, (int, float)) else []),
            *([f"logging cost {overhead:.1%} of the loop"] if isinstance(overhead, (int, float)) else [])]


def left_out_html(j: Journal) -> str:
    """What the charts leave out: the names past MAX_CHARTED (in the CSV) and past MAX_NAMES (not kept)."""
    notes = []
    if len(j.series) > MAX_CHARTED:
        others = ", ".join(itertools.islice(j.series, MAX_CHARTED, MAX_CHARTED + 5))
        notes.append(f"Charts for the first {MAX_CHARTED:,} of {len(j.series):,} names; the others ({others}, ...) "
                     "are in the CSV.")
    if j.left_out:
        notes.append(f"{j.left_out:,} values of names after the first {MAX_NAMES:,} "
                     f"({', '.join(j.left_out_names)}, ...) are left out of this report, as a run leaves them out "
                     "now (runner.track.MAX_NAMES).")
    return "".join(f"<p class=note>{html.escape(note)}</p>" for note in notes)


def values_csv_link(j: Journal, name: str) -> str:
    """Every value of every name kept, exactly, as a CSV the page offers for download: a row per step, a
    column per name in the order they first came (a name logged twice at one step gets a second row
    for that step); where that table would pass MAX_CELLS cells (many names at steps of their own),
    a row per value instead (step, name, value), as long as the values are many."""
    steps = {step for xs, _ in j.series.values() for step in xs}
    lines = (_wide_rows if len(steps) * len(j.series) <= MAX_CELLS else _long_rows)(j.series)
    count = sum(len(xs) for xs, _ in j.series.values())
    return (f'<p><a download="{html.escape(name)}-values.csv" href="data:text/csv;charset=utf-8,'
            f'{quote(chr(10).join(lines) + chr(10))}">Every value, exact (CSV, {count:,} values in '
            f"{len(lines) - 1:,} rows; blank: not logged at that step, or not finite)</a></p>")


def _wide_rows(series: dict[str, Series]) -> list[str]:
    names = list(series)
    rows: dict[int, list[dict[str, Any]]] = {}
    for key in names:
        for step, value in zip(*series[key]):
            at = rows.setdefault(step, [{}])
            row = next((r for r in at if key not in r), None)
            if row is None:
                at.append(row := {})
            row[key] = value
    lines = ["step," + ",".join(_csv_field(k) for k in names)]
    return lines + [f"{step}," + ",".join("" if row.get(k) is None else repr(row[k]) for k in names)
                    for step in sorted(rows) for row in rows[step]]


def _long_rows(series: dict[str, Series]) -> list[str]:
    values = sorted((step, n, value) for n, (xs, ys) in enumerate(series.values()) for step, value in zip(xs, ys))
    names = [_csv_field(k) for k in series]
    return ["step,name,value", *(f"{step},{names[n]},{'' if value is None else repr(value)}"
                                  for step, n, value in values)]


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def media_html(j: Journal) -> str:
    """The latest images of each name, with the step they were logged at."""
    if not j.latest_media:
        return ""
    parts = []
    for name, m in sorted(j.latest_media.items()):
        cells = []
        for i, image in enumerate(m["pixels"][:MAX_IMAGES]):
            try:
                data, width, height = png(image)
            except (ValueError, TypeError, IndexError) as exc:
                cells = [f"<p class=note>These images cannot be drawn ({html.escape(str(exc))}).</p>"]
                break
            scale = max(1, IMAGE_BOX // max(width, height))
            cells.append(f'<figure><img alt="{html.escape(name)} {i}" width={width * scale} height={height * scale} '
                         f'src="data:image/png;base64,{base64.b64encode(data).decode()}"></figure>')
        times = f", the last of {m['count']:,} logged" if m["count"] > 1 else ""
        parts.append(f"<h3>{html.escape(name)}</h3><p class=meta>step {html.escape(str(m['step']))}{times}</p>"
                     f"<div class=samples>{''.join(cells)}</div>")
    return "".join(parts)


def texts_html(j: Journal) -> str:
    """Each name's texts, the latest first (the last KEEP_TEXTS of them)."""
    parts = []
    for name, kept in sorted(j.texts.items()):
        items = "".join(f"<p class=meta>step {html.escape(str(t['step']))}</p><pre>{html.escape(t['text'])}</pre>"
                        for t in reversed(kept))
        parts.append(f"<h3>{html.escape(name)}</h3>{items}")
    return "".join(parts)


def last_values_html(run: Run) -> str:
    """Each name's last value and the step it was logged at (the summary's exact value where it has one)."""
    j, last = run.journal, (run.summary or {}).get("last") or {}
    names = sorted(set(j.series) | set(itertools.islice(last if isinstance(last, dict) else {}, MAX_NAMES)))
    if not names:
        return ""
    more = f"<p class=note>and {len(names) - MAX_ROWS:,} more names (in the CSV).</p>" if len(names) > MAX_ROWS else ""
    names = names[:MAX_ROWS]
    rows = [[k, j.series[k][0][-1] if k in j.series and j.series[k][0] else None,
             last.get(k) if isinstance(last, dict) and k in last else j.series[k][1][-1]] for k in names]
    return "<h3>last values</h3>" + table_html(["name", "step", "value"], rows, "kv") + more
