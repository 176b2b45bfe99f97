"""A real experiment streamed to the real server, and `replay` filling a dashboard after the fact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboard_helpers import windows
from helpers import run_cli, tiny_spec
from dashboards.visdom import server as servers

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def assert_complete_dashboard(port: int, env: str, steps: int, epochs: int) -> None:
    held = windows(port, env)
    assert {"run", "train_loss", "test", "images", "predictions", "spec"} <= held.keys(), held.keys()
    loss, smoothed = held["train_loss"]["content"]["data"]
    assert loss["x"] == smoothed["x"] == list(range(1, steps + 1))  # every step exactly once
    traces = held["test"]["content"]["data"]
    assert [t["name"] for t in traces] == ["test loss", "test accuracy"]
    assert all(t["x"] == list(range(1, epochs + 1)) for t in traces)
    assert held["images"]["type"] == "image" and held["predictions"]["type"] == "text"


def test_a_run_streams_every_point_to_the_dashboard(tmp_path: Path, tiny_mnist: Path,
                                                    visdom_server: servers.Server) -> None:
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist, train={"epochs": 3})), "--logger", "visdom",
                     "--out", str(out), env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["visdom_env"] == "tiny_run"  # one env per run, named after its run directory
    assert_complete_dashboard(visdom_server.port, "tiny_run", steps=36, epochs=3)


def test_a_run_without_a_server_finishes_and_replay_fills_the_dashboard(tmp_path: Path, tiny_mnist: Path) -> None:
    port = servers.free_port()
    out = tmp_path / "run"
    result = run_cli(str(tiny_spec(tmp_path, tiny_mnist)), "--logger", "visdom", "--out", str(out),
                     env={"VISDOM_PORT": str(port)})
    assert result.returncode == 0, result.stderr
    assert "make visdom" in result.stderr and "Traceback" not in result.stderr
    assert (out / "summary.json").exists()
    with servers.running(port=port, home=tmp_path / "visdom"):
        replayed = run_cli("replay", str(out), env={"VISDOM_PORT": str(port)})
        assert replayed.returncode == 0, replayed.stderr
        assert_complete_dashboard(port, "tiny_run", steps=24, epochs=2)


def test_a_run_refused_for_bad_data_leaves_the_last_dashboard_alone(tmp_path: Path, tiny_mnist: Path,
                                                                    visdom_server: servers.Server) -> None:
    env = {"VISDOM_PORT": str(visdom_server.port)}
    spec = str(tiny_spec(tmp_path, tiny_mnist))
    assert run_cli(spec, "--logger", "visdom", "--out", str(tmp_path / "good"), env=env).returncode == 0
    refused = run_cli(spec, "--logger", "visdom", "--set", f"data.root={tmp_path / 'nowhere'}",
                      "--out", str(tmp_path / "bad"), env=env)
    assert refused.returncode == 2 and "make data" in refused.stderr
    assert "live dashboard" not in refused.stderr  # no logger was made, so nothing was sent or cleared
    assert_complete_dashboard(visdom_server.port, "tiny_good", steps=24, epochs=2)
    assert not (tmp_path / "bad").exists()


def test_a_colour_dataset_shows_colour_images_class_names_and_the_learning_rate(
        tmp_path: Path, visdom_server: servers.Server) -> None:
    import base64
    import io

    from PIL import Image

    from helpers import write_png_folder

    root = write_png_folder(tmp_path / "pngs", per_class=10)
    spec = {"name": "colours", "data": {"dataset": "image_folder", "root": str(root), "batch_size": 10},
            "model": {"kind": "cnn", "channels": [4], "kernel": 3, "hidden": [8]},
            "optim": {"name": "sgd", "lr": 0.05, "schedule": "cosine"},
            "train": {"epochs": 2, "device": "cpu", "samples": 9, "log_every": 1}}
    path = tmp_path / "colours.json"
    path.write_text(json.dumps(spec))
    result = run_cli(str(path), "--logger", "visdom", "--set", "visdom.env=colours", "--out", str(tmp_path / "run"),
                     env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 0, result.stderr
    held = windows(visdom_server.port, "colours")
    (lr,) = held["metric_lr"]["content"]["data"]
    assert lr["x"] == list(range(1, 7)) and lr["y"][0] == 0.05 and lr["y"][-1] < 0.05  # cosine: falling
    text = held["predictions"]["content"]
    assert any(name in text for name in ("red", "green", "blue")) and "epoch 2" in text
    src = held["images"]["content"]["src"]
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
    colours = {image.getpixel((x, y)) for x in range(0, image.width, 3) for y in range(0, image.height, 3)}
    assert any(max(c) - min(c) > 100 for c in colours)  # saturated pixels: drawn in colour, not grey


def test_your_own_model_streams_to_the_dashboard(tmp_path: Path, tiny_mnist: Path,
                                                 visdom_server: servers.Server) -> None:
    from helpers import ROOT

    result = run_cli(str(ROOT / "experiments" / "custom_model.json"), "--logger", "visdom",
                     "--set", "visdom.env=custom", "--set", f"data.root={tiny_mnist}", "--set", "data.verify=false",
                     "--set", "train.epochs=2", "--set", "data.batch_size=50", "--set", "train.log_every=4",
                     "--set", "train.device=cpu", "--out", str(tmp_path / "run"),
                     env={"VISDOM_PORT": str(visdom_server.port)})
    assert result.returncode == 0, result.stderr
    assert_complete_dashboard(visdom_server.port, "custom", steps=24, epochs=2)
    assert len(windows(visdom_server.port, "custom")["metric_lr"]["content"]["data"][0]["x"]) == 6
