"""A person's own nn.Module (model.kind python): found beside the experiment, trained through the same
CLI, sweeps and resume, and refused in one paragraph when it cannot be used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import ROOT, run_cli, tiny_spec
from runner import data, train
from runner.loggers import NullLogger
from runner.spec import Experiment, load

CPU = torch.device("cpu")
TINY = ["--set", "data.batch_size=50", "--set", "data.test_batch_size=100", "--set", "train.device=cpu",
        "--set", "train.log_every=4", "--set", "train.samples=8"]

MODULE = '''
import torch
from torch import nn

def build(in_shape, classes, width=8):
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, width), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(width, classes))

def not_a_module(in_shape, classes):
    return "a string"

def wrong_logits(in_shape, classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[1] * in_shape[2], classes + 1))

def crashes_on_images(in_shape, classes):
    return nn.Linear(3, classes)  # not flattened, wrong width

class Rounded(nn.Module):
    def __init__(self, in_shape, classes):
        super().__init__()
        self.linear = nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], classes)

    def forward(self, x):
        return self.linear(x.flatten(1)).round().long()  # the right shape, but class counts, not logits

def integer_logits(in_shape, classes):
    return Rounded(in_shape, classes)

class Cropped(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.classes = classes

    def forward(self, x):
        return x.flatten(1)[:, :self.classes]  # logits of the right shape, and nothing to learn

def no_parameters(in_shape, classes):
    return Cropped(classes)

def frozen(in_shape, classes):
    return build(in_shape, classes).requires_grad_(False)
'''


def own_spec(tmp_path: Path, tiny_mnist: Path, target: str, **args: object) -> Path:
    """The tiny experiment with its model replaced by `target` of mine.py, beside the experiment file."""
    (tmp_path / "mine.py").write_text(MODULE)
    return with_model(tiny_spec(tmp_path, tiny_mnist), {"kind": "python", "target": target, "args": args})


def with_model(path: Path, model: dict) -> Path:
    spec = json.loads(path.read_text())
    spec["model"] = model
    path.write_text(json.dumps(spec))
    return path


def test_the_shipped_custom_model_trains_through_the_cli(tmp_path: Path, tiny_mnist: Path) -> None:
    out = tmp_path / "run"
    result = run_cli(str(ROOT / "experiments" / "custom_model.json"), "--logger", "null", "--out", str(out),
                     "--set", f"data.root={tiny_mnist}", "--set", "data.verify=false", "--set", "train.epochs=2",
                     *TINY)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    # Global average pooling cannot see where the fake digits' bands are: trained, not accurate.
    assert summary["steps"] == 24 and len(summary["history"]) == 2
    spec = json.loads((out / "spec.json").read_text())
    assert spec["model"]["path"] == str(ROOT / "experiments")  # where the module was found, for --resume
    weights = torch.load(out / "model.pt")
    assert weights["0.weight"].shape == (16, 1, 3, 3)  # tiny_resnet's stem, width 16


def test_a_sweep_over_model_args(tmp_path: Path, tiny_mnist: Path) -> None:
    spec = own_spec(tmp_path, tiny_mnist, "mine:build")
    data_ = json.loads(spec.read_text())
    data_["sweep"] = {"model.args.width": [4, 12]}
    spec.write_text(json.dumps(data_))
    out = tmp_path / "sweep"
    result = run_cli(str(spec), "--logger", "null", "--out", str(out))
    assert result.returncode == 0, result.stderr
    widths = sorted(torch.load(run / "model.pt")["1.weight"].shape[0] for run in out.iterdir() if run.is_dir())
    assert widths == [4, 12]


def test_resume_of_a_custom_model_with_a_schedule_is_bitwise_identical(tmp_path: Path, tiny_mnist: Path) -> None:
    path = own_spec(tmp_path, tiny_mnist, "mine:build", width=16)
    spec = load(path, ["optim.schedule=onecycle", "train.epochs=3"])
    dataset = data.load(spec.data, CPU)
    model, expected = train.fit(spec, dataset, CPU, NullLogger())
    checkpoints: list[dict] = []
    calls = iter(range(1, 100))
    with pytest.raises(train.Stopped):
        train.fit(spec, dataset, CPU, NullLogger(), checkpoint=checkpoints.append,
                  should_stop=lambda: "SIGINT" if next(calls) == 17 else None)
    resumed, results = train.fit(spec, dataset, CPU, NullLogger(), resume=checkpoints[-1])
    assert results["history"] == expected["history"]
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("target, words", [
    ("nope:Nope", ["model.target 'nope:Nope'", "no module named 'nope'", "PYTHONPATH"]),
    ("mine:missing", ["has no callable 'missing'"]),
    ("mine:not_a_module", ["returned a str", "nn.Module"]),
    ("mine:wrong_logits", ["(50, 11)", "(50, 10)", "logits"]),
    ("mine:crashes_on_images", ["fails on a batch of images (50, 1, 28, 28)"]),
    ("mine:integer_logits", ["returns logits of type int64", "floating point"]),
    ("mine:no_parameters", ["has no parameters to train", "requires_grad"]),
    ("mine:frozen", ["has no parameters to train", "all 4 of its", "frozen"]),
])
def test_a_model_that_cannot_be_used_is_refused_before_anything_is_written(
        tmp_path: Path, tiny_mnist: Path, target: str, words: list[str]) -> None:
    out = tmp_path / "run"
    result = run_cli(str(own_spec(tmp_path, tiny_mnist, target)), "--logger", "null", "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for word in words:
        assert word in result.stderr
    if target == "nope:Nope":
        assert str(tmp_path) in result.stderr  # the folder searched first: the experiment's
    assert not out.exists()


def test_arguments_the_callable_does_not_take(tmp_path: Path, tiny_mnist: Path) -> None:
    result = run_cli(str(own_spec(tmp_path, tiny_mnist, "mine:build", depth=3)), "--logger", "null",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "depth" in result.stderr and "model.args" in result.stderr


def test_the_module_is_found_on_pythonpath_too(tmp_path: Path, tiny_mnist: Path) -> None:
    elsewhere = tmp_path / "lib"
    elsewhere.mkdir()
    (elsewhere / "theirs.py").write_text(MODULE)
    spec = with_model(tiny_spec(tmp_path, tiny_mnist), {"kind": "python", "target": "theirs:build"})
    result = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "run"),
                     env={"PYTHONPATH": str(elsewhere)})
    assert result.returncode == 0, result.stderr


def test_sweeps_refuse_keys_of_no_model() -> None:
    with pytest.raises(Exception, match="model.argz.width is not a key"):
        Experiment.model_validate({"name": "x", "sweep": {"model.argz.width": [1, 2]}})
