"""The notebook's page: many runs in one offline file (`python -m runner report runs/ [--where ...]`).

- the runs table: every row the listing selected (runner.lab), sortable by any column on exact
  values (the page's own sort) and filterable in the page: a box taking words (a row containing
  them) and the listing's conditions (`status=finished metric>0.98 model.kind~cnn`, on the table's
  columns); each run linked to its own report.html when it has one, by a path relative to the page;
- the curves of the first MAX_CURVES runs shown, overlaid per metric (train loss, test accuracy and
  loss per epoch, every `metrics` name), drawn as a sweep's report draws its variants
  (dashboards.report.figures); rows hidden by the filter hide their curves;
- the parallel coordinates of the keys that differ between the finished runs, against their test
  accuracy (dashboards.parallel);
- what could not be read, run by run.

One file, no network request: the page of dashboards.report.page (inline plotly.js, strict CSP);
every text taken from a run is escaped.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from dashboards import parallel
from dashboards.charts import DEFAULT_SMOOTHING
from dashboards.report.data import read_run
from dashboards.report.figures import sweep_figures
from dashboards.report.page import cell, chart_grid, header, page
from runner import runs as rundirs
from runner.lab import query, table
from runner.status import FINISHED

LAB = "lab.html"  # the page's default name in the folder it lists
MAX_CURVES = 20  # runs whose curves are drawn (the first rows shown); the table lists every row
MAX_KEY_COLUMNS = 12  # differing spec keys as columns of the table
MAX_AXES = 8  # differing keys as axes of the parallel coordinates
MAX_CHOICES = 30  # distinct values of a non-numeric key that still make an axis


def lab_page(folders: Sequence[Path], rows: list[dict[str, Any]], total: int, base: Path,
             filters: Sequence[str] = ()) -> str:
    """The page of `rows` (selected from `total` runs found in `folders`); links relative to `base`,
    the folder the page is written to."""
    for i, row in enumerate(rows):  # what names a run on the page: its path under the folder listed, or as given
        row["label"], row["i"] = (row["rel"] if len(folders) == 1 and row["rel"] else row["run"]), i
    keys = query.differing(rows)
    drawn = [r for r in rows if drawable(r)][:MAX_CURVES]
    figures, unread = curves(drawn)
    learned, learned_figures = parallel_html(rows, keys)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    meta = [f"{len(rows)} of {total} runs" if len(rows) != total else f"{total} runs",
            ", ".join(f"{n} {s}" for s, n in statuses.items()), "filters: " + " ".join(filters) if filters else ""]
    shown = (f"<p class=meta>Curves of the first {len(drawn)} of {len(rows)} runs (runs whose files are damaged "
             "are left out; narrow the rest with --where, --tag or --limit).</p>" if len(drawn) < len(rows) else "")
    shown += "".join(f"<p class=note>{html.escape(text)}</p>" for text in unread)
    sections = [("Runs", runs_html(rows, keys, base)),
                ("Curves", (chart_grid(figures) if figures else "<p class=note>No run has curves to draw.</p>")
                 + shown),
                ("What differs", learned),
                ("Problems", problems_html(rows))]
    title = "Runs in " + ", ".join(str(f) for f in folders)
    state = FINISHED if statuses.keys() <= {FINISHED} else ", ".join(f"{n} {s}" for s, n in statuses.items())
    return page(title, header(title, "", state, meta[:1] + meta[2:], []),
                sections, figures + learned_figures, folders[0] if len(folders) == 1 else Path("."))


# ----- the table -----------------------------------------------------------------------------------

def _columns(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[tuple[str, Any, Any]]:
    """(header, text, exact value to sort by) of each column."""
    cols: list[tuple[str, Any, Any]] = [
        ("run", lambda r: r["label"], lambda r: r["label"]),
        ("status", lambda r: r["status"], lambda r: r["status"]),
        ("when", lambda r: (r.get("when") or "")[:16], lambda r: r.get("when")),
        ("metric", table.metric_text, lambda r: r.get("metric")),
        ("test loss", lambda r: _short(r["summary"].get("test_loss")), lambda r: r["summary"].get("test_loss")),
        ("epochs", lambda r: table.show(r.get("epochs")), lambda r: r.get("epochs")),
        ("time", lambda r: table.seconds_text(r.get("time")), lambda r: r.get("time")),
        ("tags", lambda r: " ".join(r.get("tags") or []), lambda r: " ".join(r.get("tags") or [])),
        ("notes", _notes_text, _notes_text),
        ("commit", table.commit_text, table.commit_text)]
    cols = [c for c in cols if c[0] not in ("tags", "notes", "commit") or any(c[1](r) for r in rows)]
    cols += [(k, lambda r, k=k: table.show(r["spec"].get(k)), lambda r, k=k: r["spec"].get(k))
             for k in keys[:MAX_KEY_COLUMNS]]
    if any(r.get("problem") for r in rows):
        cols.append(("problem", lambda r: r.get("problem") or "", lambda r: r.get("problem") or ""))
    return cols


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else table.show(value)


def _notes_text(row: dict[str, Any]) -> str:
    return " | ".join(f"{n.get('time', '')[:16]} {n.get('text', '')}".strip() for n in row.get("notes") or [])


def runs_html(rows: Sequence[dict[str, Any]], keys: Sequence[str], base: Path) -> str:
    cols = _columns(rows, keys)
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in cols)
    body = []
    for row in rows:
        cells = []
        for h, text, exact in cols:
            raw = exact(row)
            content = html.escape(str(text(row)))
            if h == "run" and row.get("has_report"):
                link = os.path.relpath(Path(row["run"]) / "report.html", base)
                content = f'<a href="{html.escape(quote(link))}">{content}</a>'
            sort = "" if raw is None else cell(raw) if not isinstance(raw, float) or math.isfinite(raw) else ""
            kind = {"run": " class=text", "notes": " class=notes", "problem": " class=notes"}.get(h, "")
            cells.append(f'<td{kind} data-v="{html.escape(sort)}">{content}</td>')
        body.append(f'<tr data-i="{row["i"]}">{"".join(cells)}</tr>')
    more = f"; {len(keys) - MAX_KEY_COLUMNS} more differing keys in `runs --json`" if len(keys) > MAX_KEY_COLUMNS \
        else ""
    return (f"<style>{STYLE}</style>"
            f'<p><input id=filter type=search size=60 placeholder="filter: words, or status=finished metric&gt;0.98 '
            f'model.kind~cnn" aria-label="filter the runs"> <span id=shown class=meta>{len(rows)} runs</span></p>'
            f'<div class=wide><table class="sortable" id="runs-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>'
            f"<p class=meta>Click a column to sort by it; conditions in the filter take the column names "
            f"(= != &gt; &gt;= &lt; &lt;= ~){html.escape(more)}.</p><script>{FILTER}</script>")


STYLE = ("#runs-table td{white-space:nowrap}#runs-table td.notes{white-space:normal;min-width:16em;max-width:32em;"
         "text-align:left}#filter{font:inherit;padding:3px 6px}.wide{overflow-x:auto}")

# In the page: the filter box. Words must appear in a row; KEY OP VALUE compares a column (numbers as
# numbers, a percent as a fraction); rows hidden here hide their curves.
FILTER = """
(function () {
  var box = document.getElementById('filter'), table = document.getElementById('runs-table');
  var heads = Array.prototype.map.call(table.tHead.rows[0].cells, function (c) { return c.textContent; });
  function num(v) { if (/%$/.test(v)) v = String(parseFloat(v) / 100); var n = Number(v); return v !== '' && !isNaN(n) ? n : null; }
  function test(row, term) {
    var m = /^([^=!<>~]+?)(!=|>=|<=|=|>|<|~)(.*)$/.exec(term);
    var col = m ? heads.indexOf(m[1]) : -1;
    if (col < 0) return row.textContent.toLowerCase().indexOf(term.toLowerCase()) >= 0;
    var c = row.cells[col], text = c.textContent, raw = c.getAttribute('data-v'), want = m[3];
    if (m[2] === '~') return text.toLowerCase().indexOf(want.toLowerCase()) >= 0;
    var a = num(raw), b = num(want), eq = (a !== null && b !== null) ? a === b : (text === want || raw === want);
    if (m[2] === '=') return eq;
    if (m[2] === '!=') return !eq;
    if (a === null || b === null) { a = text; b = want; }
    return {'>': a > b, '>=': a >= b, '<': a < b, '<=': a <= b}[m[2]];
  }
  function apply() {
    var terms = box.value.split(/\\s+/).filter(Boolean), shown = {}, n = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var ok = terms.every(function (t) { return test(row, t); });
      row.style.display = ok ? '' : 'none';
      if (ok) { shown[row.getAttribute('data-i')] = true; n++; }
    });
    document.getElementById('shown').textContent = n + ' of ' + table.tBodies[0].rows.length + ' runs';
    document.querySelectorAll('.chart').forEach(function (gd) {
      if (!gd.data || !window.Plotly) return;
      var visible = gd.data.map(function (t) { return t.meta === undefined || shown[t.meta] ? true : false; });
      Plotly.restyle(gd, {visible: visible});
    });
  }
  box.addEventListener('input', apply);
})();
"""


# ----- the curves and what differs -------------------------------------------------------------------

def drawable(row: dict[str, Any]) -> bool:
    """Whether a run's curves can be read: a journal, and no file the listing found damaged (the
    report's reader reads whole files; a journal cut mid-line it reads up to the cut)."""
    problems = [p for p in (row.get("problem") or "").split("; ") if p and not p.endswith("ends mid-line (cut)")]
    return row["status"] != "link" and not problems and os.path.isfile(Path(row["run"]) / rundirs.JOURNAL)


