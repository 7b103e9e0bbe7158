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

``"nearest"`` with the Hellinger distance is the default. On the shipped knowledge base
(189 tasks, 13 extractors; ``benchmarks/results/selection.md``) it beat ``"model2vec"``
under every protocol (leaving one task out: regret 1.71 vs 2.00 points; one label function
out: 0.44 vs 1.82; one source dataset out: 4.93 vs 6.92), and the Hellinger distance is a
single matrix product, so it stays fast on large knowledge bases. A third design, kernel
ridge regression of each extractor's score relative to the task's mean on
``exp(-d / width)``, did not beat both in a prototype and was left out.

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

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize, special, stats
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from t2v_automl import distances
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from t2v_automl.knowledge import KnowledgeBase

__all__ = [
    "ExtractorSelector",
    "NOVELTY_CENTER",
    "NOVELTY_STEEPNESS",
    "SelectorMixin",
    "blend_with_transferability",
    "novelty_gate",
    "STRATEGIES",
    "mean_regret",
    "mean_weighted_tau",
    "top1_regret",
    "weighted_tau",
]

#: Strategies of :class:`ExtractorSelector`.
STRATEGIES = ("nearest", "model2vec")
_METRICS = ("hellinger", "symmetric", "asymmetric", "normalized_cosine", "cosine")
_NONNEGATIVE = ("hellinger", "symmetric", "asymmetric")
_EPS = 1e-12
#: Novelty at which :func:`blend_with_transferability` weighs both rankings equally.
NOVELTY_CENTER = 1.5
#: Slope of the logistic gate of :func:`blend_with_transferability`.
NOVELTY_STEEPNESS = 4.0
#: Known tasks used to estimate the typical nearest-neighbour distance at ``fit``.
_TYPICAL_SAMPLE = 500


