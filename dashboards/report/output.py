"""Where a report goes: `build` picks the page (a run directory, or a sweep directory or a directory of
run directories), `write` puts it in place atomically (default: the directory's report.html),
`write_or_warn` turns any failure into one warning, and `ReportOnClose` writes a run's report when
the run ends however it ends. `python -m runner` writes a report at the end of every run and sweep.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from dashboards.report.data import REPORT, read_run
from dashboards.report.run import run_report
from dashboards.report.sweep import sweep_report
from runner import runs
from runner.files import write_text
from runner.loggers import BaseLogger, Info


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
    write_text(output, text)
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
