"""Reports: one self-contained HTML file for a run or a sweep, to share without a server.

Built from the files in the directory only (spec.json, the metrics.jsonl journal replayed through
`runner.loggers.replay`, summary.json; sweep.json for a sweep), so it works for runs made with the
null logger and for run directories copied from other machines. Nothing in the page asks the
network for anything: plotly.js is inlined from the npm tarball pinned in the asset manifest (the
same bytes Visdom serves), images are PNG data URIs, and every text taken from the run is escaped.

    data.py      a run directory read back (Journal, Run, read_run)
    figures.py   the Plotly figures of a run and of a sweep (seed bands from dashboards.charts)
    run.py       a run's page            sweep.py   a sweep's page
    insight.py   a run's insight sections (classes, mistakes, weights and gradients, activations, system)
    page.py      the safe, offline HTML document (inline plotly.js, escaping, PNG data URIs)
    output.py    build, write, write_or_warn, ReportOnClose
    lab.py       the page of many runs: a folder of runs (neither a run nor a sweep directory), or
                 the rows `python -m runner report DIR --where ...` selected (write_lab)

It imports no torch, numpy or visdom, so `python -m runner report` answers in well under a second.
The runner reaches it only through the names below (its CLI imports them lazily).
"""

from pathlib import Path

from dashboards.report import output
from dashboards.report.lab import LAB, build_folder, is_folder_of_runs, write_lab
from dashboards.report.output import REPORT, ReportOnClose, write_or_warn
from dashboards.report.page import ReportError

__all__ = ["LAB", "REPORT", "ReportError", "ReportOnClose", "build", "write", "write_lab", "write_or_warn"]


def build(path: Path) -> str:
    """The report of a run directory or a sweep directory (dashboards.report.output), or, for a folder
    that is neither, the page of every run under it (dashboards.report.lab)."""
    return build_folder(path) if is_folder_of_runs(path) else output.build(path)


def write(path: Path, to: Path | None = None) -> Path:
    """Write the report of `path` atomically to `to` (default: path/report.html; a folder of runs'
    page: path/lab.html, its links relative to where it is written); returns where."""
    if not is_folder_of_runs(path):
        return output.write(path, to)
    from runner.files import write_text

    to = to or path / LAB
    if to.is_dir():
        to = to / LAB
    text = build_folder(path, to.parent)
    to.parent.mkdir(parents=True, exist_ok=True)
    write_text(to, text)
    return to
