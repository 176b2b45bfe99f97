"""A run's tags and notes: RUN/notes.json, {"tags": [...], "notes": [{"time", "text"}]}.

A spec may carry `tags` (a list) and `notes` (a sentence or two); until the run's tags are first
changed they are the spec's, and from then on notes.json holds them all (so `-draft` can take off a
tag the spec gave). The spec's notes are shown as the run's first note; notes.json's follow, each
with the time it was written. A notes.json written by hand may hold more: keys and entries the runner
does not understand (a note without a time, a key of the person's) are not shown, and are kept as
they are when `tag` or `note` rewrites the file.

notes.json is not one of the files the run itself writes (runs.OWN), and the run never reads it, so
tagging or annotating a run that is still training is allowed: it changes nothing the run holds, and
the file is replaced atomically (runner.files). Two `tag` or `note` commands on one run at once are
taken in turn (a lock on the run's folder itself, not on the run's `.lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

from runner import runs
from runner.errors import UserError
from runner.files import write_json
from runner.lab.reading import MAX_JSON, load_json, read_file
from runner.spec.models import TAG_PATTERN

NOTES = "notes.json"
MAX_BYTES = 1_000_000  # of notes.json read
MAX_TEXT = 10_000  # characters of one note
MAX_NOTES = 1_000  # notes kept per run
MAX_TAGS = 100
TAG = re.compile(TAG_PATTERN)  # the spec's `tags` take the same
TAG_RULE = "1 to 40 letters, digits, '_', '.', ':', '/' or '-', starting with a letter or digit"
WAIT_SECONDS = 5.0  # for another tag or note command on the same run


class NotesError(UserError):
    """A tag, note or run directory that cannot be used; the message says why."""


def tags_of(value: Any) -> list[str]:
    """The valid tags of a list read from a file (others left out), in order, once each."""
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(t for t in value if isinstance(t, str) and TAG.fullmatch(t)))[:MAX_TAGS]


def notes_of(value: Any) -> list[dict[str, str]]:
    """The valid notes of a list read from a file: {"time": str, "text": str} each."""
    if not isinstance(value, list):
        return []
    return [{"time": n["time"], "text": n["text"][:MAX_TEXT]} for n in value[-MAX_NOTES:] if is_note(n)]


def is_note(entry: Any) -> bool:
    """Whether an entry of notes.json's notes is one the runner shows: {"time": str, "text": str}."""
    return isinstance(entry, dict) and isinstance(entry.get("time"), str) and isinstance(entry.get("text"), str)


def parse(data: Any) -> tuple[dict[str, Any] | None, str | None]:
    """notes.json's content as {"tags", "notes"}, or (None, why it cannot be used)."""
    if not isinstance(data, dict):
        return None, f"{NOTES} is not an object with tags and notes"
    return {"tags": tags_of(data.get("tags")), "notes": notes_of(data.get("notes")),
            "has_tags": "tags" in data}, None


def spec_tags(spec: Any) -> list[str]:
    return tags_of(spec.get("tags")) if isinstance(spec, dict) else []


def spec_note(spec: Any) -> str:
    text = spec.get("notes") if isinstance(spec, dict) else None
    return text[:MAX_TEXT] if isinstance(text, str) else ""


def check_tag(word: str) -> str:
    if not TAG.fullmatch(word):
        raise NotesError(f"{word!r} is not a tag: a tag is {TAG_RULE}.")
    return word


def run_dir(path: Path) -> Path:
    """`path` if it is a run directory (`runs.is_run`), else NotesError. A link is
    refused (as a sweep refuses links among its runs): name the directory it points to instead."""
    if path.is_symlink():
        raise NotesError(f"{path} is a link; give the run directory it points to by its own path "
                         "(notes are written only into run directories named as they are).")
    if not path.is_dir():
        raise NotesError(f"{path}: {'not a folder' if path.exists() else 'no such folder'}; give run directories, "
                         "e.g. runs/relu-20261125-171800 (`python -m runner runs` lists them).")
    if (path / "sweep.json").exists() and not (path / runs.JOURNAL).exists():
        raise NotesError(f"{path} is a sweep directory; tag or annotate its runs, e.g. {path}/*/.")
    if not runs.is_run(path):
        raise NotesError(f"{path} is not a run directory (it has no {runs.JOURNAL} or {runs.SUMMARY}, nor the "
                         f"{runs.SPEC} and {runs.LOCK} a run starts with); notes are written into runs only.")
    return path


