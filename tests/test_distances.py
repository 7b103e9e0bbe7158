from __future__ import annotations

import numpy as np
import pytest

from t2v_automl import distances as D
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import IncompatibleEmbeddingError, InvalidInputTypeError


def _emb(values, probe="p", method="exact"):
    v = np.asarray(values, float)
    return Embedding(v, EmbeddingMeta(probe, "abc", method, 64, "all", v.shape[0]))


def test_symmetric_is_a_scale_free_symmetric_distance():
    rng = np.random.default_rng(0)
    a, b = rng.random(30), rng.random(30)
    assert D.symmetric(a, a) == pytest.approx(0.0, abs=1e-12)
    assert D.symmetric(a, 5 * a) == pytest.approx(0.0, abs=1e-12)
    assert D.symmetric(a, b) == pytest.approx(D.symmetric(b, a))
    assert D.symmetric(a, b) > 0.01
    # matches the definition
    x, y = a / (a + b), b / (a + b)
    ref = 1 - x @ y / np.linalg.norm(x) / np.linalg.norm(y)
    assert D.symmetric(a, b) == pytest.approx(ref)


def test_pairwise_matrix_matches_pairs():
    rng = np.random.default_rng(1)
    A, B = rng.random((5, 20)), rng.random((3, 20))
    M = D.pairwise_distances(A, B, metric="symmetric")
    assert M.shape == (5, 3)
    assert M[2, 1] == pytest.approx(D.symmetric(A[2], B[1]))
    S = D.pairwise_distances(A, metric="symmetric")
    assert np.allclose(S, S.T) and np.allclose(np.diag(S), 0, atol=1e-12)


def test_trivial_embedding_and_complexity_work():
    assert D.complexity(np.ones(10))[0] == pytest.approx(0.0, abs=1e-12)
    peaked = np.r_[np.ones(1), np.full(9, 1e-3)]
    flat = np.r_[np.ones(5), np.full(5, 0.5)]
    c = D.complexity(np.vstack([peaked, flat]))
    assert c[0] > c[1] > 0  # a Fisher concentrated on few filters is more complex
    # and it is not a constant (the reference's zero-vector t0 gave a constant)
    assert np.ptp(D.complexity(np.random.default_rng(0).random((6, 30)) ** 4)) > 0


def test_asymmetric_prefers_complex_sources():
    rng = np.random.default_rng(2)
    s = rng.random((4, 25))
    t = rng.random((2, 25))
    A = D.asymmetric(s, t, alpha=0.15)
    assert np.allclose(A, D.symmetric(s, t) - 0.15 * D.complexity(s)[:, None])
    assert np.allclose(D.asymmetric(s, t, alpha=0.0), D.symmetric(s, t))


def test_normalized_cosine_and_cosine():
    rng = np.random.default_rng(3)
    A = rng.random((4, 10))
    assert D.cosine(A[0], 3 * A[0]) == pytest.approx(0.0, abs=1e-12)
    M = D.pairwise_distances(A, metric="normalized_cosine")
    assert M.shape == (4, 4) and np.allclose(np.diag(M), 0, atol=1e-12)


def test_embeddings_are_checked():
    a, b = _emb([1, 2, 3]), _emb([1, 2, 4])
    assert D.symmetric(a, b) >= 0
    with pytest.raises(IncompatibleEmbeddingError, match="probe: 'p' vs 'q'"):
        D.symmetric(a, _emb([1, 2, 3], probe="q"))
    with pytest.raises(IncompatibleEmbeddingError, match="method"):
        D.pairwise_distances([a, _emb([1, 2, 3], method="montecarlo")])
    with pytest.raises(IncompatibleEmbeddingError, match="different dimensions"):
        D.symmetric(np.ones(3), np.ones(4))
    with pytest.raises(IncompatibleEmbeddingError, match="NaN"):
        D.symmetric(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(InvalidInputTypeError, match="unknown metric"):
        D.pairwise_distances(np.ones((2, 3)), metric="euclid")


def test_hellinger_is_cosine_of_square_roots():
    rng = np.random.default_rng(4)
    a, b = rng.random(40), rng.random(40)
    ref = 1 - np.sqrt(a) @ np.sqrt(b) / np.linalg.norm(np.sqrt(a)) / np.linalg.norm(np.sqrt(b))
    assert D.hellinger(a, b) == pytest.approx(ref)
    assert D.hellinger(a, 7 * a) == pytest.approx(0.0, abs=1e-12)
    M = D.pairwise_distances(rng.random((3, 40)), metric="hellinger")
    assert M.shape == (3, 3) and np.allclose(np.diag(M), 0, atol=1e-12)
    # tiny entries matter little: perturbing near-zero filters barely moves it
    c = a.copy()
    c[:5] = 1e-6
    d = c.copy()
    d[:5] = 1e-3
    assert D.hellinger(c, d) < 0.01 < D.symmetric(c, d)
