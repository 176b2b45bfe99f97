"""The report's views of the insight events: from a journal written by the runner's own JsonlLogger
(events made by hand as runner.loggers.base describes them), and from a real run of the tiny data. A
journal without them reports as before."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dashboards import report
from dashboards.charts import MAX_POINTS
from dashboards.distributions import MAX_SNAPSHOTS, MAX_TENSORS
from helpers import run_cli, tiny_spec
from runner.loggers import JsonlLogger

CLASSES = ["T-shirt/top", "Trouser", "Sandal", "Sneaker", "<b>Bag</b>"]
MATRIX = [[8, 1, 0, 0, 1], [0, 10, 0, 0, 0], [0, 0, 6, 4, 0], [1, 0, 3, 5, 1], [0, 0, 0, 0, 0]]
SPEC = {"name": "insight", "optim": {"name": "sgd", "lr": 0.01}, "train": {"epochs": 2}}
SECTIONS = ("classes", "mistakes", "weights-and-gradients", "activations", "system")


def layers(scale: float, norm: float, tensors: int = 2) -> dict[str, Any]:
    weight = {"min": -scale, "max": scale, "counts": [5] * 20}
    grad = {"min": -scale / 100, "max": scale / 100, "counts": [1, 3, 8, 3, 1]}
    out: dict[str, Any] = {"0.weight": {"shape": [8, 4], "weight": weight, "grad": grad, "grad_norm": norm},
                           "0.bias": {"shape": [8], "weight": weight, "grad": None, "grad_norm": None}}
    for n in range(2, tensors):
        out[f"{n}.weight"] = {"shape": [4, 4], "weight": weight, "grad": grad, "grad_norm": norm}
    return out


def journal(run_dir: Path, insight: bool = True, layer_events: int = 10, tensors: int = 2) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(SPEC))
    with JsonlLogger(run_dir / "metrics.jsonl") as j:
        j.start({"name": "insight", "device": "cpu", "spec": SPEC,
                 "dataset": {"name": "fashion", "shape": [1, 2, 2], "classes": CLASSES}})
        for epoch in (1, 2):
            for n in range(layer_events):
                step = (epoch - 1) * layer_events + n + 1
                j.train_loss(epoch, [step], [1 / step])
                if insight:
                    j.layers(epoch, step, layers(scale=step, norm=1 / step, tensors=tensors))
                    j.system(epoch, step, {"cpu_percent": 40.0 + epoch, "rss_mb": 500.0 + step})
            j.evaluation(epoch, epoch * layer_events, 1 / epoch, 0.5 + epoch / 10)
            if insight:
                j.confusion(epoch, epoch * layer_events, MATRIX if epoch == 2 else [[1] * 5] * 5)
                j.mistakes(epoch, epoch * layer_events, [[[[0, 255], [255, 0]]]] * 3, [3, 0, 4], [2, 1, 3],
                           [0.97, 0.8, 0.61])
                j.activations(epoch, epoch * layer_events, {"1": {"kind": "ReLU", "mean": 0.3, "std": 0.5,
                                                                  "zeros": 0.25 * epoch}})
        j.close({"status": "finished", "test_accuracy": 0.7})
    return run_dir


def figures(text: str) -> dict[str, dict[str, Any]]:
    blob = re.search(r'<script type="application/json" id="figures">(.*?)</script>', text, re.S)
    assert blob is not None, "no figures in the page"
    return {f["id"]: f for f in json.loads(blob.group(1))}


def section(text: str, sid: str) -> str:
    found = re.search(f'<section id="{sid}">(.*?)</section>', text, re.S)
    assert found is not None, f"no {sid} section"
    return found.group(1)


def test_the_report_draws_every_insight_event(tmp_path: Path) -> None:
    text = report.build(journal(tmp_path / "run"))
    figs = figures(text)
    names = [html.escape(c) for c in CLASSES]

    (heat,) = figs["confusion"]["data"]
    assert heat["z"] == MATRIX and heat["x"] == heat["y"] == names  # the last epoch's
    assert heat["customdata"][3] == pytest.approx([0.1, 0, 0.3, 0.5, 0.1])
    assert "epoch 2" in figs["confusion"]["layout"]["title"]["text"]
    (bars,) = figs["per_class"]["data"]
    assert bars["y"][:4] == pytest.approx([0.8, 1.0, 0.6, 0.5]) and bars["y"][4] is None
    assert "29 of 40 right" in section(text, "classes")

    mistakes = section(text, "mistakes")
    assert mistakes.count("<figure>") == 3 and mistakes.count('src="data:image/png;base64,') == 3
    assert "Sneaker ✗ (Sandal) 0.97</figcaption>" in mistakes
    assert "&lt;b&gt;Bag&lt;/b&gt; ✗ (Sneaker) 0.61" in mistakes and "<b>Bag" not in text

    steps = list(range(1, 21))
    weights = figs["dist_0"]["data"]
    assert len(weights) == 18 and "0.weight" in figs["dist_0"]["layout"]["title"]["text"]
    top = next(t for t in weights if t["name"] == "weight 100%")
    assert top["x"] == steps and top["y"] == pytest.approx(steps)  # the histogram's max
    median = next(t for t in weights if t["name"] == "gradient median")
    assert median["yaxis"] == "y2" and median["y"] == pytest.approx([0.0] * 20, abs=1e-9)
    assert len(figs["dist_1"]["data"]) == 9  # 0.bias: no gradient
    norms = figs["grad_norm"]
    assert [t["name"] for t in norms["data"]] == ["0.weight", "0.bias"]
    assert norms["data"][0]["y"] == pytest.approx([1 / s for s in steps], rel=1e-4)
    assert norms["layout"]["yaxis"]["type"] == "log"

    (zeros,) = figs["activations_zeros"]["data"]
    assert (zeros["name"], zeros["x"], zeros["y"]) == ("1 (ReLU)", [1, 2], [0.25, 0.5])
    (cpu,) = figs["system_load"]["data"]
    assert cpu["name"] == "CPU %" and cpu["x"] == steps and cpu["y"][-1] == 42.0
    assert figs["system_memory"]["data"][0]["y"][-1] == 520.0
    for sid in SECTIONS:
        assert f'id="{sid}"' in text


def test_a_journal_without_insight_reports_as_before(tmp_path: Path) -> None:
    text = report.build(journal(tmp_path / "run", insight=False))
    assert set(figures(text)) == {"train_loss", "test_loss", "test_accuracy", "lr"}
    for sid in SECTIONS:
        assert f'<section id="{sid}">' not in text
    assert [h for h in re.findall(r"<h2>(.*?)</h2>", text)] == ["Charts", "Samples", "Per epoch", "Summary", "Spec"]


def test_many_tensors_and_a_long_run_stay_bounded(tmp_path: Path) -> None:
    events, tensors = 3 * MAX_SNAPSHOTS, MAX_TENSORS + 5
    text = report.build(journal(tmp_path / "run", layer_events=events, tensors=tensors))
    figs = figures(text)
    dists = sorted(fid for fid in figs if fid.startswith("dist_"))
    assert len(dists) == MAX_TENSORS
    assert f"{tensors - MAX_TENSORS} more tensors are not drawn" in section(text, "weights-and-gradients")
    for fid in dists:
        for trace in figs[fid]["data"]:
            assert len(trace["x"]) <= MAX_SNAPSHOTS and trace["x"][0] == 1 and trace["x"][-1] == 2 * events
    assert len(figs["grad_norm"]["data"]) == MAX_TENSORS
    assert all(len(t["x"]) <= MAX_POINTS for t in figs["grad_norm"]["data"])


def test_a_real_run_reports_what_it_saw(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist, insight={"every": 4, "system": 0.01})), "--logger", "null",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = (out / "report.html").read_text()
    figs = figures(text)
    (heat,) = figs["confusion"]["data"]
    assert sum(map(sum, heat["z"])) == 200 and heat["x"] == [str(c) for c in range(10)]  # the whole test set
    summary = json.loads((out / "summary.json").read_text())
    assert sum(heat["z"][i][i] for i in range(10)) / 200 == pytest.approx(summary["test_accuracy"])
    tensors = [t["name"] for t in figs["grad_norm"]["data"]]
    assert tensors[0] == "0.weight" and len([f for f in figs if f.startswith("dist_")]) == len(tensors)
    assert {"activations_zeros", "system_memory"} <= set(figs)
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text
    assert "No mistakes after epoch 2" in section(text, "mistakes")  # the tiny digits are learnt perfectly
