"""The experiment spec's frozen pydantic models: every key, its default, its description and its
checks. A spec may declare a `sweep` (dotted keys to lists of values, and seeds) or a `search`
(dotted keys to ranges); runner.sweeps turns either into one spec per variant.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from runner import datasets
from runner.errors import UserError
from runner.spec.frozen import FLOAT32_MAX, FLOAT32_TINY, INT64_MAX, Frozen

Activation = Literal["relu", "leaky_relu", "selu", "softplus", "sigmoid", "tanh", "gelu"]
ACTIVATIONS: tuple[str, ...] = Activation.__args__  # type: ignore[attr-defined]
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
TAG_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,39}$"  # a run's tag (runner.lab.notes.TAG)


class SpecError(UserError):
    """A spec that cannot be used; the message is the one paragraph shown to the user."""


MAX_DEPTH = 64  # levels of nesting a spec may have; real ones have four or five
MAX_LAYERS = 1000  # hidden layers (or convolutions) a model may have: refused before anything is built


class DataSpec(Frozen):
    dataset: Literal[datasets.NAMES] = Field(  # type: ignore[valid-type]
        "mnist", description="Which dataset: mnist (60,000 train / 10,000 test digits), fashion_mnist (the same "
                             "sizes, 10 kinds of clothing), idx (your own IDX files in data.root) or image_folder "
                             "(your own images, root/train/<class>/*.png and root/test/<class>/*.png).")
    root: str = Field("data", description="Data folder: mnist and fashion_mnist live in its MNIST/raw and "
                                          "FashionMNIST/raw (`make data` fills them); idx and image_folder read "
                                          "their files from it directly.")
    batch_size: int = Field(200, gt=0, description="Training examples per optimisation step.")
    test_batch_size: int = Field(1000, gt=0, description="Examples per forward pass when evaluating.")
    train_limit: int | None = Field(None, gt=0, description="Use only the first N training examples (null: all).")
    test_limit: int | None = Field(None, gt=0, description="Use only the first N test examples (null: all).")
    verify: bool = Field(True, description="Check mnist's and fashion_mnist's files against their published "
                                           "sha256 sums (your own idx and image_folder files have none).")


Widths = tuple[int, ...]


def _positive(widths: Widths) -> Widths:
    if any(w <= 0 for w in widths):
        raise ValueError("every width must be a positive integer")
    return widths


class MLPSpec(Frozen):
    kind: Literal["mlp", "logistic"] = Field(
        "mlp", description="mlp: hidden layers with an activation; logistic: one linear layer (softmax regression).")
    api: Literal["module", "functional"] = Field(
        "module", description="module: nn.Sequential; functional: raw weight tensors and F.* calls, as the tutorial's "
                              "low-level version. Same init and seed give the same function.")
    hidden: Widths = Field((200, 200), max_length=MAX_LAYERS, description="Widths of the hidden layers, input to "
                                                                         "output (at most 1000).")
    activation: Activation = Field("relu", description="Activation after each hidden layer.")
    output_activation: Literal["none"] | Activation = Field(
        "none", description="Activation applied to the logits. Keep none: the tutorial's ReLU here hurts accuracy.")
    init: Literal["default", "kaiming_normal"] = Field(
        "default", description="default: PyTorch's nn.Linear init; kaiming_normal: kaiming_normal_ weights and zero "
                               "biases, as the tutorial's low-level version.")

    @model_validator(mode="before")
    @classmethod
    def _logistic_has_no_hidden_layers(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("kind") == "logistic":
            if data.get("hidden"):
                raise ValueError("logistic regression has no hidden layers; drop model.hidden or use kind mlp")
            data = {**data, "hidden": ()}
        return data

    _widths = field_validator("hidden")(_positive)


class CNNSpec(Frozen):
    kind: Literal["cnn"] = Field("cnn", description="cnn: convolutions and pooling, then dense layers; LeNet-5 by "
                                                    "default.")
    channels: Widths = Field((6, 16), min_length=1, max_length=MAX_LAYERS, description="Output channels of each "
                             "convolution; each is followed by the activation and a 2x2 pooling.")
    kernel: int = Field(5, gt=0, le=15, description="Side of every convolution's square kernel.")
    padding: Literal["same", "valid"] = Field(
        "same", description="same: each convolution keeps the image size (only pooling halves it), so any image "
                            "size works; valid: no padding, as LeNet-5 on 32x32 images.")
    pool: Literal["max", "avg"] = Field("max", description="2x2 pooling after each convolution: max or avg.")
    hidden: Widths = Field((120, 84), max_length=MAX_LAYERS, description="Widths of the dense layers after the "
                                                                        "convolutions (at most 1000).")
    activation: Activation = Field("relu", description="Activation after each convolution and dense layer.")
    batch_norm: bool = Field(False, description="BatchNorm after each convolution.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before each dense layer, in [0, 1).")

    _widths = field_validator("channels", "hidden")(_positive)


class PythonSpec(Frozen):
    kind: Literal["python"] = Field("python", description="python: your own nn.Module, built by model.target.")
    target: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$",
                        description="module:callable, e.g. models.small_cnn:build. Called as "
                                    "callable(in_shape=(C, H, W), classes=N, **args); returns an nn.Module that "
                                    "maps images [N, C, H, W] to logits [N, classes].")
    args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the callable; sweeps "
                                                                   "may vary them as model.args.NAME.")
    path: str | None = Field(None, description="Folder searched first for the module, before PYTHONPATH; null: "
                                               "the experiment file's folder (filled in when the file is read).")


MODEL_TAGS = {"mlp": "mlp", "logistic": "mlp", "cnn": "cnn", "python": "python"}


def _model_tag(value: Any) -> str | None:
    kind = value.get("kind", "mlp") if isinstance(value, dict) else getattr(value, "kind", None)
    return MODEL_TAGS.get(kind) if isinstance(kind, str) else None


ModelSpec = MLPSpec  # the tutorial's models; `Model` is any model section
Model = Annotated[
    Union[Annotated[MLPSpec, Tag("mlp")], Annotated[CNNSpec, Tag("cnn")], Annotated[PythonSpec, Tag("python")]],
    Discriminator(_model_tag, custom_error_type="model_kind",
                  custom_error_message=f"model.kind must be one of {', '.join(MODEL_TAGS)}"),
]


class OptimSpec(Frozen):
    name: Literal["sgd", "adam", "adamw"] = Field("sgd", description="Optimiser: sgd, adam or adamw.")
    lr: float = Field(0.01, gt=0, description="Learning rate, > 0 (the peak rate when a schedule is set).")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum in [0, 1); sgd only.")
    nesterov: bool = Field(False, description="Nesterov momentum; sgd with momentum > 0 only.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (decoupled for adamw), >= 0.")
    schedule: Literal["none", "step", "cosine", "onecycle"] = Field(
        "none", description="How the learning rate moves, per step: none (constant), step (times gamma every "
                            "step_epochs), cosine (down to 0 by the last step), onecycle (up to lr, then down).")
    warmup_epochs: float = Field(0.0, ge=0, description="Epochs of linear warm-up from lr/100 to lr before the "
                                                        "schedule; for onecycle, its rising phase.")
    step_epochs: int = Field(10, gt=0, description="step schedule: epochs between two decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="step schedule: factor applied at each decay.")

    @model_validator(mode="after")
    def _options_fit_the_optimiser(self) -> "OptimSpec":
        if self.name != "sgd" and self.momentum:
            raise ValueError(f"momentum applies to sgd only; {self.name} has its own betas")
        if self.nesterov and not (self.name == "sgd" and self.momentum > 0):
            raise ValueError("nesterov needs sgd with momentum > 0")
        return self


class TrainSpec(Frozen):
    epochs: int = Field(10, gt=0, description="Passes over the training set.")
    device: str = Field("auto", pattern=DEVICE_PATTERN,
                        description="auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N.")
    log_every: int = Field(20, gt=0, description="Steps between reads of the loss from the device: the losses of "
                                                 "every step are kept, but copied to the host in chunks this long.")
    samples: int = Field(16, ge=0, le=100, description="Test images shown with their predictions each epoch.")
    compile: bool = Field(False, description="Run the forward pass through torch.compile (first steps pay the "
                                             "compilation; needs a C++ compiler on CPU).")
    cuda_graphs: bool = Field(False, description="Capture the whole training step as a CUDA graph and replay it: "
                                                 "far less launch overhead for small models. CUDA only.")


    @model_validator(mode="after")
    def _one_way_to_speed_up(self) -> "TrainSpec":
        if self.compile and self.cuda_graphs:
            raise ValueError("compile and cuda_graphs are alternatives; set one of them")
        return self

    channels_last: bool = Field(False, description="Keep images and convolution weights in channels-last memory "
                                                   "order (faster convolutions on some hardware).")
    cpus: float = Field(1.0, gt=0, le=1024, description="CPUs each variant reserves with --executor ray (fractions "
                                                         "allowed); its torch threads follow. The local executor "
                                                         "ignores it.")
    gpus: float = Field(0.0, ge=0, le=64, description="GPUs each variant reserves with --executor ray (fractions "
                                                      "allowed: 0.5 puts two variants on one GPU).")

class VisdomSpec(Frozen):
    server: str | None = Field(None, description="Visdom server URL; null: $VISDOM_SERVER or http://localhost.")
    port: int | None = Field(None, gt=0, lt=65536, description="Visdom port; null: $VISDOM_PORT or 8097.")
    env: str | None = Field(None, pattern=NAME_PATTERN, description="Visdom env; null: one env per run, named "
                            "after its run directory and grouped under the experiment (e.g. relu_20261125-171800).")
    smoothing: float = Field(0.6, ge=0, lt=1, description="Weight of the smoothed train-loss trace (a debiased "
                             "exponential moving average, as TensorBoard's); 0 turns it off.")


class InsightSpec(Frozen):
    classes: bool = Field(True, description="At each evaluation, the confusion matrix over the whole test set and "
                                            "the accuracy of each class.")
    mistakes: int = Field(16, ge=0, le=100, description="At each evaluation, this many of the test set's most "
                                                        "confident wrong predictions, as images; 0: none.")
    layers: bool = Field(True, description="Every `every` steps, the histogram of each weight tensor and of its "
                                           "gradient, and the gradient's norm per layer.")
    every: int = Field(300, gt=0, description="Steps between two looks at the weights and gradients (`layers`): "
                                          "about 1 ms each for relu.json on a CPU.")
    activations: bool = Field(True, description="At each evaluation, the mean, spread and fraction of zeros (dead "
                                                "ReLUs) of each layer's output on the first test batch.")
    system: float = Field(5.0, ge=0, le=3600, description="Seconds between samples of the process's CPU and "
                                                          "memory and the GPU's; 0: none.")


# Keys a sweep may not vary: they name the run and its dashboard, which the sweep names itself, or
# describe the run (tags, notes) rather than set how it trains.
UNSWEPT = ("name", "description", "sweep", "search", "visdom", "tags", "notes")


MODEL_SPECS: tuple[type[BaseModel], ...] = (MLPSpec, CNNSpec, PythonSpec)
OPEN_KEYS = ("model.args.",)  # sections whose keys are the person's own: any name below them is a key


def sweepable_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of an experiment that a sweep may vary, e.g. model.activation, optim.lr, seed
    (the model's keys of every kind)."""
    model = model or Experiment
    keys: list[str] = []
    for name, info in model.model_fields.items():
        if not prefix and name in UNSWEPT:
            continue
        if model is Experiment and name == "model":
            for kind in MODEL_SPECS:
                keys += [k for k in sweepable_keys(kind, "model.") if k not in keys]
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys += sweepable_keys(info.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def check_key(key: str, how: str) -> None:
    """A dotted key a sweep or search may vary (`how`: swept, searched), or ValueError saying why not."""
    known = sweepable_keys()
    if key in known or any(key.startswith(p) and len(key) > len(p) for p in OPEN_KEYS):
        return
    if key.split(".")[0] in UNSWEPT:
        why = f"{key} cannot be {how}: each variant gets its own name and dashboard env from the comparison"
    elif any(k.startswith(key + ".") for k in known):
        why = (f"{key} is a section, not a key; use one of its keys, such as "
               f"{next(k for k in known if k.startswith(key + '.'))}")
    else:
        close = difflib.get_close_matches(key, known, n=1)
        why = (f"{key} is not a key of an experiment{f' (did you mean {close[0]}?)' if close else ''}; "
               "keys are dotted paths such as model.activation, optim.lr or seed")
    raise ValueError(why)


DISTRIBUTIONS = {
    "uniform": "[low, high]: any real number between them",
    "loguniform": "[low, high] with 0 < low: real numbers spread evenly in log scale (learning rates)",
    "randint": "[low, high]: a whole number from low to high, both included",
    "choice": "[value, value, ...]: one of the listed values",
}


def check_space(space: Any) -> dict[str, dict[str, list[Any]]]:
    """A search space's own shape: dotted keys to one distribution each, with a range that holds values."""
    example = ('e.g. "space": {"optim.lr": {"loguniform": [0.0001, 1]}, "model.hidden": {"choice": [[200, 200], '
               '[800]]}}')
    kinds = "; ".join(f"{k} {v}" for k, v in DISTRIBUTIONS.items())
    if not isinstance(space, dict) or not space:
        raise ValueError(f"must map dotted keys to a distribution each, {example}")
    for key, dist in space.items():
        check_key(key, "searched")
        if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
            raise ValueError(f"{key} must be one distribution, an object with one of the keys {kinds} "
                             f"(got {json.dumps(dist)[:60]})")
        (kind, args), = dist.items()
        if not isinstance(args, list):
            raise ValueError(f"{key}: {kind} takes a list, {kind} {DISTRIBUTIONS[kind]} (got {json.dumps(args)[:60]})")
        if kind == "choice":
            if not args:
                raise ValueError(f"{key}: choice lists no values; give at least one")
            continue
        numeric = int if kind == "randint" else (int, float)
        if len(args) != 2 or not all(isinstance(a, numeric) and not isinstance(a, bool) for a in args) \
                or not all(math.isfinite(a) for a in args):
            raise ValueError(f"{key}: {kind} takes {DISTRIBUTIONS[kind]} (got {json.dumps(args)[:60]})")
        low, high = args
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"{key}: loguniform needs bounds above 0, its values being spread in log scale (got "
                             f"[{low}, {high}]); for a range that starts at 0 use uniform")
        if low > high or (low == high and kind != "randint"):
            raise ValueError(f"{key}: the range [{low}, {high}] is empty; give [low, high] with low < high")
    return space


