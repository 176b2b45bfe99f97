"""The lab notebook (runner/lab): `runs` over a thousand run directories made from real runs (cold and
warm, timings printed), a listing that follows the directories when they are changed by hand, the
selection options, tags and notes (also on a run that is training), `diff` of two runs differing in
one `--set` and one edited model file in a git repository, the provenance, and every command on a
folder of damaged run directories.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT, make_tiny_mnist, run_cli, tiny_spec

sys.path.insert(0, str(ROOT / "benchmarks"))
import lab as bench  # noqa: E402  (make_real_runs, make_notebook: the benchmark makes its runs the same way)

from runner.lab import diffs, index, provenance  # noqa: E402


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real runs of the tiny data: a sweep of two learning rates and a tracked run."""
    return bench.make_real_runs(tmp_path_factory.mktemp("lab"), lrs=(0.3, 0.05), cnn=False)


def sources(real: dict[str, Path]) -> list[Path]:
    return [real["variant0"], real["variant1"], real["tracked"]]


def listed(*args: str) -> list[dict[str, Any]]:
    done = run_cli("runs", *map(str, args), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def by_run(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["run"]: row for row in rows}


# ----- a thousand runs ---------------------------------------------------------------------------------

def test_a_thousand_runs_are_listed_cold_and_warm(real: dict[str, Path], tmp_path: Path) -> None:
    made = bench.make_notebook(tmp_path / "nb", sources(real), 1000)
    started = time.perf_counter()
    cold = run_cli("runs", str(tmp_path / "nb"), "--json")
    cold_s = time.perf_counter() - started
    assert cold.returncode == 0, cold.stderr
    assert (tmp_path / "nb" / index.INDEX).is_file()
    started = time.perf_counter()
    warm = run_cli("runs", str(tmp_path / "nb"), "--json")
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    shown = run_cli("runs", str(tmp_path / "nb"))
    table_s = time.perf_counter() - started
    print(f"\nruns over 1,000 run directories (new processes): cold --json {cold_s:.2f} s, warm --json {warm_s:.2f} s, "
          f"warm table {table_s:.2f} s")
    rows = json.loads(cold.stdout)
    assert rows == json.loads(warm.stdout)
    assert sorted(r["run"] for r in rows) == sorted(str(p) for p in made)
    statuses = [r["status"] for r in rows]
    assert statuses.count("finished") == 850 and statuses.count("unfinished") == 50
    assert statuses.count("failed") == 50 and statuses.count("diverged") == 50
    one = by_run(rows)[str(made[21])]  # a copy of variant0 with edited files: the row says what they say
    summary, spec = json.loads((made[21] / "summary.json").read_text()), json.loads((made[21] / "spec.json").read_text())
    assert one["metric"] == summary["test_accuracy"] and one["spec"]["optim.lr"] == spec["optim"]["lr"]
    assert one["when"] == time.strftime("%Y-%m-%d %H:%M:%S", time.strptime(made[21].name[-15:], "%Y%m%d-%H%M%S"))
    assert one["tags"] == spec["tags"] and one["epochs"] == summary["epochs"]
    tracked = by_run(rows)[str(made[2])]
    assert tracked["tracked"] and tracked["metric_name"] == "test/accuracy" and tracked["metric"] == pytest.approx(0.975)
    assert [r["started"] for r in rows] == sorted((r["started"] for r in rows), reverse=True)  # newest first
    lines = shown.stdout.splitlines()
    assert shown.returncode == 0 and len(lines) == 1003 and lines[0].split()[:4] == ["run", "status", "when", "metric"]
    assert "optim.lr" in lines[0] and lines[-1].startswith("1000 runs: 850 finished")


def test_the_listing_follows_the_directories_not_the_index(real: dict[str, Path], tmp_path: Path) -> None:
    nb = tmp_path / "nb"
    made = bench.make_notebook(nb, sources(real), 60)
    assert len(listed(nb)) == 60
    shutil.rmtree(made[0])
    shutil.rmtree(made[1])
    shutil.copytree(real["variant1"], nb / "by-hand")
    (nb / "deeper" / "still").mkdir(parents=True)
    shutil.copytree(real["variant0"], nb / "deeper" / "still" / "copied")
    summary = json.loads((made[3] / "summary.json").read_text())
    (made[3] / "summary.json").write_text(json.dumps({**summary, "test_accuracy": 0.123}))
    rows = by_run(listed(nb))
    assert len(rows) == 60 and str(made[0]) not in rows and str(made[1]) not in rows
    lr = json.loads((real["variant1"] / "spec.json").read_text())["optim"]["lr"]
    assert rows[str(nb / "by-hand")]["spec"]["optim.lr"] == lr and rows[str(nb / "by-hand")]["has_report"]
    assert str(nb / "deeper" / "still" / "copied") in rows
    assert rows[str(made[3])]["metric"] == 0.123
    fresh = nb / index.INDEX
    for damage in (b"{not json", b'{"format": 1, "entries": {"by-hand": {"sig": [], "row": {"rel": 3}}}}', b"[]"):
        fresh.write_bytes(damage)
        assert by_run(listed(nb)) == rows  # a damaged index is rebuilt: the same rows as the directories give
        assert json.loads(fresh.read_text())["format"] == index.FORMAT
    fresh.unlink()
    assert by_run(listed(nb)) == rows and fresh.is_file()
    assert [p.name for p in tmp_path.rglob(index.INDEX)] == [index.INDEX]  # only in the folder listed


# ----- selecting ---------------------------------------------------------------------------------------

def test_where_sort_limit_tag_json_and_csv(real: dict[str, Path], tmp_path: Path) -> None:
    nb = tmp_path / "nb"
    bench.make_notebook(nb, sources(real), 120)
    every = listed(nb)
    good = [r for r in every if r["status"] == "finished" and (r["summary"].get("test_accuracy") or 0) > 0.95]
    rows = listed(nb, "--where", "test_accuracy>0.95", "--where", "status=finished")
    assert sorted(r["run"] for r in rows) == sorted(r["run"] for r in good) and 0 < len(rows) < len(every)
    assert {r["run"] for r in listed(nb, "--where", "test_accuracy>=95%", "--where", "status=finished")} == \
        {r["run"] for r in good}
    assert all(r["spec"]["optim.lr"] <= 0.01 for r in listed(nb, "--where", "optim.lr<=0.01"))
    assert {r["status"] for r in listed(nb, "--where", "status!=finished")} == {"failed", "diverged", "unfinished"}
    assert len(listed(nb, "--where", "model.kind=mlp")) == sum(r["spec"].get("model.kind") == "mlp" for r in every)
    assert all("tracked" in r["run"] for r in listed(nb, "--where", "run~TRACKED"))
    top = listed(nb, "--sort", "-metric", "--limit", "5", "--where", "tracked=false")
    ranked = sorted((r["metric"] for r in every if r["metric"] is not None and not r["tracked"]), reverse=True)
    assert [r["metric"] for r in top] == ranked[:5]
    assert [r["when"] for r in listed(nb, "--sort", "when")] == sorted(r["when"] for r in every)
    best = listed(nb, "--tag", "best")
    assert best and all("best" in r["tags"] for r in best) and len(best) == sum("best" in r["tags"] for r in every)
    done = run_cli("runs", str(nb), "--csv", "--where", "status=finished")
    table = list(csv.DictReader(io.StringIO(done.stdout)))
    assert done.returncode == 0 and len(table) == sum(r["status"] == "finished" for r in every)
    assert {"run", "status", "metric", "optim.lr", "seed"} <= set(table[0])
    for wrong, hint in (("test_acuracy>0.9", "test_accuracy"), ("model.knd=cnn", "model.kind")):
        done = run_cli("runs", str(nb), "--where", wrong)
        assert done.returncode == 2 and hint in done.stderr and done.stderr.count("\n") == 1, done.stderr
    done = run_cli("runs", str(nb), "--where", "no operator")
    assert done.returncode == 2 and "KEY OP VALUE" in done.stderr


def test_runs_imports_no_torch(real: dict[str, Path]) -> None:
    code = ("import sys; from runner.__main__ import main; main(['runs', sys.argv[1], '--json']); "
            "print(sorted(m for m in ('torch', 'numpy', 'visdom') if m in sys.modules), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, str(real["sweep"])], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr.strip() == "[]", done.stderr
    assert len(json.loads(done.stdout)) == 2  # a sweep directory lists its runs


# ----- tags and notes ----------------------------------------------------------------------------------

def test_tags_and_notes(real: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a-20261125-171800"
    shutil.copytree(real["variant0"], run)
    row = listed(tmp_path / "runs")[0]
    assert row["tags"] == ["baseline"] and row["notes"][0]["text"] == "learning rates of the tiny MLP"
    done = run_cli("tag", str(run), "+best", "-baseline", "+lr:high")
    assert done.returncode == 0 and done.stdout.strip() == f"{run}: best lr:high", done.stderr
    assert json.loads((run / "notes.json").read_text()) == {"tags": ["best", "lr:high"], "notes": []}
    assert run_cli("note", str(run), "diverges past lr 0.5").returncode == 0
    assert run_cli("note", str(run), "second look").returncode == 0
    notes = json.loads((run / "notes.json").read_text())["notes"]
    assert [n["text"] for n in notes] == ["diverges past lr 0.5", "second look"] and notes[0]["time"][:2] == "20"
    row = listed(tmp_path / "runs", "--tag", "best", "--where", "notes~past lr")[0]
    assert row["tags"] == ["best", "lr:high"] and [n["text"] for n in row["notes"]][1:] == [n["text"] for n in notes]
    assert "diverges past" not in run_cli("runs", str(tmp_path / "runs")).stdout  # only the last note is shown
    done = run_cli("note", str(run), "--clear")
    assert done.returncode == 0 and json.loads((run / "notes.json").read_text())["notes"] == []
    for bad in (["tag", str(run), "+no spaces"], ["tag", str(run), "+"], ["note", str(run)],
                ["tag", str(tmp_path), "+x"], ["note", str(real["sweep"]), "x"]):
        done = run_cli(*bad)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr, bad


def test_a_training_run_shows_as_running_and_can_be_tagged(real: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "runs" / "b-20261125-171800"
    shutil.copytree(real["variant1"], run)
    (run / "summary.json").unlink()
    (run / "checkpoint.pt").write_bytes(b"")
    hold = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; from runner import runs;"
                             "h = runs.lock(Path(sys.argv[1])); h.__enter__(); print('held', flush=True); time.sleep(60)",
                             str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "held"
        assert listed(tmp_path / "runs")[0]["status"] == "running"
        done = run_cli("tag", str(run), "+watching")  # notes.json is not a file the run writes: allowed
        assert done.returncode == 0, done.stderr
    finally:
        hold.kill()
        hold.wait()
    row = listed(tmp_path / "runs")[0]
    assert row["status"] == "stopped" and row["tags"] == ["baseline", "watching"]


# ----- diff and provenance -----------------------------------------------------------------------------

MODEL = """import torch.nn as nn


def build(in_shape, classes, width=16):
    channels, height, side = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * side, width), nn.ReLU(), nn.Linear(width, classes))
"""


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout


def git_repo(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    git(folder, "init", "-q")
    for name, text in files.items():
        (folder / name).write_text(text)
    git(folder, "add", ".")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return folder


def recorded(run: Path, extra: list[Path]) -> None:
    """The provenance the run recorded as it started; a runner that does not record it yet gets it written
    here the same way (collect, as the run's start calls it), right after the run, before anything changes."""
    summary = json.loads((run / "summary.json").read_text())
    start = json.loads((run / "metrics.jsonl").read_text().split("\n", 1)[0])
    if "provenance" not in summary and "provenance" not in start["info"]:
        (run / "summary.json").write_text(json.dumps({**summary, "provenance": provenance.collect(extra)}))


def test_diff_names_the_one_changed_key_and_the_one_edited_model_file(tmp_path: Path) -> None:
    data = make_tiny_mnist(tmp_path / "data")
    repo = git_repo(tmp_path / "models", {"tiny_model.py": MODEL, "README": "my models\n"})
    path = tiny_spec(tmp_path, data, train={"epochs": 1})
    spec = json.loads(path.read_text())
    spec["model"] = {"kind": "python", "target": "tiny_model:build", "args": {"width": 16}, "path": str(repo)}
    path.write_text(json.dumps(spec))
    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    done = run_cli(str(path), "--logger", "null", "--no-report", "--out", str(a))
    assert done.returncode == 0, done.stderr
    recorded(a, [repo])
    (repo / "tiny_model.py").write_text(MODEL.replace("nn.ReLU()", "nn.Tanh()"))
    done = run_cli(str(path), "--logger", "null", "--no-report", "--out", str(b), "--set", "optim.lr=0.05")
    assert done.returncode == 0, done.stderr
    recorded(b, [repo])
    found = diffs.compare(a, b)
    assert found["spec"] == {"optim.lr": [0.1, 0.05]}
    models = next(r for r in found["code"]["repos"] if r["role"] == str(repo))
    assert models["verdict"] == "same commit, different tree changes" and models["files"] == ["tiny_model.py"]
    assert models["a"]["dirty"] is False and models["b"]["dirty"] is True
    assert "+" in models["diff"] and "nn.Tanh()" in models["diff"]
    assert any(r["role"] == "project" for r in found["code"]["repos"])  # this checkout: others may edit it meanwhile
    assert found["results"]["test_accuracy"][:2] == [json.loads((r / "summary.json").read_text())["test_accuracy"]
                                                    for r in (a, b)]
    done = run_cli("diff", str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert "spec: 1 key differs" in done.stdout and "optim.lr  0.1 -> 0.05" in done.stdout
    assert f"{repo}): same commit, different tree changes" in done.stdout
    assert "the trees differ in: tiny_model.py" in done.stdout and "nn.Tanh()" in done.stdout
    same = run_cli("diff", str(a), str(a))
    assert same.returncode == 0 and "spec: the same" in same.stdout and "same commit, same tree" in same.stdout
    as_json = json.loads(run_cli("diff", str(a), str(b), "--json").stdout)
    assert as_json["spec"] == {"optim.lr": [0.1, 0.05]}


def test_provenance_of_a_repository_clean_dirty_cut_and_without_git(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repo = git_repo(tmp_path / "repo", {"m.py": "x = 1\n"})
    found = provenance.collect([repo / "m.py"])  # a file stands for its folder
    mine = found["extra"][0]
    assert mine["commit"] == git(repo, "rev-parse", "HEAD").strip() and mine["dirty"] is False and mine["diff"] == ""
    assert found["project"]["git"] and found["project"]["path"] == str(ROOT)
    assert found["command"] == sys.argv and found["python"] and found["host"]
    assert {"torch", "torchvision", "cuda", "ray"} <= set(found["versions"])
    (repo / "m.py").write_text("x = 2\n" + "y = 3\n" * 1000)
    (repo / "new.py").write_text("")
    mine = provenance.collect([repo])["extra"][0]
    assert mine["dirty"] and mine["changed"] == ["m.py"] and mine["untracked"] == ["new.py"] and "+x = 2" in mine["diff"]
    assert "diff" not in provenance.brief({"project": mine})["project"]
    monkeypatch.setattr(provenance, "DIFF_CAP", 100)
    mine = provenance.collect([repo])["extra"][0]
    assert mine["diff_cut"] and len(mine["diff"]) == 100 and mine["diff_bytes"] > 5000
    (tmp_path / "plain").mkdir()
    assert "not in a git repository" in provenance.collect([tmp_path / "plain"])["extra"][0]["error"]
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "git").write_text("#!/bin/sh\n/bin/sleep 10 || /usr/bin/sleep 10\n")
    (slow / "git").chmod(0o755)
    monkeypatch.setattr(provenance, "GIT_SECONDS", 0.3)
    monkeypatch.setenv("PATH", str(slow))
    started = time.monotonic()
    assert "took longer than 0.3 s" in provenance.collect()["project"]["error"]
    assert time.monotonic() - started < 5
    monkeypatch.setenv("PATH", str(tmp_path / "plain"))
    assert provenance.collect()["project"] == {"path": str(ROOT), "git": False,
                                               "error": "git is not installed (no `git` on PATH)"}


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a repository to another user needs root")
def test_provenance_never_overrides_gits_ownership_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = git_repo(tmp_path / "theirs", {"m.py": "x = 1\n"})
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 54321, 54321)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-config"))  # no safe.directory of this machine's
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    mine = provenance.collect([repo])["extra"][0]
    assert mine["git"] is False and "owned by another user" in mine["error"]


def test_spec_tags_and_notes_are_kept_and_never_swept(tmp_path: Path) -> None:
    from runner.spec import SpecError, parse

    experiment = parse({"name": "x", "tags": ["best", "lr:high"], "notes": "why I ran it"}, "x.json")
    assert experiment.tags == ("best", "lr:high") and experiment.model_dump(mode="json")["tags"] == ["best", "lr:high"]
    for bad in ({"name": "x", "tags": ["two words"]}, {"name": "x", "sweep": {"tags": [["a"], ["b"]]}},
                {"name": "x", "notes": "n" * 10_001}):
        with pytest.raises(SpecError):
            parse(bad, "x.json")


# ----- damaged run directories -------------------------------------------------------------------------

def damaged_folder(real: dict[str, Path], root: Path) -> tuple[Path, dict[str, str]]:
    """A folder of run directories damaged in every way we know of, and the status each should show."""
    bad, outside = root / "bad", root / "outside"
    outside.mkdir(parents=True)
    shutil.copytree(real["variant1"], outside / "elsewhere")
    (outside / "secret.json").write_text(json.dumps({"status": "finished", "test_accuracy": 0.4242}))
    expected = {"good": "finished", "no-summary": "unfinished", "cut-journal": "unfinished", "old-spec": "finished",
                "bad-spec": "finished", "deep-spec": "finished", "bad-summary": "damaged", "list-summary": "damaged",
                "huge-summary": "damaged", "fifo-summary": "damaged", "summary-link": "damaged", "bad-notes": "finished",
                "empty": "unfinished", "link-out": "link"}
    for name in expected:
        if name != "link-out":
            shutil.copytree(real["variant0"], bad / name, ignore=shutil.ignore_patterns("report.html", "*.pt"))
    for name in ("no-summary", "cut-journal", "empty"):
        (bad / name / "summary.json").unlink()
    journal = (bad / "cut-journal" / "metrics.jsonl").read_bytes()
    (bad / "cut-journal" / "metrics.jsonl").write_bytes(journal[:len(journal) // 2 + 7])
    (bad / "empty" / "metrics.jsonl").write_bytes(b"")
    (bad / "old-spec" / "spec.json").write_text(json.dumps({"name": "old", "lr": 0.1, "hidden": [200], "epochs": 3}))
    (bad / "old-spec" / "summary.json").write_text(json.dumps({"status": "ok", "test_accuracy": 0.9}))
    (bad / "bad-spec" / "spec.json").write_text('{"name": "half')
    (bad / "deep-spec" / "spec.json").write_text("[" * 100_000)
    (bad / "bad-summary" / "summary.json").write_text('{"status": "fin')
    (bad / "list-summary" / "summary.json").write_text("[1, 2]")
    with open(bad / "huge-summary" / "summary.json", "wb") as f:
        f.truncate(1 << 30)  # 1 GB, sparse
    (bad / "fifo-summary" / "summary.json").unlink()
    os.mkfifo(bad / "fifo-summary" / "summary.json")
    (bad / "summary-link" / "summary.json").unlink()
    (bad / "summary-link" / "summary.json").symlink_to(outside / "secret.json")
    (bad / "bad-notes" / "notes.json").write_text("{")
    (bad / "link-out").symlink_to(outside / "elsewhere")
    return bad, expected


def test_every_command_on_a_folder_of_damaged_runs(real: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from runner.__main__ import main

    bad, expected = damaged_folder(real, tmp_path)
    before = sorted(p.name for p in (tmp_path / "outside").rglob("*"))
    done = run_cli("runs", str(bad))
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stderr
    for name in expected:
        assert sum(f"/{name} " in line for line in done.stdout.splitlines()) == 1, (name, done.stdout)
    rows = {Path(r["run"]).name: r for r in listed(bad)}
    assert {name: r["status"] for name, r in rows.items()} == expected
    assert "more than the 4.0 MB read" in rows["huge-summary"]["problem"]
    assert "not a regular file" in rows["fifo-summary"]["problem"]
    assert "is a link (not followed)" in rows["summary-link"]["problem"] and rows["summary-link"]["metric"] != 0.4242
    assert "ends mid-line" in rows["cut-journal"]["problem"] and rows["cut-journal"]["epochs"] in (1, 2, None)
    assert "not JSON" in rows["bad-spec"]["problem"] and rows["bad-spec"]["spec"]["optim.lr"]  # the journal's copy
    assert rows["old-spec"]["spec"]["lr"] == 0.1 and rows["old-spec"]["metric"] == 0.9
    assert "notes.json is not JSON" in rows["bad-notes"]["problem"]
    assert "not followed" in rows["link-out"]["problem"] and rows["link-out"]["spec"] == {}
    for extra in (["--csv"], ["--where", "status=damaged"], ["--sort", "-metric"]):
        done = run_cli("runs", str(bad), *extra)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (extra, done.stderr)
    done = run_cli("report", str(bad))
    assert done.returncode == 0, done.stderr
    page = (bad / "lab.html").read_text()
    assert all(name in page for name in expected) and "0.4242" not in page
    assert run_cli("report", str(bad), "--where", "status!=finished", "-o", str(tmp_path / "p.html")).returncode == 0
    usable = [str(bad / name) for name in expected if name not in ("link-out", "bad-notes")]
    assert run_cli("tag", *usable, "+seen").returncode == 0
    for command in (*(["note", run, "looked at it"] for run in usable),
                    *(["diff", str(bad / "good"), str(bad / name)] for name in expected)):
        assert main(command) == 0, command  # in this process: an exception would fail the test here
    assert all(json.loads((Path(run) / "notes.json").read_text())["tags"][-1] == "seen" for run in usable)
    capsys.readouterr()
    for name in ("link-out", "bad-notes"):  # refused: a link is not written through, a damaged notes.json not over
        for command in (["tag", str(bad / name), "+seen"], ["note", str(bad / name), "looked at it"]):
            assert main(command) == 2
            assert capsys.readouterr().err.count("\n") == 1
    assert (bad / "bad-notes" / "notes.json").read_text() == "{"  # never written over
    assert sorted(p.name for p in (tmp_path / "outside").rglob("*")) == before  # nothing written outside
    assert not list(tmp_path.rglob("outside/**/notes.json"))


# ----- run directories written by hand -----------------------------------------------------------------

def hand_run(folder: Path, spec: dict[str, Any] | None = None, summary: dict[str, Any] | None = None) -> Path:
    """A run directory as a finished run leaves it (spec.json, the journal's start event, summary.json),
    written here with the values a test needs."""
    spec = {"name": folder.name, **(spec or {})}
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps(spec))
    (folder / "metrics.jsonl").write_text(json.dumps({"event": "start", "info": {"name": spec["name"],
                                                                                 "spec": spec}}) + "\n")
    (folder / "summary.json").write_text(json.dumps({"status": "finished", **(summary or {})}))
    return folder


def test_tag_and_note_keep_what_notes_json_holds_that_they_do_not_know(tmp_path: Path) -> None:
    run = hand_run(tmp_path / "runs" / "a-20261125-171800", {"tags": ["baseline"]})
    mine = {"tags": ["old", "two words", 7], "notes": [{"text": "no time"}, {"time": "2026-11-25 17:20", "text": "ok",
                                                                          "by": "me"}, "a line", {"time": 3}],
            "owner": {"name": "me"}}
    (run / "notes.json").write_text(json.dumps(mine))
    row = listed(tmp_path / "runs")[0]
    assert row["tags"] == ["old"] and [n["text"] for n in row["notes"]] == ["ok"]  # only what is understood is shown
    done = run_cli("tag", str(run), "+new", "-old")
    assert done.returncode == 0 and done.stdout.strip() == f"{run}: new", done.stderr
    kept = json.loads((run / "notes.json").read_text())
    assert kept == {**mine, "tags": ["two words", 7, "new"]}
    assert run_cli("note", str(run), "seen").returncode == 0
    kept = json.loads((run / "notes.json").read_text())
    assert kept["notes"][:4] == mine["notes"] and kept["notes"][4]["text"] == "seen" and kept["owner"] == mine["owner"]
    done = run_cli("note", str(run), "--clear")
    assert done.returncode == 0 and done.stdout.strip() == f"{run}: 2 notes deleted", done.stdout
    kept = json.loads((run / "notes.json").read_text())
    assert kept == {**mine, "tags": ["two words", 7, "new"], "notes": [{"text": "no time"}, "a line", {"time": 3}]}
    (run / "notes.json").write_text(json.dumps({"tags": "not a list", "notes": []}))
    done = run_cli("tag", str(run), "+x")  # what would be written over is refused, not lost
    assert done.returncode == 2 and "tags" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert json.loads((run / "notes.json").read_text())["tags"] == "not a list"


def test_tags_accumulate_over_several_commands(tmp_path: Path) -> None:
    run = hand_run(tmp_path / "runs" / "a-20261125-171800", {"tags": ["baseline"]})
    for change, tags in ((["+a"], ["baseline", "a"]), (["+b"], ["baseline", "a", "b"]),
                         (["-a", "+c"], ["baseline", "b", "c"]), (["+a", "-baseline"], ["b", "c", "a"])):
        done = run_cli("tag", str(run), *change)
        assert done.returncode == 0 and done.stdout.strip() == f"{run}: {' '.join(tags)}", (change, done.stderr)
        assert json.loads((run / "notes.json").read_text())["tags"] == tags
    assert run_cli("note", str(run), "a note").returncode == 0
    assert run_cli("tag", str(run), "+d").returncode == 0
    assert listed(tmp_path / "runs")[0]["tags"] == ["b", "c", "a", "d"]
    assert [n["text"] for n in json.loads((run / "notes.json").read_text())["notes"]] == ["a note"]


def test_where_compares_numbers_as_numbers(tmp_path: Path) -> None:
    nb = tmp_path / "runs"
    for name, lr, epochs, accuracy in (("a", 1e-3, 9, 0.9), ("b", 0.002, 10, 0.10), ("c", 1e-5, 100, 0.095),
                                       ("d", 0.0005, 2, 1)):
        hand_run(nb / f"{name}-20261125-17180{ord(name) - 97}", {"optim": {"lr": lr}},
                 {"epochs": epochs, "test_accuracy": accuracy})

    def names(*where: str) -> list[str]:
        args = [item for w in where for item in ("--where", w)]
        return sorted(Path(r["run"]).name[0] for r in listed(nb, *args))

    assert names("epochs>9") == ["b", "c"] and names("epochs<10") == ["a", "d"] and names("epochs>=10") == ["b", "c"]
    assert names("optim.lr>=1e-3") == ["a", "b"] and names("optim.lr<0.002") == ["a", "c", "d"]
    assert names("optim.lr<=0.001") == ["a", "c", "d"] and names("optim.lr=0.001") == ["a"]
    assert names("test_accuracy=0.10") == ["b"] and names("test_accuracy>0.10") == ["a", "d"]
    assert names("test_accuracy<0.9") == ["b", "c"] and names("test_accuracy>=90%") == ["a", "d"]
    assert names("metric<0.1", "epochs>9") == ["c"]
    assert [Path(r["run"]).name[0] for r in listed(nb, "--sort", "epochs")] == ["d", "a", "b", "c"]


def test_a_huge_spec_json_is_not_read_whole(tmp_path: Path) -> None:
    import tracemalloc

    from runner.lab.scan import read_row

    run = hand_run(tmp_path / "runs" / "a-20261125-171800", {"optim": {"lr": 0.1}}, {"test_accuracy": 0.5})
    with open(run / "spec.json", "wb") as f:
        f.truncate(100_000_000)  # 100 MB, sparse: reading it whole would take 100 MB of memory
    tracemalloc.start()
    try:
        row = read_row(run, "")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000, peak
    assert "spec.json is 100.0 MB, more than the 4.0 MB read (left unread)" in row["problem"]
    assert row["spec"]["optim.lr"] == 0.1 and row["metric"] == 0.5  # the journal's copy of the spec
    shown = listed(tmp_path / "runs")[0]
    assert "spec.json is 100.0 MB" in shown["problem"] and shown["status"] == "finished"


def test_runs_table_when_a_run_with_a_problem_comes_before_the_last_one(tmp_path: Path) -> None:
    nb = tmp_path / "runs"
    hand_run(nb / "a-20261125-171800", {"optim": {"lr": 0.1}})
    hand_run(nb / "b-20261125-171900", {"optim": {"lr": 0.2}})
    (nb / "b-20261125-171900" / "notes.json").write_text("{")
    done = run_cli("runs", str(nb))  # newest first: b (its notes.json is not JSON), then a, without a problem
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["run", "status", "when", "metric", "epochs", "time", "tags", "optim.lr", "problem"]
    assert "b-20261125-171900" in lines[2] and lines[2].endswith("notes.json is not JSON")
    assert "a-20261125-171800" in lines[3] and lines[4] == "2 runs: 2 finished."


def test_diff_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    run = hand_run(tmp_path / "runs" / "a-20261125-171800")
    mine = tmp_path / "my files"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text("{}")
    for other in (mine, Path("/proc/self"), tmp_path / "sweep", tmp_path / "nothing"):
        for pair in ((run, other), (other, run)):
            done = run_cli("diff", *map(str, pair))
            assert done.returncode == 2 and done.stdout == "", (other, done.stdout)
            assert done.stderr.startswith(f"error: {other}") and done.stderr.count("\n") == 1, done.stderr
            assert "Traceback" not in done.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


UNSAFE = ("\x1b", "\x07", "\x9b", "\x7f", "\x00", "\u202e", "\u2066", "\u200f", "\u061c")


def test_names_and_values_from_run_directories_are_printed_escaped(tmp_path: Path) -> None:
    nb = tmp_path / "runs"
    evil = hand_run(nb / "evil\x1b]0;owned\x07\u202e-20261125-171800", {
        "model": {"kind": "\x1b[2J\x9b31m"}, "\x1b[1mkey\u2066": 1, "notes": "spec \u200f\x7f\x00"},
        {"status": "finished\x1b[8m", "test_accuracy": 0.5})
    plain = hand_run(nb / "plain-20261125-171700", {"model": {"kind": "mlp"}, "\x1b[1mkey\u2066": 2})
    (evil / "notes.json").write_text(json.dumps({"notes": [{"time": "2026", "text": "note \u061c\x1b[31m"}]}))
    outputs = {"runs": run_cli("runs", str(nb)), "runs one": run_cli("runs", str(evil)),
               "diff": run_cli("diff", str(plain), str(evil)), "tag": run_cli("tag", str(evil), "+seen"),
               "tags": run_cli("tag", str(evil)), "note": run_cli("note", str(evil), "x"),
               "refused": run_cli("note", str(evil / "not\x1b[2Jhere"), "x")}
    for what, done in outputs.items():
        assert done.returncode == (2 if what == "refused" else 0) and "Traceback" not in done.stderr, (what, done.stderr)
        assert not any(c in done.stdout + done.stderr for c in UNSAFE), (what, done.stdout + done.stderr)
    table = outputs["runs"].stdout
    assert r"evil\x1b]0;owned\x07\u202e-20261125-171800" in table and r"\x1b[2J\x9b31m" in table
    assert r"\x1b[1mkey\u2066" in table.splitlines()[0] and r"finished\x1b[8m" in table
    assert r"note \u061c\x1b[31m" in table
    assert r"\x1b[2J\x9b31m" in outputs["diff"].stdout and r"evil\x1b]0;owned" in outputs["diff"].stdout
    assert outputs["tag"].stdout.startswith(str(nb) + r"/evil\x1b]0;owned\x07\u202e")
    assert r"not\x1b[2Jhere" in outputs["refused"].stderr
    rows = by_run(listed(nb))  # the data itself stays exact: JSON writes them as \u001b
    assert rows[str(evil)]["spec"]["model.kind"] == "\x1b[2J\x9b31m"


def run_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir())


def test_a_note_that_fails_mid_write_leaves_notes_json_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from runner.lab import notes

    run = hand_run(tmp_path / "runs" / "a-20261125-171800")
    assert run_cli("note", str(run), "first").returncode == 0
    before, names = (run / "notes.json").read_bytes(), run_files(run)

    def half_then_full(data: Any, f: Any, **options: Any) -> None:  # the disk fills half-way through the write
        text = json.dumps(data, **options)
        f.write(text[:len(text) // 2])
        f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, "dump", half_then_full)
    with pytest.raises(notes.NotesError, match="cannot be written .No space left on device"):
        notes.add_note(run, "second")
    monkeypatch.undo()
    assert (run / "notes.json").read_bytes() == before and run_files(run) == names  # the old file, no temporary one


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_note_on_a_full_disk_leaves_notes_json_whole(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        run = hand_run(disk / "a-20261125-171800")
        many = [{"time": "2026-11-25 17:20:00+0000", "text": f"{i} " + "n" * 4000} for i in range(40)]
        (run / "notes.json").write_text(json.dumps({"tags": [], "notes": many}))  # 160 KB, freed by a rewrite in place
        before, names = (run / "notes.json").read_bytes(), run_files(run)
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == 28  # ENOSPC: the disk is full
        finally:
            os.close(fd)
        done = run_cli("note", str(run), "one more " + "m" * 9000)
        assert done.returncode == 2 and "No space left on device" in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert (run / "notes.json").read_bytes() == before and run_files(run) == names
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_csv_is_exact_in_a_pipe_and_escaped_on_a_terminal(tmp_path: Path) -> None:
    import pty

    hand_run(tmp_path / "runs" / "a-20261125-171800", {"model": {"kind": "\x1b[2J\u202emlp"}})
    hand_run(tmp_path / "runs" / "b-20261125-171900", {"model": {"kind": "cnn"}})
    piped = run_cli("runs", str(tmp_path / "runs"), "--csv")
    assert {r["model.kind"] for r in csv.DictReader(io.StringIO(piped.stdout))} == {"\x1b[2J\u202emlp", "cnn"}
    main, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "runner", "runs", str(tmp_path / "runs"), "--csv"], cwd=ROOT,
                              stdout=terminal, stderr=subprocess.PIPE, timeout=60)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other end is closed and everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
    text = shown.decode()
    assert done.returncode == 0 and r"\x1b[2J\u202emlp" in text, done.stderr
    assert not any(c in text.replace("\r\n", "\n") for c in UNSAFE), text
