"""Baselines to measure an :class:`~t2v_automl.estimators.ExtractorSelector` against.

Selectors
---------
Every selector here has the interface of ``ExtractorSelector`` — ``fit(X, Y)``,
``predict``, ``rank``, ``predict_scores``, ``score`` (mean weighted Kendall tau) — so a
benchmark can swap them:

:class:`BestOnAverage`
    The single extractor with the best mean score on the known tasks, for every task.
:class:`FixedExtractor`
    Always one named extractor (an ImageNet default), whatever the task.
:class:`MetaFeatureKNN`
    The ``n_neighbors`` known tasks nearest in the four meta-features image AutoML
    systems use (:func:`meta_features`: number of classes, of images, resolution,
    channels; log-scaled and standardised), their scores averaged.
:class:`TransferabilitySelector`
    No training data at all: for the new task itself, each candidate's features are
    computed and a transferability score (LogME, LEEP, NCE, H-score, k-NN accuracy) ranks
    the candidates. This needs one forward pass per candidate, so it costs far more than
    one embedding; :attr:`TransferabilitySelector.times_` records it.

The cheap-embedding baselines need no code of their own: an ``ExtractorSelector`` fitted
on a knowledge base's extra embedding sets ``"domain"`` (mean penultimate probe features)
or ``"label_stat"`` (per feature, the share of its variance explained by the labels) *is*
that baseline::

    ExtractorSelector.from_knowledge(kb, embedding="domain", metric="normalized_cosine")

(those embeddings are not Fisher information, so use ``metric="normalized_cosine"``).

Transferability scores
----------------------
Functions of a candidate's features ``(n, d)`` (or source-head outputs) and the task's
labels ``(n,)`` returning one float, higher = better, written from the papers' equations:

- :func:`logme` — You et al., "LogME: Practical Assessment of Pre-trained Models for
  Transfer Learning", ICML 2021;
- :func:`leep` — Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of
  Learned Representations", ICML 2020;
- :func:`nce` — Tran et al., "Transferability and Hardness of Supervised Classification
  Tasks", ICCV 2019;
- :func:`h_score` — Bao et al., "An Information-Theoretic Approach to Transferability in
  Task Transfer Learning", ICIP 2019;
- :func:`knn_accuracy` — leave-one-out k-nearest-neighbour accuracy.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from t2v_automl.estimators._selector import (
    SelectorMixin,
    _check_choice,
    _check_int,
    _neighbour_average,
    _score_matrix,
)
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
    KnowledgeBaseError,
    UnknownNameError,
)
from t2v_automl.tasks import Task, as_task

__all__ = [
    "BestOnAverage",
    "FixedExtractor",
    "MetaFeatureKNN",
    "TransferabilitySelector",
    "TRANSFERABILITY_SCORES",
    "h_score",
    "knn_accuracy",
    "leep",
    "logme",
    "meta_features",
    "nce",
]


# ----------------------------------------------------------------------------- helpers
def _n_rows(X: Any, what: str = "X") -> int:
    if X is None:
        raise InvalidInputTypeError(
            f"{what} is None; pass one row (embedding, meta-features or task) per task."
        )
    try:
        return len(X)
    except TypeError as exc:
        raise InvalidInputTypeError(
            f"{what} must be a sequence or array with one row per task; got "
            f"{type(X).__name__}."
        ) from exc


def _check_labels(labels: Any, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise InvalidTaskError(
            f"labels must be 1-D with one label per row of the features ({n}); got shape "
            f"{y.shape}."
        )
    _, codes = np.unique(y, return_inverse=True)
    if codes.max(initial=0) < 1:
        raise InvalidTaskError(
            "labels hold a single class; a transferability score needs at least two classes."
        )
    return codes.astype(np.int64)


def _check_features(features: Any, what: str = "features") -> np.ndarray:
    try:
        F = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputTypeError(
            f"{what} must be a numeric array of shape (n_images, n_features); got "
            f"{type(features).__name__}."
        ) from exc
    if F.ndim != 2 or F.shape[0] < 2 or F.shape[1] < 1:
        raise InvalidTaskError(
            f"{what} must be 2-D (n_images >= 2, n_features >= 1); got shape {F.shape}."
        )
    if not np.isfinite(F).all():
        raise InvalidTaskError(
            f"{what} contain NaN or inf; the extractor failed on some images (check that "
            f"they are float in [0, 1])."
        )
    return F


def _check_probs(p: Any, what: str) -> np.ndarray:
    P = _check_features(p, what)
    if (P < 0).any() or not np.allclose(P.sum(axis=1), 1.0, atol=1e-4):
        raise InvalidTaskError(
            f"{what} must be probabilities: non-negative rows that sum to 1 (apply a softmax "
            f"to logits first); row sums range {P.sum(axis=1).min():.3g}.."
            f"{P.sum(axis=1).max():.3g}."
        )
    return P


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- scores
def logme(features: Any, labels: Any, *, max_iter: int = 100, tol: float = 1e-4) -> float:
    """LogME: the log marginal evidence of a Bayesian linear model on the features.

    For each class ``c`` the one-hot target ``y`` is modelled as ``y = F w + e`` with prior
    ``w ~ N(0, I / alpha)`` and noise ``e ~ N(0, I / beta)``. ``alpha`` and ``beta``
    maximise the evidence by the fixed-point updates of MacKay (You et al. 2021, Alg. 1):
    with ``F = U S V^T`` and ``sigma_i = S_i^2``,
    ``gamma = sum_i beta sigma_i / (alpha + beta sigma_i)``, ``m = beta A^-1 F^T y``,
    ``alpha = gamma / |m|^2``, ``beta = (n - gamma) / |y - F m|^2``. The score is the
    evidence per image, averaged over classes:

    ``L/n = (1/2n) [d log alpha + n log beta - beta |y - F m|^2 - alpha |m|^2
    - log|A| - n log 2 pi]``, ``A = alpha I + beta F^T F``.

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    max_iter : int, default=100
        Fixed-point iterations at most.
    tol : float, default=1e-4
        Relative change of ``alpha / beta`` at which to stop.

    Returns
    -------
    float
        Higher = the features explain the labels better. All classes are solved at once
        on one SVD.
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    n, d = F.shape
    Y = np.eye(int(y.max()) + 1)[y]  # (n, C)
    U, S, _ = np.linalg.svd(F, full_matrices=False)
    sig = S ** 2  # (k,)
    k = sig.shape[0]
    Z = U.T @ Y  # (k, C): targets in the singular basis
    y2 = (Y ** 2).sum(axis=0)  # (C,)
    resid0 = np.maximum(y2 - (Z ** 2).sum(axis=0), 0.0)  # part of y outside span(F)
    C = Y.shape[1]
    alpha, beta = np.ones(C), np.ones(C)
    for _ in range(int(max_iter)):
        t = alpha / beta
        g = sig[:, None] / (sig[:, None] + t[None, :])  # (k, C)
        gamma = g.sum(axis=0)
        # m in the basis V: m_i = S_i z_i / (sigma_i + alpha / beta)
        m2 = ((S[:, None] * Z / (sig[:, None] + t[None, :])) ** 2).sum(axis=0)
        res2 = ((Z * t[None, :] / (sig[:, None] + t[None, :])) ** 2).sum(axis=0) + resid0
        alpha = np.maximum(gamma, 1e-12) / np.maximum(m2, 1e-300)
        beta = np.maximum(n - gamma, 1e-12) / np.maximum(res2, 1e-300)
        if np.all(np.abs(alpha / beta - t) <= tol * np.abs(t)):
            break
    t = alpha / beta
    m2 = ((S[:, None] * Z / (sig[:, None] + t[None, :])) ** 2).sum(axis=0)
    res2 = ((Z * t[None, :] / (sig[:, None] + t[None, :])) ** 2).sum(axis=0) + resid0
    logdetA = np.log(alpha[None, :] + beta[None, :] * sig[:, None]).sum(axis=0) \
        + (d - k) * np.log(alpha)
    ev = (d * np.log(alpha) + n * np.log(beta) - beta * res2 - alpha * m2 - logdetA
          - n * math.log(2 * math.pi)) / (2 * n)
    return float(ev.mean())


