from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from sklearn.base import clone

from t2v_automl.baselines import (
    BestOnAverage,
    FixedExtractor,
    MetaFeatureKNN,
    TransferabilitySelector,
    h_score,
    knn_accuracy,
    leep,
    logme,
    meta_features,
    nce,
)
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
    KnowledgeBaseError,
    UnknownNameError,
)


def data(n=200, d=30, C=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    sep = rng.standard_normal((n, d))
    sep[:, :C] += 4.0 * np.eye(C)[y]
    rnd = rng.standard_normal((n, d))
    return sep, rnd, y


@pytest.mark.parametrize("fn", [logme, h_score, knn_accuracy])
def test_feature_scores_prefer_separable_features(fn):
    sep, rnd, y = data()
    assert fn(sep, y) > fn(rnd, y)
    # more features than images
    wide_rng = np.random.default_rng(1)
    wide = np.hstack([sep, wide_rng.standard_normal((200, 300))])
    assert fn(wide, y) > fn(wide_rng.standard_normal((200, 330)), y)


def test_logme_is_the_maximised_evidence():
    sep, _, y = data(n=60, d=8, C=2)
    Y = np.eye(2)[y]
    n = len(y)

    def neg_evidence(log_ab, target):
        a, b = np.exp(log_ab)
        cov = sep @ sep.T / a + np.eye(n) / b
        _, logdet = np.linalg.slogdet(cov)
        return 0.5 * (logdet + target @ np.linalg.solve(cov, target) + n * math.log(2 * math.pi))

    best = np.mean([-optimize.minimize(neg_evidence, np.zeros(2), args=(Y[:, c],),
                                       method="Nelder-Mead",
                                       options={"xatol": 1e-8, "fatol": 1e-10}).fun / n
                    for c in range(2)])
    assert logme(sep, y, tol=1e-10, max_iter=1000) == pytest.approx(best, abs=1e-4)


def test_knn_accuracy_values():
    y = np.repeat([0, 1, 2], 10)
    F = np.eye(3)[y] * 10 + 0.01 * np.random.default_rng(0).standard_normal((30, 3))
    assert knn_accuracy(F, y) == 1.0
    assert knn_accuracy(F, y, n_neighbors=1) == 1.0
    assert 0.0 <= knn_accuracy(np.random.default_rng(1).standard_normal((30, 5)), y) < 0.7
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        knn_accuracy(F, y, n_neighbors=0)


def test_leep_and_nce_on_perfect_and_uninformative_sources():
    _, _, y = data()
    n = len(y)
    prior = np.bincount(y) / n
    neg_entropy = float(prior @ np.log(prior))
    perfect = np.full((n, 10), 0.001)
    perfect[np.arange(n), y] = 1 - 0.009
    uniform = np.full((n, 10), 0.1)
    assert math.log(1 - 0.009) - 0.01 < leep(perfect, y) <= 0
    assert leep(uniform, y) == pytest.approx(neg_entropy)
    assert leep(perfect, y) > leep(uniform, y)
    assert nce(y * 3 + 7, y) == pytest.approx(0.0)
    assert nce(np.zeros(n), y) == pytest.approx(neg_entropy)
    rnd = np.random.default_rng(0).integers(0, 5, n)
    assert neg_entropy <= nce(rnd, y) < 0
    assert nce(np.array(["a", "b"] * (n // 2)), y) <= 0  # any hashable source labels


def test_bad_inputs_of_scores():
    sep, _, y = data(n=20)
    with pytest.raises(InvalidTaskError, match="single class"):
        logme(sep, np.zeros(20))
    with pytest.raises(InvalidTaskError, match="one label per row"):
        h_score(sep, y[:10])
    bad = sep.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidTaskError, match="NaN or inf"):
        knn_accuracy(bad, y)
    with pytest.raises(InvalidTaskError, match="2-D"):
        logme(sep[:, 0], y)
    with pytest.raises(InvalidTaskError, match="softmax"):
        leep(sep, y)
    with pytest.raises(InvalidTaskError, match="1-D"):
        nce(np.zeros((20, 2)), y)
    with pytest.raises(InvalidParameterError, match="shrinkage"):
        h_score(sep, y, shrinkage=2.0)
    with pytest.raises(UnknownNameError, match="shrinkage"):
        h_score(sep, y, shrinkage="oas")
    with pytest.raises(InvalidInputTypeError, match="numeric"):
        logme([["a"]], [0])
    assert h_score(sep, y, shrinkage=0.5) > 0


NAMES = ["efficientnet_lite0", "mnist_cnn", "raw_pixels"]


def table():
    Y = np.array([[0.9, 0.8, 0.5], [0.7, 0.9, 0.6], [0.8, 0.95, 0.4], [0.6, 0.7, 0.5]])
    return pd.DataFrame(Y, columns=NAMES)


def test_best_on_average_and_fixed():
    Y = table()
    X = np.zeros((4, 3))
    boa = BestOnAverage().fit(X, Y)
    assert boa.predict(np.zeros((2, 3))).tolist() == ["mnist_cnn"] * 2
    assert boa.rank(np.zeros((1, 3)))[0].tolist() == ["mnist_cnn", "efficientnet_lite0",
                                                       "raw_pixels"]
    assert boa.mean_scores_ == pytest.approx(Y.mean().to_numpy())
    assert boa.score(X, Y) == pytest.approx(boa.score(X, Y.to_numpy()))
    # missing entries: the mean is taken relative to each task's mean
    Ym = Y.copy()
    Ym.iloc[0, 1] = np.nan
    assert np.isfinite(BestOnAverage().fit(X, Ym).mean_scores_).all()
    fixed = FixedExtractor().fit(X, Y)
    assert fixed.predict(X).tolist() == ["efficientnet_lite0"] * 4
    assert fixed.rank(X[:1])[0].tolist() == ["efficientnet_lite0", "mnist_cnn", "raw_pixels"]
    assert fixed.predict(X[:1], candidates=["raw_pixels", "mnist_cnn"])[0] == "mnist_cnn"
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
    assert knn.predict(np.array([[2, 110, 28, 1], [9, 950, 64, 3]])).tolist() == \
        ["grey", "colour"]
    tasks_knn = MetaFeatureKNN(n_neighbors=2).fit([t2, t3, t2], Y[:3])
    assert tasks_knn.predict_scores([t2]).shape == (1, 2)
    with pytest.raises(InvalidInputTypeError, match=r"\(n_tasks, 4\)"):
        knn.predict(np.zeros((2, 3)))
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        MetaFeatureKNN(n_neighbors=0).fit(M, Y)


def test_transferability_selector(digits):
    from tests.conftest import make_digit_task

    tasks = [make_digit_task(digits, (0, 1), n_per_class=15),
             make_digit_task(digits, (3, 5, 8), n_per_class=10)]
    sel = TransferabilitySelector(measure="knn_accuracy",
                                  extractors=["raw_pixels", "mnist_cnn"]).fit()
    S = sel.predict_scores(tasks)
    assert S.shape == (2, 2) and np.isfinite(S).all() and (S > 0.5).all()
    assert sel.times_.shape == (2, 2) and (sel.times_ > 0).all()
    assert sel.rank(tasks).shape == (2, 2)
    lp = TransferabilitySelector(measure="leep", extractors=["raw_pixels", "mnist_cnn"],
                                 max_images=12).fit()
    S = lp.predict_scores(tasks[:1])
    assert np.isnan(S[0, 0]) and S[0, 1] <= 0  # raw pixels: no source head
    assert lp.predict(tasks[:1])[0] == "mnist_cnn"
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
