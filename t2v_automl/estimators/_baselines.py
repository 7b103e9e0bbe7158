"""Baseline selectors, kept beside the real ones as scikit-learn keeps ``dummy.py``.

Every selector here has the interface of :class:`~t2v_automl.estimators.ExtractorSelector`
— ``fit(X, Y)``, ``predict`` (the score matrix), ``rank``, ``select``, ``score`` (mean
weighted Kendall tau) — so a benchmark can swap them:

:class:`BestOnAverage`
    The single extractor with the best mean score on the known tasks, for every task.
:class:`FixedExtractor`
    Always one named extractor (an ImageNet default), whatever the task.
:class:`MetaFeatureKNN`
    The ``n_neighbors`` known tasks nearest in the four meta-features image AutoML
    systems use (:func:`meta_features`: number of classes, of images, resolution,
    channels; log-scaled and standardised), their scores averaged.

The cheap-embedding baselines need no code of their own: an ``ExtractorSelector`` fitted
on a knowledge base's extra embedding sets ``"domain"`` (mean penultimate probe features)
or ``"label_stat"`` (per feature, the share of its variance explained by the labels) *is*
that baseline::

    ExtractorSelector.from_knowledge(kb, embedding="domain", metric="normalized_cosine")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from t2v_automl._validation import check_choice, check_int
from t2v_automl.estimators._base import SelectorMixin, neighbour_average, score_matrix
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidTaskError,
    KnowledgeBaseError,
    UnknownNameError,
)
from t2v_automl.tasks import Task, as_task

__all__ = ["BestOnAverage", "FixedExtractor", "MetaFeatureKNN", "meta_features", "n_rows"]


def n_rows(X: Any, what: str = "X") -> int:
    """The number of rows (tasks) of ``X``: a sequence, an array, a sparse matrix."""
    if X is None:
        raise InvalidInputTypeError(
            f"{what} is None; pass one row (embedding, meta-features or task) per task."
        )
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) >= 1:
        return int(shape[0])
    try:
        return len(X)
    except TypeError:
        pass
    try:
        return int(np.asarray(X).shape[0])
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidInputTypeError(
            f"{what} must be a sequence or array with one row per task; got "
            f"{type(X).__name__}."
        ) from exc



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
class _TableSelector(SelectorMixin, RegressorMixin, BaseEstimator):
    """Shared ``fit`` validation of the selectors that learn from a score table."""

    def _fit_table(self, X: Any, y: Any) -> np.ndarray:
        n = n_rows(X)
        if n < 1:
            raise KnowledgeBaseError("X holds no tasks; pass at least one known task.")
        Y, names = score_matrix(y, getattr(self, "extractor_names", None), n)
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

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        # like scikit-learn's DummyRegressor: X is not looked at (only its length)
        tags = super().__sklearn_tags__()
        tags.no_validation = True
        tags.input_tags.sparse = True
        return tags

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
        return np.tile(self.mean_scores_, (n_rows(X), 1))


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
    shape ``(n_tasks, n_meta_features)`` of non-negative meta-features computed already
    (the four of :func:`meta_features`, or any others).
    """

    def __init__(self, n_neighbors: int = 5, weights: str = "uniform",
                 extractor_names: Sequence[str] | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.extractor_names = extractor_names

    def _features(self, X: Any, reset: bool) -> np.ndarray:
        rows = list(X) if isinstance(X, list | tuple) else None
        if rows and any(isinstance(r, Task | tuple) or hasattr(r, "train") for r in rows):
            M = np.vstack([meta_features(t) for t in rows])
            X = M
        M = validate_data(self, X, reset=reset, dtype=np.float64)
        if (M < 0).any():
            raise InvalidTaskError(
                "Negative values in data passed to MetaFeatureKNN: meta-features must be "
                "non-negative (they are log1p-scaled). Pass tasks, or meta_features(task) rows."
            )
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
        check_int(self.n_neighbors, "n_neighbors", 1)
        check_choice(self.weights, "weights", ("distance", "uniform"))
        M = self._features(X, reset=True)
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
        M = self._features(X, reset=False)
        Q = (np.log1p(M) - self.mean_) / self.scale_
        K = (np.log1p(self.meta_features_) - self.mean_) / self.scale_
        D = np.sqrt(((K[:, None, :] - Q[None, :, :]) ** 2).sum(-1))  # (n_train, n_query)
        return neighbour_average(D, self.scores_, int(self.n_neighbors), self.weights)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags
