"""Shared fixtures: small real tasks (scikit-learn digits) and the tiny probe."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from t2v_automl.tasks import Task

#: The benchmark scripts' folder (they are scripts, not a package).
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(stem: str, module_name: str) -> ModuleType:
    """Import ``benchmarks/<stem>.py`` as ``module_name`` (registered in ``sys.modules``, so
    that its functions pickle for worker processes)."""
    spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target


def make_digit_task(digits, classes, n_per_class=30, name=None, seed=0):
    images, target = digits
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(target == c), n_per_class, replace=False)
                          for c in classes])
    return Task.from_arrays(images[idx], target[idx], name=name or f"digits{classes}",
                            provenance={"source_dataset": "digits"})


@pytest.fixture(scope="session")
def digit_tasks(digits):
    return [make_digit_task(digits, c) for c in [(0, 1), (2, 3), (4, 5, 6), (7, 8, 9)]]


@pytest.fixture(autouse=True)
def _clean_registry():
    """Whatever a test registers (zoo files, experts, checkpoints) is removed after it, so
    that the built-in zoo is the same for every test whatever ran before."""
    from t2v_automl.extractors import list_extractors, unregister_extractor

    before = set(list_extractors())
    yield
    for name in list_extractors():
        if name not in before:
            unregister_extractor(name)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module (``pytestmark = usefixtures("one_torch_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
