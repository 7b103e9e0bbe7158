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

__all__ = ["NOVELTY_CENTER", "NOVELTY_STEEPNESS",
           "blend_with_transferability", "evidence_blend", "evidence_weight", "hybrid_scores",
           "novelty_gate", "rank_standardise", "row_standardise"]

_EPS = 1e-12
#: Novelty at which :func:`blend_with_transferability` weighs both rankings equally.
NOVELTY_CENTER = 1.5
#: Slope of the logistic gate of :func:`blend_with_transferability`.
NOVELTY_STEEPNESS = 4.0


def rank_standardise(S: np.ndarray) -> np.ndarray:
    """Per row: ranks (ties averaged, NaN lowest), then zero mean and unit deviation.

    A transferability score's scale differs from task to task and from score to score
    (LogME's evidence, NCTI's sum of min-max terms); its ranks do not.
    """
    from scipy.stats import rankdata

    S = np.asarray(S, dtype=np.float64)
    filled = np.where(np.isfinite(S), S, -np.inf)
    R = np.vstack([rankdata(r, method="average") if r.size else r for r in filled]) \
        if S.shape[0] else S.copy()
    return row_standardise(R.reshape(S.shape))


def evidence_weight(images_per_class: Any, *, half: float) -> np.ndarray:
    """How far a task's own transferability evidence is trusted: ``n / (n + half)``.

    Parameters
    ----------
    images_per_class : array-like of shape (n_tasks,)
        Training images per class the score was computed on.
    half : float
        Images per class at which the weight is one half. ``0``: the evidence alone.

    Returns
    -------
    ndarray of shape (n_tasks,)
        In [0, 1].
    """
    n = np.maximum(np.asarray(images_per_class, dtype=np.float64), 0.0)
    h = float(half)
    if not np.isfinite(h) or h < 0:
        raise InvalidInputTypeError(f"half must be a finite number >= 0; got {half!r}.")
    return np.where(n + h > 0, n / np.where(n + h > 0, n + h, 1.0), 1.0)


def evidence_blend(transfer: Any, global_prior: Any, images_per_class: Any, *,
                   half: float, ranks: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mix a task's transferability ranking with the best-on-average ranking by evidence.

    ``w = evidence_weight(images_per_class, half)``;
    ``w * standardise(transfer) + (1 - w) * row_standardise(global_prior)``. With few
    images per class a transferability score is a noisy estimate (and with features of
    more dimensions than images, a biased one), while what was best on average over many
    past tasks is robust; with many images the task's own evidence wins.

    Parameters
    ----------
    transfer : array-like of shape (n_tasks, n_extractors)
        Transferability scores (NaN: not computed, ranked lowest). A row that is all NaN
        gives a NaN row.
    global_prior : array-like of shape (n_extractors,) or (n_tasks, n_extractors)
        Mean known score per extractor (:class:`~t2v_automl.estimators.BestOnAverage`).
    images_per_class : array-like of shape (n_tasks,)
    half : float
        Images per class at which both weigh one half (:func:`evidence_weight`). Measured
        on the shipped knowledge base (``benchmarks/results/small_tasks.md``, leave one
        source out at 5-50 images per class), every value above 2 did worse than the
        transferability score alone at 5 and 10 images per class: the best-on-average
        extractor of the other sources is a poor choice for an unseen one.
    ranks : bool, default=True
        Standardise the transferability scores' ranks (:func:`rank_standardise`) rather
        than their values (:func:`row_standardise`).

    Returns
    -------
    scores : ndarray of shape (n_tasks, n_extractors)
        Standardised units.
    weight : ndarray of shape (n_tasks,)
        ``w`` per task.
    """
    T = np.atleast_2d(np.asarray(transfer, dtype=np.float64))
    G = np.asarray(global_prior, dtype=np.float64)
    if G.ndim == 1 and G.shape[0] == T.shape[1]:
        G = np.broadcast_to(G, T.shape)
    if G.shape != T.shape:
        raise InvalidInputTypeError(
            f"global_prior must have one value per extractor ({T.shape[1]}) or the shape "
            f"of transfer {T.shape}; got {np.shape(global_prior)}.")
    w = evidence_weight(np.broadcast_to(np.asarray(images_per_class, dtype=np.float64),
                                        (T.shape[0],)), half=half)
    std_t = rank_standardise(T) if ranks else row_standardise(T)
    out = w[:, None] * std_t + (1.0 - w)[:, None] * row_standardise(G)
    out[~np.isfinite(T).any(axis=1)] = np.nan
    return out, w


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