def leep(source_probs: Any, labels: Any) -> float:
    """LEEP: log expected empirical prediction of the source head on the target labels.

    With ``theta(x)`` the source model's class probabilities, the empirical joint
    ``P(y, z) = (1/n) sum_{i: y_i = y} theta(x_i)_z``, ``P(y | z) = P(y, z) / P(z)``, and
    ``LEEP = (1/n) sum_i log sum_z P(y_i | z) theta(x_i)_z`` (Nguyen et al. 2020, Eq. 2).

    Parameters
    ----------
    source_probs : array-like of shape (n, n_source_classes)
        Softmax of the source head's logits (rows sum to 1).
    labels : array-like of shape (n,)

    Returns
    -------
    float
        At most 0; higher = more transferable.
    """
    P = _check_probs(source_probs, "source_probs")
    y = _check_labels(labels, P.shape[0])
    n = P.shape[0]
    Yh = np.eye(int(y.max()) + 1)[y]  # (n, C)
    joint = Yh.T @ P / n  # (C, Z)
    cond = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    eep = (P * cond[y]).sum(axis=1)
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def nce(source_labels: Any, labels: Any) -> float:
    """NCE: negative conditional entropy ``-H(Y | Z)`` of target labels given source labels.

    ``Z`` are the source model's (hard) labels of the target images, e.g. the argmax of
    its source head; ``-H(Y|Z) = sum_{y,z} P(y, z) log P(y | z)`` with empirical
    probabilities (Tran et al. 2019, Eq. 3).

    Parameters
    ----------
    source_labels : array-like of shape (n,)
        Any hashable labels.
    labels : array-like of shape (n,)

    Returns
    -------
    float
        At most 0; 0 when the source labels determine the target labels.
    """
    z = np.asarray(source_labels)
    if z.ndim != 1:
        raise InvalidTaskError(
            f"source_labels must be 1-D (one hard label per image, e.g. the argmax of the "
            f"source head); got shape {z.shape}."
        )
    y = _check_labels(labels, z.shape[0])
    _, zc = np.unique(z, return_inverse=True)
    n = y.shape[0]
    joint = np.zeros((int(zc.max()) + 1, int(y.max()) + 1))
    np.add.at(joint, (zc, y), 1.0 / n)
    pz = joint.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(joint > 0, joint * np.log(joint / pz), 0.0)
    return float(terms.sum())


