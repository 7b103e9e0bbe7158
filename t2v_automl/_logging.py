"""The package logger and the one helper that decides whether to show progress bars."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar

logger = logging.getLogger("t2v_automl")
logger.addHandler(logging.NullHandler())

T = TypeVar("T")


def progress(iterable: Iterable[T], *, verbose: int | bool, desc: str, total: int | None = None,
             leave: bool = False) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar when ``verbose`` is truthy, else return it unchanged."""
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave)
