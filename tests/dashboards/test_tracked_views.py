"""A loop of one's own (runner.track) on the live dashboard, in `replay` and in its report: real tracked
runs against the real Visdom server, read back as a browser would get them."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from dashboard_helpers import wait_until, windows
from dashboards import report
from dashboards.charts import MAX_POINTS
from dashboards.visdom import server as servers
from helpers import run_cli
from runner import runs, track
from runner.loggers import NullLogger, replay

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


@pytest.fixture
def port(visdom_server: servers.Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Tracked runs find the test's server as a person's find theirs: through VISDOM_PORT."""
    monkeypatch.setenv("VISDOM_PORT", str(visdom_server.port))
    yield visdom_server.port


def env_of(run_dir: Path) -> str:
    return json.loads((run_dir / runs.SUMMARY).read_text())["visdom_env"]


def held_now(port: int, env: str) -> dict[str, Any]:
    """The env's windows, or none while the server has no such env yet."""
    try:
        return windows(port, env)
    except ValueError:  # Visdom answers an unknown env with an empty body
        return {}


def traces(window: dict[str, Any]) -> dict[str, tuple[list, list]]:
    return {t["name"]: (t["x"], t["y"]) for t in window["content"]["data"]}


def events(run_dir: Path) -> NullLogger:
    journal = NullLogger()
    replay(run_dir / runs.JOURNAL, journal)
    return journal


def autoencoder_like(run_dir: Path, steps: int = 300, logger: str = "visdom") -> None:
    """A loop as a person writes one: two losses every step, the KL every 10, the learning rate,
    reconstructions and a note now and then."""
    with track.run("ae", config={"lr": 1e-3, "width": 64}, out=run_dir, logger=logger) as run:
        for step in range(1, steps + 1):
            run.log({"train/loss": 1 / step, "train/rec": 2 / step, "lr": 1e-3}, step=step)
            if step % 10 == 0:
                run.log({"train/kl": step / 10}, step=step)
            if step % 100 == 0:
                run.images("reconstructions", torch.full((4, 1, 28, 28), step / steps), step=step)
                run.text("notes", f"step {step}: <b>fine</b> & <script>alert(1)</script>", step=step)


def test_names_with_a_slash_share_their_group_s_window_each_at_its_own_steps(tmp_path: Path, port: int) -> None:
    autoencoder_like(tmp_path / "run")
    held = windows(port, env_of(tmp_path / "run"))
    assert set(held) == {"run", "metric_train", "metric_lr", "media_reconstructions", "text_notes", "spec"}
    train = held["metric_train"]
    assert train["title"] == "train"
    lines = traces(train)
    assert list(lines) == ["loss", "rec", "kl"]  # legend: the part after the '/', in the order they came
    assert lines["loss"] == (list(range(1, 301)), pytest.approx([1 / s for s in range(1, 301)]))
    assert lines["rec"][1] == pytest.approx([2 / s for s in range(1, 301)])
    assert lines["kl"] == (list(range(10, 301, 10)), pytest.approx([s / 10 for s in range(10, 301, 10)]))
    assert train["content"]["layout"]["showlegend"] is True
    lr = held["metric_lr"]  # a name without '/' keeps its window as the runner's: no legend, the flat range
    assert lr["title"] == "learning rate" and list(traces(lr)) == ["learning rate"]
    assert lr["content"]["layout"]["showlegend"] is False
    assert lr["content"]["layout"]["yaxis"]["range"] == pytest.approx([0, 1.5e-3])


def test_a_window_that_gains_a_trace_is_sent_again_with_its_legend(tmp_path: Path, port: int) -> None:
    with track.run("grows", out=tmp_path / "run", every=1) as run:
        env = run._where()["visdom_env"]
        for step in range(1, 21):
            run.log({"train/loss": 1 / step}, step=step)
        wait_until(lambda: len((held_now(port, env).get("metric_train") or {}).get("content", {}).get("data", [])) == 1)
        for step in range(21, 41):  # the window on the server has one trace; a second name comes
            run.log({"train/loss": 1 / step, "train/kl": float(step)}, step=step)
        wait_until(lambda: len(windows(port, env)["metric_train"]["content"]["data"]) == 2)
        for step in range(41, 61):
            run.log({"train/loss": 1 / step, "train/kl": float(step)}, step=step)
    lines = traces(windows(port, env)["metric_train"])
    assert list(lines) == ["loss", "kl"]
    assert lines["loss"][0] == list(range(1, 61)) and lines["kl"][0] == list(range(21, 61))
    assert windows(port, env)["metric_train"]["content"]["layout"]["showlegend"] is True


