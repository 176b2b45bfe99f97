"""A run's report page: its charts, the sample images with their predictions (class names when the
journal names them), what the insight events show (dashboards.report.insight: classes, mistakes,
weights and gradients, activations, system; only those the journal has), the per-epoch numbers with
every step's loss as a CSV download, the summary and the spec, under a header that says how the run
ended and how to continue it.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any, Sequence
from urllib.parse import quote

from dashboards.report.data import Journal, Run, epoch_means
from dashboards.report.figures import run_figures
from dashboards.report.insight import insight_sections
from dashboards.report.page import (
    chart_grid,
    header,
    page,
    png,
    summary_html,
    table_html,
)

MAX_IMAGES = 100  # as many as train.samples allows
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
    figures = run_figures(run)
    j = run.journal
    insight, insight_figures = insight_sections(run)
    sections = [("Charts", chart_grid(figures) if figures else "<p class=note>No training steps yet.</p>"),
                ("Samples", samples_html(j)),
                *insight,
                ("Per epoch", epochs_html(j) + steps_csv_link(j, run.name)),
                ("Summary", summary_html(run.summary)),
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
    return meta


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
