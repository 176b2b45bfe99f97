"""The tracking API (`from runner import track`): a loop of one's own leaves a run directory like the
runner's, reads device values in batches, and never dies because of its tracker."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers import ROOT
from runner import runs, track
from runner.lab.reading import MAX_JSON
from runner.loggers import NullLogger, replay


def loop(out: Path, steps: int = 100, **options: object) -> dict:
    with track.run("ae", config={"lr": 1e-3, "width": 64}, out=out, logger="null", **options) as run:
        for step in range(1, steps + 1):
            run.log({"train/loss": torch.tensor(1.0 / step), "train/kl": step * 0.5, "lr": 0.1}, step=step)
            if step % 50 == 0:
                run.images("reconstructions", torch.rand(16, 1, 28, 28), step=step)
        run.log({"test/loss": 0.25}, step=steps)
        run.summary["best"] = torch.tensor(0.5)
    return run.finish()


def journal_of(run_dir: Path) -> NullLogger:
    events = NullLogger()
    replay(run_dir / runs.JOURNAL, events)
    return events


def python(code: str, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_importing_it_imports_no_torch_and_no_dashboard() -> None:
    done = python("""
        import sys
        from runner import track
        heavy = [m for m in ("torch", "visdom", "numpy", "dashboards.visdom.logger") if m in sys.modules]
        print(heavy)
    """)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_a_loop_leaves_a_run_directory_with_every_value(tmp_path: Path) -> None:
    summary = loop(tmp_path / "run")
    assert json.loads((tmp_path / "run" / runs.SPEC).read_text()) == {"lr": 1e-3, "width": 64}
    assert json.loads((tmp_path / "run" / runs.SUMMARY).read_text()) == summary
    assert summary["status"] == "finished" and summary["tracked"] is True and summary["steps"] == 100
    assert summary["best"] == 0.5 and summary["last"] == {"train/loss": 0.009999999776482582, "train/kl": 50.0,
                                                          "lr": 0.1, "test/loss": 0.25}
    events = journal_of(tmp_path / "run")
    [start] = events.named("start")
    assert start["info"]["tracked"] is True and start["info"]["spec"] == {"lr": 1e-3, "width": 64}
    metrics = events.named("metrics")
    assert [m["step"] for m in metrics] == [*range(1, 101), 100]
    assert [m["values"]["train/loss"] for m in metrics[:-1]] == [torch.tensor(1.0 / s).item() for s in range(1, 101)]
    assert metrics[-1]["values"] == {"test/loss": 0.25}
    media = events.named("media")
    assert [(m["name"], m["step"], len(m["pixels"]), len(m["pixels"][0][0])) for m in media] == \
        [("reconstructions", 50, 16, 28), ("reconstructions", 100, 16, 28)]
    assert all(0 <= v <= 255 for row in media[0]["pixels"][3][0] for v in row)
    assert events.named("close")[0]["summary"]["status"] == "finished"


def test_device_values_are_read_in_batches_not_per_call(tmp_path: Path) -> None:
    reads = []

    class Counting(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func in (torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__float__):
                reads.append(func)
            return func(*args, **(kwargs or {}))

    class OnTheGpu(torch.Tensor):  # as a CUDA tensor looks to the tracker, where none is at hand
        @property
        def device(self) -> torch.device:  # type: ignore[override]
            return torch.device("cuda", 0)

    losses = [torch.tensor(float(i)).as_subclass(OnTheGpu) for i in range(1, 101)]
    with track.run("batched", out=tmp_path / "run", logger="null", every=20, seconds=3600) as run:
        with Counting():
            for step, loss in enumerate(losses, 1):
                run.log({"loss": loss}, step=step)
    assert len(reads) == 5  # one read per 20 values, none per call (a CPU tensor is read at once: no wait)
    assert [m["values"]["loss"] for m in journal_of(tmp_path / "run").named("metrics")] == list(range(1, 101))


def test_bad_values_are_warned_about_once_and_the_loop_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with track.run("bad", out=tmp_path / "run", logger="null") as run:
        for step in range(1, 4):
            run.log({"loss": float("nan") if step == 2 else 1.0, "word": "high", "vector": torch.ones(3),
                     "bad<name>": 1.0, "flag": True}, step=step)
            run.images("wrong", torch.rand(2, 5, 8, 8), step=step)  # five channels
            run.images("huge", torch.rand(1, 1, 512, 512), step=step)
            run.images("bad name?", torch.rand(1, 1, 8, 8), step=step)
        run.log([1, 2, 3])  # type: ignore[arg-type]
    warnings = capsys.readouterr().err.splitlines()
    for what in ("'high' is not a number", "a Tensor of shape (3,)", "'bad<name>' cannot name", "flag: True",
                 "loss is nan at step 2", "run.images('wrong')", "run.images('huge')", "'bad name?'",
                 "a dict of names"):
        assert sum(what in line for line in warnings) == 1, (what, warnings)
    assert len(warnings) == 9
    values = [m["values"] for m in journal_of(tmp_path / "run").named("metrics")]
    assert [list(v) for v in values] == [["loss"]] * 3 and math.isnan(values[1]["loss"])
    assert not journal_of(tmp_path / "run").named("media")


def test_an_error_in_the_loop_is_recorded_and_raised(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with track.run("crash", out=tmp_path / "run", logger="null") as run:
            run.log({"loss": 1.0})
            1 / 0
    summary = json.loads((tmp_path / "run" / runs.SUMMARY).read_text())
    assert summary["status"] == "failed" and summary["error"] == "ZeroDivisionError: division by zero"
    assert not runs._held  # its directory let go


def test_a_run_never_closed_is_finished_at_exit(tmp_path: Path) -> None:
    done = python(f"""
        from runner import track
        run = track.run("notebook", out={str(tmp_path / 'run')!r}, logger="null")
        for step in range(1, 31):
            run.log({{"loss": 1 / step}})
    """)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / runs.SUMMARY).read_text())
    assert summary["status"] == "finished" and summary["steps"] == 30 and summary["last"]["loss"] == 1 / 30


@pytest.mark.parametrize("args, message", [
    ({"name": "../escape"}, "track.run's name is '../escape'"),
    ({"name": "ok", "config": {"f": object()}}, "cannot be written as JSON"),
    ({"name": "ok", "config": {"lr": float("nan")}}, "cannot be written as JSON"),
    ({"name": "ok", "every": 0}, "every (0) must be"),
    ({"name": "ok", "logger": "paper"}, "unknown 'paper'"),
])
def test_what_cannot_make_a_run_is_refused_before_anything_is_written(tmp_path: Path, args: dict,
                                                                       message: str) -> None:
    with pytest.raises(track.TrackError if "logger" not in args else Exception, match=None) as refused:
        track.run(**{"out": tmp_path / "run", **args})
    assert message in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_an_occupied_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(track.TrackError, match="not a run of this runner"):
        track.run("x", out=tmp_path / "mine", logger="null")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="mounting a small tmpfs needs root in a mount namespace")
def test_a_full_disk_costs_the_journal_not_the_loop(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    code = f"""
        import subprocess
        from runner import track
        with track.run("full", out="{disk}/run", logger="null") as run:
            for step in range(1, 20001):
                run.log({{"train/loss": 1 / step, "train/kl": 2 / step}}, step=step)
                if step == 2000:
                    subprocess.run(["dd", "if=/dev/zero", "of={disk}/filler", "bs=4k"], capture_output=True)
        print("loop done", run.step)
    """
    script = f"mount -t tmpfs -o size=2m none {disk} || exit 99\n{sys.executable} -c '{textwrap.dedent(code)}'\n" \
             f"cp -a {disk}/run {tmp_path}/kept"
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if done.returncode == 99:
        pytest.skip(f"no tmpfs can be mounted here: {done.stderr.strip()[:200]}")
    assert "loop done 20000" in done.stdout, done.stderr
    assert done.stderr.count("the journal failed") == 1 and "Traceback" not in done.stderr, done.stderr
    kept = tmp_path / "kept" / runs.JOURNAL
    assert kept.read_bytes().endswith(b"\n")
    steps = [m["step"] for m in journal_of(tmp_path / "kept").named("metrics")]
    assert steps == list(range(1, len(steps) + 1)) and 2000 <= len(steps) < 20000


def test_a_journal_that_cannot_grow_costs_the_journal_not_the_loop(tmp_path: Path) -> None:
    """As a full disk does, without root: a file size limit (RLIMIT_FSIZE) makes the journal's writes
    fail with EFBIG part way through the loop; the loop must never see that error."""
    import resource

    code = f"""
        from runner import track
        with track.run("capped", out={str(tmp_path / 'run')!r}, logger="null") as run:
            for step in range(1, 20001):
                run.log({{"train/loss": 1 / step, "train/kl": 2 / step}}, step=step)
        print("loop done", run.step)
    """
    limit = 200_000  # bytes: the journal reaches it after a few thousand steps; spec and summary stay under it

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = python(code, preexec_fn=capped)
    assert done.returncode == 0 and "loop done 20000" in done.stdout, done.stderr
    assert done.stderr.count("the journal failed (File too large)") == 1 and "Traceback" not in done.stderr, \
        done.stderr
    journal = (tmp_path / "run" / runs.JOURNAL).read_bytes()
    assert journal.endswith(b"\n") and len(journal) <= limit
    steps = [m["step"] for m in journal_of(tmp_path / "run").named("metrics")]
    assert steps == list(range(1, len(steps) + 1)) and 1000 <= len(steps) < 20000
    summary = json.loads((tmp_path / "run" / runs.SUMMARY).read_text())
    assert summary["status"] == "finished" and summary["steps"] == 20000 and summary["last"]["train/loss"] == 1 / 20000


def test_values_are_taken_as_they_are_at_the_call_and_read_exactly(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    import numpy as np

    total = torch.zeros(())
    with track.run("exact", out=tmp_path / "run", logger="null", every=10) as run:
        for _ in range(3):
            total += 1  # in place, after the call: the values logged must not follow it
            run.log({"total": total})
        run.log({"half": torch.tensor(0.5, dtype=torch.float16), "count": torch.tensor(100_001),
                 "array": np.array([[2.5]]), "scalar": np.float32(1.5)})
        run.log({"words": np.array(["a"]), "when": np.array([np.datetime64("2020-01-01")])}, step=torch.tensor([1, 2]))
        run.images("grid", torch.rand(1, 1, 4, 4))  # beside the last scalars, not a step of its own
    metrics = journal_of(tmp_path / "run").named("metrics")
    assert [(m["step"], m["values"]) for m in metrics] == [
        (1, {"total": 1.0}), (2, {"total": 2.0}), (3, {"total": 3.0}),
        (4, {"half": 0.5, "count": 100_001.0, "array": 2.5, "scalar": 1.5})]
    assert [m["step"] for m in journal_of(tmp_path / "run").named("media")] == [5]
    err = capsys.readouterr().err
    assert "words: a ndarray" in err and "when: a ndarray" in err and "step must be a whole number" in err


def test_a_tensor_like_one_read_before_is_still_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Once a CPU tensor of a type and element type has been read, log reads such tensors at once (its
    shortest way): one of several elements, none, or on another device is still checked and warned about."""
    with track.run("seen", out=tmp_path / "run", logger="null") as run:
        run.log({"loss": torch.tensor(1.0)}, step=1)
        run.log({"loss": torch.tensor([2.0]), "vector": torch.ones(3), "empty": torch.ones(0),
                 "meta": torch.ones((), device="meta"), "flag": torch.tensor(True)}, step=2)
        run.log({"loss": torch.tensor(3, dtype=torch.int32)}, step=3)
    metrics = journal_of(tmp_path / "run").named("metrics")
    assert [(m["step"], m["values"]) for m in metrics] == [(1, {"loss": 1.0}), (2, {"loss": 2.0}), (3, {"loss": 3.0})]
    err = capsys.readouterr().err
    for what in ("vector: a Tensor of shape (3,)", "empty: a Tensor of shape (0,)", "meta: a Tensor", "flag: a Tensor"):
        assert what in err, (what, err)