def test_twenty_thousand_steps_stay_bounded_and_reach_the_last_step(tmp_path: Path, port: int) -> None:
    started = time.monotonic()
    with track.run("long", out=tmp_path / "run") as run:
        for step in range(1, 20_001):
            run.log({"train/loss": 1 / step, "train/kl": (step % 97) / 97, "train/rec": float(step % 2)}, step=step)
    loop = time.monotonic() - started
    held = windows(port, env_of(tmp_path / "run"))
    lines = traces(held["metric_train"])
    assert list(lines) == ["loss", "kl", "rec"]
    for xs, ys in lines.values():
        assert xs[0] == 1 and xs[-1] == 20_000 and len(xs) <= MAX_POINTS
        assert xs == sorted(xs)
    assert min(lines["rec"][1]) == 0 and max(lines["rec"][1]) == 1  # the envelope keeps the extremes
    assert max(lines["kl"][1]) == pytest.approx(96 / 97)
    logged = events(tmp_path / "run").named("metrics")
    assert len(logged) == 20_000 and [m["step"] for m in logged] == list(range(1, 20_001))
    assert [m["values"]["train/loss"] for m in logged] == [1 / s for s in range(1, 20_001)]
    pane = held["run"]["content"]
    assert "step 20,000" in pane and "finished" in pane
    print(f"20,000 steps x 3 scalars: loop {loop:.2f} s; points per trace "
          f"{[len(xs) for xs, _ in lines.values()]}, last steps {[xs[-1] for xs, _ in lines.values()]}")


def test_images_and_texts_get_a_window_per_name_with_the_latest(tmp_path: Path, port: int) -> None:
    autoencoder_like(tmp_path / "run")
    held = windows(port, env_of(tmp_path / "run"))
    images = held["media_reconstructions"]
    assert images["type"] == "image" and images["title"] == "reconstructions (step 300)"
    assert images["content"]["src"].startswith("data:image/png;base64,")
    notes = held["text_notes"]
    assert notes["type"] == "text" and notes["title"] == "notes (step 300)"
    content = notes["content"]
    assert "<script>" not in content and "<b>fine</b>" not in content
    assert "step 300: &lt;b&gt;fine&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;" in content


def test_the_run_pane_of_a_tracked_run_counts_steps_not_epochs(tmp_path: Path, port: int) -> None:
    autoencoder_like(tmp_path / "run")
    pane = windows(port, env_of(tmp_path / "run"))["run"]["content"]
    assert ">finished<" in pane and "step 300" in pane and "steps/s" in pane and "elapsed" in pane
    assert "logging cost" in pane and str(tmp_path / "run") in pane
    assert "epoch" not in pane and "ETA" not in pane and "samples/s" not in pane


def test_a_server_killed_mid_run_loses_nothing_of_the_journal(tmp_path: Path, port: int,
                                                               visdom_server: servers.Server,
                                                               capfd: pytest.CaptureFixture) -> None:
    started = time.monotonic()
    with track.run("outage", out=tmp_path / "run", every=1) as run:
        env = run._where()["visdom_env"]
        for step in range(1, 101):
            run.log({"train/loss": 1 / step}, step=step)
        wait_until(lambda: "metric_train" in held_now(port, env))
        visdom_server.stop()
        for step in range(101, 2001):
            run.log({"train/loss": 1 / step, "train/kl": float(step)}, step=step)
            if step % 500 == 0:
                run.images("reconstructions", torch.rand(2, 1, 8, 8), step=step)
                run.text("notes", "still going", step=step)
    assert time.monotonic() - started < 15
    summary = json.loads((tmp_path / "run" / runs.SUMMARY).read_text())
    assert summary["status"] == "finished" and summary["steps"] == 2000
    journal = events(tmp_path / "run")
    values = [(m["step"], m["values"]) for m in journal.named("metrics")]
    assert [s for s, _ in values] == list(range(1, 2001))
    assert [v["train/loss"] for _, v in values] == [1 / s for s in range(1, 2001)]
    assert len(journal.named("media")) == len(journal.named("text")) == 4
    captured = capfd.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "lost the server" in captured.out + captured.err