class SearchSpec(Frozen):
    space: dict[str, dict[str, list[Any]]] = Field(..., description="What to search: dotted keys to one "
                                                   "distribution each, e.g. {\"optim.lr\": {\"loguniform\": "
                                                   "[0.0001, 1]}}. " + "; ".join(f"{k} {v}" for k, v in
                                                                                  DISTRIBUTIONS.items()) + ".")
    samples: int = Field(16, gt=0, le=10000, description="How many variants to draw and train.")
    metric: Literal["test_accuracy", "test_loss"] = Field("test_accuracy", description="What a variant is judged "
                                                          "by, after each epoch.")
    mode: Literal["max", "min"] | None = Field(None, description="max or min of the metric; null: max for "
                                               "test_accuracy, min for test_loss.")
    searcher: Literal["random", "tpe"] = Field("random", description="random draws; tpe: Optuna's "
                                               "tree-structured Parzen estimator, drawing near what did well.")
    scheduler: Literal["none", "asha"] = Field("none", description="asha: stop variants early that are behind "
                                               "the others at the same epoch (asynchronous successive halving).")
    grace_period: int = Field(1, gt=0, description="asha: epochs every variant trains before it can be stopped.")
    reduction_factor: int = Field(3, ge=2, le=100, description="asha: about 1 in this many variants goes on at "
                                  "each rung (epochs grace_period x reduction_factor^k).")

    @field_validator("space", mode="before")
    @classmethod
    def _space_shape(cls, space: Any) -> Any:
        return check_space(space)

    @property
    def direction(self) -> str:
        return self.mode or ("max" if self.metric == "test_accuracy" else "min")


