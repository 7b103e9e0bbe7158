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


def test_features_come_from_the_shared_feature_path(te: Any, tmp_path: Path,
                                                    digits: Any) -> None:
    """``_features`` is ``task_features`` of the training split on the given cache."""
    from t2v_automl.transferability import task_features
    from tests.conftest import make_digit_task

    train = {"a": make_digit_task(digits, (0, 1), n_per_class=10),
             "b": make_digit_task(digits, (2, 3, 4), n_per_class=8, seed=1)}
    feats, labels = te._features(["b", "a"], ["raw_pixels"], 28, train, memory=tmp_path)
    assert list(feats) == ["b", "a"]
    np.testing.assert_array_equal(feats["a"][0],
                                  task_features("raw_pixels", train["a"], input_size=28))
    np.testing.assert_array_equal(labels["b"], train["b"].labels)
    assert any(tmp_path.rglob("output.pkl"))


def test_the_draw_is_the_warm_start_draw(te: Any) -> None:
    import _common

    meta = [{"name": f"{s}/{k}/{i}", "kind": k, "source_dataset": s}
            for s in ("x", "y") for k in ("subset", "relabel") for i in range(6)]
    one = _common.draw_tasks(meta, 2, 1, [0])
    assert one == _common.select_tasks(meta, 2, 1, 0) and len(one) == 6
    both = _common.draw_tasks(meta, 2, 1, [0, 1])
    assert set(one) <= set(both) and len(set(both)) == len(both)
    assert [t.split("/")[0] for t in both] == sorted(t.split("/")[0] for t in both)
