"""How well a predicted ranking of extractors matches the measured one.

:func:`weighted_tau` (agreement of the whole ranking, the top counting most) and
:func:`top1_regret` (accuracy points lost by taking the predicted best) per task, and their
means. Every selector's ``score`` is :func:`mean_weighted_tau`; the benchmarks report both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from t2v_automl.exceptions import IncompatibleEmbeddingError

__all__ = ["mean_regret", "mean_weighted_tau", "ranking_order", "top1_regret", "weighted_tau"]


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


def ranking_order(scores: np.ndarray) -> np.ndarray:
    """Column indices per row, best first; NaN last; ties keep column order."""
    key = np.where(np.isnan(scores), np.inf, -scores)
    return np.argsort(key, axis=1, kind="stable")