# ----------------------------------------------------------------------------- metrics
def _pair(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    t, s = np.atleast_2d(t), np.atleast_2d(s)
    if t.shape != s.shape or t.ndim != 2:
        raise IncompatibleEmbeddingError(
            f"true and predicted scores must be matrices of one shape (tasks x extractors); "
            f"got {t.shape} and {s.shape}. Predict for the same tasks and extractors."
        )
    return t, s


def weighted_tau(y_true: Any, y_score: Any) -> np.ndarray:
    """Weighted Kendall tau between true and predicted scores, per task.

    Parameters
    ----------
    y_true : array-like of shape (n_tasks, n_extractors)
        True scores; NaN = not measured (left out).
    y_score : array-like of shape (n_tasks, n_extractors)
        Predicted scores (higher = better); NaN counts as the lowest.

    Returns
    -------
    ndarray of shape (n_tasks,)
        :func:`scipy.stats.weightedtau` (hyperbolic weights, both rankings averaged) over
        the measured extractors of each task; NaN for a task with fewer than two measured
        extractors or whose true scores are all tied (nothing to rank). A constant
        prediction gets 0.
    """
    t, s = _pair(y_true, y_score)
    out = np.full(t.shape[0], np.nan)
    for i in range(t.shape[0]):
        known = ~np.isnan(t[i])
        if known.sum() < 2 or np.ptp(t[i, known]) == 0:
            continue
        pred = np.where(np.isnan(s[i, known]), -np.inf, s[i, known])
        finite = np.isfinite(pred)
        if finite.any():
            pred = np.where(finite, pred, pred[finite].min() - 1.0)
        if np.ptp(pred) == 0:
            out[i] = 0.0
            continue
        out[i] = stats.weightedtau(t[i, known], pred).statistic
    return out


def top1_regret(y_true: Any, y_score: Any) -> np.ndarray:
    """Accuracy points lost by picking the predicted best extractor, per task.

    Parameters
    ----------
    y_true : array-like of shape (n_tasks, n_extractors)
        True scores in [0, 1]; NaN = not measured.
    y_score : array-like of shape (n_tasks, n_extractors)
        Predicted scores; the pick is the highest-scored *measured* extractor (ties: the
        first column).

    Returns
    -------
    ndarray of shape (n_tasks,)
        ``100 * (best true score - true score of the pick)``; NaN for a task without any
        measured extractor.
    """
    t, s = _pair(y_true, y_score)
    out = np.full(t.shape[0], np.nan)
    for i in range(t.shape[0]):
        known = ~np.isnan(t[i])
        if not known.any():
            continue
        pred = np.where(known & ~np.isnan(s[i]), s[i], -np.inf)
        pick = int(np.argmax(pred)) if np.isfinite(pred).any() else int(np.argmax(known))
        out[i] = 100.0 * (np.nanmax(t[i]) - t[i, pick])
    return out


def mean_weighted_tau(y_true: Any, y_score: Any) -> float:
    """Mean of :func:`weighted_tau` over the tasks where it is defined (NaN if none)."""
    v = weighted_tau(y_true, y_score)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def mean_regret(y_true: Any, y_score: Any) -> float:
    """Mean of :func:`top1_regret` in accuracy points (lower is better; NaN if undefined)."""
    v = top1_regret(y_true, y_score)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def _ranking_order(scores: np.ndarray) -> np.ndarray:
    """Column indices per row, best first; NaN last; ties keep column order."""
    key = np.where(np.isnan(scores), np.inf, -scores)
    return np.argsort(key, axis=1, kind="stable")


# ----------------------------------------------------------------------------- validation
def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InvalidParameterError(
            f"{name} must be an integer >= {minimum}; got {value!r}."
        )
    return int(value)


def _check_float(value: Any, name: str, *, positive: bool | None = True) -> float:
    """A finite real: ``> 0`` (``positive=True``), ``>= 0`` (False) or any sign (None)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(float(value)) or (positive and value <= 0) \
            or (positive is not None and value < 0):
        bound = {True: " > 0", False: " >= 0", None: ""}[positive]
        raise InvalidParameterError(
            f"{name} must be a finite number{bound}; got {value!r}."
        )
    return float(value)


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UnknownNameError(
            f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}."
        )
    return value


def _split_embeddings(E: Any) -> tuple[Any, EmbeddingMeta | None]:
    """Turn a list of :class:`Embedding` into an array plus their common meta."""
    if isinstance(E, Embedding):
        raise InvalidInputTypeError(
            "E must hold several embeddings (one row per task); got a single Embedding. "
            "Wrap it in a list: [embedding]."
        )
    if isinstance(E, Sequence) and not isinstance(E, str) and len(E) > 0 \
            and any(isinstance(e, Embedding) for e in E):
        if not all(isinstance(e, Embedding) for e in E):
            raise InvalidInputTypeError(
                "E mixes Embedding objects and plain rows; pass only Embedding objects or a "
                "2-D array."
            )
        from t2v_automl.embedding import check_compatible

        meta = check_compatible(E)
        return np.vstack([e.values for e in E]), meta
    return E, None


def _check_finite(X: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise IncompatibleEmbeddingError(
            f"{what} contains NaN or inf ({int(bad.sum())} value(s); first in row {int(i)}, "
            f"column {int(j)}). A failed embedding cannot be compared: re-embed that task "
            f"(more images, fewer classes) or leave it out."
        )


def _score_matrix(Y: Any, names: Sequence[str] | None, n_rows: int
                  ) -> tuple[np.ndarray, list[str]]:
    """Validate a tasks x extractors score matrix; return it and the extractor names."""
    if Y is None:
        raise KnowledgeBaseError(
            "the selector requires y to be passed, but the target y is None: fit needs the "
            "score matrix Y (tasks x extractors, NaN = not measured)."
        )
    cols = None
    if hasattr(Y, "columns") and hasattr(Y, "to_numpy"):  # a pandas DataFrame
        cols = [str(c) for c in Y.columns]
        Y = Y.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        arr = np.array(Y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputTypeError(
            f"Y must be a numeric tasks x extractors matrix (array or DataFrame); got "
            f"{type(Y).__name__} that does not convert to float ({exc})."
        ) from exc
    if arr.ndim == 1:
        raise KnowledgeBaseError(
            f"Y must be 2-D (tasks x extractors: one column per extractor); got a 1-D array "
            f"of length {arr.shape[0]}. For a single extractor there is nothing to choose; "
            f"pass a matrix with one column per candidate."
        )
    if arr.ndim != 2:
        raise KnowledgeBaseError(f"Y must be 2-D (tasks x extractors); got shape {arr.shape}.")
    if arr.shape[0] != n_rows:
        raise KnowledgeBaseError(
            f"Y has {arr.shape[0]} rows but E has {n_rows} tasks; give one row of scores per "
            f"task, in the order of E."
        )
    if cols is not None and names is not None and list(names) != cols:
        raise UnknownNameError(
            f"extractor_names {list(names)} disagree with the columns of the DataFrame Y "
            f"{cols}; leave extractor_names=None to use the columns."
        )
    if cols is None:
        if names is None:
            cols = [f"extractor{j}" for j in range(arr.shape[1])]
        else:
            if isinstance(names, str):
                raise InvalidInputTypeError(
                    f"extractor_names must be a list of names, not one string; got {names!r}."
                )
            cols = [str(n) for n in names]
            if len(cols) != arr.shape[1]:
                raise UnknownNameError(
                    f"extractor_names has {len(cols)} names but Y has {arr.shape[1]} columns; "
                    f"give one name per column."
                )
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        raise UnknownNameError(f"extractor names must be unique; {dup} appear more than once.")
    if arr.shape[1] < 1:
        raise KnowledgeBaseError("Y has no columns: give the scores of at least one extractor.")
    if np.isinf(arr).any():
        raise KnowledgeBaseError(
            "Y contains inf; scores must be finite numbers (NaN marks a missing score)."
        )
    empty = [bool(e) for e in np.asarray(np.isnan(arr).all(axis=0)).ravel()]
    if any(empty):
        missing = [c for c, e in zip(cols, empty, strict=True) if e]
        raise KnowledgeBaseError(
            f"extractor(s) {missing} have no score on "
            f"any task (all-missing column); drop them, or measure them on some tasks."
        )
    return arr, cols


# ----------------------------------------------------------------------------- mixin
class SelectorMixin:
    """``predict``, ``rank`` and ``score`` for selectors that define ``predict_scores``.

    A subclass sets ``extractor_names_`` in ``fit`` and implements
    ``predict_scores(X) -> (n_tasks, n_extractors)``; it may override
    ``_ranking_scores`` when its ranking is not the order of its predicted scores.
    """

    extractor_names_: list[str]

    def predict_scores(self, X: Any) -> np.ndarray:  # pragma: no cover - interface
        """Predicted score of every extractor for every task of ``X``."""
        raise NotImplementedError

    def _ranking_scores(self, X: Any) -> np.ndarray:
        return self.predict_scores(X)

    def _candidate_columns(self, candidates: Sequence[str] | None) -> np.ndarray:
        names = list(self.extractor_names_)
        if candidates is None:
            return np.arange(len(names))
        if isinstance(candidates, str):
            raise InvalidInputTypeError(
                f"candidates must be a list of extractor names, not one string; got "
                f"{candidates!r}. Pass [{candidates!r}]."
            )
        unknown = [c for c in candidates if c not in names]
        if unknown:
            raise UnknownNameError(
                f"unknown extractor(s) {unknown}; this selector was fitted on {names}."
            )
        if not candidates:
            raise UnknownNameError("candidates is empty; name at least one extractor.")
        return np.asarray([names.index(c) for c in candidates])

    def rank(self, X: Any, candidates: Sequence[str] | None = None) -> np.ndarray:
        """Extractor names per task, best first.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features) or list of Embedding
            The new tasks (for :class:`TransferabilitySelector`: the tasks themselves).
        candidates : sequence of str, optional
            Rank only these extractors (names seen in ``fit``). Default: all.

        Returns
        -------
        ndarray of shape (n_tasks, n_candidates), dtype object
        """
        check_is_fitted(self, "extractor_names_")
        cols = self._candidate_columns(candidates)
        s = self._ranking_scores(X)[:, cols]
        names = np.asarray(self.extractor_names_, dtype=object)[cols]
        return names[_ranking_order(s)]

    def predict(self, X: Any, candidates: Sequence[str] | None = None) -> np.ndarray:
        """The extractor predicted to do best on each task.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features) or list of Embedding
        candidates : sequence of str, optional
            Choose among these extractors only. Default: all.

        Returns
        -------
        ndarray of shape (n_tasks,), dtype object
        """
        return self.rank(X, candidates)[:, 0]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean weighted Kendall tau between the predicted ranking and the true scores.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features) or list of Embedding
        y : DataFrame or array-like of shape (n_tasks, n_extractors)
            True scores (NaN = not measured). DataFrame columns may be any subset of the
            fitted extractor names, in any order; an array must have the fitted columns.
        sample_weight : array-like of shape (n_tasks,), optional
            Weights of the tasks in the mean.

        Returns
        -------
        float
            In [-1, 1], higher is better (see :func:`weighted_tau`); NaN when no task has
            untied true scores. :func:`mean_regret` gives the regret instead.
        """
        check_is_fitted(self, "extractor_names_")
        pred = self._ranking_scores(X)
        if hasattr(y, "columns") and hasattr(y, "to_numpy"):
            cols = self._candidate_columns([str(c) for c in y.columns])
            y = y.to_numpy(dtype=np.float64, na_value=np.nan)
            pred = pred[:, cols]
        Y = np.asarray(y, dtype=np.float64)
        if Y.ndim != 2 or Y.shape != pred.shape:
            raise KnowledgeBaseError(
                f"y must have shape {pred.shape} (tasks x fitted extractors "
                f"{list(self.extractor_names_)}); got {Y.shape}. Pass a DataFrame to score a "
                f"subset of the extractors."
            )
        taus = weighted_tau(Y, pred)
        ok = np.isfinite(taus)
        if not ok.any():
            return float("nan")
        w = np.ones(len(taus)) if sample_weight is None \
            else np.asarray(sample_weight, dtype=np.float64)
        if w.shape != taus.shape:
            raise InvalidInputTypeError(
                f"sample_weight must have one weight per task ({taus.shape[0]}); got shape "
                f"{w.shape}."
            )
        if w[ok].sum() <= 0:
            return float("nan")
        return float(np.average(taus[ok], weights=w[ok]))


