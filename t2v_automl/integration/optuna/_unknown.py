"""Candidates the selector has never seen: their order and their places in the ranking.

A choice of the extractor parameter that the selector was not fitted on (the user's newest
model) has no predicted score. Left out, it is tried only when a base sampler happens to
draw it (measured on the warm-start benchmark: first tried at trial 4-24 when it was the
best model, against 1-10 for plain TPE). With ``unknown="interleave"`` (the default of
:func:`~t2v_automl.integration.optuna.warm_start` and
:class:`~t2v_automl.integration.optuna.Task2VecSampler`) the rule is:

1. **Places.** The merged ranking alternates: known #1, unknown #1, known #2, unknown #2,
   ... (unknown candidates take every second place from the 2nd on); once either list is
   used up the other follows in its own order. A warm start of ``top_k=3`` therefore
   tries one unknown candidate at the 2nd trial, two with ``top_k=4``.
2. **Order among unknown candidates.** By a transferability score of the task's images
   when there are at least two unknown candidates and the images are there (the task
   itself, or ``task=`` next to its embedding): the selector's own
   ``transferability_`` (a :class:`~t2v_automl.estimators.HybridSelector`'s
   :class:`~t2v_automl.estimators.TransferabilitySelector`) or the ``transferability=``
   given, cloned with ``extractors=<the unknown candidates>`` and asked for
   ``predict_scores``; higher first, NaN last. Otherwise (one unknown candidate, no
   images, or names the scorer cannot load) in choice order.
3. **The sampler's prior.** :class:`~t2v_automl.integration.optuna.Task2VecSampler` gives
   unknown candidate #i (place ``2i``) the i-th best current score of the known
   candidates (their predictions, blended with their results once they have some): it is
   drawn as often as the known candidate at that place until its own results count,
   blended with that prior as any candidate's results are with its prediction.

The places are fixed on purpose: a transferability score ranks a candidate against the
others on *this* task, but not on the knowledge base's accuracy scale, so it cannot say
how far down among the known candidates an unknown one belongs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from t2v_automl._logging import logger
from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError, T2VError

__all__ = ["UNKNOWN_RULES", "check_transferability", "check_unknown", "interleave",
           "order_unknown"]

#: What :func:`warm_start` and :class:`Task2VecSampler` do with choices the selector does
#: not know.
UNKNOWN_RULES = ("interleave", "ignore")


def check_unknown(unknown: Any) -> str:
    """``unknown=`` as one of :data:`UNKNOWN_RULES`."""
    if unknown not in UNKNOWN_RULES:
        raise InvalidParameterError(
            f"unknown must be one of {UNKNOWN_RULES} (what to do with choices the selector "
            f"was not fitted on: give them every second place of the ranking, or leave them "
            f"out); got {unknown!r}."
        )
    return str(unknown)


def check_transferability(transferability: Any) -> Any:
    """``transferability=``: None or an unfitted-or-fitted scikit-learn-style scorer."""
    if transferability is not None and not (
            callable(getattr(transferability, "get_params", None))
            and callable(getattr(transferability, "predict_scores", None))):
        raise InvalidInputTypeError(
            f"transferability must be a TransferabilitySelector (e.g. "
            f"TransferabilitySelector(measure='logme', memory='cache/')) or None; got "
            f"{type(transferability).__name__}."
        )
    return transferability


def interleave(known_ranked: Sequence[Any], unknown_ordered: Sequence[Any]) -> list[Any]:
    """known #1, unknown #1, known #2, unknown #2, ...; then the rest of the longer list."""
    out: list[Any] = []
    for i in range(max(len(known_ranked), len(unknown_ordered))):
        if i < len(known_ranked):
            out.append(known_ranked[i])
        if i < len(unknown_ordered):
            out.append(unknown_ordered[i])
    return out


def order_unknown(unknown: Sequence[Any], selector: Any, transferability: Any,
                  images: Any) -> tuple[list[Any], dict[str, float]]:
    """The unknown candidates in their order (rule 2 of this module) and their scores.

    Parameters
    ----------
    unknown : sequence
        The unknown choices, in choice order.
    selector : fitted selector
        Its ``transferability_``, when it has one and ``transferability`` is None, scores
        the candidates.
    transferability : TransferabilitySelector or None
        The scorer given by the user (cloned with ``extractors=<the string candidates>``).
    images : task or None
        The task's images.

    Returns
    -------
    ordered : list
        Scored candidates by decreasing score (NaN last, ties in choice order), then the
        unscored ones in choice order.
    scores : dict of str to float
        The transferability score of each scored candidate (empty when none was scored).
    """
    unknown = list(unknown)
    names = [c for c in unknown if isinstance(c, str)]
    scorer = transferability if transferability is not None else \
        getattr(selector, "transferability_", None)
    if len(unknown) < 2 or len(names) < 1 or images is None or scorer is None:
        return unknown, {}
    from sklearn.base import clone

    try:
        fitted = clone(scorer).set_params(extractors=names).fit()
        row = np.asarray(fitted.predict_scores([images]), dtype=np.float64)
    except (T2VError, ValueError, TypeError, KeyError) as exc:
        msg = (f"the unknown candidates {names!r} could not be scored by "
               f"{type(scorer).__name__} ({exc}); they keep their choice order. Register them "
               f"as extractors (t2v_automl.extractors) to have them ordered by transferability.")
        logger.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=4)
        return unknown, {}
    if row.shape != (1, len(names)):
        raise InvalidInputTypeError(
            f"{type(scorer).__name__}.predict_scores returned shape {row.shape} for one task; "
            f"expected (1, {len(names)})."
        )
    scores = {n: float(v) for n, v in zip(names, row[0], strict=True)}
    ranked = sorted(names, key=lambda n: (-scores[n] if math.isfinite(scores[n]) else math.inf,
                                          names.index(n)))
    logger.info("unknown candidates by %s: %s", getattr(scorer, "measure", "transferability"),
                [(n, round(scores[n], 4)) for n in ranked])
    return ranked + [c for c in unknown if not isinstance(c, str)], scores
