"""The hybrid's gate: how much a transferability ranking counts as a task grows novel.

:func:`novelty_gate` turns novelty (:meth:`ExtractorSelector.novelty`) into the weight of
the transferability side; :func:`blend_with_transferability` mixes the two rankings after
standardising each per task; :func:`hybrid_scores` puts the mix back on the accuracy scale
of the knowledge-based prediction. :class:`~t2v_automl.estimators.HybridSelector` is their
composition; a benchmark variant the estimator does not express composes them too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from t2v_automl.exceptions import InvalidInputTypeError

__all__ = ["NOVELTY_CENTER", "NOVELTY_STEEPNESS", "blend_with_transferability",
           "hybrid_scores", "novelty_gate", "row_standardise"]

_EPS = 1e-12
#: Novelty at which :func:`blend_with_transferability` weighs both rankings equally.
NOVELTY_CENTER = 1.5
#: Slope of the logistic gate of :func:`blend_with_transferability`.
NOVELTY_STEEPNESS = 4.0


def row_standardise(S: np.ndarray) -> np.ndarray:
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
    mixed = (1.0 - gate)[:, None] * row_standardise(P) + gate[:, None] * row_standardise(T)
    return mixed, gate



def hybrid_scores(prior: Any, transfer: Any, novelty: Any, *,
                  center: float = NOVELTY_CENTER, steepness: float = NOVELTY_STEEPNESS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The hybrid's scores from their parts (what :meth:`HybridSelector.predict_scores` returns).

    Parameters
    ----------
    prior : array-like of shape (n_tasks, n_extractors)
        The knowledge-based prediction (accuracy scale).
    transfer : array-like of shape (n_tasks, n_extractors)
        Transferability scores (NaN rows: not computed).
    novelty : array-like of shape (n_tasks,)
    center, steepness : float
        The gate (see :func:`~t2v_automl.estimators.blend_with_transferability`).

    Returns
    -------
    scores : ndarray of shape (n_tasks, n_extractors)
        The mixed ranking on the accuracy scale of ``prior`` (per task: its mean plus the
        mixed standardised score times its standard deviation over extractors).
    gate : ndarray of shape (n_tasks,)
    """
    P = np.atleast_2d(np.asarray(prior, dtype=np.float64))
    mixed, gate = blend_with_transferability(P, transfer, novelty, center=center,
                                             steepness=steepness)
    level = np.nanmean(P, axis=1, keepdims=True)
    spread = np.nanstd(P, axis=1, keepdims=True)
    return level + mixed * np.where(spread > 0, spread, 1.0), gate

