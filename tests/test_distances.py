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


# ------------------------------------------------------------------ blockwise = naive
def _naive_symmetric(A, B):
    a, b = A[:, None, :], B[None, :, :]
    inv = 1.0 / (a + b + 1e-30) ** 2
    ab, aa, bb = (a * b * inv).sum(-1), (a * a * inv).sum(-1), (b * b * inv).sum(-1)
    return np.clip(1.0 - ab / np.sqrt(aa * bb + 1e-30), 0.0, 2.0)


def _naive_complexity(A):
    c = A.mean(axis=1, keepdims=True)
    inv = 1.0 / (A + c + 1e-30) ** 2
    ab, aa, cc = (A * c * inv).sum(1), (A * A * inv).sum(1), (c * c * inv).sum(1)
    return np.clip(1.0 - ab / np.sqrt(aa * cc + 1e-30), 0.0, 2.0)


def _naive_cosine(A, B):
    na = A / (np.linalg.norm(A, axis=1, keepdims=True) + 1e-30)
    nb = B / (np.linalg.norm(B, axis=1, keepdims=True) + 1e-30)
    return np.clip(1.0 - na @ nb.T, 0.0, 2.0)


def _naive_hellinger(A, B):
    def roots(M):
        M = np.clip(M, 0.0, None)
        return np.sqrt(M / (M.sum(axis=1, keepdims=True) + 1e-30))

    return np.clip(1.0 - roots(A) @ roots(B).T, 0.0, 1.0)


def _fisher_like(rng, shape):
    """Positive, heavy-tailed values with exact zeros, like Fisher embeddings."""
    X = rng.gamma(0.3, 1.0, shape) * 10.0 ** rng.uniform(-4, 1, shape)
    X[rng.random(shape) < 0.05] = 0.0
    return X


@pytest.mark.parametrize("block_bytes", [None, 1])
def test_blockwise_distances_equal_the_naive_formulas(monkeypatch, block_bytes):
    if block_bytes is not None:  # one row per block: every block boundary is exercised
        monkeypatch.setattr(D, "_ELEMENTWISE_BYTES", block_bytes)
        monkeypatch.setattr(D, "_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(7)
    A, B = _fisher_like(rng, (37, 300)), _fisher_like(rng, (5, 300))
    A[3] = 0.0  # an all-zero row
    B[1, :50] = A[0, :50] = 0.0  # zeros in the same places
    tol = dict(rtol=0, atol=1e-12)
    np.testing.assert_allclose(D.symmetric(A, B), _naive_symmetric(A, B), **tol)
    np.testing.assert_allclose(D.complexity(A), _naive_complexity(A), **tol)
    np.testing.assert_allclose(D.asymmetric(A, B, alpha=0.3),
                               _naive_symmetric(A, B) - 0.3 * _naive_complexity(A)[:, None],
                               **tol)
    np.testing.assert_allclose(D.cosine(A, B), _naive_cosine(A, B), **tol)
    np.testing.assert_allclose(D.hellinger(A, B), _naive_hellinger(A, B), **tol)
    s = np.sqrt((np.vstack([A, B]) ** 2).mean(axis=0)) + 1e-30
    np.testing.assert_allclose(D.normalized_cosine(A, B), _naive_cosine(A / s, B / s), **tol)
    np.testing.assert_allclose(D.pairwise_distances(A, metric="symmetric"),
                               _naive_symmetric(A, A), **tol)


# ------------------------------------------------------------------ DistanceIndex
@pytest.mark.parametrize("metric", D.DISTANCES)
def test_index_gives_pairwise_distances(metric, monkeypatch, tmp_path):
    monkeypatch.setattr(D, "_BLOCK_BYTES", 8 * 300 * 4)  # four rows per block
    rng = np.random.default_rng(8)
    known, new = _fisher_like(rng, (23, 300)), _fisher_like(rng, (3, 300))
    index = D.DistanceIndex(known, metric, alpha=0.2)
    assert (index.n_known, index.dim) == (23, 300)
    if metric == "normalized_cosine":  # the scale is fixed from the known side
        expected = D.normalized_cosine(known, new, scale=index.scale)
        np.testing.assert_allclose(index.scale, np.sqrt((known ** 2).mean(axis=0)) + 1e-30)
    else:
        expected = D.pairwise_distances(known, new, metric=metric, alpha=0.2)
    np.testing.assert_allclose(index.query(new), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(index.query(new[1]), expected[:, [1]], rtol=0, atol=1e-12)
    # float32 storage (from a float32 memory map, read block by block)
    mm = np.lib.format.open_memmap(str(tmp_path / "k.npy"), mode="w+",
                                   dtype=np.float32, shape=known.shape)
    mm[:] = known
    small = D.DistanceIndex(mm, metric, alpha=0.2, dtype="float32")
    assert small.nbytes <= index.nbytes // 2 + 8 * 23
    np.testing.assert_allclose(small.query(new), expected, rtol=0, atol=1e-5)


def test_index_checks_its_inputs():
    rng = np.random.default_rng(9)
    known = rng.random((4, 3))
    with pytest.raises(InvalidInputTypeError, match="unknown metric"):
        D.DistanceIndex(known, "euclid")
    with pytest.raises(InvalidInputTypeError, match="dtype"):
        D.DistanceIndex(known, dtype="float16")
    with pytest.raises(InvalidInputTypeError, match="non-empty matrix"):
        D.DistanceIndex(np.ones(3))
    with pytest.raises(InvalidInputTypeError, match="one value per dimension"):
        D.DistanceIndex(known, "normalized_cosine", scale=np.ones(2))
    bad = known.copy()
    bad[2, 1] = np.nan
    with pytest.raises(IncompatibleEmbeddingError, match="NaN"):
        D.DistanceIndex(bad)
    index = D.DistanceIndex([_emb(r) for r in known])
    assert index.meta is not None and "n_known=4" in repr(index)
    assert index.query(_emb(known[0])).shape == (4, 1)
    with pytest.raises(IncompatibleEmbeddingError, match="probe"):
        index.query([_emb(known[0], probe="q")])
    with pytest.raises(IncompatibleEmbeddingError, match="have 5 values, the known ones 3"):
        D.DistanceIndex(known).query(np.ones(5))