@contextlib.contextmanager
def _taken(folder: Path) -> Iterator[None]:
    """Hold the run's folder against other tag and note commands (flock on the folder itself)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NotesError(f"{folder}: another tag or note command has held it for {WAIT_SECONDS:g} s; "
                                     "try again.") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _load(folder: Path) -> tuple[dict[str, Any], Any]:
    """The run's notes.json as it is (or {}) and its spec, for a change; NotesError when notes.json
    exists but cannot be read, so nothing of it is lost by writing over it."""
    problems: list[str] = []
    data, exists = load_json(folder / NOTES, MAX_BYTES, problems)
    if problems:
        raise NotesError(f"{folder / NOTES}: {problems[0]}; mend or delete it, then try again.")
    if exists and not isinstance(data, dict):
        raise NotesError(f"{folder / NOTES}: {parse(data)[1]}; mend or delete it, then try again.")
    raw, _ = read_file(folder / runs.SPEC, MAX_JSON)
    try:
        spec = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        spec = None
    return data if exists else {}, spec


def _entries(folder: Path, data: dict[str, Any], key: str) -> list[Any]:
    """notes.json's `tags` or `notes` as they are, entries the runner does not understand included (they
    are written back as they were); NotesError when it is not a list, which a change would write over."""
    value = data.get(key, [])
    if not isinstance(value, list):
        raise NotesError(f"{folder / NOTES}: its {key!r} is not a list; mend or delete it, then try again.")
    return value


def check(folder: Path) -> None:
    """NotesError unless `folder` is a run directory whose notes.json (if any) can be read and its tags
    changed."""
    folder = run_dir(folder)
    _entries(folder, _load(folder)[0], "tags")


def _save(folder: Path, data: dict[str, Any]) -> None:
    """notes.json written whole (atomically): its keys as they were, the changed ones, tags and notes."""
    try:
        write_json(folder / NOTES, {**data, "tags": data.get("tags", []), "notes": data.get("notes", [])})
    except OSError as exc:
        raise NotesError(f"{folder / NOTES} cannot be written ({exc.strerror or exc}).") from None


def _with_tags(entries: list[Any], tags: list[str]) -> list[Any]:
    """`entries` (notes.json's tags as they are) holding `tags` as its tags, in that order: what is not a
    tag is kept where it was."""
    out, kept = [], set()
    for item in entries:
        if not isinstance(item, str) or not TAG.fullmatch(item):
            out.append(item)
        elif item in tags and item not in kept:
            out.append(item)
            kept.add(item)
    return out + [t for t in tags if t not in kept]


def change_tags(folder: Path, add: list[str], remove: list[str]) -> list[str]:
    """Add and remove tags of a run (the spec's tags are its tags until the first change); its tags."""
    folder = run_dir(folder)
    with _taken(folder):
        data, spec = _load(folder)
        entries = _entries(folder, data, "tags") if "tags" in data else spec_tags(spec)
        tags = tags_of(entries)
        tags = [t for t in tags if t not in remove] + [t for t in dict.fromkeys(add) if t not in tags + remove]
        if len(tags) > MAX_TAGS:
            raise NotesError(f"{folder}: {len(tags)} tags; a run keeps at most {MAX_TAGS}.")
        data["tags"] = _with_tags(entries, tags)
        _save(folder, data)
    return tags


def add_note(folder: Path, text: str) -> dict[str, str]:
    """Append a note, stamped with the local time; returns it."""
    folder = run_dir(folder)
    text = text.strip()
    if not text:
        raise NotesError("the note is empty; write it in quotes: python -m runner note RUN \"what you saw\".")
    if len(text) > MAX_TEXT:
        raise NotesError(f"the note is {len(text):,} characters; a note holds at most {MAX_TEXT:,}.")
    note = {"time": time.strftime("%Y-%m-%d %H:%M:%S%z"), "text": text}
    with _taken(folder):
        data, spec = _load(folder)
        notes = _entries(folder, data, "notes")
        data.setdefault("tags", spec_tags(spec))
        data["notes"] = (notes + [note])[-MAX_NOTES:]
        _save(folder, data)
    return note


def clear_notes(folder: Path) -> int:
    """Delete a run's notes (its tags stay, and entries that are not notes); how many there were."""
    folder = run_dir(folder)
    with _taken(folder):
        data, spec = _load(folder)
        notes = _entries(folder, data, "notes")
        data.setdefault("tags", spec_tags(spec))
        data["notes"] = [n for n in notes if not is_note(n)]
        _save(folder, data)
    return len(notes) - len(data["notes"])
