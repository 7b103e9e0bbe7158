"""ExtractorSelector: choose a feature extractor for a new task from its embedding.

The selector learns, from known tasks (their embeddings) and the scores every extractor
reached on them (a tasks x extractors matrix, NaN = not measured), which extractor will do
best on a new task. Two strategies:

``"nearest"``
    The paper's baseline (Achille et al., 2019, Section 5): the ``n_neighbors`` known tasks
    nearest to the new one (symmetric, asymmetric or normalised-cosine Task2Vec distance)
    vote with their scores, weighted by inverse distance. Missing scores are skipped: for
    each extractor, the nearest tasks *on which it was measured* are used.
``"model2vec"``
    The paper's learned metric: each extractor is placed at an anchor in task-embedding
    space, the mean of the embeddings of the tasks it did best on (softly: weighted by
    ``softmax(scores / temperature)`` over extractors), and gets a learned scale and bias;
    the logit of extractor ``j`` on task ``t`` is ``-(s + s_j) d(t, anchor_j) + b_j``. The
    parameters minimise the cross-entropy between ``softmax(logits)`` and the soft labels
    ``softmax(scores / temperature)`` (missing scores are left out of both softmaxes), with
    an L2 penalty ``reg`` on ``s``, ``s_j`` and ``b_j`` (distances standardised first).
    The logits are linear in the parameters, so the problem is convex; L-BFGS from zero
    is deterministic (no random state needed).

``"nearest"`` with the Hellinger distance is the default: on the shipped knowledge base it
beat ``"model2vec"`` under every protocol of the selection benchmark (figures in
``benchmarks/results/selection.md``), and the Hellinger distance is a single matrix
product, so it stays fast on large knowledge bases.

Novelty and the transferability fallback
----------------------------------------
No embedding-based selector can know the extractors' behaviour on a kind of data absent
from its knowledge base (leaving a whole source dataset out, every one of them lost to a
transferability score computed on the new task's own images). :meth:`ExtractorSelector.novelty`
measures how far a new task is from the known ones (distance to the nearest known task over
the median of that distance among the known tasks) and :func:`blend_with_transferability`
shifts the ranking from the neighbours' scores to a transferability score (LogME) as the
novelty grows. :class:`~t2v_automl.estimators.HybridSelector` does both on tasks.

Ranking quality
---------------
:meth:`ExtractorSelector.score` returns the **mean weighted Kendall tau** (scipy's
:func:`~scipy.stats.weightedtau`, hyperbolic weights, so agreement at the top of the
ranking counts most) between predicted and true scores, over the tasks whose true scores
are not all tied. :func:`top1_regret` gives the other measure reported by the benchmarks:
the accuracy points lost by taking the predicted best instead of the true best.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from t2v_automl import distances
from t2v_automl._validation import check_choice, check_float, check_int
from t2v_automl.estimators._base import (
    SelectorMixin,
    check_finite,
    neighbour_average,
    score_matrix,
    split_embeddings,
)
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
)

if TYPE_CHECKING:
    from t2v_automl.knowledge import KnowledgeBase

__all__ = ["STRATEGIES", "ExtractorSelector"]

#: Strategies of :class:`ExtractorSelector`.
STRATEGIES = ("nearest", "model2vec")
_METRICS = ("hellinger", "symmetric", "asymmetric", "normalized_cosine", "cosine")
_NONNEGATIVE = ("hellinger", "symmetric", "asymmetric")
_EPS = 1e-12
#: Known tasks used to estimate the typical nearest-neighbour distance at ``fit``.
_TYPICAL_SAMPLE = 500


# ----------------------------------------------------------------------------- estimator
class ExtractorSelector(SelectorMixin, RegressorMixin, BaseEstimator):
    """Predict which pre-trained feature extractor will do best on a task.

    Parameters
    ----------
    strategy : {"nearest", "model2vec"}, default="nearest"
        How scores are predicted from the known tasks (see the module documentation).
    metric : {"hellinger", "symmetric", "asymmetric", "normalized_cosine", "cosine"}, \
