"""A sweep's report page: one chart per metric with a trace per variant (seeds as mean and min-max
band, as in the comparison env), the results table as the console prints it (sortable on exact
values, each variant linked to its own report), what the sweep learned (the parallel coordinates
of its finished runs and each varied key's importance for the metric, dashboards.parallel, as in
the comparison env; a search's keys and metric from its sweep.json), and the keys the variants vary
with the first run's spec.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from dashboards import parallel
from dashboards.charts import DEFAULT_SMOOTHING, smoothing_weight
from dashboards.report.data import REPORT, Run, read_run
from dashboards.report.figures import sweep_figures
from dashboards.report.page import cell, chart_grid, header, page, table_html
from runner.status import FINISHED
from runner.sweeps import importance


def sweep_report(path: Path) -> str:
    from runner.sweeps import record

    gathered = record.gather([path])
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
    ok = sum(r.status == FINISHED for r in results)
    description = str(first.spec.get("description") or "") if first else ""
    meta = [f"sweep {path.name}", f"{len(results)} variants, {ok} finished",
            f"{len(groups)} curves" + (" (seeds as mean and min-max band)" if len(groups) < len(loaded) else "")]
    counts = Counter(r.status for r in results if r.status != FINISHED)
    status = ", ".join(f"{n} {what}" for what, n in counts.items()) or "finished"
    learned, learned_figures = learned_html(path, results)
    sections = [("Charts", chart_grid(figures) if figures else "<p class=note>No variant has trained yet.</p>"),
                ("Results", results_html(path, results)),
                ("What mattered", learned),
                ("Spec", spec_html(plan.variants, first))]
    return page(f"{plan.name}: report", header(plan.name, description, status, meta, notes), sections,
                figures + learned_figures, path)


def learned_html(path: Path, results: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """The parallel coordinates of the finished runs and the importance chart (their boxes, and their
    figures for the page to draw), then the importance table; or why there is nothing to show."""
    from runner.sweeps import results as table

    if all(r.tracked for r in results):  # tracked runs have no test metric to judge keys by
        return "", []
    target, trials = table.learned(results, [path])
    if not target.keys:
        return "<p class=note>No key varies among the variants: there is nothing to tell apart.</p>", []
    found, note = importance.explain(trials, target)
    figures = [{"id": "parallel", **parallel.parallel_figure(target, trials)}]
    if found:
        figures.append({"id": "importance", **parallel.importance_figure(found, note, target.metric)})
    # Not the "chart" boxes of the charts above: those hold curves, these a parcoords and bars.
    box = 'style="border:1px solid #e3e3e3;border-radius:4px;min-height:{}px"'
    boxes = "".join(f'<div class=learned id="{f["id"]}" {box.format(f["layout"]["height"])}></div>'
                    for f in figures)
    text = f"<div class=charts>{boxes}</div>"
    if not found:
        return text + f"<p class=note>{html.escape(note)}</p>", figures
    rows = [[key, f"{value:.3f}"] for key, value in found.items()]
    return (text + table_html(["key", "importance"], rows, "kv")
            + f"<p class=meta>{html.escape(importance.caption(trials, target))}</p>"), figures


def results_html(path: Path, results: Sequence[Any]) -> str:
    """The results table as the console prints it, sortable by any column on exact values, each variant
    linked to its own report when it has one."""
    from runner.sweeps import results as table

    header, cells = table.rows(results)
    body = ["<tr>" + "".join(_result_cell(path, result, column, text) for column, text in zip(header, row)) + "</tr>"
            for result, row in zip(table.ranked(results), cells)]
    head = "".join(f'<th{" class=text" if h in table.TEXT_COLUMNS else ""}>{html.escape(h)}</th>' for h in header)
    errors = "".join(f"<li>{html.escape(e)}</li>" for e in table.errors(results))
    return (f'<table class="sortable" id="results-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f"</table><p class=meta>Click a column to sort by it.</p>" + (f"<h3>Errors</h3><ul>{errors}</ul>"
                                                                         if errors else ""))


# A column's exact value, to sort by; the other columns sort by their text.
_RAW = {"variant": lambda r: r.label, "seed": lambda r: r.seed, "final acc": lambda r: r.test_accuracy,
        "best acc": lambda r: r.best_test_accuracy, "final loss": lambda r: r.test_loss,
        "train s": lambda r: r.train_seconds, "status": lambda r: r.status}


def _result_cell(path: Path, result: Any, column: str, text: str) -> str:
    """One cell of the results table: its text, its sort key, and for a variant the link to its report."""
    value = _RAW[column](result) if column in _RAW else text
    sort = "" if value is None else cell(value)
    content = html.escape(text)
    if column == "variant" and result.run_dir:
        target = Path(result.run_dir) / REPORT
        if target.is_file():
            link = os.path.relpath(target, path)
            content = f'<a href="{html.escape(quote(link))}">{content}</a>'
    align = ' class="text"' if column in ("variant", "last values", "status") else ""  # results.TEXT_COLUMNS
    return f'<td{align} data-v="{html.escape(sort)}">{content}</td>'


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
