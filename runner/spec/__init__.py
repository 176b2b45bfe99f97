"""The experiment spec: frozen pydantic models (`models`), loading from JSON with `--set` overrides
and the one-paragraph error a person sees when a spec is wrong (`files`). Everything is importable
from here: `from runner import spec as specs; specs.load(path)`.

Importing it must stay cheap (no torch): `validate` and `schema` answer in well under a second.
"""

from runner.spec.files import apply_override, depth, load, parse, read, schema
from runner.spec.models import *  # noqa: F403 - the models and their constants are the spec's API
from runner.spec.models import __all__ as _models

__all__ = ["apply_override", "depth", "load", "parse", "read", "schema", *_models]
