"""The experiment spec: frozen pydantic models, loading from JSON with `--set` overrides, and the
one-paragraph error messages a person sees when a spec is wrong. A spec may declare a `sweep`
(dotted keys to lists of values, and seeds); runner.sweep turns it into one spec per variant.

Importing this module must stay cheap (no torch): `validate` and `schema` answer in well under a
second because of it.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Activation = Literal["relu", "leaky_relu", "selu", "softplus", "sigmoid", "tanh", "gelu"]
ACTIVATIONS: tuple[str, ...] = Activation.__args__  # type: ignore[attr-defined]
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class SpecError(Exception):
    """A spec that cannot be used; the message is the one paragraph shown to the user."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DataSpec(Frozen):
    dataset: Literal["mnist"] = Field("mnist", description="Which dataset: mnist (60,000 train / 10,000 test digits).")
    root: str = Field("data", description="Folder holding MNIST/raw/ in torchvision's layout; `make data` fills it.")
    batch_size: int = Field(200, gt=0, description="Training examples per optimisation step.")
    test_batch_size: int = Field(1000, gt=0, description="Examples per forward pass when evaluating.")
    train_limit: int | None = Field(None, gt=0, description="Use only the first N training examples (null: all).")
    test_limit: int | None = Field(None, gt=0, description="Use only the first N test examples (null: all).")
    verify: bool = Field(True, description="Check each file's sha256 against the published MNIST sums; "
                                           "turn off only for your own IDX files.")


class ModelSpec(Frozen):
    kind: Literal["mlp", "logistic"] = Field(
        "mlp", description="mlp: hidden layers with an activation; logistic: one linear layer (softmax regression).")
    api: Literal["module", "functional"] = Field(
        "module", description="module: nn.Sequential; functional: raw weight tensors and F.* calls, as the tutorial's "
                              "low-level version. Same init and seed give the same function.")
    hidden: tuple[int, ...] = Field((200, 200), description="Widths of the hidden layers, input to output.")
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

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if any(w <= 0 for w in widths):
            raise ValueError("every hidden width must be a positive integer")
        return widths


class OptimSpec(Frozen):
    name: Literal["sgd", "adam"] = Field("sgd", description="Optimiser: sgd or adam.")
    lr: float = Field(0.01, gt=0, description="Learning rate, > 0.")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum in [0, 1); sgd only.")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty, >= 0.")

    @model_validator(mode="after")
    def _momentum_is_for_sgd(self) -> "OptimSpec":
        if self.name != "sgd" and self.momentum:
            raise ValueError("momentum applies to sgd only; adam has its own betas")
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

class VisdomSpec(Frozen):
    server: str | None = Field(None, description="Visdom server URL; null: $VISDOM_SERVER or http://localhost.")
    port: int | None = Field(None, gt=0, lt=65536, description="Visdom port; null: $VISDOM_PORT or 8097.")
    env: str | None = Field(None, pattern=NAME_PATTERN, description="Visdom env; null: one env per run, named "
                            "after its run directory and grouped under the experiment (e.g. relu_20261125-171800).")
    smoothing: float = Field(0.6, ge=0, lt=1, description="Weight of the smoothed train-loss trace (a debiased "
                             "exponential moving average, as TensorBoard's); 0 turns it off.")


# Keys a sweep may not vary: they name the run and its dashboard, which the sweep names itself.
UNSWEPT = ("name", "description", "sweep", "visdom")


def sweepable_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of an experiment that a sweep may vary, e.g. model.activation, optim.lr, seed."""
    model = model or Experiment
    keys = []
    for name, info in model.model_fields.items():
        if not prefix and name in UNSWEPT:
            continue
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            keys += sweepable_keys(info.annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def check_sweep(sweep: Any) -> dict[str, list[Any]]:
    """A sweep declaration's own shape; whether each value suits its key is checked per variant."""
    example = 'e.g. "sweep": {"model.activation": ["relu", "selu"], "seed": [0, 1, 2]}'
    if not isinstance(sweep, dict):
        raise ValueError(f"must map dotted keys to lists of values to try, {example}")
    if not sweep:
        raise ValueError(f"declares nothing to vary; {example}")
    known = sweepable_keys()
    for key, values in sweep.items():
        if key not in known:
            if key.split(".")[0] in UNSWEPT:
                why = f"{key} cannot be swept: each variant gets its own name and dashboard env from the sweep"
            elif any(k.startswith(key + ".") for k in known):
                why = (f"{key} is a section, not a key; sweep one of its keys, such as "
                       f"{next(k for k in known if k.startswith(key + '.'))}")
            else:
                close = difflib.get_close_matches(key, known, n=1)
                why = (f"{key} is not a key of an experiment{f' (did you mean {close[0]}?)' if close else ''}; "
                       "keys are dotted paths such as model.activation, optim.lr or seed")
            raise ValueError(why)
        if not isinstance(values, list):
            raise ValueError(f"{key} must be a list of the values to try, e.g. [{json.dumps(values)}] "
                             f"(got {json.dumps(values)[:60]})")
        if not values:
            raise ValueError(f"{key} lists no values; give at least one")
        seen = [json.dumps(v, sort_keys=True) for v in values]
        twice = next((v for i, v in enumerate(seen) if v in seen[:i]), None)
        if twice is not None:
            raise ValueError(f"{key} lists {twice} twice; each value makes one variant")
    return sweep


