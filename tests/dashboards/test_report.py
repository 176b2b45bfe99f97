"""Reports built from run and sweep directories: what they hold, how they read old and new journals,
the command line, and the report every run writes at its end. The browser's view is in
test_report_browser.py."""

from __future__ import annotations

import io
import json
import math
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from dashboards import report
from dashboards.report import page as report_page
from dashboards.report.figures import MAX_POINTS, envelope, stride
from helpers import ROOT, run_cli, tiny_spec

SPEC = {"name": "handmade", "description": "made by hand", "optim": {"name": "sgd", "lr": 0.05},
        "train": {"epochs": 3}}


def write_run(run_dir: Path, events: list[dict[str, Any]], spec: dict[str, Any] | None = None,
              summary: dict[str, Any] | None = None) -> Path:
    """A run directory as the runner leaves it, with the journal lines given."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(spec or SPEC))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({**e, "t": 0.0}) + "\n" for e in events))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def steps(epoch: int, first: int, losses: list[float]) -> list[dict[str, Any]]:
    return [{"event": "train_loss", "epoch": epoch, "step": first + i, "loss": v} for i, v in enumerate(losses)]


def figures(text: str) -> list[dict[str, Any]]:
    blob = re.search(r'<script type="application/json" id="figures">(.*?)</script>', text, re.S)
    assert blob is not None, "no figures in the page"
    return json.loads(blob.group(1))


def start(**info: Any) -> dict[str, Any]:
    return {"event": "start", "info": {"name": "handmade", "spec": SPEC, "device": "cpu", **info}}


# ----- pieces --------------------------------------------------------------------------------------

def test_envelope_bounds_points_and_keeps_extremes() -> None:
    xs = list(range(100_000))
    ys: list[float | None] = [math.sin(x / 500) for x in xs]
    ys[12_345], ys[54_321] = 50.0, -50.0  # one-step spikes
    ys[70_000] = None
    out_x, out_y = envelope(xs, ys, limit=2000)
    assert len(out_x) == len(out_y) <= 2000 + 2000 // 2  # two per bucket, plus a marker per gap
    assert 50.0 in out_y and -50.0 in out_y
    assert None in out_y  # the gap stays a gap
    assert out_x == sorted(out_x) and out_x[-1] >= 99_000
    assert envelope([1, 2, 3], [1.0, 2.0, 3.0]) == ([1, 2, 3], [1.0, 2.0, 3.0])  # short: untouched


def test_stride_keeps_the_last_point() -> None:
    keep = stride(list(range(10_001)), 1000)
    assert len(keep) <= 1000 and keep[0] == 0 and keep[-1] == 10_000


def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, colour type, raw filtered rows) of a PNG with one IDAT chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    start = data.index(b"IDAT") + 4
    size = int.from_bytes(data[start - 8:start - 4], "big")
    return width, height, data[25], zlib.decompress(data[start:start + size])


def test_png_of_grey_and_colour_samples() -> None:
    grey = [[0, 255, 10], [20, 30, 300]]  # [H][W], the journal format before channels; 300 clamps
    width, height, kind, raw = decode_png(report_page.png(grey)[0])
    assert (width, height, kind) == (3, 2, 0)
    assert raw == bytes([0, 0, 255, 10, 0, 20, 30, 255])
    assert decode_png(report_page.png([grey])[0])[3] == raw  # [1][H][W] is the same picture
    colour = [[[255, 0]], [[0, 128]], [[0, 7]]]  # [3][1][2]: a red pixel, then (0, 128, 7)
    width, height, kind, raw = decode_png(report_page.png(colour)[0])
    assert (width, height, kind) == (2, 1, 2)
    assert raw == bytes([0, 255, 0, 0, 0, 128, 7])
    with pytest.raises(ValueError):
        report_page.png([[[1]], [[2]]])  # two channels


# ----- run reports ---------------------------------------------------------------------------------

def finished_events() -> list[dict[str, Any]]:
    return [start(), {"event": "images", "pixels": [[[0] * 4] * 4] * 2},
            *steps(1, 1, [2.0, 1.5]), {"event": "evaluation", "epoch": 1, "step": 2, "test_loss": 1.25,
                                       "test_accuracy": 0.5},
            {"event": "predictions", "epoch": 1, "predicted": [3, 4], "truth": [3, 5]},
            *steps(2, 3, [1.0, 0.75]), {"event": "evaluation", "epoch": 2, "step": 4, "test_loss": 0.8125,
                                        "test_accuracy": 0.75},
            {"event": "predictions", "epoch": 2, "predicted": [3, 5], "truth": [3, 5]}]


def test_a_run_report_holds_every_part(tmp_path: Path) -> None:
    summary = {"name": "handmade", "test_accuracy": 0.75, "test_loss": 0.8125, "status": "finished",
               "logging": {"visdom": "delivered"}, "history": [{"epoch": 1, "test_loss": 1.25}]}
    run = write_run(tmp_path / "run", [*finished_events(), {"event": "close", "summary": summary}], summary=summary)
    text = report.build(run)
    ids = [f["id"] for f in figures(text)]
    assert ids == ["train_loss", "test_loss", "test_accuracy", "lr"]  # lr: constant, from the spec
    loss = figures(text)[0]["data"]
    assert loss[0]["y"] == [2.0, 1.5, 1.0, 0.75] and "smoothed" in loss[1]["name"]
    assert text.count("<figure>") == 2 and "true:" not in text  # the last epoch's predictions, both right
    assert "0.8125" in text and "1.25" in text  # the per-epoch table, exact
    assert "delivered" in text and "history" in text  # whatever the summary holds
    assert "data:text/csv" in text and "epoch%2Cstep%2Closs" in text  # every step, for download
    assert "finished" in text and "made by hand" in text
    assert "http://" not in text.split("<script>")[0] and "src=\"http" not in text


def test_new_journal_format_channels_and_classes(tmp_path: Path) -> None:
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "<Boot>"]
    colour = [[[[200] * 3] * 3, [[10] * 3] * 3, [[90] * 3] * 3]]  # one [3][3][3] image
    events = [start(dataset={"name": "fashion-mnist", "shape": [3, 3, 3], "classes": classes}),
              {"event": "images", "pixels": colour}, *steps(1, 1, [2.0, 1.0]),
              {"event": "evaluation", "epoch": 1, "step": 2, "test_loss": 1.0, "test_accuracy": 0.5},
              {"event": "predictions", "epoch": 1, "predicted": [9], "truth": [0]},
              {"event": "close", "summary": None}]
    text = report.build(write_run(tmp_path / "run", events))
    assert "&lt;Boot&gt;" in text and "true: T-shirt/top" in text  # class names, escaped
    assert "fashion-mnist" in text
    data = re.search(r'src="data:image/png;base64,([^"]+)"', text)
    assert data is not None
    import base64

    assert decode_png(base64.b64decode(data.group(1)))[2] == 2  # colour


@pytest.mark.parametrize("ending, status", [("close", "stopped"), ("nan", "diverged"), ("none", "unfinished")])
def test_runs_that_did_not_finish(tmp_path: Path, ending: str, status: str) -> None:
    events = [start(), *steps(1, 1, [2.0, 1.0])]
    if ending == "nan":
        events += [*steps(1, 3, [float("nan")]), {"event": "close", "summary": None}]
    elif ending == "close":
        events.append({"event": "close", "summary": None})
    run = write_run(tmp_path / "run", events)
    text = report.build(run)
    assert f'class="status problem">{status}<' in text
    assert "No summary" in text
    if status == "stopped":
        assert f"--resume {run}" in text


def test_metrics_events_are_drawn_and_tabled(tmp_path: Path) -> None:
    events = [start(), *steps(1, 1, [2.0, 1.0]),
              {"event": "metrics", "epoch": 1, "step": 2, "values": {"lr": 0.01, "momentum": 0.9}},
              *steps(1, 3, [0.5]), {"event": "metrics", "epoch": 1, "step": 3, "values": {"lr": 0.005}},
              {"event": "evaluation", "epoch": 1, "step": 3, "test_loss": 1.0, "test_accuracy": 0.5}]
    text = report.build(write_run(tmp_path / "run", events))
    charts = {f["layout"]["title"]["text"]: f for f in figures(text)}
    assert {"learning rate", "momentum"} <= set(charts) and not any("constant" in t for t in charts)
    assert charts["learning rate"]["data"][0]["x"] == [2, 3] and charts["learning rate"]["data"][0]["y"] == [0.01, 0.005]
    assert "<th>lr</th>" in text and "<td>0.005</td>" in text  # the per-epoch table: lr at the epoch's end


def test_a_damaged_journal_shows_what_came_before(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [start(), *steps(1, 1, [2.0, 1.0])])
    with open(run / "metrics.jsonl", "a") as f:
        f.write("not json\n" + json.dumps({"event": "train_loss", "epoch": 1, "step": 3, "loss": 0.5}) + "\n")
    text = report.build(run)
    assert "line 4" in text and figures(text)[0]["data"][0]["y"] == [2.0, 1.0]


def test_text_from_the_run_is_escaped(tmp_path: Path) -> None:
    markup = "<script>alert(1)</script><b>x</b>"
    run = write_run(tmp_path / "run", [start(), *steps(1, 1, [1.0])], spec={**SPEC, "description": markup})
    text = report.build(run)
    assert markup not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in text
    assert text.count("<script>") == 2  # plotly and the page's own; the figures are JSON, not a script


def test_long_runs_are_downsampled_on_the_chart_only(tmp_path: Path) -> None:
    n = 30_000
    losses = [1 / (1 + i / 100) + (0.5 if i == 17_000 else 0) for i in range(n)]
    run = write_run(tmp_path / "run", [start(), *steps(1, 1, losses),
                                       {"event": "evaluation", "epoch": 1, "step": n, "test_loss": 0.1,
                                        "test_accuracy": 0.9}])
    text = report.build(run)
    for figure in figures(text):
        for trace in figure["data"]:
            assert len(trace["x"]) <= MAX_POINTS
    raw = figures(text)[0]["data"][0]["y"]
    assert any(v is not None and abs(v - losses[17_000]) < 1e-4 for v in raw)  # the spike survives
    assert f"{n:,} rows" in text  # the CSV keeps every step


# ----- sweeps ----------------------------------------------------------------------------------------

def test_a_sweep_report_overlays_seeds_as_a_band(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    variants = []
    for activation in ("relu", "selu"):
        for seed in (0, 1):
            name = f"s-activation_{activation}-seed_{seed}"
            spec = {"name": name, "seed": seed, "model": {"activation": activation}}
            shift = seed / 10 + (activation == "selu")
            summary = {"test_accuracy": 0.9 - shift / 10, "best_test_accuracy": 0.9, "test_loss": 0.3 + shift,
                       "train_seconds": 1.0}
            write_run(sweep / name, [
                {"event": "start", "info": {"name": name, "spec": spec}}, *steps(1, 1, [2.0 + shift, 1.0 + shift]),
                {"event": "evaluation", "epoch": 1, "step": 2, "test_loss": 0.3 + shift,
                 "test_accuracy": summary["test_accuracy"]},
                {"event": "metrics", "epoch": 1, "step": 2, "values": {"lr": 0.01 * (1 + seed)}}], spec=spec,
                summary=summary)
            flat = {"name": name, "seed": seed, "model.activation": activation}
            variants.append({"name": name, "base": "s", "label": f"activation={activation}", "source": "s.json",
                             "status": "ok", "error": "", "run_dir": name, "flat": flat})
    (sweep / "sweep.json").write_text(json.dumps({"name": "s", "env": "s", "variants": variants}))
    text = report.build(sweep)
    charts = {f["id"]: f for f in figures(text)}
    assert set(charts) == {"train_loss", "test_accuracy", "test_loss", "metric_0", "parallel", "importance"}
    lr_band = next(t for t in charts["metric_0"]["data"] if t["name"] == "activation=relu max")
    assert lr_band["y"] == [pytest.approx(0.02)]
    names = [t["name"] for t in charts["test_loss"]["data"]]
    assert "activation=relu (mean of 2 seeds)" in names and "activation=relu max" in names
    band = next(t for t in charts["test_loss"]["data"] if t["name"] == "activation=selu max")
    assert band["fill"] == "tonexty" and band["y"] == [pytest.approx(1.4)]
    assert 'class="sortable"' in text and text.count("<tr>") >= 5
    assert "model.activation" in text  # the varied key


def test_a_folder_of_run_directories_is_compared_too(tmp_path: Path) -> None:
    for name, loss in (("a", 0.5), ("b", 0.25)):
        write_run(tmp_path / "runs" / name, [start(), *steps(1, 1, [1.0, loss]),
                                             {"event": "evaluation", "epoch": 1, "step": 2, "test_loss": loss,
                                              "test_accuracy": 1 - loss}],
                  spec={**SPEC, "name": name}, summary={"test_accuracy": 1 - loss, "best_test_accuracy": 1 - loss,
                                                       "test_loss": loss, "train_seconds": 1.0})
    text = report.build(tmp_path / "runs")
    assert {f["id"] for f in figures(text)} == {"train_loss", "test_accuracy", "test_loss"}
    assert 'data-v="0.25"' in text and 'data-v="0.5"' in text  # sort keys: the exact values


def test_the_report_module_imports_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", "import sys, dashboards.report; "
                           "print(sorted(m for m in ('torch', 'visdom', 'numpy') if m in sys.modules))"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ----- command line and the end of a run -------------------------------------------------------------

def test_report_of_something_else_is_one_paragraph(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "missing", Path(__file__)):
        done = run_cli("report", str(path))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr
    assert list((tmp_path / "empty").iterdir()) == []


def test_report_command_writes_where_asked(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", finished_events())
    done = run_cli("report", str(run), "-o", str(tmp_path / "out" / "r.html"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report: {tmp_path / 'out' / 'r.html'}"
    assert (tmp_path / "out" / "r.html").read_text().startswith("<!DOCTYPE html>")


def test_every_run_writes_its_report_unless_told_not_to(tiny_mnist: Path, tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1})
    done = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert f"report: {tmp_path / 'a' / 'report.html'}" in done.stdout
    assert (tmp_path / "a" / "report.html").stat().st_size > 1_000_000  # plotly.js inside
    done = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "b"), "--no-report")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "b" / "report.html").exists() and "report:" not in done.stdout


def test_stopped_resumed_and_diverged_runs_get_reports(tiny_mnist: Path, tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 40, "log_every": 1})  # long enough to be stopped
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "runner", str(spec), "--logger", "null", "--out", str(out)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().count('"train_loss"') > 30):
        assert time.monotonic() < deadline and process.poll() is None, "the run did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"report: {out / 'report.html'}" in stdout
    assert 'class="status problem">stopped<' in (out / "report.html").read_text()

    resumed = run_cli("--resume", str(out), "--logger", "null")
    assert resumed.returncode == 0, resumed.stderr
    assert f"report: {out / 'report.html'}" in resumed.stdout
    assert 'class="status">finished<' in (out / "report.html").read_text()

    diverged = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "null", "--set", "optim.lr=1e6",
                       "--out", str(tmp_path / "diverged"))
    assert diverged.returncode == 3, diverged.stderr
    assert 'class="status problem">diverged<' in (tmp_path / "diverged" / "report.html").read_text()


def test_a_report_that_cannot_be_written_is_a_warning(tiny_mnist: Path, tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1})
    # No plotly.js: an empty cache and a registry that refuses connections.
    env = {"RUNNER_CACHE": str(tmp_path / "cache"), "npm_config_registry": "http://127.0.0.1:9"}
    done = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "run"), env=env)
    assert done.returncode == 0, done.stderr
    assert "warning: no report written" in done.stderr and "runner report" in done.stderr
    assert (tmp_path / "run" / "summary.json").is_file() and not (tmp_path / "run" / "report.html").exists()


def test_write_or_warn_never_raises(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert report.write_or_warn(tmp_path / "nothing", out, err) is None
    assert out.getvalue() == "" and err.getvalue().startswith("warning: no report written")


MANY_NAMES = 20_000  # twice what a run records now (runner.track.MAX_NAMES): a journal by hand or an older version


def test_a_tracked_journal_of_many_names_is_reported_bounded(tmp_path: Path) -> None:
    from urllib.parse import unquote

    from dashboards.report.run import MAX_CHARTED
    from runner.track import MAX_NAMES

    names = [f"m{i}" for i in range(1, MANY_NAMES + 1)]
    events = [{"event": "start", "info": {"name": "many", "tracked": True}},
              *({"event": "metrics", "epoch": 0, "step": i, "values": {name: float(i)}} for i, name in enumerate(names, 1)),
              {"event": "close", "summary": {"status": "finished", "tracked": True}}]
    summary = {"name": "many", "tracked": True, "status": "finished", "last": {n: 1.0 for n in names}}
    text = report.build(write_run(tmp_path / "run", events, spec={}, summary=summary))
    assert len(text) < len(report_page.plotly_js()) + 3_000_000
    drawn = [trace["name"] for f in figures(text) for trace in f["data"]]
    assert drawn == names[:MAX_CHARTED]
    assert f"the first {MAX_CHARTED:,} of {MAX_NAMES:,} names" in text
    assert f"{MANY_NAMES - MAX_NAMES:,} values of names after the first {MAX_NAMES:,}" in text  # named as left out
    csv = re.search(r'href="data:text/csv;charset=utf-8,([^"]*)"', text)
    assert csv is not None
    rows = unquote(csv.group(1)).splitlines()
    assert rows[0] == "step,name,value" and len(rows) == 1 + MAX_NAMES  # every name kept, one row a value
    assert rows[1] == "1,m1,1.0" and rows[-1] == f"{MAX_NAMES},m{MAX_NAMES},{float(MAX_NAMES)!r}"


def test_a_metric_name_of_markup_is_escaped_in_every_chart_it_titles() -> None:
    """A journal's metric names are any text (a copied or hand-written journal): plotly reads markup in
    titles, axis titles and legends, so each is escaped, for a name of its own and in a group."""
    from dashboards.report.figures import scalar_figures

    name = '<img src=x onerror="alert(1)">'
    figures = scalar_figures({name: ([1, 2], [0.5, 0.25]), f"train/{name}": ([1, 2], [1.0, 0.5])})
    texts = [t for f in figures for t in (f["layout"]["title"]["text"], f["layout"]["yaxis"]["title"]["text"],
                                          f["layout"]["xaxis"]["title"]["text"], *(d["name"] for d in f["data"]))]
    assert len(figures) == 2 and not any("<img" in t for t in texts), texts
    assert any("&lt;img" in t for t in texts)
