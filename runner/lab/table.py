"""The rows as people and scripts read them: a console table (rich), JSON or CSV.

The console table is laid out here and printed through rich (colours, cropping to the terminal)
rather than built as a rich Table: a Table measures every cell of every row, 0.4 s for 1,000 rows on
a 2-core machine, which is most of the listing's budget; this layout takes 0.05 s. Each run is one
line (long cells are cut with "..."), so a damaged run is one line too.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from typing import Any, Sequence, TextIO

from runner import status
from runner.lab.query import differing

KEY_COLUMNS = 6  # differing spec keys shown on the console; --json and --csv have them all
CELL = 28  # characters of a cell shown on the console (the run's path: RUN_CELL)
RUN_CELL = 64
# What a terminal would act on instead of showing: control characters (C0 but tab, DEL, C1: ESC starts
# a sequence that can retitle, clear or rewrite the screen) and the marks that reorder the text around
# them (bidi embeddings, overrides and isolates, LRM, RLM, ALM).
UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
GOOD = {status.FINISHED: "green", status.STOPPED_EARLY: "green", status.RUNNING: "cyan", status.STOPPED: "yellow",
        status.UNFINISHED: "yellow"}


def visible(text: str) -> str:
    """`text` safe to print on a terminal: each UNSAFE character written as its escape (`\\x1b`,
    `\\u202e`). Every name or value read from a run directory goes through it on its way to the screen."""
    return UNSAFE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def show(value: Any) -> str:
    """A value as people write it: bare words for strings, compact JSON otherwise, nothing for None."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def metric_text(row: dict[str, Any]) -> str:
    value, name = row.get("metric"), row.get("metric_name") or ""
    if value is None:
        return ""
    if name == "test_accuracy" or name.lower().endswith(("accuracy", "acc")) and 0 <= value <= 1:
        text = f"{value:.2%}"
    else:
        text = f"{value:.4g}"
    return text if name == "test_accuracy" else f"{text} {name}"


def seconds_text(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    if value < 10:
        return f"{value:.2g} s"  # 0.043 s, 1.2 s: a tiny run trains in hundredths of a second
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def last_note(row: dict[str, Any]) -> str:
    notes = row.get("notes") or []
    if not notes:
        return ""
    text = " ".join(str(notes[-1].get("text", "")).split())
    return text + (f" (+{len(notes) - 1})" if len(notes) > 1 else "")


def commit_text(row: dict[str, Any]) -> str:
    commit = row.get("commit")
    return (str(commit)[:10] + ("+dirty" if row.get("dirty") else "")) if commit else ""


def columns(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[tuple[str, Any]]:
    """(header, cell function) of the columns these rows need."""
    cols: list[tuple[str, Any]] = [
        ("run", lambda r: r["run"]), ("status", lambda r: r["status"]), ("when", lambda r: (r.get("when") or "")[:16]),
        ("metric", metric_text), ("epochs", lambda r: show(r.get("epochs"))), ("time", lambda r: seconds_text(r.get("time"))),
        ("tags", lambda r: " ".join(r.get("tags") or []))]
    if any(r.get("notes") for r in rows):
        cols.append(("notes", last_note))
    if any(r.get("commit") for r in rows):
        cols.append(("commit", commit_text))
    cols += [(key, lambda r, key=key: show((r.get("spec") or {}).get(key))) for key in keys]
    if any(r.get("problem") for r in rows):
        cols.append(("problem", lambda r: r.get("problem") or ""))
    return cols


def _cut(text: str, width: int, keep_end: bool = False) -> str:
    """`text` on one line, shown as `visible` writes it, at most `width` characters: its start, or with
    `keep_end` (a path) its end."""
    text = visible(" ".join(text.split()))
    if len(text) <= width:
        return text
    return "..." + text[len(text) - width + 3:] if keep_end else text[:width - 3] + "..."


def print_table(rows: Sequence[dict[str, Any]], total: int, out: TextIO | None = None) -> None:
    """The console table of `rows` (of `total` found), then a line of counts and the keys left out."""
    from rich.console import Console
    from rich.text import Span, Text

    console = Console(file=out or sys.stdout, highlight=False)
    keys = differing(rows)
    cols = columns(rows, keys[:KEY_COLUMNS])
    cells = [[_cut(str(f(r)), RUN_CELL if h == "run" else 80 if h == "problem" else CELL, h == "run")
              for h, f in cols] for r in rows]
    heads = [_cut(h, RUN_CELL) for h, _ in cols]  # a spec key is a header
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    starts = [sum(w + 2 for w in widths[:i]) for i in range(len(widths))]  # each column's offset in a line
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    spans, offset = [Span(0, len(lines[0]), "bold")], len(lines[0]) + len(lines[1]) + 2
    where = [i for i, (h, _) in enumerate(cols) if h in ("status", "problem")]
    for row, line in zip(rows, cells):  # one Text with a span per coloured cell: 13,000 appends took 0.1 s
        text = "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
        for i in (i for i in where if line[i]):  # an empty cell has no span (the line's end may be cut off)
            style = GOOD.get(row["status"], "red") if cols[i][0] == "status" else "red"
            spans.append(Span(offset + starts[i], offset + starts[i] + len(line[i]), style))
        lines.append(text)
        offset += len(text) + 1
    crop = console.is_terminal  # a terminal: each line cut at its width; a pipe or file: whole lines
    console.print(Text("\n".join(lines), spans=spans), no_wrap=crop, overflow="crop" if crop else None,
                  soft_wrap=not crop)
    console.print(visible(footer(rows, total, keys)), soft_wrap=True, markup=False, emoji=False)


def footer(rows: Sequence[dict[str, Any]], total: int, keys: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    text = f"{len(rows)} of {total} runs" if len(rows) != total else f"{total} run{'s' if total != 1 else ''}"
    if counts:
        text += ": " + ", ".join(f"{n} {what}" for what, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    if len(keys) > KEY_COLUMNS:
        text += f". Also differing: {', '.join(keys[KEY_COLUMNS:])} (all in --json and --csv)"
    return text + "."


def to_json(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a JSON array, one row a line; each row's `differs` holds the values of the spec keys
    that differ between the rows. (Indented JSON goes through json's Python encoder: 5x slower.)"""
    keys = differing(rows)
    out = [json.dumps({**{k: v for k, v in row.items() if k != "rel"},
                       "differs": {k: (row.get("spec") or {}).get(k) for k in keys}}, default=str) for row in rows]
    return "[\n" + ",\n".join(out) + "\n]" if out else "[]"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    keys = differing(rows)
    header = ["run", "name", "status", "when", "metric", "metric_name", "epochs", "steps", "time", "tags", "notes",
              "commit", "dirty", "sweep", "problem", *keys]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        fixed = [row.get("run"), row.get("name"), row.get("status"), row.get("when"), row.get("metric"),
                 row.get("metric_name"), row.get("epochs"), row.get("steps"), row.get("time"),
                 " ".join(row.get("tags") or []), last_note(row), row.get("commit"), row.get("dirty"),
                 row.get("sweep"), row.get("problem")]
        writer.writerow([show(v) for v in fixed] + [show((row.get("spec") or {}).get(k)) for k in keys])
    return buffer.getvalue()
