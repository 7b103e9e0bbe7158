from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize

from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
    UnknownNameError,
)
from t2v_automl.transferability import (
    get_transferability,
    h_score,
    knn_accuracy,
    leep,
    list_transferability,
    logme,
    nce,
    register_transferability,
    subsample_task,
    task_features,
    unregister_transferability,
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





def test_registry_holds_the_builtin_scores_and_takes_new_ones():
    assert list_transferability()[:5] == ["logme", "leep", "nce", "h_score", "knn_accuracy"]
    assert get_transferability("leep").needs == "source_probs"
    with pytest.raises(UnknownNameError, match="register_transferability"):
        get_transferability("gbc")
    with pytest.raises(InvalidParameterError, match="registered already"):
        register_transferability("logme", logme)
    with pytest.raises(InvalidParameterError, match="needs"):
        register_transferability("mine", logme, needs="pixels")
    register_transferability("neg_logme", lambda f, y: -logme(f, y), overwrite=True)
    try:
        F, _, y = data()
        assert get_transferability("neg_logme")(F, y) == pytest.approx(-logme(F, y))
        assert "neg_logme" in list_transferability()
    finally:
        unregister_transferability("neg_logme")
    assert "neg_logme" not in list_transferability()


def test_task_features_cache_hits_and_keys(tmp_path, digits):
    from joblib import Memory

    from tests.conftest import make_digit_task

    task = make_digit_task(digits, (0, 1), n_per_class=6)
    plain = task_features("raw_pixels", task)
    mem = Memory(tmp_path, verbose=0)
    first, s1 = task_features("raw_pixels", task, memory=mem, return_seconds=True)
    again, s2 = task_features("raw_pixels", task, memory=mem, return_seconds=True)
    assert np.array_equal(plain, first) and np.array_equal(first, again)
    assert s1 == s2 >= 0  # the recorded compute time, also on a cache hit
    other = make_digit_task(digits, (0, 2), n_per_class=6)
    assert not np.array_equal(task_features("raw_pixels", other, memory=mem), first)
    small = subsample_task(task, 4, random_state=0)
    assert small.n_images == 4 and sorted(np.bincount(small.labels)) == [2, 2]
    assert subsample_task(task, None) is task
