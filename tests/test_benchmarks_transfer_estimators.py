"""Fast checks of the transferability-estimator benchmark's estimators and summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import load_benchmark

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "transfer_estimators.py"


@pytest.fixture(scope="module")
def te() -> Any:
    return load_benchmark(_PATH.stem, "bench_transfer_estimators")


def _task(separation: float, seed: int = 0, n: int = 60, d: int = 8
          ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    centres = rng.normal(size=(3, d)) * separation
    return centres[y] + rng.normal(size=(n, d)), y


@pytest.mark.parametrize("name", ["LogME", "kNN accuracy", "probe CV", "LDA log-likelihood",
                                  "NLEEP", "TransRate"])
def test_every_estimator_prefers_features_that_separate_the_classes(te: Any,
                                                                    name: str) -> None:
    fn = te.estimators()[name]
    good, y = _task(4.0)
    bad, _ = _task(0.0)
    assert np.isfinite(fn(good, y)) and fn(good, y) > fn(bad, y)
    assert fn(good, y) == fn(good, y)  # deterministic


def test_probe_cv_is_nan_when_a_class_has_one_image(te: Any) -> None:
    X, y = _task(3.0)
    y = y.copy()
    y[0] = 3  # a fourth class with a single image
    assert np.isnan(te.probe_cv(X, y))


def test_summary_of_a_perfect_and_a_reversed_ranking(te: Any) -> None:
    truth = np.array([[0.9, 0.8, 0.5], [0.6, 0.95, 0.7]])
    scores = {"LogME": truth.copy(), "reversed": -truth}
    scores.update(te.combine(scores))
    assert set(scores) == {"LogME", "reversed", "LogME + reversed"}
    res = te.summarise(truth, scores, n_boot=50)
    assert res["LogME"]["regret"] == 0.0 and res["LogME"]["tau"] == pytest.approx(1.0)
    assert res["reversed"]["regret"] == pytest.approx(100 * np.mean([0.4, 0.35]))
    assert res["reversed"]["diff_vs_reference"] > 0
    text = te.render({"summary": res, "seconds_per_task": {"LogME": 0.1},
                      "machine": {"platform": "p", "cpu_count": 2, "torch": "t",
                                  "torch_threads": 1, "cuda": None, "date": "d"},
                      "command": "c", "n_tasks": 2, "settings": {"task_seeds": [0]},
                      "extractors": ["a", "b", "c"]})
    assert "Lowest mean regret: **LogME**" in text and "**none**" in text