def _neighbour_average(D: np.ndarray, Y: np.ndarray, k: int, weights: str) -> np.ndarray:
    """Average the scores of the ``k`` nearest tasks that were measured, per extractor.

    Parameters
    ----------
    D : ndarray of shape (n_train, n_query)
        Distances from every known task to every query (smaller = nearer).
    Y : ndarray of shape (n_train, n_extractors)
        Known scores, NaN = missing.
    k : int
    weights : {"distance", "uniform"}

    Returns
    -------
    ndarray of shape (n_query, n_extractors)
    """
    order = np.argsort(D, axis=0, kind="stable")  # (n_train, n_query)
    known = ~np.isnan(Y)  # (n_train, m)
    known_sorted = known[order]  # (n_train, n_query, m)
    take = known_sorted & (np.cumsum(known_sorted, axis=0) <= k)
    d_sorted = np.take_along_axis(D, order, axis=0)  # (n_train, n_query)
    if weights == "distance":
        # inverse distance; shifted when a distance is negative (asymmetric distance)
        floor = np.minimum(d_sorted.min(axis=0, keepdims=True), 0.0)
        w = 1.0 / (d_sorted - floor + 1e-9)
    else:
        w = np.ones_like(d_sorted)
    W = w[:, :, None] * take  # (n_train, n_query, m)
    vals = np.nan_to_num(Y)[order]  # (n_train, n_query, m)
    return (W * vals).sum(axis=0) / W.sum(axis=0)


