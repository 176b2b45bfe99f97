"""The base of every section of a spec: `Frozen`, a pydantic model that is immutable, refuses unknown
keys and NaN, takes numbers strictly (`true` is not a batch size) and only numbers the machine can
hold (counts in 64 bits, reals in float32, which training computes in).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

FLOAT32_MAX = 3.4028234663852886e38  # the largest float32: training computes in float32
FLOAT32_TINY = 1.401298464324817e-45  # the smallest positive float32; anything below rounds to 0
INT64_MAX = 2**63 - 1


def _numbers(annotation: Any) -> set[type]:
    """Which of int and float a field's annotation holds (directly, or in a tuple or Optional)."""
    if annotation in (int, float):
        return {annotation}
    return set().union(*(_numbers(a) for a in getattr(annotation, "__args__", ()) if a is not Ellipsis)) \
        if getattr(annotation, "__args__", None) else set()


def _check_number(value: Any, kinds: set[type]) -> None:
    """Strict counts: `true` is not a batch size, nor "200" or 200.5 (pydantic would take them)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    if int in kinds and float not in kinds and not isinstance(value, int):
        raise ValueError("must be a whole number, an integer such as 200 (no quotes, no decimal point)")


def _check_size(value: Any, kinds: set[type]) -> None:
    """Numbers the machine can hold: counts in 64 bits, reals in float32 (1e300 is not a learning rate)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        raise ValueError(f"is too large: at most {INT64_MAX:,} (a 64-bit integer)")
    if isinstance(value, float) and float in kinds and math.isfinite(value):
        if abs(value) > FLOAT32_MAX:
            raise ValueError("is beyond float32 range (at most about 3.4e38), which training computes in")
        if value and abs(value) < FLOAT32_TINY:
            raise ValueError("is so small that float32, which training computes in, holds it as 0")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _strict_numbers(cls, value: Any, info: Any) -> Any:
        return cls._each_number(value, info.field_name, _check_number)

    @field_validator("*", mode="after")
    @classmethod
    def _numbers_that_fit(cls, value: Any, info: Any) -> Any:
        return cls._each_number(value, info.field_name, _check_size)

    @classmethod
    def _each_number(cls, value: Any, field: str, check: Any) -> Any:
        """`check(item, kinds)` on the value, or on each item of a list of them, of a numeric field."""
        kinds = _numbers(cls.model_fields[field].annotation)
        if kinds and value is not None:
            for item in (value if isinstance(value, (list, tuple)) else [value]):
                check(item, kinds)
        return value
