"""Distances between task embeddings (Achille et al., 2019, Section 3).

* ``symmetric``: the cosine distance between ``a / (a + b)`` and ``b / (a + b)``
  (element-wise), which removes the scale of the Fisher and weighs every filter equally;
* ``normalized_cosine``: the cosine distance after dividing each dimension by its
  root-mean-square over the set of embeddings compared;
* ``cosine``: the plain cosine distance;
* ``hellinger``: ``1 - sum_i sqrt(a_i b_i) / sqrt(sum a * sum b)``, the squared Hellinger
  distance between the embeddings normalised to sum to one (1 minus their Bhattacharyya
  coefficient), i.e. the cosine distance between ``sqrt(a)`` and ``sqrt(b)``. It is
  scale-free like ``symmetric`` but does not give filters with almost no Fisher
  information the same weight as informative ones, which makes it far less sensitive to
  estimation noise (see ``benchmarks/results/embedder.md``);
* ``asymmetric``: ``d_asym(t -> s) = d_sym(t, s) - alpha * d_sym(t, t0)`` where ``t`` is
  the source (known) task, ``s`` the target, and ``t0`` the *trivial embedding* of ``t``.

The trivial embedding
---------------------
The paper's ``t0`` is the embedding of a task that gives the probe no information: every
filter equally (un)informative. The reference code builds it from the variational
parameters of its robust Fisher and breaks for the plain Fisher (its "trivial" vector is
the zero vector, whose symmetric distance to anything is a constant). Here ``t0`` is the
constant vector with the same mean as ``t``: ``d_sym(t, t0)`` is then 0 for a task whose
Fisher is uniform over filters and grows as the Fisher concentrates on fewer filters — a
scale-free measure of the task's complexity, as the paper intends.

Every function accepts plain arrays or :class:`~t2v_automl.embedding.Embedding` objects;
embeddings are checked for compatibility first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from t2v_automl.embedding import Embedding, check_compatible
from t2v_automl.exceptions import IncompatibleEmbeddingError, InvalidInputTypeError

__all__ = ["DISTANCES", "hellinger", "symmetric", "asymmetric", "cosine", "normalized_cosine",
           "trivial_embedding", "complexity", "pairwise_distances", "ALPHA"]

#: The paper's default weight of the complexity term of the asymmetric distance.
ALPHA = 0.15
DISTANCES = ("hellinger", "symmetric", "asymmetric", "cosine", "normalized_cosine")
_EPS = 1e-30


def _as_matrix(x: Any, name: str) -> np.ndarray:
    if isinstance(x, Embedding):
        return x.values[None, :]
    if isinstance(x, Sequence) and x and isinstance(x[0], Embedding):
        check_compatible(x)
        return np.vstack([e.values for e in x])
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidInputTypeError(
            f"{name} must be one embedding (1-D) or a matrix of embeddings (2-D); got shape "
            f"{arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise IncompatibleEmbeddingError(f"{name} contains NaN or infinite values.")
    return arr


def _check_pair(a: Any, b: Any) -> None:
    metas = [x for x in (a, b) if isinstance(x, Embedding)]
    for x in (a, b):
        if isinstance(x, Sequence) and x and isinstance(x[0], Embedding):
            metas.extend(x)
    check_compatible(metas)


def _sym_block(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Symmetric distance between every row of A and every row of B."""
    out = np.empty((A.shape[0], B.shape[0]))
    # chunk rows of A so that the (chunk, nB, d) temporaries stay ~64 MB
    chunk = max(1, int(8e6 // max(1, B.shape[0] * A.shape[1])))
    for s in range(0, A.shape[0], chunk):
        a = A[s:s + chunk, None, :]
        b = B[None, :, :]
        inv = 1.0 / (a + b + _EPS) ** 2
        ab = (a * b * inv).sum(-1)
        aa = (a * a * inv).sum(-1)
        bb = (b * b * inv).sum(-1)
        out[s:s + chunk] = 1.0 - ab / np.sqrt(aa * bb + _EPS)
    return np.clip(out, 0.0, 2.0)


def _cos_block(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(A, axis=1, keepdims=True) + _EPS
    nb = np.linalg.norm(B, axis=1, keepdims=True) + _EPS
    return np.clip(1.0 - (A / na) @ (B / nb).T, 0.0, 2.0)


def _hellinger_block(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    def roots(M: np.ndarray) -> np.ndarray:
        M = np.clip(M, 0.0, None)
        return np.sqrt(M / (M.sum(axis=1, keepdims=True) + _EPS))

    return np.clip(1.0 - roots(A) @ roots(B).T, 0.0, 1.0)


def _between(a: Any, b: Any, block: Any) -> np.ndarray | float:
    """Check ``a`` and ``b``, apply ``block`` to their matrices; a float for two vectors."""
    _check_pair(a, b)
    A, B = _as_matrix(a, "a"), _as_matrix(b, "b")
    _check_dims(A, B)
    d = block(A, B)
    return float(d[0, 0]) if d.size == 1 else d


def hellinger(a: Any, b: Any) -> np.ndarray | float:
    """Squared Hellinger distance of the sum-normalised embeddings (negatives clipped to 0)."""
    return _between(a, b, _hellinger_block)


def trivial_embedding(t: Any) -> np.ndarray:
    """The trivial embedding of each row of ``t``: a constant vector with the row's mean."""
    A = _as_matrix(t, "t")
    return np.repeat(A.mean(axis=1, keepdims=True), A.shape[1], axis=1)


def symmetric(a: Any, b: Any) -> np.ndarray | float:
    """Symmetric Task2Vec distance; a float for two vectors, else an ``(m, n)`` matrix."""
    return _between(a, b, _sym_block)


def cosine(a: Any, b: Any) -> np.ndarray | float:
    """Plain cosine distance."""
    return _between(a, b, _cos_block)


def normalized_cosine(a: Any, b: Any, scale: np.ndarray | None = None) -> np.ndarray | float:
    """Cosine distance after dividing each dimension by its RMS over ``a`` and ``b`` together.

    Pass ``scale`` (one value per dimension) to use a fixed normalisation instead, e.g. the
    RMS over a knowledge base, so that distances do not depend on which tasks are compared.
    """
    def block(A: np.ndarray, B: np.ndarray) -> np.ndarray:
        s = np.sqrt((np.vstack([A, B]) ** 2).mean(axis=0)) + _EPS if scale is None else scale
        return _cos_block(A / s, B / s)

    return _between(a, b, block)


def asymmetric(source: Any, target: Any, alpha: float = ALPHA) -> np.ndarray | float:
    """``d_sym(source, target) - alpha * d_sym(source, trivial(source))``.

    Rows of ``source`` are the known tasks (e.g. the extractors' training tasks), rows of
    ``target`` the new ones; the result is ``(n_source, n_target)``. Smaller is better: a
    complex source task close to the target transfers best.
    """
    return _between(source, target,
                     lambda S, T: _sym_block(S, T) - alpha * complexity(S)[:, None])


def complexity(t: Any) -> np.ndarray:
    """``d_sym(t, t0)`` for each row of ``t``: distance to its trivial embedding."""
    A = _as_matrix(t, "t")
    c = A.mean(axis=1, keepdims=True)
    inv = 1.0 / (A + c + _EPS) ** 2
    ab = (A * c * inv).sum(1)
    aa = (A * A * inv).sum(1)
    cc = (c * c * inv).sum(1)
    return np.clip(1.0 - ab / np.sqrt(aa * cc + _EPS), 0.0, 2.0)


def _check_dims(A: np.ndarray, B: np.ndarray) -> None:
    if A.shape[1] != B.shape[1]:
        raise IncompatibleEmbeddingError(
            f"embeddings have different dimensions: {A.shape[1]} vs {B.shape[1]}; they were "
            "made with different probes or layer sets."
        )


def pairwise_distances(X: Any, Y: Any | None = None, metric: str = "hellinger",
                       alpha: float = ALPHA) -> np.ndarray:
    """Distance matrix between the rows of ``X`` and of ``Y`` (``X`` itself if None).

    For ``metric="asymmetric"`` rows of ``X`` are sources, rows of ``Y`` targets.
    """
    Y = X if Y is None else Y
    if metric == "hellinger":
        d = hellinger(X, Y)
    elif metric == "symmetric":
        d = symmetric(X, Y)
    elif metric == "cosine":
        d = cosine(X, Y)
    elif metric == "normalized_cosine":
        d = normalized_cosine(X, Y)
    elif metric == "asymmetric":
        d = asymmetric(X, Y, alpha=alpha)
    else:
        raise InvalidInputTypeError(
            f"unknown metric {metric!r}; expected one of {', '.join(DISTANCES)}."
        )
    return np.atleast_2d(np.asarray(d, dtype=np.float64))