def _row_standardise(S: np.ndarray) -> np.ndarray:
    """Per row: NaN -> the row's minimum, then zero mean and unit standard deviation."""
    S = np.asarray(S, dtype=np.float64)
    finite = np.isfinite(S)
    low = np.where(finite, S, np.inf).min(axis=1, keepdims=True)
    S = np.where(finite, S, np.where(np.isfinite(low), low, 0.0))
    sd = S.std(axis=1, keepdims=True)
    return (S - S.mean(axis=1, keepdims=True)) / np.where(sd > _EPS, sd, 1.0)


def novelty_gate(novelty: Any, *, center: float = NOVELTY_CENTER,
                 steepness: float = NOVELTY_STEEPNESS) -> np.ndarray:
    """Weight of the transferability ranking: ``1 / (1 + exp(-steepness (novelty - center)))``.

    Parameters
    ----------
    novelty : array-like of shape (n_tasks,)
    center, steepness : float

    Returns
    -------
    ndarray of shape (n_tasks,)
        In [0, 1].
    """
    return special.expit(float(steepness) * (np.asarray(novelty, dtype=np.float64)
                                             - float(center)))


def blend_with_transferability(prior: Any, transfer: Any, novelty: Any, *,
                               center: float = NOVELTY_CENTER,
                               steepness: float = NOVELTY_STEEPNESS
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Mix a knowledge-based ranking with a transferability ranking by novelty.

    Both score matrices are standardised per task (NaN counts as the task's lowest score),
    then mixed with the weight ``g = 1 / (1 + exp(-steepness * (novelty - center)))`` on
    the transferability side: a task like the known ones keeps the neighbours' ranking, a
    task unlike any keeps the transferability ranking.

    Parameters
    ----------
    prior : array-like of shape (n_tasks, n_extractors)
        Scores predicted from the knowledge base (:meth:`ExtractorSelector.predict_scores`).
    transfer : array-like of shape (n_tasks, n_extractors)
        Transferability scores of the same extractors (higher = better). Rows that are all
        NaN (not computed) keep the prior ranking.
    novelty : array-like of shape (n_tasks,)
        :meth:`ExtractorSelector.novelty`.
    center, steepness : float
        The logistic gate. The defaults were chosen on the shipped knowledge base (see
        ``benchmarks/results/selection.md``, which also shows neighbouring values).

    Returns
    -------
    scores : ndarray of shape (n_tasks, n_extractors)
        Higher = better; standardised units, not accuracies.
    gate : ndarray of shape (n_tasks,)
        The weight of the transferability side per task.

    Raises
    ------
    InvalidInputTypeError
        Shapes that do not match.
    """
    P = np.atleast_2d(np.asarray(prior, dtype=np.float64))
    T = np.atleast_2d(np.asarray(transfer, dtype=np.float64))
    nov = np.atleast_1d(np.asarray(novelty, dtype=np.float64))
    if P.shape != T.shape or nov.shape != (P.shape[0],):
        raise InvalidInputTypeError(
            f"prior and transfer must have the same shape (tasks x extractors) and novelty "
            f"one value per task; got prior {P.shape}, transfer {T.shape}, novelty "
            f"{nov.shape}."
        )
    gate = novelty_gate(nov, center=center, steepness=steepness)
    gate = np.where(np.isfinite(T).any(axis=1), gate, 0.0)
    mixed = (1.0 - gate)[:, None] * _row_standardise(P) + gate[:, None] * _row_standardise(T)
    return mixed, gate


# ----------------------------------------------------------------------------- estimator
class ExtractorSelector(SelectorMixin, BaseEstimator):
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
    >>> sel.predict(E[[0, 5]]).tolist()
    ['a', 'b']
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
        _check_choice(self.strategy, "strategy", STRATEGIES)
        _check_choice(self.metric, "metric", _METRICS)
        _check_choice(self.weights, "weights", ("distance", "uniform"))
        _check_int(self.n_neighbors, "n_neighbors", 1)
        _check_float(self.alpha, "alpha", positive=False)
        _check_float(self.temperature, "temperature")
        _check_float(self.reg, "reg", positive=False)
        _check_choice(self.dtype, "dtype", ("float64", "float32"))

    def _validate_X(self, X: Any, reset: bool) -> np.ndarray:
        X, meta = _split_embeddings(X)
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
        _check_finite(arr, "the task embeddings")
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
            _score_matrix(None, None, 0)
        n_rows = len(y) if hasattr(y, "__len__") else -1
        if n_rows < 2 and hasattr(y, "__len__"):
            raise KnowledgeBaseError(
                f"the selector needs at least two known tasks to compare; got n_samples="
                f"{n_rows}. Add the scores of more tasks."
            )
        E = self._validate_X(X, reset=True)
        Y, names = _score_matrix(y, self.extractor_names, E.shape[0])
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
            return _neighbour_average(D, self.scores_, int(self.n_neighbors), self.weights)
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
            times more: nothing known is like it (on the shipped knowledge base, tasks of a
            source dataset held out entirely scored 2.9 to 6.8, relabellings of known
            images 0.2 to 1.5).

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
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        tags.target_tags.two_d_labels = True
        tags.input_tags.allow_nan = False
        tags.input_tags.positive_only = self.metric in _NONNEGATIVE
        tags.non_deterministic = False
        return tags