def test_replay_redraws_a_tracked_run(tmp_path: Path, port: int) -> None:
    autoencoder_like(tmp_path / "run", logger="null")  # made with no dashboard at all
    result = run_cli("replay", str(tmp_path / "run"), env={"VISDOM_PORT": str(port)})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    found = re.search(r"live dashboard at http://localhost:\d+/env/(\S+)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    held = windows(port, found.group(1))
    assert set(held) == {"run", "metric_train", "metric_lr", "media_reconstructions", "text_notes", "spec"}
    lines = traces(held["metric_train"])
    assert lines["loss"][0] == list(range(1, 301)) and lines["kl"][0] == list(range(10, 301, 10))
    assert held["media_reconstructions"]["title"] == "reconstructions (step 300)"
    pane = held["run"]["content"]
    assert ">finished<" in pane and "step 300" in pane and "epoch" not in pane


def figures_of(text: str) -> list[dict[str, Any]]:
    blob = re.search(r'<script type="application/json" id="figures">(.*?)</script>', text, re.S)
    assert blob is not None
    return json.loads(blob.group(1))


def test_the_report_of_a_tracked_run_has_a_chart_per_group_its_images_texts_and_config(tmp_path: Path) -> None:
    with track.run("ae", config={"lr": 1e-3, "name": "the config's own"}, out=tmp_path / "run", logger="null") as run:
        for step in range(1, 5001):
            run.log({"train/loss": 1 / step, "train/rec": float(step % 3), "lr": 1e-3}, step=step)
            if step % 10 == 0:
                run.log({"train/kl": step / 10}, step=step)
            if step % 2500 == 0:
                run.images("reconstructions", torch.rand(3, 3, 16, 16), step=step)
                run.text("notes", f"<i>step {step}</i>", step=step)
        run.log({"test/loss": 0.5}, step=5000)
        run.summary["best"] = 0.25
    text = report.write(tmp_path / "run").read_text()
    charts = {f["layout"]["title"]["text"]: f for f in figures_of(text)}
    assert list(charts) == ["train", "learning rate", "test"]  # in the order the names came, as live
    train = {d["name"]: d for d in charts["train"]["data"]}
    assert list(train) == ["loss", "rec", "kl"]
    for line in train.values():
        assert line["x"][-1] == 5000 and len(line["x"]) <= MAX_POINTS + 1  # drawn to the last step
    assert train["kl"]["x"] == list(range(10, 5001, 10))  # short enough to be drawn point for point
    assert min(train["rec"]["y"]) == 0 and max(train["rec"]["y"]) == 2  # the envelope keeps the extremes
    assert charts["learning rate"]["data"][0]["x"][-1] == 5000
    assert "<h1>ae <span" in text  # named as track.run named it, not after the config's "name"
    for section in ("Charts", "Images", "Texts", "Summary", "Config"):
        assert f"<h2>{section}</h2>" in text
    assert "<h2>Per epoch</h2>" not in text and "<h2>Samples</h2>" not in text
    assert text.count('alt="reconstructions ') == 3 and "step 5000, the last of 2 logged" in text
    assert "&lt;i&gt;step 5000&lt;/i&gt;" in text and "<i>step" not in text
    assert "&quot;the config&#x27;s own&quot;" in text  # the config, as spec.json holds it
    csv = re.search(r'href="data:text/csv;charset=utf-8,([^"]*)"', text)
    assert csv is not None
    from urllib.parse import unquote

    rows = unquote(csv.group(1)).splitlines()
    assert rows[0] == "step,train/loss,train/rec,lr,train/kl,test/loss" and len(rows) == 1 + 5000
    assert rows[-1] == f"5000,{1 / 5000!r},{float(5000 % 3)!r},0.001,500.0,0.5"
    assert "best" in text and "last values" in text