def curves(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs' curves overlaid, one chart per metric, and what could not be read; each trace's `meta`
    is its row's index in the table (`i`), so the page's filter can hide it with its row."""
    groups, unread = {}, []
    for row in rows:
        try:
            groups[row["label"]] = [read_run(Path(row["run"]))]
        except Exception as exc:  # noqa: BLE001 - one run's files must not take the page down
            unread.append(f"{row['label']}: its curves cannot be read ({type(exc).__name__}).")
    figures = sweep_figures(groups, DEFAULT_SMOOTHING)
    index = {html.escape(row["label"]): row["i"] for row in rows}
    for figure in figures:
        for trace in figure["data"]:
            if trace.get("name") in index:
                trace["meta"] = str(index[trace["name"]])
    return figures, unread


def parallel_html(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> tuple[str, list[dict[str, Any]]]:
    """The parallel coordinates of the finished runs' differing keys against their test accuracy."""
    from runner.sweeps.importance import Target, trials

    finished = [r for r in rows if r["status"] == FINISHED and not r.get("tracked") and r.get("metric") is not None]
    space = {}
    for key in keys:
        if key == "seed" or len(space) >= MAX_AXES:
            continue
        dist = _axis([r["spec"].get(key) for r in finished])
        if dist is not None:
            space[key] = dist
    target = Target(space)
    if not target.keys or len(finished) < 2:
        return ("<p class=note>No key differs between two finished runs or more: there is nothing to set side by "
                "side.</p>", [])
    found = trials(target, [(r["spec"], r["metric"]) for r in finished])
    figure = {"id": "parallel", **parallel.parallel_figure(target, found)}
    box = f'style="border:1px solid #e3e3e3;border-radius:4px;min-height:{figure["layout"]["height"]}px"'
    return f'<div class=learned id="parallel" {box}></div>', [figure]


def _axis(values: list[Any]) -> dict[str, list[Any]] | None:
    """A key's axis: a range for many numbers, a choice for a few values, nothing for many texts."""
    present = [v for v in values if v is not None]
    distinct = list({json.dumps(v, sort_keys=True): v for v in present}.values())
    if len(distinct) < 2:
        return None
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct)
    if numbers and len(distinct) > 8:
        low, high = min(distinct), max(distinct)
        return {"loguniform" if low > 0 and high / low >= 100 else "uniform": [low, high]}
    return {"choice": distinct} if len(distinct) <= MAX_CHOICES else None


