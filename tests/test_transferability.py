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
    etran,
    etran_components,
    get_transferability,
    h_score,
    knn_accuracy,
    leep,
    list_transferability,
    logme,
    logme_authors,
    logme_pca,
    minmax_combine,
    nce,
    ncti,
    ncti_components,
    pca_reduce,
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


# ----------------------------------------------------------------------------- issue 16 scores
def _sep(n, d, C, strength, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    F = rng.standard_normal((n, d))
    F[:, :C] += strength * np.eye(C)[y]
    return F, y


def test_logme_authors_equals_exact_when_images_outnumber_features():
    F, y = _sep(200, 10, 3, 2.0)
    assert logme_authors(F, y) == pytest.approx(logme(F, y), abs=2e-3)


def test_logme_authors_rewards_dimension_when_features_outnumber_images():
    # a weakly informative 1000-d candidate against a clearly informative 8-d one
    wide, y = _sep(60, 1000, 2, 0.3, seed=1)
    narrow, _ = _sep(60, 8, 2, 2.0, seed=2)
    assert logme(narrow, y) > logme(wide, y)  # the exact evidence prefers the good features
    assert logme_authors(wide, y) > logme_authors(narrow, y)  # the authors' code does not
    # the omitted term: log|A| lacks (d - k) log(alpha) with k = n = 60 singular values
    assert logme_authors(wide, y) - logme(wide, y) > 1.0


def test_logme_pca_is_logme_on_principal_components():
    from sklearn.decomposition import PCA

    F, y = _sep(80, 30, 3, 1.5)
    Z = PCA(n_components=10, svd_solver="full").fit_transform(F)
    assert logme_pca(F, y, n_components=10) == pytest.approx(logme(Z, y), rel=1e-9)
    assert np.allclose(np.abs(pca_reduce(F, 10)), np.abs(Z))
    # at most min(n, d) components; a 4-d candidate is scored on its own 4 dimensions
    small, _ = _sep(80, 4, 3, 1.5)
    assert logme_pca(small, y) == pytest.approx(logme(small - small.mean(0), y), rel=1e-9)


def test_ncti_and_etran_components_of_constant_features_are_hand_computed():
    y = np.array([0, 0, 0, 1])
    F = np.ones((4, 5))
    prior = np.array([0.75, 0.25])
    seli, ncc, vc = ncti_components(F, y)
    assert seli == 0.0
    assert ncc == pytest.approx((3 * 0.75 + 0.25) / 4)  # every posterior is the prior
    # class c's posterior rows are n_c copies of the prior: nuclear norm sqrt(n_c) |prior|
    assert vc == pytest.approx(math.log((math.sqrt(3) + 1) * np.linalg.norm(prior)))
    energy, lda = etran_components(F, y)
    assert energy == pytest.approx(1 + math.log(5))  # logsumexp of five ones
    assert lda == pytest.approx(ncc)  # equal class means: the posterior is the prior


def test_etran_lda_term_is_the_paper_classifier_by_hand():
    F = np.array([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [4.0, 2.0]])
    y = np.array([0, 0, 1, 1])
    mu = np.array([[0.0, 1.0], [4.0, 1.0]])
    logits = F @ mu.T - 0.5 * (mu ** 2).sum(1) + np.log([0.5, 0.5])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert etran_components(F, y)[1] == pytest.approx(p[np.arange(4), y].mean())
    lse = np.log(np.exp(F).sum(1))
    assert etran_components(F, y)[0] == pytest.approx(lse.mean())
    assert etran_components(F, y, tail_fraction=0.5)[0] == pytest.approx(np.sort(lse)[:2].mean())
    with pytest.raises(InvalidParameterError, match="tail_fraction"):
        etran_components(F, y, tail_fraction=0.0)


@pytest.mark.parametrize("name", ["ncti", "etran", "logme", "logme_pca"])
def test_scores_order_candidates_by_class_separation(name):
    """The papers' formulas on a synthetic zoo with a known order: more separation, higher."""
    y = np.arange(120) % 3
    cands = [_sep(120, 40, 3, s, seed=i)[0] for i, s in enumerate((0.0, 1.0, 2.0, 4.0))]
    got = get_transferability(name).score_candidates(cands, y, ["s0", "s1", "s2", "s4"])
    assert list(np.argsort(got)) == [0, 1, 2, 3], got


def test_minmax_combine_and_relative_registry():
    comp = np.array([[1.0, 0.5, 3.0], [3.0, 0.7, 2.0], [2.0, 0.9, 2.0]])
    # seli min-max (0, 1, .5) + ncc (0, .5, 1) - vc (1, 0, 0)
    assert np.allclose(ncti(comp), [-1.0, 1.5, 1.5])
    assert np.allclose(etran(comp[:, :2]), [0.0, 1.5, 1.5])
    with_nan = comp.copy()
    with_nan[0, 1] = np.nan
    out = ncti(with_nan)
    assert np.isnan(out[0]) and np.isfinite(out[1:]).all()
    assert np.allclose(minmax_combine([[1.0], [1.0]], [1.0]), 0.0)  # all equal: no spread
    t = get_transferability("ncti")
    assert t.relative and not get_transferability("logme").relative
    assert {"ncti", "etran", "logme_pca", "logme_authors"} <= set(list_transferability())
    with pytest.raises(InvalidParameterError, match="combine"):
        register_transferability("bad", lambda x, y: 0.0, combine=3)


def test_bad_input_gives_defined_values_or_errors_naming_the_candidate():
    y = np.array([0, 1, 2])  # one image per class, fewer than classes x 2
    rng = np.random.default_rng(0)
    F = rng.standard_normal((3, 16))
    const = np.zeros((3, 16))
    for name in ("logme", "logme_authors", "logme_pca", "ncti", "etran", "h_score",
                 "knn_accuracy"):
        got = get_transferability(name).score_candidates([F, const], y, ["a", "b"])
        assert got.shape == (2,) and np.isfinite(got).all(), (name, got)
    bad = F.copy()
    bad[0, 0] = np.nan
    for name in ("logme", "ncti"):
        with pytest.raises(InvalidTaskError, match="candidate 'broken'.*NaN"):
            get_transferability(name).score_candidates([F, bad], y, ["ok", "broken"])
    with pytest.raises(InvalidTaskError, match="single class"):
        ncti_components(F, np.zeros(3))
