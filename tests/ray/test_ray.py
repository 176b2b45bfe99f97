"""`--executor ray` on a real two-node Ray cluster (`ray start`, token auth), with the real Visdom
server: where trials ran, that every journal and every dashboard env is whole, ASHA, a trial whose
process is killed, a sweep and a search stopped with Ctrl-C and resumed, unreadable data.

Everything here must stay on loopback: Ray's processes talk over the machine's primary address
unless the network namespace has nothing else. `make test` runs the suite in such a namespace
(`unshare -n`, `ip link set lo up`); elsewhere these tests skip, and under `make test` a namespace
that is not loopback-only fails them instead.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from dashboards.charts import MAX_POINTS
from dashboards.visdom.server import Server, running
from dashboards.visdom.windows import RECENT
from helpers import ROOT, make_tiny_mnist, run_cli
from runner.executors.ray.cluster import stop_processes_under

RAY = str(Path(sys.executable).with_name("ray"))
STEPS = 600  # per epoch: 6,000 tiny training images at batch 10
EPOCHS = 3
ACTIVATIONS = ["relu", "selu", "tanh", "softplus"]

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def interfaces() -> list[str]:
    return sorted(name for _, name in socket.if_nameindex())  # of this process's network namespace


def loopback_only() -> bool:
    return interfaces() == ["lo"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A head and a worker node, one CPU each, token auth; yields the env a driver needs to join."""
    if not loopback_only():
        if os.environ.get("RUNNER_LOOPBACK_ONLY"):
            pytest.fail("make test should run the suite in a loopback-only network namespace, and this one has "
                        f"{interfaces()}")
        pytest.skip("Ray tests run only in a loopback-only network namespace: use `make test`")
    home = tmp_path_factory.mktemp("ray-home")
    temp = Path(tempfile.mkdtemp(prefix="rt-"))  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([RAY, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    env["RAY_AUTH_TOKEN"] = (home / ".ray" / "auth_token").read_text().strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run([RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                        "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([RAY, "start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                        "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=120)
        yield {**env, "RAY_ADDRESS": address}
    finally:
        stop_processes_under(temp)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_mnist(tmp_path_factory.mktemp("data"), train=STEPS * 10, test=200)


@pytest.fixture(scope="module")
def visdom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(home=tmp_path_factory.mktemp("visdom")) as server:
        yield server


def spec_file(folder: Path, data_root: Path, **sections: Any) -> Path:
    spec = {"name": "tiny", "seed": 0,
            "data": {"root": str(data_root), "verify": False, "batch_size": 10, "test_batch_size": 100},
            "model": {"hidden": [32]}, "optim": {"name": "sgd", "lr": 0.05},
            "train": {"epochs": EPOCHS, "device": "cpu", "log_every": 20, "samples": 8}, **sections}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def runner(*args: str, env: dict[str, str], **options: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", *args, "--executor", "ray", "--no-report"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for_a_checkpoint(process: subprocess.Popen, out: Path) -> None:
    """Until a variant of the sweep in `out` has written its first checkpoint."""
    deadline = time.monotonic() + 120
    while not list(out.glob("tiny-*/checkpoint.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert list(out.glob("tiny-*/checkpoint.pt")), "no variant reached its first checkpoint"


def stopped_at_a_checkpoint(spec: Path, out: Path, env: dict[str, str], signum: int) -> tuple[str, str]:
    """Run the sweep, send `signum` once a variant has checkpointed; it must stop as a stopped sweep
    does (exit 128 + signum, with the command that continues it). Its stdout and stderr."""
    process = runner(str(spec), "--out", str(out), "--logger", "null", env=env)
    wait_for_a_checkpoint(process, out)
    process.send_signal(signum)
    code, stdout, stderr = finish(process)
    assert code == 128 + signum, stderr
    assert f"Continue the sweep with: python -m runner --resume {out}" in stderr
    return stdout, stderr


def journal(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in ("train_seconds", "run_dir")} for row in csv.DictReader(f)]


def assert_whole(run_dir: Path, epochs: int = EPOCHS) -> list[dict[str, Any]]:
    """Every step, evaluation and prediction of the run in its journal exactly once, in order, after its
    one start and before its one close: a retried or resumed trial adds neither."""
    events = journal(run_dir)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds.count("start") == 1 and kinds.count("images") == 1
    assert kinds[-1] == "close" and kinds.count("close") == 1
    assert steps_in(events) == list(range(1, epochs * STEPS + 1))
    for kind in ("evaluation", "predictions"):
        assert [e["epoch"] for e in events if e["event"] == kind] == list(range(1, epochs + 1))
    return events


def steps_in(events: list[dict[str, Any]]) -> list[int]:
    return [e["step"] for e in events if e["event"] == "train_loss"]


def command_line(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:  # ended meanwhile
        return ""


def windows(port: int, env: str) -> dict[str, Any]:
    from visdom import Visdom

    viz = Visdom(server="http://127.0.0.1", port=port, use_incoming_socket=False, raise_exceptions=True)
    return json.loads(viz.get_window_data(env=env))


@pytest.fixture(scope="module")
def uninterrupted(cluster: dict[str, str], data_root: Path, visdom: Server,
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    """The four-variant sweep on the cluster, start to end, streaming to the Visdom server."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    spec = spec_file(folder, data_root, sweep={"model.activation": ACTIVATIONS})
    out = folder / "sweep"
    code, stdout, stderr = finish(runner(str(spec), "--out", str(out), env={**cluster, "VISDOM_PORT": str(visdom.port)}))
    return out, code, stdout, stderr


def test_a_sweep_runs_on_both_nodes_and_every_point_reaches_the_dashboard(
        uninterrupted: tuple[Path, int, str, str], visdom: Server) -> None:
    out, code, stdout, stderr = uninterrupted
    assert code == 0, stderr
    rows = results(out)
    assert sorted(r["variant"] for r in rows) == sorted(f"activation={a}" for a in ACTIVATIONS)
    assert all(r["status"] == "finished" for r in rows)
    nodes = set()
    summaries = {}
    for row in rows:
        run_dir = out / row["name"]
        events = assert_whole(run_dir)
        nodes.add(events[0]["info"]["node"]["id"])
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["attempts"] == 1
        assert (run_dir / "model.pt").stat().st_size > 0 and (run_dir / "checkpoint.pt").is_file()
        summaries[row["variant"]] = summary
        # its own env: every step's loss taken in (the recent ones as they came, the past as a min/max
        # envelope within the window's bound), both evaluations
        env = windows(visdom.port, summary["visdom_env"])
        raw = env["train_loss"]["content"]["data"][0]
        losses = [e["loss"] for e in events if e["event"] == "train_loss"]
        assert len(raw["x"]) <= MAX_POINTS and raw["x"][-RECENT:] == list(range(1, EPOCHS * STEPS + 1))[-RECENT:]
        assert raw["y"][-RECENT:] == pytest.approx(losses[-RECENT:])
        assert (min(raw["y"]), max(raw["y"])) == pytest.approx((min(losses), max(losses)))
        assert env["test"]["content"]["data"][1]["y"] == [h["test_accuracy"] for h in summary["history"]]
    assert len(nodes) == 2, "the trials all ran on one node"
    # the comparison env: one trace per variant, every epoch
    comparison = windows(visdom.port, json.loads((out / "sweep.json").read_text())["env"])
    traces = {t["name"]: t for t in comparison["test_accuracy"]["content"]["data"]}
    assert set(traces) == set(summaries)
    for label, summary in summaries.items():
        assert traces[label]["x"] == list(range(1, EPOCHS + 1))
        assert traces[label]["y"] == [h["test_accuracy"] for h in summary["history"]]
    assert {t["name"] for t in comparison["train_loss"]["content"]["data"]} == set(summaries)
    # quiet: rich's lines and the table, none of Ray's or Tune's
    for noise in ("Trial status", "(pid=", "Traceback", "INFO", "WARNING", ".cc:", ".py:"):
        assert noise not in stdout + stderr
    assert "tiny results" in stdout


def test_an_asha_search_stops_trials_early_and_says_so(cluster: dict[str, str], data_root: Path,
                                                        tmp_path: Path) -> None:
    spec = spec_file(tmp_path, data_root, train={"epochs": 4, "device": "cpu", "log_every": 20, "samples": 8},
                     data={"root": str(data_root), "verify": False, "batch_size": 50, "test_batch_size": 100},
                     search={"space": {"optim.lr": {"loguniform": [0.0005, 0.5]}}, "samples": 8,
                             "scheduler": "asha", "grace_period": 1, "reduction_factor": 2})
    out = tmp_path / "search"
    code, _, stderr = finish(runner(str(spec), "--out", str(out), "--logger", "null", env=cluster))
    assert code == 0, stderr
    rows = results(out)
    assert len(rows) == 8
    early = [r for r in rows if r["status"] == "stopped early"]
    assert early and len(early) < 8
    for row in rows:
        summary = json.loads((out / row["name"] / "summary.json").read_text())
        evaluations = [e for e in journal(out / row["name"]) if e["event"] == "evaluation"]
        closed = journal(out / row["name"])[-1]
        assert closed["event"] == "close" and closed["summary"]["status"] == summary["status"]
        if row["status"] == "stopped early":
            assert summary["status"] == "stopped early" and len(evaluations) == summary["stopped_early"] < 4
        else:
            assert len(evaluations) == 4


def settled(run_dir: Path) -> list[dict[str, Any]]:
    """The journal once the driver has written all that a frozen trial sent: unchanged for a second."""
    before, now = None, (run_dir / "metrics.jsonl").read_bytes()
    while now != before:
        time.sleep(1)
        before, now = now, (run_dir / "metrics.jsonl").read_bytes()
    return [json.loads(line) for line in now.splitlines()]


def kill_past_a_checkpoint(process: subprocess.Popen, out: Path) -> tuple[Path, dict[str, Any]]:
    """SIGKILL a trial once its journal on the driver holds steps after its last checkpoint. Its process
    is frozen (SIGSTOP) while that is checked, so what is checked is what it leaves. Its run directory
    and the checkpoint its retry continues from."""
    import torch

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        for run_dir in sorted(out.glob("tiny-*")):
            if not (run_dir / "checkpoint.pt").is_file() or (run_dir / "summary.json").exists():
                continue
            with open(run_dir / "metrics.jsonl") as f:  # its start event: the trial's node and process
                pid = json.loads(f.readline())["info"]["node"]["pid"]
            os.kill(pid, signal.SIGSTOP)
            left = settled(run_dir)
            kept = torch.load(run_dir / "checkpoint.pt", weights_only=True)
            if steps_in(left)[-1] > kept["state"]["step"]:
                os.kill(pid, signal.SIGKILL)
                return run_dir, kept
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("no trial was seen with steps past its last checkpoint")


def test_a_killed_trial_resumes_from_its_checkpoint(cluster: dict[str, str], data_root: Path, tmp_path: Path,
                                                    uninterrupted: tuple[Path, int, str, str]) -> None:
    spec = spec_file(tmp_path, data_root, sweep={"model.activation": ACTIVATIONS[:2]})
    out = tmp_path / "sweep"
    process = runner(str(spec), "--out", str(out), "--logger", "null", env=cluster)
    try:
        run_dir, kept = kill_past_a_checkpoint(process, out)
        before = (run_dir / "metrics.jsonl").read_bytes()[:kept["journal_bytes"]]
    finally:
        code, stdout, stderr = finish(process)
    assert code == 0, stderr
    events = assert_whole(run_dir)  # the steps after the checkpoint were cut, then trained again
    assert (run_dir / "metrics.jsonl").read_bytes().startswith(before)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["attempts"] == 2
    # resumed exactly: the same numbers as the uninterrupted sweep's variant, step by step
    reference = uninterrupted[0] / run_dir.name
    assert [e["loss"] for e in events if e["event"] == "train_loss"] == \
        [e["loss"] for e in journal(reference) if e["event"] == "train_loss"]
    assert {r["name"]: r for r in results(out)}[run_dir.name] == {r["name"]: r for r in results(uninterrupted[0])}[
        run_dir.name]
    assert f"{run_dir.name}: its process died; retrying from its last checkpoint" in stdout + stderr
    assert "Traceback" not in stderr and "ActorDiedError" not in stderr


def test_ctrl_c_stops_the_sweep_and_resume_ends_with_the_same_table(
        cluster: dict[str, str], data_root: Path, tmp_path: Path, uninterrupted: tuple[Path, int, str, str]) -> None:
    spec = spec_file(tmp_path, data_root, sweep={"model.activation": ACTIVATIONS})
    out = tmp_path / "sweep"
    stdout, stderr = stopped_at_a_checkpoint(spec, out, cluster, signal.SIGINT)
    variants = json.loads((out / "sweep.json").read_text())["variants"]
    assert "not run" in {v["status"] for v in variants}  # trials Tune still started, and that ended at once,
    assert "Trial " not in stdout + stderr  # without a word from Tune
    stopped = [v["name"] for v in variants if v["status"] == "stopped"]
    assert stopped and all((out / name / "checkpoint.pt").is_file() for name in stopped)
    import torch

    kept = {}  # each stopped variant's journal up to its checkpoint: the resumed run goes on from there
    for name in stopped:
        upto = torch.load(out / name / "checkpoint.pt", weights_only=True)["journal_bytes"]
        kept[name] = (out / name / "metrics.jsonl").read_bytes()[:upto]
        assert upto > 0

    code, _, stderr = finish(runner("--resume", str(out), "--logger", "null", env=cluster))
    assert code == 0, stderr
    assert results(out) == results(uninterrupted[0])
    for row in results(out):
        assert_whole(out / row["name"])
    for name, prefix in kept.items():
        assert (out / name / "metrics.jsonl").read_bytes().startswith(prefix)


def test_a_stopped_ray_search_resumes_and_draws_the_rest(cluster: dict[str, str], data_root: Path,
                                                         tmp_path: Path) -> None:
    spec = spec_file(tmp_path, data_root, search={"space": {"optim.lr": {"loguniform": [0.01, 0.2]}}, "samples": 4})
    out = tmp_path / "search"
    stopped_at_a_checkpoint(spec, out, cluster, signal.SIGINT)
    before = {v["name"]: v for v in json.loads((out / "sweep.json").read_text())["variants"]}
    stopped = [name for name, v in before.items() if v["status"] == "stopped"]
    assert stopped and len(before) < 4  # some draws stopped part-way, some not made yet
    import torch

    kept = {name: (out / name / "metrics.jsonl").read_bytes()[
        :torch.load(out / name / "checkpoint.pt", weights_only=True)["journal_bytes"]] for name in stopped}

    code, _, stderr = finish(runner("--resume", str(out), "--logger", "null", env=cluster))
    assert code == 0, stderr
    after = {v["name"]: v for v in json.loads((out / "sweep.json").read_text())["variants"]}
    assert sorted(after) == ["tiny-001", "tiny-002", "tiny-003", "tiny-004"]  # each draw once, names unique
    assert {v["status"] for v in after.values()} == {"finished"}
    for name, v in before.items():
        assert after[name]["point"] == v["point"]  # the stopped draws went on, not new ones
    for name in after:
        assert_whole(out / name)
    for name, prefix in kept.items():
        assert (out / name / "metrics.jsonl").read_bytes().startswith(prefix)


def test_a_second_ctrl_c_quits_at_once_and_leaves_no_ray_behind(data_root: Path, tmp_path: Path) -> None:
    if not loopback_only():
        pytest.skip("Ray tests run only in a loopback-only network namespace: use `make test`")
    spec = spec_file(tmp_path, data_root, sweep={"model.activation": ACTIVATIONS[:2]})
    out, temp = tmp_path / "sweep", Path(tempfile.mkdtemp(prefix="t-"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    process = runner(str(spec), "--out", str(out), "--logger", "null", env={**env, "TMPDIR": str(temp)})
    try:
        wait_for_a_checkpoint(process, out)
        assert list(temp.glob("ray-*")), "Ray (started for the sweep) keeps its files under TMPDIR"
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        code, _, stderr = finish(process, timeout=30)
        assert code == 130, stderr
        time.sleep(2)  # Ray's processes end with the runner; none may write there afterwards
        assert not list(temp.glob("ray-*"))  # Ray's temp directory is gone
        assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and str(temp) in command_line(pid)]
        for run_dir in out.glob("tiny-*"):
            journal(run_dir)  # still whole lines
    finally:
        process.kill()
        stop_processes_under(temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_sigterm_stops_a_ray_sweep_like_ctrl_c(cluster: dict[str, str], data_root: Path, tmp_path: Path) -> None:
    spec = spec_file(tmp_path, data_root, sweep={"model.activation": ACTIVATIONS[:2]})
    out = tmp_path / "sweep"
    stopped_at_a_checkpoint(spec, out, cluster, signal.SIGTERM)
    assert {v["status"] for v in json.loads((out / "sweep.json").read_text())["variants"]} == {"stopped"}


def test_a_variant_whose_data_cannot_be_read_is_a_row_and_the_rest_go_on(
        cluster: dict[str, str], data_root: Path, tmp_path: Path) -> None:
    broken = make_tiny_mnist(tmp_path / "broken", train=100, test=20)
    (broken / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08")  # not even a magic number
    spec = spec_file(tmp_path, data_root, train={"epochs": 1, "device": "cpu", "log_every": 20, "samples": 8},
                     sweep={"data.root": [str(data_root), str(broken)]})
    out = tmp_path / "sweep"
    code, stdout, stderr = finish(runner(str(spec), "--out", str(out), "--logger", "null", env=cluster))
    assert code == 1, stderr  # some variants failed, as with the local executor
    rows = {r["variant"]: r for r in results(out)}
    good, bad = rows[f"root={data_root}"], rows[f"root={broken}"]
    assert good["status"] == "finished"
    assert_whole(out / good["name"], epochs=1)
    assert bad["status"] == "failed"
    assert bad["error"].startswith(f"{broken / 'MNIST' / 'raw' / 't10k-labels-idx1-ubyte'} is not an IDX labels file")
    assert "Traceback" not in stderr and "DataError" not in stdout + stderr
    local = run_cli(str(spec), "--out", str(tmp_path / "local"), "--logger", "null", "--no-report", env=cluster)
    assert local.returncode == 1, local.stderr
    assert {r["variant"]: r for r in results(tmp_path / "local")}[bad["variant"]] == bad  # the local executor's row


@pytest.mark.parametrize("sections, refused", [
    ({"train": {"epochs": 1, "device": "cpu", "gpus": 0.5}, "sweep": {"seed": [0, 1]}},
     "tiny-seed_0: train.cpus 1 and train.gpus 0.5 fit no node"),
    ({"train": {"epochs": 1, "device": "cpu"}, "search": {"space": {"train.cpus": {"randint": [1, 2]}}, "samples": 2}},
     "tiny (its search.space at most): train.cpus 2 and train.gpus 0 fit no node"),  # a draw would wait for ever
], ids=["sweep", "search"])
def test_variants_no_node_can_hold_are_refused(cluster: dict[str, str], data_root: Path, tmp_path: Path,
                                               sections: dict[str, Any], refused: str) -> None:
    spec = spec_file(tmp_path, data_root, **sections)
    code, _, stderr = finish(runner(str(spec), "--out", str(tmp_path / "sweep"), "--logger", "null", env=cluster),
                             timeout=120)
    assert code == 2, stderr
    assert f"{refused} of this Ray cluster (its nodes have at most 1 CPUs and 0 GPUs)" in stderr
    assert "Traceback" not in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "sweep").exists()
