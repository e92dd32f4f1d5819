"""Argument checks shared by the model builders: one wording for every bad size."""

from __future__ import annotations

import math
import numbers


def positive_int(owner: str, name: str, value: object) -> int:
    """``value`` as an ``int`` (``16.0`` is accepted) or a ``ValueError`` naming ``owner`` and ``name``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def positive_number(owner: str, name: str, value: object) -> float:
    """``value`` as a finite ``float`` > 0 or a ``ValueError`` naming ``owner`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive finite number, got {value!r}")
    return float(value)
