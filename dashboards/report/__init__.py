"""Reports: one self-contained HTML file for a run or a sweep, to share without a server.

Built from the files in the directory only (spec.json, the metrics.jsonl journal replayed through
`runner.loggers.replay`, summary.json; sweep.json for a sweep), so it works for runs made with the
null logger and for run directories copied from other machines. Nothing in the page asks the
network for anything: plotly.js is inlined from the npm tarball pinned in the asset manifest (the
same bytes Visdom serves), images are PNG data URIs, and every text taken from the run is escaped.

    data.py      a run directory read back (Journal, Run, read_run)
    figures.py   the Plotly figures of a run and of a sweep (seed bands from dashboards.charts)
    run.py       a run's page            sweep.py   a sweep's page
    page.py      the safe, offline HTML document (inline plotly.js, escaping, PNG data URIs)
    output.py    build, write, write_or_warn, ReportOnClose

It imports no torch, numpy or visdom, so `python -m runner report` answers in well under a second.
The runner reaches it only through the names below (its CLI imports them lazily).
"""

from dashboards.report.output import REPORT, ReportOnClose, build, write, write_or_warn
from dashboards.report.page import ReportError

__all__ = ["REPORT", "ReportError", "ReportOnClose", "build", "write", "write_or_warn"]
