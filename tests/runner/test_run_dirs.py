"""A run or sweep directory belongs to one run: locked while in use, never left with a writer's
temporary files, never a way out to folders it does not own, and a full disk ends a run it can resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, run_cli, tiny_spec
from runner import runs

EPOCHS = 150  # of 12 steps, one journal line each: long enough to be caught running


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def steps_in(journal: Path) -> int:
    return journal.read_text().count('"train_loss"') if journal.exists() else 0


def wait_for(journal: Path, process: subprocess.Popen, more_than: int) -> None:
    deadline = time.monotonic() + 60
    while steps_in(journal) <= more_than:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / runs.JOURNAL).read_text().splitlines()]


def assert_whole(run: Path, epochs: int = EPOCHS) -> None:
    """Every step once and in order, one start and exactly one close: a journal no resume damaged."""
    journal = events(run)
    kinds = [e["event"] for e in journal]
    assert kinds.count("start") == 1 and kinds.count("close") == 1 and kinds[-1] == "close"
    assert [e["step"] for e in journal if e["event"] == "train_loss"] == list(range(1, epochs * 12 + 1))
    assert [e["epoch"] for e in journal if e["event"] == "evaluation"] == list(range(1, epochs + 1))


def stopped_run(tmp_path: Path, tiny_mnist: Path) -> Path:
    out = tmp_path / "run"
    process = start(str(tiny_spec(tmp_path, tiny_mnist, train={"epochs": EPOCHS, "log_every": 1})),
                    "--logger", "null", "--out", str(out))
    wait_for(out / runs.JOURNAL, process, 30)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    return out


def test_two_resumes_of_one_run_the_second_is_refused_naming_the_first(tmp_path: Path, tiny_mnist: Path) -> None:
    out = stopped_run(tmp_path, tiny_mnist)
    first = start("--resume", str(out), "--logger", "null")
    wait_for(out / runs.JOURNAL, first, steps_in(out / runs.JOURNAL) + 5)  # it has cut the journal and trains
    second = run_cli("--resume", str(out), "--logger", "null")
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"is in use by process {first.pid}" in second.stderr and "--resume" in second.stderr, second.stderr
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert_whole(out)
    # the lock went with its holder: the next resume is told the run finished, not that it is in use
    assert "already finished" in run_cli("--resume", str(out), "--logger", "null").stderr


def test_a_run_killed_mid_write_leaves_a_temporary_file_that_its_resume_removes(tmp_path: Path,
                                                                                 tiny_mnist: Path) -> None:
    out = stopped_run(tmp_path, tiny_mnist)
    # A writer killed by SIGKILL in the middle of replacing the checkpoint (what `kill -9` leaves)
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys\nfrom pathlib import Path\nfrom runner.files import atomic\n"
        "with atomic(Path(sys.argv[1]) / 'checkpoint.pt', 'wb') as f:\n"
        "    f.write(os.urandom(6 << 20)); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"), str(out)], cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    [stale] = out.glob(".checkpoint.pt.*.tmp")
    assert stale.stat().st_size == 6 << 20
    mine = out / ".notes.abcdefgh.tmp"  # not a name the run writes: someone else's, kept
    mine.write_text("mine")
    outside = tmp_path / "outside.bin"
    outside.write_text("keep")
    (out / ".model.pt.abcdefgh.tmp").symlink_to(outside)  # a link, never followed nor its target touched
    resumed = run_cli("--resume", str(out), "--logger", "null")
    assert resumed.returncode == 0, resumed.stderr
    assert not stale.exists() and mine.read_text() == "mine" and outside.read_text() == "keep"
    assert sorted(p.name for p in out.glob(".*.tmp")) == [".model.pt.abcdefgh.tmp", ".notes.abcdefgh.tmp"]
    assert_whole(out)


def finished_sweep(tmp_path: Path, tiny_mnist: Path) -> Path:
    out = tmp_path / "sweep"
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1}, sweep={"model.activation": ["relu", "selu"]})
    result = run_cli(str(spec), "--logger", "null", "--no-report", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("where", ["../victim", "absolute", "link"])
def test_a_sweep_record_never_leads_out_of_its_sweep(where: str, tmp_path: Path, tiny_mnist: Path) -> None:
    out = finished_sweep(tmp_path, tiny_mnist)
    victim = tmp_path / "victim"  # a folder of the person's own that looks like an unfinished run
    victim.mkdir()
    (victim / runs.JOURNAL).write_text("")
    (victim / "thesis.tex").write_text("years of work")
    record = json.loads((out / "sweep.json").read_text())
    first = record["variants"][0]
    shutil.rmtree(out / first["run_dir"])
    if where == "link":
        (out / first["run_dir"]).symlink_to(victim)
    else:
        first["run_dir"] = str(victim) if where == "absolute" else where
    first["status"] = "not run"
    (out / "sweep.json").write_text(json.dumps(record))
    for command in (["--resume", str(out), "--logger", "null"], ["compare", str(out), "--logger", "null"],
                    ["report", str(out)]):
        result = run_cli(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr)
        assert "sweep.json" in result.stderr and ("inside" in result.stderr or "link" in result.stderr), result.stderr
    assert sorted(p.name for p in victim.iterdir()) == [runs.JOURNAL, "thesis.tex"]


def test_a_folder_that_is_not_a_run_gets_no_lock_file(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = run_cli("--resume", str(mine), "--logger", "null")
    assert result.returncode == 2 and "not a run directory" in result.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def fill_the_disk_mid_run(tmp_path: Path, spec: Path, name: str, *flags: str) -> Path:
    """`python -m runner SPEC --out DISK/NAME` on an 8 MB tmpfs of its own, which something else fills once
    40 steps are in: it must end with exit 2 and the paragraph; then the disk is freed and the resume must
    succeed. A copy of the directory; skipped where no tmpfs can be mounted."""
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    python = sys.executable
    script = f"""
        mount -t tmpfs -o size=8m none {disk} || exit 99
        {python} -m runner {spec} --logger null {' '.join(flags)} --out {disk}/{name} 2> {tmp_path}/first.err & pid=$!
        until [ "$(cat {disk}/{name}/{runs.JOURNAL} {disk}/{name}/*/{runs.JOURNAL} 2>/dev/null | grep -c train_loss)" \
                -gt 40 ]; do sleep 0.02; done
        dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null
        wait $pid; echo "first=$?"
        ls -a {disk}/{name} > {tmp_path}/listing
        rm {disk}/filler
        {python} -m runner --resume {disk}/{name} --logger null --no-report 2> {tmp_path}/second.err; echo "second=$?"
        cp -a {disk}/{name} {kept}
    """
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    if done.returncode == 99 or "unshare:" in done.stderr:
        pytest.skip(f"no tmpfs can be mounted here: {done.stderr.strip()[:200]}")
    first = (tmp_path / "first.err").read_text()
    assert "first=2" in done.stdout and "second=0" in done.stdout, (done.stdout, done.stderr, first)
    assert "is full" in first and f"--resume {disk}/{name}" in first and "Traceback" not in first, first
    return kept


needs_a_tmpfs = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                   reason="mounting a small tmpfs needs root in a mount namespace")


@needs_a_tmpfs
def test_a_disk_that_fills_mid_run_ends_it_resumable_with_exit_2(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": EPOCHS, "log_every": 1})
    kept = fill_the_disk_mid_run(tmp_path, spec, "run")
    assert not [name for name in (tmp_path / "listing").read_text().split() if name.endswith(".tmp")]
    assert_whole(kept)
    reference = tmp_path / "reference"
    assert run_cli(str(spec), "--logger", "null", "--no-report", "--out", str(reference)).returncode == 0
    timing = {"logging", "train_seconds", "eval_seconds", "samples_per_second", "wall_seconds", "run_dir", "peaks", "provenance"}
    a, b = (json.loads((d / runs.SUMMARY).read_text()) for d in (kept, reference))
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


@needs_a_tmpfs
def test_a_disk_that_fills_mid_sweep_stops_it_resumable_with_exit_2(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": EPOCHS // 3, "log_every": 1},
                     sweep={"model.activation": ["relu", "tanh"]})
    kept = fill_the_disk_mid_run(tmp_path, spec, "sweep", "--no-report")
    rows = json.loads((kept / "sweep.json").read_text())["variants"]
    assert [r["status"] for r in rows] == ["finished", "finished"]
    for row in rows:
        assert_whole(kept / row["run_dir"], EPOCHS // 3)


def test_a_resume_that_cannot_read_its_journal_lets_go_of_its_lock_and_loggers(tmp_path: Path,
                                                                               tiny_mnist: Path) -> None:
    from runner import session
    from runner.loggers import NullLogger
    from runner.loggers.journal import JournalError

    out = stopped_run(tmp_path, tiny_mnist)
    journal = out / runs.JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[3] = b"x" * (len(lines[3]) - 1) + b"\n"  # damaged in place, before the checkpoint's offset
    journal.write_bytes(b"".join(lines))
    experiment, checkpoint = runs.load_checkpoint(out)
    closed = []

    class Probe(NullLogger):
        def close(self, summary: dict | None) -> None:
            closed.append(summary)
            super().close(summary)

    with pytest.raises(JournalError, match="line 4"):
        session.execute(experiment, lambda _: [Probe()], resume_dir=out, resume=checkpoint)
    assert closed and not runs._held  # the loggers closed and the lock let go, not left to the collector


def test_a_folder_holding_only_your_own_spec_json_is_not_taken_for_a_run(tmp_path: Path, tiny_mnist: Path) -> None:
    """A folder of one's own whose only file is a spec.json (an experiment kept there, say) is not a run
    killed as it began: `--out`, `track.run(out=)` and `RunnerLogger(out=)` refuse it and `tag` and
    `note` write no notes.json into it; the file stays as it was. A run killed as it began (spec.json
    and the .lock it made first) is still taken for one."""
    spec_path = tiny_spec(tmp_path, tiny_mnist)
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(spec_path, mine / runs.SPEC)
    before = (mine / runs.SPEC).read_bytes()
    refused = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom runner import track\nfrom runner.adapters.lightning import RunnerLogger\n"
        "for make in (lambda: track.run('mine', out=sys.argv[1], logger='null'),\n"
        "             lambda: RunnerLogger(name='mine', out=sys.argv[1], logger='null')):\n"
        "    try:\n        make()\n    except track.TrackError as exc:\n        print('refused:', exc)\n"), str(mine)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.stdout.count("refused:") == 2 and "not a run of this runner" in refused.stdout, refused
    for command in ([str(spec_path), "--out", str(mine), "--logger", "null"], ["tag", str(mine), "+x"],
                    ["note", str(mine), "mine"]):
        result = run_cli(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "not a run" in result.stderr, result.stderr
    assert sorted(p.name for p in mine.iterdir()) == [runs.SPEC] and (mine / runs.SPEC).read_bytes() == before

    killed = tmp_path / "killed"
    runs.begin(killed, json.loads(spec_path.read_text()))  # what a run makes before it trains
    assert sorted(p.name for p in killed.iterdir()) == [runs.LOCK, runs.SPEC]
    assert run_cli(str(spec_path), "--out", str(killed), "--logger", "null", "--no-report").returncode == 0
    assert (killed / runs.SUMMARY).is_file()
