"""A run's report shows its tags, its notes and what made it (the provenance its journal recorded)."""

from __future__ import annotations

import json
from pathlib import Path

from dashboards.report.data import read_run
from helpers import ROOT, run_cli, tiny_spec


def test_the_report_shows_tags_notes_and_provenance_escaped(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, tags=["baseline"], notes="first <try>")
    run = tmp_path / "run"
    assert run_cli(str(spec), "--logger", "null", "--no-report", "--out", str(run)).returncode == 0
    assert run_cli("tag", str(run), "+best", "-baseline").returncode == 0
    assert run_cli("note", str(run), "lr <b>0.1</b> was too high").returncode == 0
    done = run_cli("report", str(run))
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    assert "tags best" in page and "tags baseline" not in page
    assert "first &lt;try&gt;" in page and "lr &lt;b&gt;0.1&lt;/b&gt; was too high" in page
    made = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["info"]["provenance"]
    assert made["project"]["path"] == str(ROOT) and "<h2" in page and ">Provenance<" in page
    if made["project"].get("commit"):
        assert made["project"]["commit"] in page
    summary = json.loads((run / "summary.json").read_text())
    assert "diff" not in summary["provenance"]["project"] and summary["provenance"]["time"] == made["time"]


def test_a_report_reads_its_files_bounded_a_fifo_or_a_deep_spec_never_hangs_it(tmp_path: Path,
                                                                              tiny_mnist: Path) -> None:
    import os

    run = tmp_path / "run"
    assert run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--no-report", "--out",
                   str(run)).returncode == 0
    (run / "summary.json").unlink()
    os.mkfifo(run / "summary.json")  # nobody ever writes it: reading it would wait for ever
    (run / "spec.json").write_text("[" * 100_000 + "]" * 100_000)  # deeper than json can parse
    done = run_cli("report", str(run), timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    page = (run / "report.html").read_text()
    assert "summary.json is not a regular file" in page and "spec.json cannot be read (RecursionError)" in page
    os.unlink(run / "metrics.jsonl")
    os.mkfifo(run / "metrics.jsonl")
    done = run_cli("report", str(run), timeout=60)  # no journal file: not taken for a run, and never read whole
    assert done.returncode in (0, 2) and "Traceback" not in done.stderr, done.stderr
    assert read_run(run).notes[0] == f"{run / 'metrics.jsonl'} cannot be read: not a regular file."