def problems_html(rows: Sequence[dict[str, Any]]) -> str:
    bad = [r for r in rows if r.get("problem")]
    if not bad:
        return ""
    return "<ul>" + "".join(f"<li><code>{html.escape(r['run'])}</code> ({html.escape(r['status'])}): "
                            f"{html.escape(r['problem'])}</li>" for r in bad) + "</ul>"


# ----- where it goes -----------------------------------------------------------------------------------

def is_folder_of_runs(path: Path) -> bool:
    """A folder that is neither a run directory nor a sweep directory: the notebook's page is its report."""
    return path.is_dir() and not (path / rundirs.JOURNAL).is_file() and not (path / "sweep.json").is_file()


def build_folder(path: Path, base: Path | None = None) -> str:
    """The page of every run under `path` (links relative to `base`, default `path`).

    Raises runs.RunDirError when there is no run under it."""
    from runner.lab.index import listing

    rows, _ = listing([path])
    if not rows:
        raise rundirs.RunDirError(f"{path} holds no run directory (with {rundirs.JOURNAL}) nor sweep directory; "
                                  "runs are made by `python -m runner SPEC.json` under runs/.")
    query.finish(rows)
    rows = query.select(rows)
    return lab_page([path], rows, len(rows), base or path)


def write_lab(folders: Sequence[Path], rows: list[dict[str, Any]], total: int, output: Path | None,
              filters: Sequence[str] = ()) -> Path:
    """Write the page of `rows` atomically to `output` (default: the first folder's lab.html)."""
    from runner.files import write_text

    output = output or folders[0] / LAB
    if output.is_dir():
        output = output / LAB
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text(output, lab_page(folders, rows, total, output.parent, filters))
    return output
