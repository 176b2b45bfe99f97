"""An ignite handler that logs an engine's output and metrics into a tracked run (runner.track), shaped
as ignite's own `OutputHandler`s (tensorboard_logger, visdom_logger) but on a run you already hold.

    from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
    from ignite.handlers import global_step_from_engine
    from runner import track
    from runner.adapters.ignite import attach

    with track.run("mnist-ignite", config={"lr": 0.01}) as run:
        attach(trainer, run, Events.ITERATION_COMPLETED(every=10), output_transform=lambda loss: {"loss": loss})
        attach(evaluator, run, Events.COMPLETED, tag="test", global_step_transform=global_step_from_engine(trainer))
        trainer.run(train_loader, max_epochs=3)

Each call logs `<tag>/<name>` values at the event's own count (`engine.state.iteration` for iteration
events, `engine.state.epoch` for epoch events and COMPLETED) unless `global_step_transform` says
otherwise. The output: as `output_transform` returns it, or by default the engine's output itself
when it is a number, a one-element tensor or a dict (nested dicts are joined with "/"); an output of
another kind (an evaluator's `(y_pred, y)`) is not logged. A number is named "output", as ignite's
handlers name it. `metric_names`: "all" of `engine.state.metrics` (the default), a list of names
(those missing are skipped), or None. Tensors are handed over as they are, so the run reads them in
batches. The run's end is yours (`with track.run(...)`): an exception out of `engine.run` fails it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

try:
    from ignite.engine import Engine, Events
    from ignite.engine.events import RemovableEventHandle
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(f"runner.adapters.ignite needs pytorch-ignite ({exc}); it comes with the project's `test` "
                      "extra: `pip install -e '.[test]'` (or `make install-extras`), or `pip install pytorch-ignite`."
                      ) from exc

from runner.track import Run


def attach(engine: Engine, run: Run, event: Any = Events.ITERATION_COMPLETED, *,
           output_transform: Callable[[Any], Any] | None = None, metric_names: str | Sequence[str] | None = "all",
           tag: str = "train", global_step_transform: Callable[[Engine, Any], int] | None = None
           ) -> RemovableEventHandle:
    """Log `engine`'s output and metrics into `run` on `event`; returns ignite's handle (`.remove()`)."""
    handler = OutputHandler(run, tag, output_transform, metric_names, global_step_transform)
    return engine.add_event_handler(event, handler, event)


class OutputHandler:
    """What `attach` adds: called with the engine and the event it was attached to."""

    def __init__(self, run: Run, tag: str, output_transform: Callable[[Any], Any] | None,
                 metric_names: str | Sequence[str] | None, global_step_transform: Callable[[Engine, Any], int] | None
                 ) -> None:
        if metric_names is not None and metric_names != "all" and (isinstance(metric_names, str)
                                                                   or not isinstance(metric_names, Sequence)):
            raise TypeError(f"metric_names is 'all', a list of names or None, not {metric_names!r}")
        for name, fn in (("output_transform", output_transform), ("global_step_transform", global_step_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a function, not {type(fn).__name__}")
        self.run, self.tag, self.metric_names = run, tag, metric_names
        self.output_transform, self.global_step_transform = output_transform, global_step_transform

    def __call__(self, engine: Engine, event: Any) -> None:
        values: dict[str, Any] = {}
        output = engine.state.output
        if self.output_transform is not None:
            output = self.output_transform(output)
        if self.output_transform is not None or _loggable(output):
            _flatten(values, self.tag, output if isinstance(output, Mapping) else {"output": output})
        metrics = engine.state.metrics
        names = list(metrics) if self.metric_names == "all" else list(self.metric_names or ())
        _flatten(values, self.tag, {name: metrics[name] for name in names if name in metrics})
        if values:
            step = (self.global_step_transform(engine, event) if self.global_step_transform is not None
                    else engine.state.get_event_attrib_value(event))
            self.run.log(values, step=step)


def _loggable(output: Any) -> bool:
    """Whether an output is logged without a transform: a number, a one-element tensor or a dict."""
    if isinstance(output, Mapping) or isinstance(output, (int, float)) and not isinstance(output, bool):
        return True
    shape = getattr(output, "shape", None)
    return shape is not None and math.prod(shape) == 1


def _flatten(into: dict[str, Any], prefix: str, values: Mapping[Any, Any]) -> None:
    for key, value in values.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            _flatten(into, name, value)
        else:
            into[name] = value


__all__ = ["OutputHandler", "attach"]
