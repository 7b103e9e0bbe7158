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

Scale
-----
The known side is processed a block of rows at a time, so memory stays flat however many
tasks are compared (the symmetric distance and the complexity in blocks that fit the CPU
cache). To rank many new tasks against one large set of known tasks, build a
:class:`DistanceIndex` once: it stores the known side in the form each metric needs, so a
Hellinger or cosine query is one matrix-vector product
(``benchmarks/results/selection_latency.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from t2v_automl.embedding import Embedding, EmbeddingMeta, check_compatible
from t2v_automl.exceptions import IncompatibleEmbeddingError, InvalidInputTypeError

__all__ = ["DISTANCES", "hellinger", "symmetric", "asymmetric", "cosine", "normalized_cosine",
           "trivial_embedding", "complexity", "pairwise_distances", "DistanceIndex", "ALPHA"]

#: The paper's default weight of the complexity term of the asymmetric distance.
ALPHA = 0.15
DISTANCES = ("hellinger", "symmetric", "asymmetric", "cosine", "normalized_cosine")
_EPS = 1e-30
#: Bytes of each float64 temporary of the element-wise kernels (symmetric distance,
#: complexity): small enough to stay in the CPU cache.
_ELEMENTWISE_BYTES = 1 << 19
#: Bytes of a block of rows for the matrix-product metrics and the finiteness checks.
_BLOCK_BYTES = 1 << 23


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
    if not _all_finite(arr):
        raise IncompatibleEmbeddingError(
            f"{name} contains NaN or infinite values; a failed embedding cannot be compared. "
            f"Re-embed that task or leave it out."
        )
    return arr


def _check_pair(a: Any, b: Any) -> None:
    metas = [x for x in (a, b) if isinstance(x, Embedding)]
    for x in (a, b):
        if isinstance(x, Sequence) and x and isinstance(x[0], Embedding):
            metas.extend(x)
    check_compatible(metas)


def _row_blocks(n: int, dim: int, budget: int) -> Iterator[slice]:
    """Slices of consecutive rows holding about ``budget`` bytes of float64 each."""
    step = max(1, budget // (8 * max(1, dim)))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _all_finite(M: np.ndarray) -> bool:
    """``np.isfinite(M).all()`` for a 2-D array, without an ``M``-sized temporary."""
    return all(bool(np.isfinite(M[rows]).all())
               for rows in _row_blocks(M.shape[0], M.shape[1], _BLOCK_BYTES))


def _sym_block(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Symmetric distance between every row of A and every row of B.

    With ``r = 1 / (a + b + eps)`` (element-wise), ``u = a r`` and ``v = b r``, the distance
    is ``1 - <u, v> / sqrt(<u, u> <v, v>)``. ``A`` is taken a few rows at a time, so the
    temporaries stay in the CPU cache whatever the number of known tasks; rows of a
    float32 ``A`` are widened to float64 block by block.
    """
    out = np.empty((A.shape[0], B.shape[0]))
    B = np.asarray(B, dtype=np.float64)
    B_eps = B + _EPS
    for rows in _row_blocks(A.shape[0], A.shape[1], _ELEMENTWISE_BYTES):
        a = np.asarray(A[rows], dtype=np.float64)
        r = np.empty_like(a)
        u = np.empty_like(a)
        for j in range(B.shape[0]):
            np.add(a, B_eps[j], out=r)
            np.reciprocal(r, out=r)
            np.multiply(a, r, out=u)
            np.multiply(r, B[j], out=r)
            ab = np.einsum("ij,ij->i", u, r)
            aa = np.einsum("ij,ij->i", u, u)
            bb = np.einsum("ij,ij->i", r, r)
            out[rows, j] = 1.0 - ab / np.sqrt(aa * bb + _EPS)
    return np.clip(out, 0.0, 2.0, out=out)


def _unit_rows(M: np.ndarray) -> np.ndarray:
    """Rows of ``M`` divided by their Euclidean norm."""
    return M / (np.linalg.norm(M, axis=1, keepdims=True) + _EPS)


def _roots(M: np.ndarray) -> np.ndarray:
    """Square roots of the rows of ``M`` normalised to sum to one (negatives clipped)."""
    M = np.clip(M, 0.0, None)
    return np.sqrt(M / (M.sum(axis=1, keepdims=True) + _EPS))


def _product_block(A: np.ndarray, B: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray],
                   upper: float) -> np.ndarray:
    """``1 - prepare(A) @ prepare(B).T`` clipped to ``[0, upper]``, ``A`` in row blocks."""
    pb = prepare(np.asarray(B, dtype=np.float64))
    out = np.empty((A.shape[0], B.shape[0]))
    for rows in _row_blocks(A.shape[0], A.shape[1], _BLOCK_BYTES):
        out[rows] = 1.0 - prepare(np.asarray(A[rows], dtype=np.float64)) @ pb.T
    return np.clip(out, 0.0, upper, out=out)


def _cos_block(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return _product_block(A, B, _unit_rows, 2.0)


def _hellinger_block(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return _product_block(A, B, _roots, 1.0)


def _rms_columns(*mats: np.ndarray) -> np.ndarray:
    """Per-column root-mean-square over the rows of all ``mats`` (stacked), plus eps."""
    total = np.zeros(mats[0].shape[1])
    n = 0
    for M in mats:
        for rows in _row_blocks(M.shape[0], M.shape[1], _BLOCK_BYTES):
            block = np.asarray(M[rows], dtype=np.float64)
            total += np.einsum("ij,ij->j", block, block)
        n += M.shape[0]
    return np.sqrt(total / max(n, 1)) + _EPS


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
        s = _rms_columns(A, B) if scale is None else np.asarray(scale, dtype=np.float64)
        return _product_block(A, B, lambda M: _unit_rows(M / s), 2.0)

    return _between(a, b, block)


def asymmetric(source: Any, target: Any, alpha: float = ALPHA) -> np.ndarray | float:
    """``d_sym(source, target) - alpha * d_sym(source, trivial(source))``.

    Rows of ``source`` are the known tasks (e.g. the extractors' training tasks), rows of
    ``target`` the new ones; the result is ``(n_source, n_target)``. Smaller is better: a
    complex source task close to the target transfers best.
    """
    return _between(source, target,
                     lambda S, T: _sym_block(S, T) - alpha * _complexity_rows(S)[:, None])


def complexity(t: Any) -> np.ndarray:
    """``d_sym(t, t0)`` for each row of ``t``: distance to its trivial embedding."""
    return _complexity_rows(_as_matrix(t, "t"))


def _complexity_rows(A: np.ndarray) -> np.ndarray:
    """:func:`complexity` of each row of a checked matrix, a few rows at a time."""
    out = np.empty(A.shape[0])
    for rows in _row_blocks(A.shape[0], A.shape[1], _ELEMENTWISE_BYTES):
        a = np.asarray(A[rows], dtype=np.float64)
        c = a.mean(axis=1, keepdims=True)
        r = 1.0 / (a + c + _EPS)
        u = a * r
        v = c * r
        ab = np.einsum("ij,ij->i", u, v)
        aa = np.einsum("ij,ij->i", u, u)
        cc = np.einsum("ij,ij->i", v, v)
        out[rows] = 1.0 - ab / np.sqrt(aa * cc + _EPS)
    return np.clip(out, 0.0, 2.0, out=out)


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


class DistanceIndex:
    """Known embeddings prepared once, for many distance queries against them.

    ``DistanceIndex(known, metric).query(Y)`` gives ``pairwise_distances(known, Y,
    metric)`` (to rounding; see ``dtype``) but does the work that depends on the known
    side alone only once:

    * ``"hellinger"``, ``"cosine"``, ``"normalized_cosine"``: the known rows are stored
      normalised (square roots of the sum-normalised rows; unit rows), so a query is one
      matrix-vector product over the stored rows;
    * ``"asymmetric"``: the complexity term of every known task is computed once;
    * ``"symmetric"``, ``"asymmetric"``: nothing else separates, so a query reads every known
      row, a few rows at a time (cost linear in the number of known tasks, memory flat).

    Parameters
    ----------
    known : array-like of shape (n_known, dim) or sequence of Embedding
        The known tasks (rows). A float32 or float64 array (a :class:`numpy.memmap` too) is
        read in blocks of rows, so building the index never needs a float64 copy of it.
    metric : {"hellinger", "symmetric", "asymmetric", "cosine", "normalized_cosine"}, \
default="hellinger"
        As :func:`pairwise_distances`; for ``"asymmetric"`` the known rows are the sources.
    alpha : float, default=ALPHA
        Weight of the complexity term of ``"asymmetric"``.
    scale : array-like of shape (dim,), optional
        ``"normalized_cosine"``: the per-dimension divisor. Default: the root-mean-square of
        each dimension over the known rows, fixed at construction (``pairwise_distances``
        instead takes it over both sides; pass ``scale=index.scale`` to
        :func:`normalized_cosine` for the same distances).
    dtype : {"float64", "float32"}, default="float64"
        How the prepared rows are stored. ``"float32"`` halves the memory and, for the
        matrix-product metrics, the query time; their distances then differ from the
        float64 ones by about 1e-6. The symmetric and asymmetric distances are always
        computed in float64 (from the float32-rounded values with ``"float32"``).

    Attributes
    ----------
    metric : str
    alpha : float
    n_known : int
    dim : int
    scale : ndarray of shape (dim,) or None
        ``"normalized_cosine"`` only.
    meta : EmbeddingMeta or None
        The known embeddings' meta when they were :class:`Embedding` objects; query
        embeddings are checked against it.

    Raises
    ------
    InvalidInputTypeError
        Unknown metric or dtype, ``known`` not 2-D, or a ``scale`` of the wrong length.
    IncompatibleEmbeddingError
        NaN or inf among the known rows, or known embeddings made differently.

    Notes
    -----
    For ``"symmetric"`` and ``"asymmetric"`` an array ``known`` of the requested ``dtype``
    is kept by reference, not copied: do not modify it while the index is in use.

    Examples
    --------
    >>> import numpy as np
    >>> known = np.random.default_rng(0).random((1000, 64))
    >>> index = DistanceIndex(known)
    >>> d = index.query(known[:2])
    >>> d.shape
    (1000, 2)
    >>> bool(np.allclose(d, pairwise_distances(known, known[:2])))
    True
    """

    def __init__(self, known: Any, metric: str = "hellinger", *, alpha: float = ALPHA,
                 scale: Any = None, dtype: str | np.dtype[Any] | type = "float64") -> None:
        if metric not in DISTANCES:
            raise InvalidInputTypeError(
                f"unknown metric {metric!r}; expected one of {', '.join(DISTANCES)}."
            )
        store = np.dtype(dtype)
        if store not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise InvalidInputTypeError(
                f"dtype must be 'float64' or 'float32'; got {dtype!r}."
            )
        self.metric = metric
        self.alpha = float(alpha)
        self.meta: EmbeddingMeta | None = None
        if isinstance(known, Sequence) and known and isinstance(known[0], Embedding):
            self.meta = check_compatible(known)
            rows = np.vstack([e.values for e in known])
        else:
            rows = np.asarray(known)
            if rows.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
                rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise InvalidInputTypeError(
                f"known must be a non-empty matrix of embeddings (n_known, dim); got shape "
                f"{rows.shape}."
            )
        if not _all_finite(rows):
            raise IncompatibleEmbeddingError(
                "known contains NaN or infinite values; a failed embedding cannot be "
                "compared. Re-embed that task or leave it out."
            )
        self.n_known, self.dim = int(rows.shape[0]), int(rows.shape[1])
        self.scale: np.ndarray | None = None
        self._complexity: np.ndarray | None = None
        if metric in ("symmetric", "asymmetric"):
            self._rows = rows if rows.dtype == store and rows.flags.c_contiguous else \
                self._blockwise(rows, lambda block: block, store)
            if metric == "asymmetric":
                self._complexity = _complexity_rows(self._rows)
            return
        if metric == "normalized_cosine":
            s = _rms_columns(rows) if scale is None else np.asarray(scale, dtype=np.float64)
            if s.shape != (self.dim,):
                raise InvalidInputTypeError(
                    f"scale must have one value per dimension ({self.dim}); got shape "
                    f"{s.shape}."
                )
            self.scale = s
        self._rows = self._blockwise(rows, self._prepare, store)

    def _prepare(self, M: np.ndarray) -> np.ndarray:
        """The stored form of float64 rows for the matrix-product metrics."""
        if self.metric == "hellinger":
            return _roots(M)
        if self.metric == "normalized_cosine":
            assert self.scale is not None
            return _unit_rows(M / self.scale)
        return _unit_rows(M)

    @staticmethod
    def _blockwise(rows: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray],
                   store: np.dtype[Any]) -> np.ndarray:
        out = np.empty(rows.shape, dtype=store)
        for block in _row_blocks(rows.shape[0], rows.shape[1], _BLOCK_BYTES):
            out[block] = prepare(np.asarray(rows[block], dtype=np.float64))
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by the index (the known rows, or their prepared form)."""
        extra = 0 if self._complexity is None else self._complexity.nbytes
        return int(self._rows.nbytes) + extra

    def __repr__(self) -> str:
        return (f"DistanceIndex(metric={self.metric!r}, n_known={self.n_known}, "
                f"dim={self.dim}, dtype={self._rows.dtype.name})")

    def query(self, Y: Any) -> np.ndarray:
        """Distances from every known row to every row of ``Y``.

        Parameters
        ----------
        Y : array-like of shape (n_query, dim) or (dim,), Embedding or sequence of Embedding
            The new tasks.

        Returns
        -------
        ndarray of shape (n_known, n_query)
            float64, as :func:`pairwise_distances` ``(known, Y, metric)``.

        Raises
        ------
        IncompatibleEmbeddingError
            Another dimension, NaN or inf, or embeddings made unlike the known ones.
        """
        metas = [Y] if isinstance(Y, Embedding) else list(Y) if (
            isinstance(Y, Sequence) and Y and isinstance(Y[0], Embedding)) else []
        if metas:
            check_compatible(([self.meta] if self.meta is not None else []) + metas)
        Q = _as_matrix(Y, "Y")
        if Q.shape[1] != self.dim:
            raise IncompatibleEmbeddingError(
                f"the query embeddings have {Q.shape[1]} values, the known ones {self.dim}; "
                f"they were made with different probes or layer sets. Embed the new tasks "
                f"like the known ones."
            )
        if self.metric in ("symmetric", "asymmetric"):
            d = _sym_block(self._rows, Q)
            if self._complexity is not None:
                d -= self.alpha * self._complexity[:, None]
            return d
        upper = 1.0 if self.metric == "hellinger" else 2.0
        pq = self._prepare(Q).astype(self._rows.dtype, copy=False)
        d = 1.0 - np.asarray(self._rows @ pq.T, dtype=np.float64)
        return np.clip(d, 0.0, upper, out=d)