class Experiment(Frozen):
    name: str = Field(..., pattern=NAME_PATTERN, description="Names the run directory and the dashboard env.")
    description: str = Field("", description="What the experiment shows, in a sentence or two.")
    seed: int = Field(0, ge=0, lt=2**63, description="Seeds init and batch order; same seed on CPU, same result.")
    data: DataSpec = Field(default_factory=DataSpec, description="Dataset and batching.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The network.")
    loss: Literal["cross_entropy", "mse"] = Field(
        "cross_entropy", description="cross_entropy on the logits, or mse between softmax probabilities and one-hot "
                                     "targets.")
    optim: OptimSpec = Field(default_factory=OptimSpec, description="Optimiser.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training loop.")
    visdom: VisdomSpec = Field(default_factory=VisdomSpec, description="Where the dashboard goes.")
    sweep: dict[str, list[Any]] | None = Field(
        None, description="Variants to compare: dotted keys mapped to lists of values, e.g. {\"model.activation\": "
                          "[\"relu\", \"selu\"], \"seed\": [0, 1, 2]}. Every combination runs (a list of seeds "
                          "repeats each one), each with its own run directory and dashboard env.")

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep_shape(cls, sweep: Any) -> Any:
        return sweep if sweep is None else check_sweep(sweep)


def _describe(error: dict[str, Any], source: str) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "the top level"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "is not a known key"
    elif error["type"] == "literal_error":
        message = f"must be one of {error['ctx']['expected']}"
    elif error["type"] == "string_pattern_mismatch":
        valid = {"name": "letters, digits, '_', '.', '-' (up to 100, starting with a letter or digit)",
                 "device": "auto, cpu, mps, cuda or cuda:N"}
        message = f"must be {valid.get(str(error['loc'][-1]), 'of the form ' + error['ctx']['pattern'])}"
    got = error.get("input")
    shown = "" if error["type"] in ("missing",) or isinstance(got, dict) else f" (got {json.dumps(got)[:60]})"
    if error["type"] != "value_error":  # pydantic's own sentences start "Input should ..."
        message = message[:1].lower() + message[1:]
    return f"{key}: {message}{shown}"


def parse(data: Any, source: str) -> Experiment:
    """An Experiment from already-decoded JSON, or SpecError naming every bad key."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: an experiment must be a JSON object {{...}}, not a JSON {type(data).__name__}.")
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, source) for e in exc.errors(include_url=False))
        raise SpecError(f"{source}: invalid experiment: {problems}. "
                        "See `python -m runner schema` for every key and its meaning.") from None


def read(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or SpecError saying what is wrong with the file."""
    if path.is_dir():
        raise SpecError(f"{path} is a directory; give an experiment file such as experiments/relu.json.")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file; the experiments that ship are in experiments/*.json.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read it as UTF-8 text ({exc}).") from None
    if not text.strip():
        raise SpecError(f"{path} is empty; an experiment is a JSON object with at least a \"name\".")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None


def apply_override(data: dict[str, Any], assignment: str) -> dict[str, Any]:
    """A copy of `data` with one `dotted.key=value` applied; value is JSON, or a plain string."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key or not re.fullmatch(r"[A-Za-z_]+(\.[A-Za-z_]+)*", key):
        raise SpecError(f"--set {assignment!r}: expected dotted.key=value, e.g. --set optim.lr=0.1 "
                        "or --set model.hidden=[256,128].")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare words such as adam or cpu
    data = json.loads(json.dumps(data))  # deep copy, JSON types only
    node = data
    *parents, leaf = key.split(".")
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise SpecError(f"--set {assignment!r}: {'.'.join(parents[:i + 1])} is not a section with keys.")
        node = child
    node[leaf] = value
    return data


def load(path: Path, overrides: list[str] = ()) -> Experiment:  # type: ignore[assignment]
    """Read, override and validate one experiment file."""
    data = read(path)
    if not isinstance(data, dict):
        return parse(data, str(path))
    for assignment in overrides:
        data = apply_override(data, assignment)
    source = str(path) + (f" with --set {' '.join(overrides)}" if overrides else "")
    return parse(data, source)


def schema() -> dict[str, Any]:
    """JSON Schema of an experiment file, for editors."""
    return Experiment.model_json_schema()
