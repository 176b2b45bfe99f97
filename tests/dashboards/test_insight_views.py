"""The insight windows of a run's env against the real Visdom server: the confusion heatmap, the
accuracy per class, the mistakes and their captions, the weights' and gradients' distributions, the
gradient norms, the activations and the system load; and two fixes of the older windows (a constant
learning rate drawn against zero with its own name, the spec pane opening with the spec).

Events are made by hand as runner.loggers.base describes them; what the server holds is read back with
Visdom's own client, so every assertion is about what a browser would draw. The percentile math is
checked on its own first.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import Any

import pytest

from dashboard_helpers import windows
from dashboards.distributions import MAX_SNAPSHOTS, PERCENTILES, percentiles, thin
from dashboards import tensorboard
from dashboards.visdom import server as servers
from dashboards.visdom.logger import VisdomLogger
from helpers import run_cli, tiny_spec

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

CLASSES = ["T-shirt/top", "Trouser", "Sandal", "Sneaker", "<b>Bag</b>"]
MATRIX = [[8, 1, 0, 0, 1], [0, 10, 0, 0, 0], [0, 0, 6, 4, 0], [1, 0, 3, 5, 1], [0, 0, 0, 0, 0]]
SPEC = {"name": "insight", "optim": {"name": "sgd", "lr": 0.01}, "train": {"epochs": 2}}
INFO = {"name": "insight", "device": "cpu", "dataset": {"name": "fashion", "shape": [1, 28, 28], "classes": CLASSES},
        "spec": SPEC, "run_dir": "/tmp/runs/insight"}
UNIFORM = {"min": -1.0, "max": 1.0, "counts": [5] * 20}  # percentile p sits at -1 + 2p/100


def layers(scale: float, norm: float) -> dict[str, Any]:
    weight = {"min": -scale, "max": scale, "counts": [5] * 20}
    grad = {"min": -scale / 100, "max": scale / 100, "counts": [1, 3, 8, 3, 1]}
    return {"0.weight": {"shape": [8, 4], "weight": weight, "grad": grad, "grad_norm": norm},
            "0.bias": {"shape": [8], "weight": weight, "grad": None, "grad_norm": None}}


def digits(n: int) -> list[list[list[list[int]]]]:
    return [[[[(k * 37 + r * c) % 256 for c in range(28)] for r in range(28)]] for k in range(n)]


# ----- the math ----------------------------------------------------------------------------------

def test_percentiles_are_read_off_the_counts() -> None:
    assert percentiles(UNIFORM) == pytest.approx([-1 + 2 * p / 100 for p in PERCENTILES])
    # all in the middle bin of three: the bands lie inside it, min and max at its edges
    assert percentiles({"min": 0.0, "max": 3.0, "counts": [0, 4, 0]}) == pytest.approx(
        [1 + p / 100 for p in PERCENTILES])
    assert percentiles({"min": 2.0, "max": 2.0, "counts": [7]}) == [2.0] * 9  # a constant tensor
    for nothing in (None, {"min": 0, "max": 1, "counts": []}, {"min": 0, "max": 1, "counts": [0, 0]},
                    {"min": "x", "max": 1, "counts": [1]}, {"counts": [1]}):
        assert percentiles(nothing) is None


def test_thinning_keeps_a_bounded_list_with_its_first_and_last() -> None:
    kept: list[int] = []
    for step in range(10_000):
        kept = thin(kept + [step], MAX_SNAPSHOTS)
        assert len(kept) <= MAX_SNAPSHOTS
    assert kept[0] == 0 and kept[-1] == 9_999 and kept == sorted(kept)
    assert len(kept) > MAX_SNAPSHOTS // 2


# ----- the live dashboard ------------------------------------------------------------------------

def feed(logger: VisdomLogger) -> None:
    logger.start(INFO)
    for epoch in (1, 2):
        for step in range(epoch * 100 - 99, epoch * 100 + 1, 10):
            logger.train_loss(epoch, [step], [1 / step])
            logger.metrics(epoch, step, {"lr": 0.01})
            logger.layers(epoch, step, layers(scale=step / 100, norm=1 / step))
            logger.system(epoch, step, {"cpu_percent": 40.0 + epoch, "rss_mb": 500.0 + step})
        logger.evaluation(epoch, epoch * 100, 1 / epoch, 0.5 + epoch / 10)
        logger.confusion(epoch, epoch * 100, MATRIX)
        logger.mistakes(epoch, epoch * 100, digits(3), [3, 0, 4], [2, 1, 3], [0.97, 0.8, 0.61])
        logger.activations(epoch, epoch * 100, {"1": {"kind": "ReLU", "mean": 0.3, "std": 0.5 * epoch,
                                                      "zeros": 0.25 * epoch}})


def data(window: dict[str, Any]) -> list[dict[str, Any]]:
    return window["content"]["data"]


def test_the_insight_windows_hold_what_was_sent(visdom_server: servers.Server) -> None:
    out = io.StringIO()
    with VisdomLogger("insight", "http://localhost", visdom_server.port, flush_interval=0.05, out=out) as logger:
        feed(logger)
        logger.close({"status": "finished"})
    assert out.getvalue().splitlines()[-1].startswith("visdom: ") and "not delivered" not in out.getvalue()
    held = windows(visdom_server.port, "insight")
    names = [html.escape(c) for c in CLASSES]

    (heat,) = data(held["confusion"])
    assert heat["type"] == "heatmap" and heat["z"] == MATRIX and heat["x"] == heat["y"] == names
    assert heat["customdata"][2] == pytest.approx([0, 0, 0.6, 0.4, 0])  # the share of the true class
    assert heat["customdata"][4] == [0] * 5  # a class the test set lacks: no division by zero
    assert held["confusion"]["content"]["layout"]["yaxis"]["autorange"] == "reversed"  # the first class on top
    (bars,) = data(held["per_class"])
    assert bars["x"] == names and bars["y"][:4] == pytest.approx([0.8, 1.0, 0.6, 0.5]) and bars["y"][4] is None

    assert held["mistakes"]["type"] == "image"
    captions = held["mistake_captions"]["content"]
    assert "Sneaker ✗ (Sandal) 0.97</td>" in captions and "T-shirt/top ✗ (Trouser) 0.80" in captions
    assert "&lt;b&gt;Bag&lt;/b&gt; ✗ (Sneaker) 0.61" in captions and "<b>Bag" not in captions
    assert set(re.findall(r"<\s*/?\s*([A-Za-z]+)", captions)) <= {"b", "table", "tr", "td"}

    weights = data(held["dist_0.weight"])
    assert len(weights) == 18  # per kind: four bands of two edges, and the median
    steps = list(range(1, 201, 10))
    median = next(t for t in weights if t["name"] == "weight median")
    assert median["x"] == steps and median["y"] == pytest.approx([0.0] * len(steps), abs=1e-9)
    top = next(t for t in weights if t["name"] == "weight 100%")
    assert top["y"] == pytest.approx([s / 100 for s in steps]) and top["fill"] == "tonexty"
    grad_median = next(t for t in weights if t["name"] == "gradient median")
    assert grad_median["yaxis"] == "y2" and grad_median["y"] == pytest.approx([0.0] * len(steps), abs=1e-9)
    assert len(data(held["dist_0.bias"])) == 9  # no gradient ever: the weights alone

    norms = data(held["grad_norm"])
    assert [t["name"] for t in norms] == ["0.weight", "0.bias"]
    assert norms[0]["x"] == steps and norms[0]["y"] == pytest.approx([1 / s for s in steps])
    assert norms[1]["y"] == [None] * len(steps)
    assert held["grad_norm"]["content"]["layout"]["yaxis"]["type"] == "log"

    (zeros,) = data(held["activations_zeros"])
    assert (zeros["name"], zeros["x"], zeros["y"]) == ("1 (ReLU)", [1, 2], [0.25, 0.5])
    assert held["activations_zeros"]["content"]["layout"]["yaxis"]["tickformat"] == ".0%"
    (cpu,) = data(held["system"])
    assert cpu["name"] == "CPU %" and cpu["y"][-1] == 42.0 and cpu["x"] == steps
    assert data(held["system_memory"])[0]["y"][-1] == 691.0
    assert "CPU 42%, RSS 691 MB" in held["run"]["content"]


def test_a_constant_learning_rate_reads_right_and_the_spec_comes_first(visdom_server: servers.Server) -> None:
    with VisdomLogger("fixes", "http://localhost", visdom_server.port, flush_interval=0.05,
                      out=io.StringIO()) as logger:
        logger.start(INFO)
        for step in range(1, 30):
            logger.metrics(1, step, {"lr": 0.01})
        logger.close({"status": "finished"})
    held = windows(visdom_server.port, "fixes")
    (lr,) = data(held["metric_lr"])
    layout = held["metric_lr"]["content"]["layout"]
    low, high = layout["yaxis"]["range"]
    assert low <= 0 and 0.01 < high <= 0.02  # against zero, the value well inside the axis
    assert lr["name"] == "learning rate" and layout["showlegend"] is False
    spec = html.unescape(held["spec"]["content"])
    assert spec.startswith('<b>spec</b><pre>{\n  "name": "insight",\n  "optim"')
    assert spec.index('"lr": 0.01') < spec.index('"device": "cpu"') < spec.index("Sandal")


def test_a_long_run_keeps_the_distributions_bounded(visdom_server: servers.Server) -> None:
    events = 5 * MAX_SNAPSHOTS
    with VisdomLogger("long_layers", "http://localhost", visdom_server.port, flush_interval=0.05,
                      out=io.StringIO()) as logger:
        for n in range(1, events + 1):
            logger.layers(1, n * 10, layers(scale=1.0, norm=float(n)))
        logger.close({"status": "finished"})
    held = windows(visdom_server.port, "long_layers")
    for trace in data(held["dist_0.weight"]):
        assert len(trace["x"]) <= MAX_SNAPSHOTS and trace["x"][0] == 10 and trace["x"][-1] == events * 10
    norm = data(held["grad_norm"])[0]
    assert norm["x"][-1] == events * 10 and len(norm["x"]) == events  # a Plot: each point while it fits


def test_a_real_run_replayed_fills_the_insight_windows(tmp_path: Path, tiny_mnist: Path,
                                                      visdom_server: servers.Server) -> None:
    out = tmp_path / "run"
    spec = tiny_spec(tmp_path, tiny_mnist, insight={"every": 4, "system": 0.01})
    run = run_cli(str(spec), "--logger", "null", "--out", str(out))
    assert run.returncode == 0, run.stderr
    replayed = run_cli("replay", str(out), env={"VISDOM_PORT": str(visdom_server.port)})
    assert replayed.returncode == 0, replayed.stderr
    held = windows(visdom_server.port, "tiny_run")
    (heat,) = data(held["confusion"])
    assert sum(map(sum, heat["z"])) == 200 and heat["x"] == [str(c) for c in range(10)]  # the whole test set
    norms = data(held["grad_norm"])
    assert norms[0]["name"] == "0.weight" and norms[0]["x"] == list(range(4, 25, 4))
    assert {f"dist_{t['name']}" for t in norms} <= held.keys()
    assert len(data(held["dist_0.weight"])) == 18
    assert "CPU " in held["run"]["content"] and data(held["system_memory"])[0]["y"][-1] > 0
    assert "no mistakes" in held["mistakes"]["content"]  # the tiny digits are learnt perfectly


def test_tensorboard_shows_the_insight_events(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tensorboard.TensorBoardLogger(tmp_path) as logger:
        feed(logger)
        logger.close({"status": "finished"})
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    events.Reload()
    steps = list(range(1, 201, 10))
    histograms = events.Histograms("weights/0.weight")
    assert [h.step for h in histograms] == steps
    last = histograms[-1].histogram_value
    assert (last.min, last.max, last.num) == (-1.91, 1.91, 100) and list(last.bucket) == [5] * 20
    assert last.bucket_limit[-1] == pytest.approx(1.91) and len(last.bucket_limit) == 20
    assert "gradients/0.weight" in events.Tags()["histograms"] and "gradients/0.bias" not in events.Tags()["histograms"]
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert scalars["grad_norm/0.weight"][0] == (1, 1.0) and scalars["system/rss_mb"][-1] == (191, 691.0)
    assert scalars["class_accuracy/Sandal"] == [(100, pytest.approx(0.6)), (200, pytest.approx(0.6))]
    assert "class_accuracy/_b_Bag__b_" not in scalars  # no test image of it: no accuracy
    assert scalars["activations/1/zeros"] == [(100, 0.25), (200, 0.5)]
    confusion = events.Tensors("confusion/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "| Sandal | 0 | 0 | 6 | 4 | 0 |" in confusion and "&lt;b&gt;Bag&lt;/b&gt;" in confusion
    mistakes = events.Tensors("mistakes/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "| 0 | Sneaker ✗ (Sandal) 0.97 |" in mistakes
    assert events.Tags()["images"] == ["mistakes"]
