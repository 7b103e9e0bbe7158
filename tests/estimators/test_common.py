"""The scikit-learn contract, for every selector.

Selectors whose rows are arrays (embeddings, meta-features, or nothing but their count) run
scikit-learn's own ``parametrize_with_checks``, with no expected failure. Selectors whose
rows are tasks (images and labels) cannot take the checks' random arrays; for them an
explicit block checks what the contract promises: ``clone``, ``get_params``/``set_params``,
pickling, ``GridSearchCV``, ``cross_val_predict`` and no attribute change at predict time.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, LeaveOneGroupOut, cross_val_predict
from sklearn.utils.estimator_checks import parametrize_with_checks

from t2v_automl.estimators import (
    BestOnAverage,
    ExtractorSelector,
    FixedExtractor,
    HybridSelector,
    MetaFeatureKNN,
    Task2VecEmbedder,
    TransferabilitySelector,
)
from tests.conftest import make_digit_task

ARRAY_SELECTORS = [
    ExtractorSelector(), ExtractorSelector(strategy="model2vec"),
    ExtractorSelector(strategy="nearest", metric="asymmetric", n_neighbors=1),
    ExtractorSelector(metric="normalized_cosine"), ExtractorSelector(dtype="float32"),
    BestOnAverage(), FixedExtractor(name="extractor0"), MetaFeatureKNN(n_neighbors=2),
]


_FLOAT32 = ("dtype='float32' keeps the known embeddings and their distance index in float32 "
            "(the point of the option: half the memory); float32 BLAS sums depend on the "
            "batch's composition, so scores of a row predicted alone and in a batch differ "
            "by ~1e-6 relative, beyond the check's 1e-7 tolerance. The float64 default passes.")


_FIXED_NAME = ("FixedExtractor(name=...) must find its extractor among y's columns; this check "
               "passes y as a DataFrame whose one column is named '0', so fitting refuses it "
               "(UnknownNameError). With an array y it passes (check_regressors_train etc.).")


def _expected_failed(estimator):
    if isinstance(estimator, FixedExtractor):
        return {"check_regressor_data_not_an_array": _FIXED_NAME}
    if isinstance(estimator, ExtractorSelector) and estimator.dtype == "float32":
        return {"check_methods_subset_invariance": _FLOAT32,
}
    return {}


@parametrize_with_checks(ARRAY_SELECTORS, expected_failed_checks=_expected_failed)
def test_sklearn_checks(estimator, check):
    check(estimator)


def _state(est):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(est).items()}


def _unchanged(before, est):
    after = vars(est)
    assert before.keys() == after.keys()
    for k, v in before.items():
        if isinstance(v, np.ndarray):
            assert np.array_equal(v, after[k], equal_nan=True), k
        else:
            assert v is after[k] or v == after[k], k


def test_cross_val_predict_leave_one_group_out_is_the_fold_loop():
    """``predict`` returns the score matrix, so cross_val_predict does the benchmark's loop."""
    rng = np.random.default_rng(0)
    E = rng.random((24, 6)) + 0.05
    Y = rng.uniform(0.4, 1.0, (24, 3))
    groups = np.repeat(np.arange(4), 6)
    sel = ExtractorSelector(n_neighbors=2)
    pred = cross_val_predict(sel, E, Y, cv=LeaveOneGroupOut(), groups=groups)
    loop = np.empty_like(Y)
    for g in range(4):
        out = groups == g
        loop[out] = clone(sel).fit(E[~out], Y[~out]).predict(E[out])
    assert np.array_equal(pred, loop)


NAMES = ["raw_pixels", "mnist_cnn"]


@pytest.fixture(scope="module")
def tasks_and_scores(digits):
    classes = [(0, 1), (0, 7), (1, 7), (2, 3), (3, 8), (2, 8)]
    tasks = [make_digit_task(digits, c, n_per_class=12, seed=i) for i, c in enumerate(classes)]
    Y = pd.DataFrame(np.random.default_rng(0).uniform(0.5, 1.0, (len(tasks), 2)),
                     columns=NAMES)
    return tasks, Y


def _task_selectors():
    embedder = Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=24,
                                head_epochs=2)
    transfer = TransferabilitySelector(measure="knn_accuracy", max_images=24)
    return [
        HybridSelector(embedder=embedder, transferability=transfer, novelty_center=-1e6),
        HybridSelector(embedder=embedder, transferability=transfer, domain_screen=0.0),
        TransferabilitySelector(measure="knn_accuracy", extractors=NAMES, max_images=24),
    ]


@pytest.mark.parametrize("est", _task_selectors(), ids=["hybrid", "hybrid-screen", "transfer"])
def test_task_rows_contract(est, tasks_and_scores):
    tasks, Y = tasks_and_scores
    params = est.get_params(deep=False)
    twin = clone(est)
    assert twin.get_params(deep=False).keys() == params.keys()
    assert twin.set_params(**params) is twin
    fitted = clone(est).fit(tasks[:4], Y.iloc[:4])
    before = _state(fitted)
    pred = fitted.predict(tasks[4:])
    assert pred.shape == (2, 2) and np.isfinite(pred).all()  # the shape of y
    fitted.rank(tasks[4:])
    fitted.select(tasks[4:])
    fitted.score(tasks[4:], Y.iloc[4:])
    if hasattr(fitted, "explain"):
        fitted.explain(tasks[4:])
    _unchanged(before, fitted)  # nothing written at predict time
    again = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(again.predict(tasks[4:]), pred)
    cv = cross_val_predict(clone(est), tasks, Y, cv=KFold(3))
    assert cv.shape == Y.shape
    grid = {"novelty_center": [-1e6, 1e6]} if isinstance(est, HybridSelector) \
        else {"max_images": [12, 24]}
    search = GridSearchCV(clone(est), grid, cv=KFold(2)).fit(tasks, Y)
    assert set(search.best_params_) == set(grid)