default="hellinger"
        Task2Vec distance (:mod:`t2v_automl.distances`). ``"hellinger"``, ``"symmetric"``
        and ``"asymmetric"`` need non-negative embeddings (Fisher embeddings are); for other
        embeddings (e.g. the "domain" or "label_stat" sets) use ``"normalized_cosine"``,
        whose per-dimension scale is fixed from the known tasks at ``fit``. For
        ``"asymmetric"`` the known task is the source (``d_sym - alpha * complexity``).
    n_neighbors : int, default=3
        ``"nearest"``: known tasks averaged per extractor (among those measured on it).
    weights : {"distance", "uniform"}, default="distance"
        ``"nearest"``: neighbour weights (inverse distance or equal).
    alpha : float, default=0.15
        Weight of the complexity term of the asymmetric distance.
    temperature : float, default=0.01
        ``"model2vec"``: soft labels are ``softmax(scores / temperature)`` over extractors
        (scores in [0, 1]: 0.01 means one accuracy point multiplies the weight by e).
    reg : float, default=0.1
        ``"model2vec"``: L2 penalty on the scales and biases (distances are
        standardised first), relative to the number of tasks.
    extractor_names : sequence of str, optional
        Names of the columns of ``Y`` when it is an array (a DataFrame's columns are used
        otherwise). Default ``"extractor0"``, ``"extractor1"``...
    dtype : {"float64", "float32"}, default="float64"
        Precision in which the known tasks' embeddings and their distance index are kept.
        ``"float32"`` halves the memory (a knowledge base of 100,000 Fisher embeddings of
        length 14,848 needs about 12 GB instead of 24) and queries are about twice as fast;
        distances then agree with float64 to about 1e-6 relative, so near-ties may rank in
        another order. Queries and scores stay float64.

    Attributes
    ----------
    extractor_names_ : list of str
        The extractors, in the column order of :meth:`predict_scores`.
    n_features_in_ : int
        Embedding length seen in :meth:`fit`.
    embedding_meta_ : EmbeddingMeta or None
        How the embeddings of :meth:`fit` were made, when they were given as
        :class:`~t2v_automl.embedding.Embedding` objects (or by :meth:`from_knowledge`);
        embeddings given at predict time are checked against it.
    embeddings_ : ndarray of shape (n_tasks, n_features_in_)
        The known tasks (in ``dtype``).
    scores_ : ndarray of shape (n_tasks, n_extractors)
        Their scores (NaN = missing).
    scale_ : ndarray of shape (n_features_in_,)
        Per-dimension RMS of the known tasks (``metric="normalized_cosine"``).
    anchors_ : ndarray of shape (n_extractors, n_features_in_)
        ``"model2vec"``: each extractor's anchor embedding.
    coef_ : ndarray of shape (2 * n_extractors + 1,)
        ``"model2vec"``: ``[s, s_1..s_m, b_1..b_m]`` of the logits
        ``-(s + s_j) d + b_j``.
    distance_shift_, distance_scale_ : float
        ``"model2vec"``: mean and standard deviation of the task-to-anchor distances at
        fit; distances are standardised with them before the logits.
    n_iter_ : int
        ``"model2vec"``: L-BFGS iterations.
    typical_distance_ : float
        Median distance from a known task to its nearest other known task (over a seeded
        sample of 500 known tasks, each against all, when there are more); the unit of
        :meth:`novelty`.
    index_ : DistanceIndex
        The known tasks prepared for fast distance queries
        (:class:`~t2v_automl.distances.DistanceIndex`).

    Notes
    -----
    Each row of ``X`` is a whole task's embedding and ``y`` the matrix of its extractors'
    scores, so ``fit(E, Y)`` takes a 2-D ``Y`` (tasks x extractors). In a ``Pipeline``
    after :class:`~t2v_automl.estimators.Task2VecEmbedder` the pipeline's ``y`` is that
    score matrix.

    For ``"model2vec"``, :meth:`predict_scores` returns ``temperature`` times the centred
    logits plus the known tasks' mean score: the order and the differences are the
    model's estimate, the level is not (the model predicts which extractor is best, not
    how hard the task is).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> E = rng.random((6, 5))
    >>> Y = np.array([[.9, .5]] * 3 + [[.4, .8]] * 3)
    >>> E[3:, :2] += 3.0  # the last three tasks are alike
    >>> sel = ExtractorSelector(extractor_names=["a", "b"]).fit(E, Y)
    >>> sel.select(E[[0, 5]]).tolist()
    ['a', 'b']
    >>> sel.predict(E[[0, 5]]).shape  # scores, like y
    (2, 2)
    """

    def __init__(self, strategy: str = "nearest", metric: str = "hellinger",
                 n_neighbors: int = 3, weights: str = "distance",
                 alpha: float = distances.ALPHA, temperature: float = 0.01, reg: float = 0.1,
                 extractor_names: Sequence[str] | None = None, dtype: str = "float64") -> None:
        self.strategy = strategy
        self.metric = metric
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.alpha = alpha
        self.temperature = temperature
        self.reg = reg
        self.extractor_names = extractor_names
        self.dtype = dtype

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> None:
        check_choice(self.strategy, "strategy", STRATEGIES)
        check_choice(self.metric, "metric", _METRICS)
        check_choice(self.weights, "weights", ("distance", "uniform"))
        check_int(self.n_neighbors, "n_neighbors", 1)
        check_float(self.alpha, "alpha", positive=False)
        check_float(self.temperature, "temperature")
        check_float(self.reg, "reg", positive=False)
        check_choice(self.dtype, "dtype", ("float64", "float32"))

    def _validate_X(self, X: Any, reset: bool) -> np.ndarray:
        X, meta = split_embeddings(X)
        if reset:
            arr = validate_data(self, X, reset=True, ensure_all_finite=False,
                                ensure_min_samples=2,
                                dtype=np.float32 if self.dtype == "float32" else np.float64)
            self.embedding_meta_ = meta
        else:
            if meta is not None and self.embedding_meta_ is not None \
                    and meta.compat_key() != self.embedding_meta_.compat_key():
                raise IncompatibleEmbeddingError(
                    "the embeddings were made differently from those the selector was "
                    f"fitted on ({self.embedding_meta_.describe_difference(meta)}; fitted "
                    "first, received second). Embed the new tasks with the same "
                    "Task2VecEmbedder settings as the known tasks."
                )
            arr = self._check_array(X)
        check_finite(arr, "the task embeddings")
        return arr

    def _check_array(self, X: Any) -> np.ndarray:
        from sklearn.utils import check_array

        arr = check_array(X, dtype=np.float64, ensure_all_finite=False)
        if arr.shape[1] != self.n_features_in_:
            raise IncompatibleEmbeddingError(
                f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input: the embeddings of the new tasks "
                f"have length {arr.shape[1]}, those of the known tasks {self.n_features_in_}. "
                f"Embed the new tasks with the probe and layer set used for the known ones."
            )
        return arr

    def _distances(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Distances from rows of ``A`` (known side) to rows of ``B``: ``(len(A), len(B))``."""
        if self.metric == "normalized_cosine":
            d = distances.normalized_cosine(A, B, scale=self.scale_)
        else:
            d = distances.pairwise_distances(A, B, metric=self.metric, alpha=self.alpha)
        return np.atleast_2d(np.asarray(d, dtype=np.float64))

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> ExtractorSelector:
        """Learn from known tasks and their extractors' scores.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features) or list of Embedding
            Embeddings of the known tasks (at least two). Embedding objects must all be
            made the same way; their metadata is kept and checked at predict time.
        y : DataFrame or array-like of shape (n_tasks, n_extractors)
            Scores of each extractor on each task (higher = better, e.g. accuracy in
            [0, 1]); NaN = not measured. A DataFrame's columns name the extractors.

        Returns
        -------
        self

        Raises
        ------
        IncompatibleEmbeddingError
            Embeddings made differently, or holding NaN/inf.
        KnowledgeBaseError
            ``y`` is not 2-D, has another number of rows, an extractor without any score,
            or fewer than two tasks have a score.
        UnknownNameError
            Unknown strategy/metric, or extractor names that do not match ``y``.
        """
        self._check_params()
        if y is None:
            score_matrix(None, None, 0)
        n_rows = len(y) if hasattr(y, "__len__") else -1
        if n_rows < 2 and hasattr(y, "__len__"):
            raise KnowledgeBaseError(
                f"the selector needs at least two known tasks to compare; got n_samples="
                f"{n_rows}. Add the scores of more tasks."
            )
        E = self._validate_X(X, reset=True)
        Y, names = score_matrix(y, self.extractor_names, E.shape[0])
        has_score = ~np.isnan(Y).all(axis=1)
        if has_score.sum() < 2:
            raise KnowledgeBaseError(
                f"only {int(has_score.sum())} task(s) have any score; the selector needs at "
                f"least two known tasks. Add the scores of more tasks."
            )
        if not has_score.all():
            E, Y = E[has_score], Y[has_score]
        self.extractor_names_ = names
        self.embeddings_ = E
        self.scores_ = Y
        self.scale_ = np.sqrt(np.einsum("ij,ij->j", E, E, dtype=np.float64) / E.shape[0]) \
            + 1e-30
        if self.metric in _NONNEGATIVE and E.min() < 0:
            raise IncompatibleEmbeddingError(
                f"Negative values in data passed to ExtractorSelector: metric={self.metric!r} "
                f"needs non-negative embeddings (Fisher information); these have "
                f"{int((E < 0).sum())} negative value(s). Use "
                f"metric='normalized_cosine' for other embeddings."
            )
        self.index_ = distances.DistanceIndex(
            E, self.metric, alpha=float(self.alpha),
            scale=self.scale_ if self.metric == "normalized_cosine" else None,
            dtype=str(self.dtype))
        self.typical_distance_ = self._typical_distance(E)
        if self.strategy == "model2vec":
            self._fit_model2vec(E, Y)
        return self

    def _novelty_distances(self, Q: np.ndarray) -> np.ndarray:
        """Known tasks x ``Q`` distances for :meth:`novelty`: the asymmetric distance is
        replaced by the symmetric one (it can be negative)."""
        if self.metric == "asymmetric":
            return np.atleast_2d(distances.pairwise_distances(self.embeddings_, Q,
                                                              metric="symmetric"))
        return self.index_.query(Q)

    def _typical_distance(self, E: np.ndarray) -> float:
        """Median distance from a known task to its nearest other known task.

        Exact for up to ``_TYPICAL_SAMPLE`` tasks; beyond, over a seeded sample of that many
        tasks, each against *all* known tasks (so the estimate does not grow with n).
        """
        rows = np.arange(E.shape[0])
        if E.shape[0] > _TYPICAL_SAMPLE:
            rng = np.random.default_rng(0)
            rows = np.sort(rng.choice(E.shape[0], _TYPICAL_SAMPLE, replace=False))
        D = self._novelty_distances(E[rows]).copy()  # (n_known, n_sample)
        D[rows, np.arange(rows.size)] = np.inf
        nn = D.min(axis=0)
        typical = float(np.median(nn[np.isfinite(nn)])) if np.isfinite(nn).any() else 0.0
        return typical if typical > _EPS else 1.0

    def _soft_labels(self, Y: np.ndarray) -> np.ndarray:
        known = ~np.isnan(Y)
        z = np.where(known, Y / float(self.temperature), -np.inf)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z) * known
        return p / p.sum(axis=1, keepdims=True)

    def _fit_model2vec(self, E: np.ndarray, Y: np.ndarray) -> None:
        P = self._soft_labels(Y)  # (n, m), rows sum to 1 over measured extractors
        known = ~np.isnan(Y)
        n, m = Y.shape
        # anchor of extractor j: mean of task embeddings weighted by how much j was best
        col = P.sum(axis=0)
        Wt = np.where(col > 1e-12, P / np.maximum(col, 1e-300), known / known.sum(axis=0))
        self.anchors_ = Wt.T @ E  # (m, dim)
        D = self._distances(E, self.anchors_)  # (n, m): task -> anchor
        # standardise distances so that ``reg`` means the same for every metric
        self.distance_shift_ = float(D.mean())
        self.distance_scale_ = float(D.std()) or 1.0
        D = (D - self.distance_shift_) / self.distance_scale_
        reg = float(self.reg)

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            s, sj, b = theta[0], theta[1:m + 1], theta[m + 1:]
            logits = -(s + sj)[None, :] * D + b[None, :]
            logits = np.where(known, logits, -np.inf)
            mx = logits.max(axis=1, keepdims=True)
            ex = np.exp(logits - mx)
            Z = ex.sum(axis=1, keepdims=True)
            logq = np.where(known, logits - mx - np.log(Z), 0.0)
            q = ex / Z
            loss = -(P * logq).sum() / n + reg * (s * s + sj @ sj + b @ b)
            g_logit = (q - P) / n  # d loss / d logits (zero where missing)
            g_s = -(g_logit * D).sum() + 2 * reg * s
            g_sj = -(g_logit * D).sum(axis=0) + 2 * reg * sj
            g_b = g_logit.sum(axis=0) + 2 * reg * b
            return float(loss), np.concatenate([[g_s], g_sj, g_b])

        res = optimize.minimize(loss_grad, np.zeros(2 * m + 1), jac=True, method="L-BFGS-B",
                                options={"maxiter": 500, "gtol": 1e-9})
        self.coef_ = res.x
        self.n_iter_ = int(res.nit)

    # ------------------------------------------------------------------ predict
    def predict_scores(self, X: Any) -> np.ndarray:
        """Predicted score of every extractor on every task.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features) or list of Embedding
            Embeddings of the new tasks, made like those of :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_tasks, n_extractors)
            Columns in the order of :attr:`extractor_names_`; higher = better.

        Raises
        ------
        IncompatibleEmbeddingError
            Another embedding length, another probe/method than at fit (for Embedding
            objects), or NaN/inf values.
        """
        check_is_fitted(self, "extractor_names_")
        Q = self._validate_X(X, reset=False)
        if self.strategy == "nearest":
            D = self.index_.query(Q)
            return neighbour_average(D, self.scores_, int(self.n_neighbors), self.weights)
        m = len(self.extractor_names_)
        D = (self._distances(Q, self.anchors_) - self.distance_shift_) / self.distance_scale_
        s, sj, b = self.coef_[0], self.coef_[1:m + 1], self.coef_[m + 1:]
        logits = -(s + sj)[None, :] * D + b[None, :]
        centred = logits - logits.mean(axis=1, keepdims=True)
        return float(self.temperature) * centred + float(np.nanmean(self.scores_))

    def novelty(self, X: Any) -> np.ndarray:
        """How far each task is from the known tasks, in units of their usual spacing.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features) or list of Embedding
            Embeddings of the new tasks, made like those of :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_tasks,)
            Distance to the nearest known task divided by :attr:`typical_distance_`
            (the symmetric distance stands in for the asymmetric one). About 1 or less:
            the task looks like known ones, and their scores are a good guide; several
            times more: nothing known is like it (the ranges measured on the shipped
            knowledge base are in ``benchmarks/results/selection.md``).

        Raises
        ------
        IncompatibleEmbeddingError
            As :meth:`predict_scores`.
        """
        check_is_fitted(self, "typical_distance_")
        Q = self._validate_X(X, reset=False)
        return self._novelty_distances(Q).min(axis=0) / self.typical_distance_

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_knowledge(cls, kb: KnowledgeBase, embedding: str | None = None,
                       **params: Any) -> ExtractorSelector:
        """A selector fitted on a knowledge base.

        Parameters
        ----------
        kb : KnowledgeBase
        embedding : str, optional
            Name of one of the base's extra embedding sets (``kb.extra_names``, e.g.
            ``"domain"`` or ``"label_stat"``) to use instead of its main embeddings.
            Tasks without an entry in that set are left out.
        **params
            Parameters of :class:`ExtractorSelector` (``extractor_names`` is taken from
            the base).

        Returns
        -------
        ExtractorSelector
            Fitted; its ``embedding_meta_`` is the base's (or the extra set's) meta.

        Raises
        ------
        KnowledgeBaseError
            Fewer than two tasks with scores.
        KeyError
            No extra embedding set of that name.
        """
        from t2v_automl.knowledge import KnowledgeBase

        if not isinstance(kb, KnowledgeBase):
            raise InvalidInputTypeError(
                f"kb must be a KnowledgeBase; got {type(kb).__name__}. Load one with "
                f"KnowledgeBase.load(path)."
            )
        if "extractor_names" in params:
            raise InvalidParameterError(
                "from_knowledge takes the extractor names from the knowledge base; do not "
                "pass extractor_names."
            )
        if embedding is None:
            meta, E = kb.meta, kb.embeddings
        else:
            meta, E = kb.extra_embeddings(embedding)
        Y = kb.scores
        keep = np.isfinite(E).all(axis=1) & ~np.isnan(Y).all(axis=1)
        has_col = ~np.isnan(Y[keep]).all(axis=0)
        names = [n for n, h in zip(kb.extractor_names, has_col, strict=True) if h]
        sel = cls(**params, extractor_names=names)
        sel.fit(E[keep], Y[keep][:, has_col])
        sel.embedding_meta_ = meta
        return sel

    @classmethod
    def default(cls, **params: Any) -> ExtractorSelector:
        """A selector fitted on the knowledge base shipped with the package.

        Parameters
        ----------
        **params
            Parameters of :class:`ExtractorSelector`; the defaults otherwise.

        Returns
        -------
        ExtractorSelector

        Raises
        ------
        KnowledgeBaseError
            The packaged knowledge base is not installed.
        """
        from t2v_automl.knowledge import KnowledgeBase

        return cls.from_knowledge(KnowledgeBase.default(), **params)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.positive_only = self.metric in _NONNEGATIVE
        return tags
