"""What the spec's `insight` section computes beside training: confusion matrices and mistakes from the
evaluation pass, weight and gradient histograms, activations, the machine's load; through the journal
and its replay, for an MLP, a CNN, a model of one's own, a resumed run and a dataset of 3 classes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import ROOT, run_cli, tiny_spec, write_own_idx
from runner import data, insight, system, train
from runner.loggers import NullLogger, replay
from runner.spec import Experiment

CPU = torch.device("cpu")
TIMING = {"train_seconds", "eval_seconds", "samples_per_second", "peaks"}

OWN_MODULE = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, in_shape, classes):
        super().__init__()
        self.conv = nn.Conv2d(in_shape[0], 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4 * in_shape[1] * in_shape[2], classes)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).flatten(1))
'''


def experiment(root: Path, **sections: dict) -> Experiment:
    spec = {"name": "i", "data": {"root": str(root), "verify": False, "batch_size": 50, "test_batch_size": 64},
            "model": {"hidden": [32]}, "optim": {"lr": 0.1}, "train": {"epochs": 3, "log_every": 5, "samples": 8},
            "insight": {"every": 4, "system": 0}}
    for name, values in sections.items():
        spec[name] = {**spec.get(name, {}), **values}
    return Experiment.model_validate(spec)


def fit(spec: Experiment, **kwargs: object) -> tuple[torch.nn.Module, dict, NullLogger]:
    logger = NullLogger()
    model, results = train.fit(spec, data.load(spec.data, CPU), CPU, logger, **kwargs)
    return model, results, logger


def test_the_confusion_matrix_counts_the_whole_test_set_and_its_diagonal_is_the_accuracy(tiny_mnist: Path) -> None:
    _, _, logger = fit(experiment(tiny_mnist, optim={"lr": 0.01}))
    matrices, evaluations = logger.named("confusion"), logger.named("evaluation")
    assert [m["epoch"] for m in matrices] == [1, 2, 3] and [m["step"] for m in matrices] == [12, 24, 36]
    for m, e in zip(matrices, evaluations):
        counts = m["matrix"]
        assert len(counts) == 10 and all(len(row) == 10 for row in counts)
        assert sum(map(sum, counts)) == 200
        assert sum(counts[i][i] for i in range(10)) / 200 == e["test_accuracy"]
    truth = data.load(experiment(tiny_mnist).data, CPU).test.y
    assert [sum(row) for row in matrices[0]["matrix"]] == torch.bincount(truth, minlength=10).tolist()


def test_the_mistakes_are_the_test_sets_most_confident_wrong_predictions(tiny_mnist: Path) -> None:
    spec = experiment(tiny_mnist, optim={"lr": 0.01}, train={"epochs": 1}, insight={"mistakes": 100})
    model, _, logger = fit(spec)
    [shown] = logger.named("mistakes")
    test = data.load(spec.data, CPU).test
    with torch.no_grad():
        probabilities = model.eval()(test.x).softmax(1)
    confidence, predicted = probabilities.max(1)
    wrong = (predicted != test.y).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:100]
    assert 0 < len(wrong) < 200 and len(shown["predicted"]) == len(order) == min(100, len(wrong))
    assert all(p != t for p, t in zip(shown["predicted"], shown["truth"]))
    assert shown["predicted"] == predicted[order].tolist() and shown["truth"] == test.y[order].tolist()
    assert shown["confidence"] == pytest.approx(confidence[order].tolist(), abs=1e-6)
    assert shown["confidence"] == sorted(shown["confidence"], reverse=True)
    assert shown["pixels"] == data.denormalise(test.x[order]).tolist()


def test_layer_histograms_cover_every_weight_and_follow_the_model(tiny_mnist: Path) -> None:
    model, _, logger = fit(experiment(tiny_mnist))
    looks = logger.named("layers")
    assert [look["step"] for look in looks] == list(range(4, 37, 4))
    assert [look["epoch"] for look in looks] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    last = looks[-1]["layers"]
    weights = dict(model.named_parameters())
    assert list(last) == ["0.weight", "2.weight"]
    for name, layer in last.items():
        w = weights[name].detach()
        assert layer["shape"] == list(w.shape)
        assert sum(layer["weight"]["counts"]) == sum(layer["grad"]["counts"]) == w.numel()
        assert len(layer["weight"]["counts"]) == insight.BINS
        assert (layer["weight"]["min"], layer["weight"]["max"]) == (w.min().item(), w.max().item())
        assert layer["grad_norm"] > 0 and layer["grad"]["min"] < 0 < layer["grad"]["max"]


def test_insight_changes_nothing_of_the_run(tiny_mnist: Path) -> None:
    on_model, on, logger = fit(experiment(tiny_mnist, insight={"every": 1}))
    off_model, off, quiet = fit(experiment(tiny_mnist, insight={"classes": False, "mistakes": 0, "layers": False,
                                                               "activations": False}))
    assert {k: v for k, v in on.items() if k not in TIMING} == {k: v for k, v in off.items() if k not in TIMING}
    assert all(torch.equal(a, b) for a, b in zip(on_model.state_dict().values(), off_model.state_dict().values()))
    assert len(logger.named("layers")) == 36
    assert not any(quiet.named(event) for event in ("layers", "confusion", "mistakes", "activations", "system"))


def test_a_cnn_and_a_model_of_ones_own_are_seen_layer_by_layer(tmp_path: Path, tiny_mnist: Path) -> None:
    cnn = experiment(tiny_mnist, model={"kind": "cnn", "channels": [4], "kernel": 3, "hidden": [16]},
                     train={"epochs": 1})
    _, _, logger = fit(cnn)
    layers = logger.named("layers")[-1]["layers"]
    assert [len(layer["shape"]) for layer in layers.values()] == [4, 2, 2]  # a kernel, then dense weights
    kinds = [a["kind"] for a in logger.named("activations")[-1]["layers"].values()]
    assert kinds[:2] == ["Conv2d", "ReLU"] and kinds[-1] == "Linear"

    (tmp_path / "mine.py").write_text(OWN_MODULE)
    own = Experiment.model_validate({**cnn.model_dump(mode="json"), "model": {"kind": "python",
                                                                             "target": "mine:Net"}})
    path = tmp_path / "own.json"
    path.write_text(json.dumps({**own.model_dump(mode="json", exclude={"sweep", "search"})}))
    result = run_cli(str(path), "--logger", "null", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    journal = NullLogger()
    replay(tmp_path / "run" / "metrics.jsonl", journal)
    assert list(journal.named("layers")[-1]["layers"]) == ["conv.weight", "head.weight"]
    activations = journal.named("activations")[-1]["layers"]
    assert {name: a["kind"] for name, a in activations.items()} == {"conv": "Conv2d", "act": "ReLU",
                                                                  "head": "Linear"}
    assert 0 < activations["act"]["zeros"] < 1 and activations["conv"]["zeros"] == 0
    assert activations["act"]["mean"] > 0 and activations["act"]["std"] > 0


@pytest.mark.parametrize("stop_step", [7, 30])
def test_a_resumed_run_continues_its_histograms_none_twice(tiny_mnist: Path, stop_step: int) -> None:
    spec = experiment(tiny_mnist)
    _, _, whole = fit(spec)
    checkpoints: list[dict] = []
    calls = iter(range(1, 1000))
    first = NullLogger()
    dataset = data.load(spec.data, CPU)
    with pytest.raises(train.Stopped):
        train.fit(spec, dataset, CPU, first, checkpoint=checkpoints.append,
                  should_stop=lambda: "SIGINT" if next(calls) == stop_step else None)
    _, _, resumed = fit(spec, resume=checkpoints[-1])
    for event in ("layers", "confusion", "activations"):
        joined = first.named(event) + resumed.named(event)
        assert joined == whole.named(event), event
    assert [look["step"] for look in resumed.named("layers")][0] == stop_step + 4 - stop_step % 4


def test_a_dataset_of_three_classes_through_the_cli_journal_and_replay(tmp_path: Path) -> None:
    root = tmp_path / "own"
    write_own_idx(root, (8, 8), classes=3)
    spec = tiny_spec(tmp_path, root, data={"dataset": "idx", "batch_size": 10, "test_batch_size": 7},
                     train={"epochs": 2}, insight={"every": 3, "mistakes": 5})
    result = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    journal = NullLogger()
    replay(tmp_path / "run" / "metrics.jsonl", journal)
    [*_, matrix] = journal.named("confusion")
    assert len(matrix["matrix"]) == 3 and sum(map(sum, matrix["matrix"])) == 30
    accuracy = journal.named("evaluation")[-1]["test_accuracy"]
    assert sum(matrix["matrix"][i][i] for i in range(3)) / 30 == accuracy
    mistakes = journal.named("mistakes")[-1]
    assert len(mistakes["predicted"]) == min(5, 30 - round(accuracy * 30))
    assert all(0 <= c < 3 for c in mistakes["predicted"] + mistakes["truth"])
    assert [look["step"] for look in journal.named("layers")] == list(range(3, 13, 3))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["peaks"]["rss_mb"] > 50


def test_the_real_mnist_confusion_matrix_sums_to_the_test_set(tmp_path: Path, real_mnist: Path) -> None:
    result = run_cli(str(ROOT / "experiments" / "relu.json"), "--set", "train.epochs=1", "--set",
                     "data.train_limit=6000", "--set", f"data.root={real_mnist}", "--logger", "null",
                     "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    journal = NullLogger()
    replay(tmp_path / "run" / "metrics.jsonl", journal)
    [matrix], [evaluation] = journal.named("confusion"), journal.named("evaluation")
    counts = matrix["matrix"]
    assert sum(map(sum, counts)) == 10_000
    assert sum(counts[i][i] for i in range(10)) / 10_000 == evaluation["test_accuracy"]
    assert [sum(row) for row in counts] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_the_sampler_reads_the_process_and_stops() -> None:
    with system.Sampler(0.05, CPU) as sampler:
        deadline = time.monotonic() + 5
        sample = None
        while sample is None and time.monotonic() < deadline:
            time.sleep(0.05)
            sample = sampler.take()
        assert sampler.take() is None  # taken once
    assert not sampler.thread.is_alive()
    assert sample is not None and set(sample) == {"cpu_percent", "rss_mb"}
    assert 20 < sample["rss_mb"] < 100_000 and sample["cpu_percent"] >= 0


def test_a_run_sends_the_machines_load_in_its_own_order(tiny_mnist: Path) -> None:
    _, results, logger = fit(experiment(tiny_mnist, train={"epochs": 40}, insight={"system": 0.02}))
    samples = logger.named("system")
    assert samples and all(s["values"]["rss_mb"] > 20 for s in samples)
    steps = [s["step"] for s in samples]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert results["peaks"]["rss_mb"] >= max(s["values"]["rss_mb"] for s in samples)


def test_the_gradient_norm_and_histogram_are_the_gradients_own() -> None:
    """Gradients set by hand, far from the weights: each look reports their norm, min and max exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 7 + 3
    layers = insight.Layers(model, every=2)
    layers.look(1, 1)  # not a step to look at
    layers.look(1, 2)
    logger = NullLogger()
    layers.flush(logger)
    [look] = logger.named("layers")
    assert look["step"] == 2 and list(look["layers"]) == ["1.weight", "3.weight"]
    for name, p in model.named_parameters():
        if name in look["layers"]:
            seen = look["layers"][name]
            assert seen["grad_norm"] == pytest.approx(torch.linalg.vector_norm(p.grad).item(), rel=1e-6)
            assert seen["grad_norm"] != pytest.approx(torch.linalg.vector_norm(p.detach()).item(), rel=1e-2)
            assert (seen["grad"]["min"], seen["grad"]["max"]) == (p.grad.min().item(), p.grad.max().item())


def test_a_run_shorter_than_the_sampling_interval_has_the_machines_load_at_its_start_and_end(
        tmp_path: Path, tiny_mnist: Path) -> None:
    spec = tiny_spec(tmp_path, tiny_mnist, train={"epochs": 1}, insight={"system": 3600})
    result = run_cli(str(spec), "--logger", "null", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    journal = NullLogger()
    replay(tmp_path / "run" / "metrics.jsonl", journal)
    samples, last = journal.named("system"), journal.named("train_loss")[-1]["steps"][-1]
    assert [s["step"] for s in samples] == [0, last]  # no sample in between: the interval is an hour
    assert all(s["values"]["rss_mb"] > 20 for s in samples)
    assert "cpu_percent" not in samples[0]["values"] and samples[1]["values"]["cpu_percent"] >= 0