def h_score(features: Any, labels: Any, *, shrinkage: float | str = "auto") -> float:
    """H-score: ``tr(cov(f)^-1 cov(E[f | y]))``, with a shrunk feature covariance.

    Bao et al. 2019, Definition 2. The covariance of the features is shrunk towards a
    multiple of the identity, ``(1 - a) cov + a (tr(cov) / d) I``, so that the inverse
    exists for ``d >= n`` and the score does not follow noise in directions with tiny
    variance.

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    shrinkage : float in [0, 1] or "auto", default="auto"
        ``a`` above; ``"auto"`` uses the Ledoit-Wolf estimate (at least 1e-3).

    Returns
    -------
    float
        Higher = features more discriminative of the labels (at most ``n_classes - 1``).
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    if isinstance(shrinkage, str):
        if shrinkage != "auto":
            raise UnknownNameError(f"shrinkage must be a number in [0, 1] or 'auto'; got "
                                   f"{shrinkage!r}.")
        from sklearn.covariance import ledoit_wolf_shrinkage

        a = max(float(ledoit_wolf_shrinkage(F)), 1e-3)
    else:
        if isinstance(shrinkage, bool) or not isinstance(shrinkage, numbers.Real) \
                or not 0.0 <= float(shrinkage) <= 1.0:
            raise InvalidParameterError(f"shrinkage must lie in [0, 1]; got {shrinkage!r}.")
        a = float(shrinkage)
    Fc = F - F.mean(axis=0)
    n, d = Fc.shape
    cov = Fc.T @ Fc / n
    mu = float(np.trace(cov)) / d
    if mu <= 0:
        return 0.0
    cov = (1.0 - a) * cov + a * mu * np.eye(d)
    C = int(y.max()) + 1
    counts = np.bincount(y, minlength=C).astype(np.float64)
    means = np.zeros((C, d))
    np.add.at(means, y, Fc)
    means /= counts[:, None]
    g = means[y]  # E[f | y] for each image
    cov_g = g.T @ g / n
    return float(np.trace(np.linalg.solve(cov, cov_g)))


def knn_accuracy(features: Any, labels: Any, *, n_neighbors: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy on standardised features.

    Each image is classified by the majority label of its ``n_neighbors`` nearest other
    images (Euclidean distance after standardising each feature; ties go to the label
    whose neighbours are nearer).

    Parameters
    ----------
    features : array-like of shape (n, d)
    labels : array-like of shape (n,)
    n_neighbors : int, default=5

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    F = _check_features(features)
    y = _check_labels(labels, F.shape[0])
    k = _check_int(n_neighbors, "n_neighbors", 1)
    n = F.shape[0]
    k = min(k, n - 1)
    std = F.std(axis=0)
    Fs = (F - F.mean(axis=0)) / np.where(std > 0, std, 1.0)
    sq = (Fs ** 2).sum(axis=1)
    D = sq[:, None] + sq[None, :] - 2.0 * Fs @ Fs.T
    np.fill_diagonal(D, np.inf)
    nn = np.argsort(D, axis=1, kind="stable")[:, :k]  # (n, k), nearest first
    C = int(y.max()) + 1
    votes = np.zeros((n, C))
    # one vote per neighbour, plus a tie-breaking bonus that favours nearer neighbours
    rank_bonus = 1e-3 * (k - np.arange(k)) / k
    np.add.at(votes, (np.repeat(np.arange(n), k), y[nn].ravel()),
              np.tile(1.0 + rank_bonus, n))
    return float(np.mean(votes.argmax(axis=1) == y))


#: Names accepted by :class:`TransferabilitySelector` (``measure=``).
TRANSFERABILITY_SCORES: dict[str, str] = {
    "logme": "LogME evidence on the penultimate features",
    "leep": "LEEP from the extractor's own source head (NaN without one)",
    "nce": "NCE of the source head's hard labels (NaN without one)",
    "h_score": "H-score on the penultimate features",
    "knn_accuracy": "leave-one-out 5-NN accuracy on standardised features",
}


# ----------------------------------------------------------------------------- meta-features
def meta_features(task: Any) -> np.ndarray:
    """The four meta-features image AutoML systems use to find similar datasets.

    Parameters
    ----------
    task : Task, (images, labels) pair, or an object with a ``.train`` Task (a suite task)

    Returns
    -------
    ndarray of shape (4,)
        ``[n_classes, n_images, resolution, channels]``: resolution is ``sqrt(H * W)``;
        channels is 1 when the three stored channels are equal everywhere (grey images),
        else 3.
    """
    if not isinstance(task, Task) and isinstance(getattr(task, "train", None), Task):
        task = task.train
    t = as_task(task)
    c, h, w = t.image_shape
    grey = c == 1 or bool(np.array_equal(t.images[:, 0], t.images[:, 1])
                          and np.array_equal(t.images[:, 0], t.images[:, 2]))
    return np.array([t.n_classes, t.n_images, math.sqrt(h * w), 1 if grey else 3],
                    dtype=np.float64)


# ----------------------------------------------------------------------------- selectors
class _TableSelector(SelectorMixin, BaseEstimator):
    """Shared ``fit`` validation of the selectors that learn from a score table."""

    def _fit_table(self, X: Any, y: Any) -> np.ndarray:
        n = _n_rows(X)
        if n < 1:
            raise KnowledgeBaseError("X holds no tasks; pass at least one known task.")
        Y, names = _score_matrix(y, getattr(self, "extractor_names", None), n)
        self.extractor_names_ = names
        self.scores_ = Y
        return Y

    def _mean_scores(self, Y: np.ndarray) -> np.ndarray:
        """Mean score per extractor, robust to missing entries.

        The mean over tasks of the score relative to the task's mean, plus the overall
        mean: equal to the plain column mean when nothing is missing, and not biased
        toward extractors measured only on easy tasks otherwise.
        """
        rel = Y - np.nanmean(Y, axis=1, keepdims=True)
        return np.nanmean(rel, axis=0) + float(np.nanmean(Y))


class BestOnAverage(_TableSelector):
    """The extractor with the best mean score on the known tasks, for every new task.

    Parameters
    ----------
    extractor_names : sequence of str, optional
        Names of the columns of an array ``Y`` (a DataFrame's columns are used otherwise).

    Attributes
    ----------
    extractor_names_ : list of str
    mean_scores_ : ndarray of shape (n_extractors,)
        Mean score per extractor (relative to each task's mean where scores are missing,
        plus the overall mean).
    """

    def __init__(self, extractor_names: Sequence[str] | None = None) -> None:
        self.extractor_names = extractor_names

    def fit(self, X: Any, y: Any) -> BestOnAverage:
        """Average the known scores.

        Parameters
        ----------
        X : sequence of length n_tasks
            The known tasks in any form (embeddings, meta-features); only its length is
            used.
        y : DataFrame or array-like of shape (n_tasks, n_extractors)
            Scores, NaN = missing.

        Returns
        -------
        self
        """
        Y = self._fit_table(X, y)
        self.mean_scores_ = self._mean_scores(Y)
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """The mean scores, one identical row per task of ``X``.

        Parameters
        ----------
        X : sequence of length n_tasks

        Returns
        -------
        ndarray of shape (n_tasks, n_extractors)
        """
        check_is_fitted(self, "mean_scores_")
        return np.tile(self.mean_scores_, (_n_rows(X), 1))


class FixedExtractor(BestOnAverage):
    """Always the same extractor (a default such as an ImageNet network).

    Parameters
    ----------
    name : str, default="efficientnet_lite0"
        The extractor chosen for every task; it must be a column of ``Y``.
    extractor_names : sequence of str, optional
        Names of the columns of an array ``Y``.

    Attributes
    ----------
    extractor_names_ : list of str
    mean_scores_ : ndarray of shape (n_extractors,)
        :meth:`predict_scores` returns these; :meth:`rank` puts ``name`` first and the
        others in the order of their mean score.
    """

    def __init__(self, name: str = "efficientnet_lite0",
                 extractor_names: Sequence[str] | None = None) -> None:
        self.name = name
        self.extractor_names = extractor_names

    def fit(self, X: Any, y: Any) -> FixedExtractor:
        """Check that ``name`` is one of the extractors of ``y``; average the scores.

        Parameters
        ----------
        X : sequence of length n_tasks
        y : DataFrame or array-like of shape (n_tasks, n_extractors)

        Returns
        -------
        self

        Raises
        ------
        UnknownNameError
            ``name`` is not a column of ``y``.
        """
        super().fit(X, y)
        if self.name not in self.extractor_names_:
            raise UnknownNameError(
                f"FixedExtractor(name={self.name!r}): no such extractor among the scores' "
                f"columns {self.extractor_names_}; pick one of them."
            )
        return self

    def _ranking_scores(self, X: Any) -> np.ndarray:
        s = self.predict_scores(X)
        j = self.extractor_names_.index(self.name)
        s[:, j] = np.nanmax(s) + 1.0
        return s


class MetaFeatureKNN(_TableSelector):
    """The scores of the known tasks nearest in the four trivial meta-features.

    Parameters
    ----------
    n_neighbors : int, default=5
        Known tasks averaged per extractor (among those measured on it).
    weights : {"distance", "uniform"}, default="uniform"
        Neighbour weights.
    extractor_names : sequence of str, optional
        Names of the columns of an array ``Y``.

    Attributes
    ----------
    extractor_names_ : list of str
    meta_features_ : ndarray of shape (n_tasks, 4)
        Of the known tasks (see :func:`meta_features`).
    mean_, scale_ : ndarray of shape (4,)
        Standardisation of ``log1p(meta_features)`` (scale 1 for a constant feature).

    Notes
    -----
    ``X`` is a sequence of tasks (:func:`meta_features` is applied to each) or an array of
    shape ``(n_tasks, 4)`` of meta-features computed already.
    """

    def __init__(self, n_neighbors: int = 5, weights: str = "uniform",
                 extractor_names: Sequence[str] | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.extractor_names = extractor_names

    @staticmethod
    def _features(X: Any) -> np.ndarray:
        if isinstance(X, np.ndarray) and X.dtype != object:
            M = np.asarray(X, dtype=np.float64)
        else:
            _n_rows(X)
            M = np.vstack([meta_features(t) for t in X]) if len(X) else np.empty((0, 4))
        if M.ndim != 2 or M.shape[1] != 4:
            raise InvalidInputTypeError(
                f"X must be tasks or an (n_tasks, 4) array of meta-features [n_classes, "
                f"n_images, resolution, channels]; got an array of shape {M.shape}."
            )
        if not np.isfinite(M).all() or (M < 0).any():
            raise InvalidTaskError("meta-features must be finite and non-negative.")
        return M

    def fit(self, X: Any, y: Any) -> MetaFeatureKNN:
        """Store the known tasks' meta-features and scores.

        Parameters
        ----------
        X : sequence of tasks or array-like of shape (n_tasks, 4)
        y : DataFrame or array-like of shape (n_tasks, n_extractors)

        Returns
        -------
        self
        """
        _check_int(self.n_neighbors, "n_neighbors", 1)
        _check_choice(self.weights, "weights", ("distance", "uniform"))
        M = self._features(X)
        self._fit_table(M, y)
        L = np.log1p(M)
        self.meta_features_ = M
        self.mean_ = L.mean(axis=0)
        std = L.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """Average scores of the nearest known tasks.

        Parameters
        ----------
        X : sequence of tasks or array-like of shape (n_tasks, 4)

        Returns
        -------
        ndarray of shape (n_tasks, n_extractors)
        """
        check_is_fitted(self, "meta_features_")
        Q = (np.log1p(self._features(X)) - self.mean_) / self.scale_
        K = (np.log1p(self.meta_features_) - self.mean_) / self.scale_
        D = np.sqrt(((K[:, None, :] - Q[None, :, :]) ** 2).sum(-1))  # (n_train, n_query)
        return _neighbour_average(D, self.scores_, int(self.n_neighbors), self.weights)


ScoreFn = Callable[..., float]


class TransferabilitySelector(SelectorMixin, BaseEstimator):
    """Rank extractors for a task by a transferability score of their features.

    For each new task and each candidate extractor, the task's images are passed through
    the extractor (:meth:`t2v_automl.extractors.Extractor.transform`, or its source head
    for LEEP and NCE) and the score is computed with the task's labels. Nothing is learned
    from other tasks: ``fit`` only fixes the candidates.

    Parameters
    ----------
    measure : {"logme", "leep", "nce", "h_score", "knn_accuracy"}, default="logme"
        The transferability score (see :data:`TRANSFERABILITY_SCORES`; the parameter is not
        called ``score`` because :meth:`score` is the ranking-quality method). LEEP and NCE
        need the extractor's own source classifier; extractors without one get NaN
        (ranked last).
    extractors : sequence of str, optional
        Candidate extractor names; default: the columns of ``Y`` given to :meth:`fit`, or
        every installed extractor when ``Y`` is None.
    input_size : int, optional
        Input size for resizable extractors (their native size when None).
    max_images : int or None, default=500
        At most this many images of a task are used (class-stratified, seeded), None = all.
    batch_size : int, default=128
    device : str, default="cpu"
    random_state : int, default=0
        Seeds the image subsample.

    Attributes
    ----------
    extractor_names_ : list of str
    times_ : ndarray of shape (n_tasks_last_call, n_extractors)
        Seconds spent per task and candidate (features + score) in the last call of
        :meth:`predict_scores`.
    """

    def __init__(self, measure: str = "logme", extractors: Sequence[str] | None = None,
                 input_size: int | None = None, max_images: int | None = 500,
                 batch_size: int = 128, device: str = "cpu", random_state: int = 0) -> None:
        self.measure = measure
        self.extractors = extractors
        self.input_size = input_size
        self.max_images = max_images
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def fit(self, X: Any = None, y: Any = None) -> TransferabilitySelector:
        """Fix the candidate extractors.

        Parameters
        ----------
        X : ignored
        y : DataFrame or array-like of shape (n_tasks, n_extractors), optional
            Only its column names are used (a DataFrame), when ``extractors`` is None.

        Returns
        -------
        self

        Raises
        ------
        UnknownNameError
            Unknown measure or extractor names.
        """
        from t2v_automl.extractors import _REGISTRY, list_extractors

        _check_choice(self.measure, "measure", tuple(TRANSFERABILITY_SCORES))
        if self.max_images is not None:
            _check_int(self.max_images, "max_images", 2)
        _check_int(self.batch_size, "batch_size", 1)
        if self.extractors is not None:
            if isinstance(self.extractors, str):
                raise InvalidInputTypeError(
                    f"extractors must be a list of names, not one string; got "
                    f"{self.extractors!r}. Pass [{self.extractors!r}]."
                )
            names = [str(e) for e in self.extractors]
        elif y is not None and hasattr(y, "columns"):
            names = [str(c) for c in y.columns]
        else:
            names = list_extractors(available_only=True)
        unknown = [e for e in names if e not in _REGISTRY]
        if unknown:
            raise UnknownNameError(
                f"unknown extractor(s) {unknown}; registered: {list_extractors()}."
            )
        if not names or len(set(names)) != len(names):
            raise UnknownNameError(f"extractors must be unique and non-empty; got {names}.")
        self.extractor_names_ = names
        return self

    def _subsample(self, task: Task) -> Task:
        if self.max_images is None or task.n_images <= self.max_images:
            return task
        rng = np.random.default_rng(self.random_state)
        share = self.max_images / task.n_images
        idx = []
        for c in range(task.n_classes):
            members = np.flatnonzero(task.labels == c)
            take = max(1, int(round(share * len(members))))
            idx.append(rng.choice(members, min(take, len(members)), replace=False))
        return task.subset(np.sort(np.concatenate(idx)))

    def _one(self, name: str, task: Task) -> float:
        from t2v_automl.extractors import get_extractor

        ext = get_extractor(name, device=self.device)
        kind = self.measure
        if kind in ("leep", "nce"):
            if not ext.has_source_head:
                return float("nan")
            logits = ext.source_logits(task.images, batch_size=int(self.batch_size),
                                       input_size=self.input_size).astype(np.float64)
            if kind == "leep":
                return leep(_softmax(logits), task.labels)
            return nce(logits.argmax(axis=1), task.labels)
        feats = ext.transform(task.images, batch_size=int(self.batch_size),
                              input_size=self.input_size)
        fn: Any = {"logme": logme, "h_score": h_score, "knn_accuracy": knn_accuracy}[kind]
        return fn(feats, task.labels)

    def predict_scores(self, X: Any) -> np.ndarray:
        """The transferability score of every candidate on every task.

        Parameters
        ----------
        X : sequence of tasks
            :class:`~t2v_automl.tasks.Task` objects, ``(images, labels)`` pairs or suite
            tasks (their ``.train`` split is used).

        Returns
        -------
        ndarray of shape (n_tasks, n_extractors)
            Higher = better; NaN where the score cannot be computed (LEEP/NCE without a
            source head).
        """
        check_is_fitted(self, "extractor_names_")
        if isinstance(X, Task):
            raise InvalidInputTypeError(
                "X must be a sequence of tasks; got a single Task. Wrap it in a list."
            )
        tasks = []
        for t in X:
            if not isinstance(t, Task) and isinstance(getattr(t, "train", None), Task):
                t = t.train
            tasks.append(self._subsample(as_task(t)))
        out = np.full((len(tasks), len(self.extractor_names_)), np.nan)
        times = np.zeros_like(out)
        for i, task in enumerate(tasks):
            for j, name in enumerate(self.extractor_names_):
                t0 = time.perf_counter()
                out[i, j] = self._one(name, task)
                times[i, j] = time.perf_counter() - t0
        self.times_ = times
        return out
