"""What every selector shares: the mixin of ``predict``/``rank``/``select``/``score`` and the
validation of score matrices and embeddings.

A selector's rows are tasks and its target ``y`` a tasks x extractors score matrix, so
``predict`` returns such a matrix (a regressor's contract: ``cross_val_predict`` and
``Pipeline`` reach the scores); extractor *names* come from :meth:`SelectorMixin.select`
and :meth:`SelectorMixin.rank`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    KnowledgeBaseError,
    UnknownNameError,
)
from t2v_automl.metrics import ranking_order, weighted_tau

__all__ = ["SelectorMixin", "check_finite", "neighbour_average", "score_matrix",
           "split_embeddings"]


# ----------------------------------------------------------------------------- validation
def split_embeddings(E: Any) -> tuple[Any, EmbeddingMeta | None]:
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


def check_finite(X: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise IncompatibleEmbeddingError(
            f"{what} contains NaN or inf ({int(bad.sum())} value(s); first in row {int(i)}, "
            f"column {int(j)}). A failed embedding cannot be compared: re-embed that task "
            f"(more images, fewer classes) or leave it out."
        )


def score_matrix(Y: Any, names: Sequence[str] | None, n_rows: int
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



def neighbour_average(D: np.ndarray, Y: np.ndarray, k: int, weights: str) -> np.ndarray:
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



# ----------------------------------------------------------------------------- mixin
class SelectorMixin:
    """``predict``, ``rank``, ``select`` and ``score`` for selectors that define ``predict_scores``.

    A subclass sets ``extractor_names_`` in ``fit`` and implements
    ``predict_scores(X) -> (n_tasks, n_extractors)``; it may override
    ``_ranking_scores`` when its ranking is not the order of its predicted scores.
    """

    extractor_names_: list[str]

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        """A regressor of a tasks x extractors score matrix, scored by ranking quality.

        ``poor_score``: :meth:`score` is the mean weighted Kendall tau of the rankings,
        not R²; it is NaN where nothing can be ranked (a single extractor), so
        scikit-learn's "R² above 0.5 on the training data" check does not apply.
        """
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.target_tags.required = True
        tags.target_tags.single_output = False
        tags.target_tags.multi_output = True
        tags.target_tags.two_d_labels = True
        tags.regressor_tags.poor_score = True
        tags.non_deterministic = False
        return tags

    def predict_scores(self, X: Any) -> np.ndarray:  # pragma: no cover - interface
        """Predicted score of every extractor for every task of ``X`` (as :meth:`predict`)."""
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
        return names[ranking_order(s)]

    def predict(self, X: Any) -> np.ndarray:
        """Predicted score of every extractor for every task: what ``y`` is at :meth:`fit`.

        Parameters
        ----------
        X : array-like of shape (n_tasks, n_features) or list of Embedding
            The new tasks (for the selectors whose rows are tasks: the tasks themselves).

        Returns
        -------
        ndarray of shape (n_tasks, n_extractors)
            Columns in :attr:`extractor_names_` order; higher = better. The names of the
            best extractors come from :meth:`select` and :meth:`rank`.
        """
        return self.predict_scores(X)

    def select(self, X: Any, candidates: Sequence[str] | None = None) -> np.ndarray:
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
