"""Fast checks of the small-task benchmark: its ground truth is the brute force's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import load_benchmark

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "small_tasks.py"


@pytest.fixture(scope="module")
def bench() -> Any:
    return load_benchmark(_PATH.stem, "bench_small_tasks")


def test_record_ground_truth_equals_evaluate_extractor(bench: Any, tmp_path: Path) -> None:
    from t2v_automl.estimators import Task2VecEmbedder
    from t2v_automl.evaluation import evaluate_extractor
    from t2v_automl.suites import make_suite

    st = make_suite("mini", 0, tasks=["digits/subset/0-vs-6"], train_per_class=5)[0]
    fisher = Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=30,
                              head_epochs=2, device="cpu").fit()
    domain = Task2VecEmbedder(probe="tiny_random", image_size=16, method="domain",
                              device="cpu").fit()
    names = ["raw_pixels", "mnist_cnn"]
    rec = bench.precompute_record(st, 5, 0, names, tmp_path / "features", fisher, domain)
    assert rec["n_train"] == 10 and rec["n_classes"] == 2 and rec["size"] == 5
    for j, name in enumerate(names):
        truth = evaluate_extractor(name, st.train, st.test, input_size=bench.INPUT_SIZE,
                                   C=bench.C_HEAD).score
        assert rec["accuracy"][j] == pytest.approx(truth, abs=1e-12)
    assert set(rec["measures"]) == set(bench.MEASURES)
    assert all(v.shape == (2,) for v in rec["measures"].values())
    assert rec["brute_force_seconds"] > 0 and rec["fisher_seconds"] >= 0
    # the held-out draw is spread over the source datasets
    from t2v_automl.knowledge import KnowledgeBase

    tasks = bench.held_out_tasks(KnowledgeBase.default(), 1, 1, 0)
    sources = {t.split("/")[0] for t in tasks}
    assert len(tasks) == 2 * len(sources) and len(sources) == 5
    assert np.all([isinstance(t, str) for t in tasks])
