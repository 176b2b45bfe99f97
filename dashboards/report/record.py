"""A run's own record on its report page: its tags and notes (RUN/notes.json and the spec's, as
`python -m runner tag` and `note` keep them) and what made it (the provenance its journal's start
event recorded: command, host, versions, and per repository its commit, whether it was dirty, the
files changed and the diff, folded). Everything taken from the run is escaped.
"""

from __future__ import annotations

import html
from typing import Any

from dashboards.report.data import Run

MAX_DIFF = 200_000  # characters of a recorded diff shown (the record itself is capped alike)


def tags_and_notes(run: Run) -> tuple[list[str], str]:
    """(the run's tags, the Notes section's HTML, or "" when it has none)."""
    from runner.lab import notes

    record, _ = notes.parse(_notes_file(run))
    tags = record["tags"] if record and record["has_tags"] else notes.spec_tags(run.spec)
    written = [{"time": "", "text": notes.spec_note(run.spec)}] if notes.spec_note(run.spec) else []
    written += record["notes"] if record else []
    if not written:
        return tags, ""
    items = []
    for note in written:
        when = f"<span class=note>{html.escape(note['time'])}</span> " if note["time"] else ""
        items.append(f"<li>{when}{html.escape(note['text'])}</li>")
    return tags, f"<ul class=notes>{''.join(items)}</ul>"


def _notes_file(run: Run) -> Any:
    from runner.lab import notes
    from runner.lab.reading import load_json

    data, _ = load_json(run.path / notes.NOTES, notes.MAX_BYTES, [])
    return data


def provenance_html(run: Run) -> str:
    """What made the run, or "" when its journal recorded nothing of it."""
    made = run.journal.info.get("provenance")
    if not isinstance(made, dict):
        made = (run.summary or {}).get("provenance")
    if not isinstance(made, dict):
        return ""
    versions = made.get("versions") if isinstance(made.get("versions"), dict) else {}
    rows = [("command", " ".join(map(str, made.get("command") or []))), ("started", made.get("time")),
            ("host", made.get("host")), ("python", made.get("python")),
            *((name, version) for name, version in versions.items() if version)]
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v)
    repos = [made.get("project"), *(made.get("extra") or [])]
    return f"<table class=summary>{table}</table>" + "".join(_repository(r) for r in repos if isinstance(r, dict))


def _repository(repo: dict[str, Any]) -> str:
    where = html.escape(str(repo.get("path", "")))
    if repo.get("same_as"):
        return f"<p>{where}: in the project's repository.</p>"
    if not repo.get("git") or not repo.get("commit"):
        return f"<p>{where}: {html.escape(str(repo.get('error') or 'no git repository'))}.</p>"
    state = "dirty" if repo.get("dirty") else "clean"
    changed = ", ".join(map(str, (repo.get("changed") or [])[:20]))
    text = (f"<p>{where}: commit <code>{html.escape(str(repo['commit']))}</code>"
            f"{' on ' + html.escape(str(repo['branch'])) if repo.get('branch') else ''}, {state}"
            f"{': ' + html.escape(changed) if changed else ''}.</p>")
    diff = repo.get("diff")
    if isinstance(diff, str) and diff:
        cut = " (cut as recorded)" if repo.get("diff_cut") else ""
        text += (f"<details><summary>the diff against that commit{cut}</summary>"
                 f"<pre>{html.escape(diff[:MAX_DIFF])}</pre></details>")
    return text


def sections(run: Run) -> list[tuple[str, str]]:
    """The Notes and Provenance sections, those the run has."""
    _, notes_html = tags_and_notes(run)
    made = provenance_html(run)
    return [(name, content) for name, content in (("Notes", notes_html), ("Provenance", made)) if content]