def check_sweep(sweep: Any) -> dict[str, list[Any]]:
    """A sweep declaration's own shape; whether each value suits its key is checked per variant."""
    example = 'e.g. "sweep": {"model.activation": ["relu", "selu"], "seed": [0, 1, 2]}'
    if not isinstance(sweep, dict):
        raise ValueError(f"must map dotted keys to lists of values to try, {example}")
    if not sweep:
        raise ValueError(f"declares nothing to vary; {example}")
    for key, values in sweep.items():
        check_key(key, "swept")
        if not isinstance(values, list):
            raise ValueError(f"{key} must be a list of the values to try, e.g. [{json.dumps(values)}] "
                             f"(got {json.dumps(values)[:60]})")
        if not values:
            raise ValueError(f"{key} lists no values; give at least one")
        seen: set[str] = set()
        for value in values:
            text = json.dumps(value, sort_keys=True)
            if text in seen:
                raise ValueError(f"{key} lists {text} twice; each value makes one variant")
            seen.add(text)
    return sweep


class Experiment(Frozen):
    name: str = Field(..., pattern=NAME_PATTERN, description="Names the run directory and the dashboard env.")
    description: str = Field("", description="What the experiment shows, in a sentence or two.")
    tags: tuple[Annotated[str, Field(pattern=TAG_PATTERN)], ...] = Field(
        (), max_length=100, description="Labels for finding the run later (`python -m runner runs --tag best`): 1 to "
                                        "40 letters, digits, '_', '.', ':', '/' or '-' each; `python -m runner tag` "
                                        "changes them afterwards.")
    notes: str = Field("", max_length=10_000, description="A note kept with the run, shown first among its notes "
                                                          "(`python -m runner note` adds more).")
    seed: int = Field(0, ge=0, lt=2**63, description="Seeds init and batch order; same seed on CPU, same result.")
    data: DataSpec = Field(default_factory=DataSpec, description="Dataset and batching.")
    model: Model = Field(default_factory=MLPSpec, description="The network: kind mlp or logistic (the "
                         "tutorial's), cnn, or python (your own nn.Module).")
    loss: Literal["cross_entropy", "mse"] = Field(
        "cross_entropy", description="cross_entropy on the logits, or mse between softmax probabilities and one-hot "
                                     "targets.")
    optim: OptimSpec = Field(default_factory=OptimSpec, description="Optimiser.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training loop.")
    visdom: VisdomSpec = Field(default_factory=VisdomSpec, description="Where the dashboard goes.")
    insight: InsightSpec = Field(default_factory=InsightSpec, description="What is shown of the run beyond its "
                                 "loss and accuracy: per class, inside the network, the machine.")
    sweep: dict[str, list[Any]] | None = Field(
        None, description="Variants to compare: dotted keys mapped to lists of values, e.g. {\"model.activation\": "
                          "[\"relu\", \"selu\"], \"seed\": [0, 1, 2]}. Every combination runs (a list of seeds "
                          "repeats each one), each with its own run directory and dashboard env.")

    search: SearchSpec | None = Field(None, description="A search instead of a sweep: `samples` variants drawn "
                                      "from `space`, judged by `metric`, optionally stopped early by `scheduler`.")

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep_shape(cls, sweep: Any) -> Any:
        return sweep if sweep is None else check_sweep(sweep)

    @model_validator(mode="after")
    def _parts_fit_together(self) -> "Experiment":
        if self.sweep is not None and self.search is not None:
            raise ValueError("a spec has a sweep (every combination of listed values) or a search (variants drawn "
                             "from ranges), not both; put the swept keys in search.space as choice")
        if self.search is not None and self.search.scheduler == "asha" \
                and self.search.grace_period >= self.train.epochs:
            raise ValueError(f"search.grace_period ({self.search.grace_period}) must be below train.epochs "
                             f"({self.train.epochs}) for asha to stop anything early")
        if self.train.cuda_graphs and self.optim.schedule != "none":
            raise ValueError("train.cuda_graphs replays the step with a fixed learning rate; use optim.schedule "
                             "none with it, or turn cuda_graphs off")
        return self


__all__ = ["ACTIVATIONS", "Activation", "CNNSpec", "DISTRIBUTIONS", "DEVICE_PATTERN", "DataSpec", "Experiment",
           "FLOAT32_MAX", "FLOAT32_TINY", "Frozen", "INT64_MAX", "InsightSpec", "MAX_DEPTH", "MAX_LAYERS", "MODEL_SPECS",
           "MODEL_TAGS", "MLPSpec", "Model", "ModelSpec", "NAME_PATTERN", "OPEN_KEYS", "OptimSpec", "PythonSpec",
           "SearchSpec", "SpecError", "TrainSpec", "UNSWEPT", "VisdomSpec", "Widths", "check_key", "check_space",
           "check_sweep", "sweepable_keys"]
