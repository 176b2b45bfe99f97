"""The notebook's commands: `runs`, `tag`, `note`, `diff`, and `report FOLDER --where ...`; each parses
its own arguments (runner/__main__.py dispatches on the first word) and returns an exit status. A
person's mistake is a UserError (exit 2, one paragraph). None of them imports torch.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from runner.errors import UserError
from runner.lab import query
from runner.lab.table import visible

RUNS_HELP = ("List every run under runs/ (or the given folders, recursively): its status, start time, metric "
             "(test_accuracy; a tracked run's main last value), epochs, training time, tags, and the spec keys "
             "that differ between the rows shown. A sweep directory's runs are rows of their own, each naming "
             "its sweep (`sweep`); a sweep none of whose variants has started is one row, `not run`. Damaged or "
             "half-written run directories are listed with their state. Rows are remembered in FOLDER/"
             ".index.json and read again only when a run's files change. Names and values read from run "
             "directories are shown with control characters and bidi marks escaped (\\x1b, \\u202e); --json, "
             "and --csv into a pipe or file, keep them exact.")
WHERE_HELP = ("KEY OP VALUE, OP one of = != > >= < <= ~ (contains); KEY a column (status, metric, when, tags, ...), "
              "a summary key (test_accuracy) or a dotted spec key (model.kind, optim.lr); repeatable, all must hold")
TAG_USAGE = ("usage: python -m runner tag RUN [RUN ...] [+TAG ...] [-TAG ...]\n\nAdd (+TAG) and remove (-TAG) "
             "tags of runs, kept in RUN/notes.json; with no +/- the runs' tags are printed. A tag is "
             "1 to 40 letters, digits, '_', '.', ':', '/' or '-'. Allowed while a run trains: notes.json is "
             "not a file the run writes.")


def _selection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--where", action="append", default=[], metavar="KEY OP VALUE", help=WHERE_HELP)
    p.add_argument("--sort", metavar="[-]KEY", help="sort by KEY (a leading - sorts descending); default: newest "
                                                   "first")
    p.add_argument("--limit", type=int, metavar="N", help="at most N rows (after sorting)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="only runs carrying TAG (repeatable)")


def runs_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner runs", description=RUNS_HELP,
                                epilog="e.g. python -m runner runs --where 'test_accuracy>0.98' --where "
                                       "model.kind=cnn --sort -metric --limit 10")
    p.add_argument("folders", type=Path, nargs="*", metavar="DIR", help="folders to list (default: runs)")
    _selection_options(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="the rows as a JSON array (every key, the provenance)")
    out.add_argument("--csv", action="store_true", help="the rows as CSV")
    return p


def lab_report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner report", description="One offline HTML page of many "
                                "runs: the runs table (sortable and filterable in the page), their curves "
                                "overlaid, and the differing keys against the metric.")
    p.add_argument("folders", type=Path, nargs="+", metavar="DIR")
    _selection_options(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write it (default: DIR/lab.html)")
    return p


def note_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner note", description="Append a note, stamped with the time, "
                                "to a run's notes (RUN/notes.json), or clear them. Allowed while the run trains.")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("text", nargs="?", help="the note, in quotes")
    p.add_argument("--clear", action="store_true", help="delete the run's notes (its tags stay)")
    return p


def diff_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m runner diff", description="What differs between two runs: the "
                                "spec's keys, the code (commits, and the difference of the recorded diffs), "
                                "the versions, the results.")
    p.add_argument("a", type=Path, metavar="RUN_A")
    p.add_argument("b", type=Path, metavar="RUN_B")
    p.add_argument("--json", action="store_true", help="as JSON")
    return p


def glued(argv: Sequence[str]) -> list[str]:
    """`--sort -metric` as `--sort=-metric` (argparse would take -metric for an option)."""
    out: list[str] = []
    for item in argv:
        if out and out[-1] == "--sort" and item.startswith("-") and item != "-":
            out[-1] = f"--sort={item}"
        else:
            out.append(item)
    return out


def selected(a: argparse.Namespace, use_index: bool = True) -> tuple[list[dict[str, Any]], int]:
    """The rows the options select, and how many runs were found in all."""
    from runner.lab.index import listing

    folders = a.folders or [Path("runs")]
    if not a.folders and not folders[0].exists():
        return [], 0  # no run made here yet
    for folder in folders:
        if not folder.is_dir():
            raise UserError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}; runs are listed "
                            "from folders such as runs/ (the default).")
    if a.limit is not None and a.limit < 0:
        raise UserError(f"--limit {a.limit}: give a number of rows, 0 or more.")
    rows, _ = listing(folders, use_index)
    query.finish(rows)
    where = [query.parse_where(text) for text in a.where]
    return query.select(rows, where, a.tag, a.sort, a.limit), len(rows)


def _quietly(write: Any) -> None:
    """Run `write` (to stdout); a reader that stops early (`| head`) ends it without a traceback."""
    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to say, and no error at exit


def shown(command: Callable[[Sequence[str]], int]) -> Callable[[Sequence[str]], int]:
    """`command` with its error's paragraph written as table.visible writes it: it names folders, and
    keys read from run directories."""
    @functools.wraps(command)
    def run(argv: Sequence[str]) -> int:
        try:
            return command(argv)
        except UserError as exc:
            exc.args = (visible(str(exc)),)
            raise

    return run


@shown
def runs(argv: Sequence[str]) -> int:
    from runner.lab import table

    a = runs_parser().parse_args(glued(argv))
    rows, total = selected(a)
    if a.json:
        _quietly(lambda: print(table.to_json(rows)))
    elif a.csv:  # exact for a program reading it; escaped for a person reading it on a terminal
        text = table.to_csv(rows)
        text = "\n".join(map(visible, text.split("\n"))) if sys.stdout.isatty() else text
        _quietly(lambda: sys.stdout.write(text))
    elif not total:
        print(f"no runs under {visible(', '.join(map(str, a.folders or [Path('runs')])))}; `python -m runner "
              "SPEC.json` makes one.")
    else:
        _quietly(lambda: table.print_table(rows, total))
    return 0


@shown
def tag(argv: Sequence[str]) -> int:
    from runner.lab import notes

    if not argv or any(item in ("-h", "--help") for item in argv):
        print(TAG_USAGE)
        return 0 if argv else 2
    changes = [item for item in argv if item[:1] in "+-" and len(item) > 1]
    folders = [Path(item) for item in argv if item not in changes and item != "--"]
    if not folders:
        raise UserError("tag: name at least one run directory, e.g. python -m runner tag runs/relu-20261125-171800 "
                        "+best.")
    add = [notes.check_tag(c[1:]) for c in changes if c[0] == "+"]
    remove = [notes.check_tag(c[1:]) for c in changes if c[0] == "-"]
    for folder in folders:
        notes.check(folder)  # every run checked before any is changed
    for folder in folders:
        if add or remove:
            tags = notes.change_tags(folder, add, remove)
        else:
            tags = _tags_now(folder)
        print(f"{visible(str(folder))}: {' '.join(tags) if tags else '(no tags)'}")  # tags are checked words
    return 0


def _tags_now(folder: Path) -> list[str]:
    from runner.lab.scan import read_row

    return read_row(folder, "")["tags"]


@shown
def note(argv: Sequence[str]) -> int:
    from runner.lab import notes

    a = note_parser().parse_args(argv)
    if a.clear == (a.text is not None):
        raise UserError("note: give the note's text in quotes, or --clear (not both): python -m runner note RUN "
                        "\"what you saw\".")
    if a.clear:
        print(f"{visible(str(a.run))}: {notes.clear_notes(a.run)} notes deleted")
        return 0
    written = notes.add_note(a.run, a.text)
    print(f"{visible(str(a.run))}: noted at {written['time']}")
    return 0


@shown
def diff(argv: Sequence[str]) -> int:
    import json

    from runner.lab import diffs

    a = diff_parser().parse_args(argv)
    found = diffs.compare(a.a, a.b)
    _quietly(lambda: print(json.dumps(found, indent=1, default=str) if a.json else diffs.render(found)))
    return 0


def wants_lab_report(argv: Sequence[str]) -> bool:
    """Whether a `report` command line asks for the notebook's page: a selection option is given."""
    return any(item.split("=")[0] in ("--where", "--sort", "--limit", "--tag") for item in argv)


@shown
def report(argv: Sequence[str]) -> int:
    from runner.loggers import registry

    a = lab_report_parser().parse_args(glued(argv))
    rows, total = selected(a)
    module = registry.report()
    try:
        written = module.write_lab(a.folders, rows, total, a.output, [str(w) for w in a.where] + [
            f"--tag {t}" for t in a.tag] + ([f"--sort {a.sort}"] if a.sort else []) + (
            [f"--limit {a.limit}"] if a.limit is not None else []))
    except module.ReportError as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return 1
    print(f"report: {visible(str(written))}")
    return 0