def test_a_script_that_dies_leaves_its_run_failed(tmp_path: Path) -> None:
    done = python(f"""
        from runner import track
        run = track.run("dies", out={str(tmp_path / 'run')!r}, logger="null")
        run.log({{"loss": 1.0}})
        raise RuntimeError("boom")
    """)
    assert done.returncode == 1 and "RuntimeError: boom" in done.stderr
    summary = json.loads((tmp_path / "run" / runs.SUMMARY).read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: boom"


class Sub(torch.Tensor):
    """A tensor subclass that is a plain number underneath."""


class Unreadable(torch.Tensor):
    """A tensor subclass whose number cannot be read (as some wrappers' values cannot outside their context)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func in (torch.Tensor.item, torch.Tensor.tolist):
            raise RuntimeError("not readable here")
        return super().__torch_function__(func, types, args, kwargs or {})


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


def odd_values() -> tuple[dict, dict]:
    """(what is not a number, what is one: name -> (value, its number))."""
    import decimal
    import fractions
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the prototype layouts say so
        refused = {
            "nested": torch.nested.nested_tensor([torch.ones(1)]),
            "jagged": torch.nested.nested_tensor([torch.ones(1)], layout=torch.jagged),
            "sparse": torch.tensor([1.0]).to_sparse(), "csr": torch.tensor([[1.0]]).to_sparse_csr(),
            "meta": torch.tensor(1.0, device="meta"),
            "quantized": torch.quantize_per_tensor(torch.tensor([1.0]), 0.1, 0, torch.qint8),
            "complex": torch.tensor(1 + 2j), "empty": torch.ones(0), "unreadable": torch.tensor(1.0).as_subclass(Unreadable),
            "objects": np.array([object()]), "record": np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")])[0],
            "masked": np.ma.masked_array([1.0], mask=[True]), "huge": 10 ** 400, "huger": -10 ** 5000,
            "huge fraction": fractions.Fraction(10 ** 400, 3), "signalling": decimal.Decimal("sNaN"),
            "unprintable": Unprintable(),
        }
    numbers = {"subclass": (torch.tensor(2.0).as_subclass(Sub), 2.0), "decimal": (decimal.Decimal("1.5"), 1.5),
               "fraction": (fractions.Fraction(1, 4), 0.25), "big": (10 ** 300, 1e300)}
    return refused, numbers


def test_no_kind_of_value_raises_into_the_loop(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    refused, numbers = odd_values()
    loop = {}
    loop["me"], loop["again"] = loop, loop  # read naively: 2 ** depth copies
    deep: dict = {}
    for _ in range(10_000):
        deep = {"a": deep}
    everything = {**refused, **{k: v for k, (v, _) in numbers.items()}}
    with track.run("kinds", out=tmp_path / "run", logger="null", every=2) as run:
        for step in range(1, 4):
            run.log(everything, step=step)
            for name, value in everything.items():
                run.text(name, value)
                run.images(name, value)
        run.summary.update({**everything, "loop": loop, "deep": deep})
    assert [m["values"] for m in journal_of(tmp_path / "run").named("metrics")] == \
        [{k: n for k, (_, n) in numbers.items()}] * 3
    err = capsys.readouterr().err.splitlines()
    for name in refused:
        assert sum(line.startswith(f"warning: track kinds: {name}: ") for line in err) == 1, (name, err)
    assert not [line for line in err if "Traceback" in line]
    summary = json.loads((tmp_path / "run" / runs.SUMMARY).read_text())
    assert summary["status"] == "finished" and summary["decimal"] == 1.5 and summary["big"] == 10 ** 300
    assert isinstance(summary["nested"], str) and isinstance(summary["huger"], str)
    assert (tmp_path / "run" / runs.SUMMARY).stat().st_size < MAX_JSON // 2  # as every reader reads it


def configs_that_cannot_be_written() -> list:
    deep: dict = {}
    for _ in range(10_000):
        deep = {"a": deep}
    middling: dict = {}
    for _ in range(300):  # within Python's recursion limit, beyond what a config needs
        middling = {"a": [middling]}
    itself: dict = {"lr": 0.1}
    itself["me"] = itself
    return [pytest.param(deep, id="10000 levels"), pytest.param(middling, id="600 levels"),
            pytest.param(itself, id="itself")]


@pytest.mark.parametrize("config", configs_that_cannot_be_written())
def test_a_config_too_deep_or_holding_itself_is_a_track_error(tmp_path: Path, config: dict) -> None:
    with pytest.raises(track.TrackError) as refused:
        track.check("deep", config, logger="null")
    assert "config" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(track.TrackError):
        track.run("deep", config, out=tmp_path / "run", logger="null")
    assert not (tmp_path / "run").exists()


def test_names_past_the_limit_are_warned_about_once_and_summary_json_stays_readable(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from runner.lab import scan

    names = [f"{i:06d}".ljust(100, "n") for i in range(track.MAX_NAMES + 500)]  # the longest names there are
    with track.run("names", out=tmp_path / "run", logger="null") as run:
        for step in range(1, 4):
            for start in range(0, len(names), 1000):
                run.log({name: float(step) for name in names[start:start + 1000]}, step=step)
            run.text("later text", "words", step=step)
    err = capsys.readouterr().err.splitlines()
    [warning] = [line for line in err if "names" in line]
    assert f"more than {track.MAX_NAMES:,} names" in warning and "ignored" in warning and "summary.json" in warning
    logged: dict[int, set] = {}
    for m in journal_of(tmp_path / "run").named("metrics"):
        logged.setdefault(m["step"], set()).update(m["values"])
    assert logged == {step: set(names[:track.MAX_NAMES]) for step in (1, 2, 3)}
    assert not journal_of(tmp_path / "run").named("text")
    summary = json.loads((tmp_path / "run" / runs.SUMMARY).read_text())
    assert len(summary["last"]) == track.MAX_NAMES
    assert summary["names_left_out"] == {"after": track.MAX_NAMES, "values": 1503,
                                         "first": names[track.MAX_NAMES:track.MAX_NAMES + 10]}
    assert (tmp_path / "run" / runs.SUMMARY).stat().st_size < MAX_JSON  # as `runs` reads it
    row = scan.read_row(tmp_path / "run", "run")
    assert row["problem"] is None and row["status"] == "finished"
