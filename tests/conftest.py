"""Shared fixtures: small real tasks (scikit-learn digits) and the tiny probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2v_automl.tasks import Task

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
