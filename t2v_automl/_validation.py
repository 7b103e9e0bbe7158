"""Parameter checks shared by the package (imports nothing of the package but exceptions)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from t2v_automl.exceptions import InvalidParameterError, UnknownNameError

__all__ = ["check_choice", "check_float", "check_int"]


def check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidParameterError(
            f"{name} must be an integer >= {minimum}; got {value!r}."
        )
    return int(value)


def check_float(value: Any, name: str, *, positive: bool | None = True) -> float:
    """A finite real: ``> 0`` (``positive=True``), ``>= 0`` (False) or any sign (None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(float(value)) or (positive and value <= 0) \
            or (positive is not None and value < 0):
        bound = {True: " > 0", False: " >= 0", None: ""}[positive]
        raise InvalidParameterError(
            f"{name} must be a finite number{bound}; got {value!r}."
        )
    return float(value)


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UnknownNameError(
            f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}."
        )
    return value

