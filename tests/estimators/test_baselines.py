from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from t2v_automl.estimators import (
    BestOnAverage,
    FixedExtractor,
    MetaFeatureKNN,
    TransferabilitySelector,
    meta_features,
)
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
    UnknownNameError,
)

NAMES = ["efficientnet_lite0", "mnist_cnn", "raw_pixels"]

def table():
    Y = np.array([[0.9, 0.8, 0.5], [0.7, 0.9, 0.6], [0.8, 0.95, 0.4], [0.6, 0.7, 0.5]])
    return pd.DataFrame(Y, columns=NAMES)


def test_best_on_average_and_fixed():
    Y = table()
    X = np.zeros((4, 3))
    boa = BestOnAverage().fit(X, Y)
    assert boa.select(np.zeros((2, 3))).tolist() == ["mnist_cnn"] * 2
    assert boa.rank(np.zeros((1, 3)))[0].tolist() == ["mnist_cnn", "efficientnet_lite0",
                                                       "raw_pixels"]
    assert boa.mean_scores_ == pytest.approx(Y.mean().to_numpy())
    assert boa.score(X, Y) == pytest.approx(boa.score(X, Y.to_numpy()))
    # missing entries: the mean is taken relative to each task's mean
    Ym = Y.copy()
    Ym.iloc[0, 1] = np.nan
    assert np.isfinite(BestOnAverage().fit(X, Ym).mean_scores_).all()
    fixed = FixedExtractor().fit(X, Y)
    assert fixed.select(X).tolist() == ["efficientnet_lite0"] * 4
    assert fixed.rank(X[:1])[0].tolist() == ["efficientnet_lite0", "mnist_cnn", "raw_pixels"]
    assert fixed.select(X[:1], candidates=["raw_pixels", "mnist_cnn"])[0] == "mnist_cnn"
    assert FixedExtractor("raw_pixels").fit(X, Y).score(X, Y) < 0
    with pytest.raises(UnknownNameError, match="resnet50"):
        FixedExtractor("resnet50").fit(X, Y)
    with pytest.raises(KnowledgeBaseError, match="no score"):
        BestOnAverage(extractor_names=NAMES).fit(X, np.full((4, 3), np.nan))
    with pytest.raises(InvalidInputTypeError, match="None"):
        BestOnAverage().fit(None, Y)
    assert clone(fixed).get_params() == {"name": "efficientnet_lite0", "extractor_names": None}


def test_meta_features_and_knn(digits):
    from tests.conftest import make_digit_task

    t2 = make_digit_task(digits, (0, 1), n_per_class=10)
    t3 = make_digit_task(digits, (2, 3, 4), n_per_class=30)
    assert meta_features(t2).tolist() == [2, 20, 8, 1]
    assert meta_features(t3).tolist() == [3, 90, 8, 1]
    rgb = np.random.default_rng(0).random((6, 12, 12, 3))
    assert meta_features((rgb, [0, 1] * 3)).tolist() == [2, 6, 12, 3]
    M = np.array([[2, 100, 28, 1], [2, 120, 28, 1], [10, 1000, 64, 3], [8, 900, 64, 3.]])
    Y = np.array([[0.9, 0.5], [0.92, 0.6], [0.5, 0.8], [0.6, 0.85]])
    knn = MetaFeatureKNN(n_neighbors=1, extractor_names=["grey", "colour"]).fit(M, Y)
    assert knn.select(np.array([[2, 110, 28, 1], [9, 950, 64, 3]])).tolist() == \
        ["grey", "colour"]
    tasks_knn = MetaFeatureKNN(n_neighbors=2).fit([t2, t3, t2], Y[:3])
    assert tasks_knn.predict_scores([t2]).shape == (1, 2)
    with pytest.raises(ValueError, match="expecting 4 features"):
        knn.select(np.zeros((2, 3)))
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        MetaFeatureKNN(n_neighbors=0).fit(M, Y)


def test_transferability_selector(digits):
    from tests.conftest import make_digit_task

    tasks = [make_digit_task(digits, (0, 1), n_per_class=15),
             make_digit_task(digits, (3, 5, 8), n_per_class=10)]
    sel = TransferabilitySelector(measure="knn_accuracy",
                                  extractors=["raw_pixels", "mnist_cnn"]).fit()
    S, times = sel.predict_scores(tasks, return_times=True)
    assert S.shape == (2, 2) and np.isfinite(S).all() and (S > 0.5).all()
    assert times.shape == (2, 2) and (times > 0).all()
    assert np.array_equal(sel.predict(tasks), S) and not hasattr(sel, "times_")
    assert sel.rank(tasks).shape == (2, 2)
    lp = TransferabilitySelector(measure="leep", extractors=["raw_pixels", "mnist_cnn"],
                                 max_images=12).fit()
    S = lp.predict_scores(tasks[:1])
    assert np.isnan(S[0, 0]) and S[0, 1] <= 0  # raw pixels: no source head
    assert lp.select(tasks[:1])[0] == "mnist_cnn"
    assert -1 <= lp.score(tasks[:1], pd.DataFrame([[0.8, 0.9]], columns=lp.extractor_names_)) \
        <= 1
    by_columns = TransferabilitySelector().fit(None, table())
    assert by_columns.extractor_names_ == NAMES
    with pytest.raises(UnknownNameError, match="unknown extractor"):
        TransferabilitySelector(extractors=["raw_pixels", "nope"]).fit()
    with pytest.raises(UnknownNameError, match="measure"):
        TransferabilitySelector(measure="gbc").fit()
    with pytest.raises(InvalidInputTypeError, match="not one string"):
        TransferabilitySelector(extractors="raw_pixels").fit()
    with pytest.raises(InvalidInputTypeError, match="single Task"):
        sel.predict_scores(tasks[0])
