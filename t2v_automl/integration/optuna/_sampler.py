"""`Task2VecSampler`: the extractor from the selector's ranking, the rest from a base sampler."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding
from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError
from t2v_automl.integration.optuna._checks import (
    ScoreTransform,
    check_param,
    check_transform,
    known_choices,
    single_direction,
    to_score,
)
from t2v_automl.integration.optuna._predictions import selector_predictions

__all__ = ["Task2VecSampler"]


class Task2VecSampler(BaseSampler):
    """Sample the extractor from the selector's ranking; everything else from a base sampler.

    For the extractor parameter, each new trial draws a choice ``c`` with probability
    ``softmax(s_c / T)`` over the choices the selector knows, where

    - ``s_c = (w * p_c + m_c * b_c) / (w + m_c)`` blends the selector's predicted score
      ``p_c`` with the best score ``b_c`` seen in the ``m_c`` completed trials of ``c``
      (``w = prior_weight`` pseudo-trials; ``s_c = p_c`` before any result);
    - ``T = max(temperature * cooling ** n, min_temperature)`` cools with the number
      ``n`` of completed trials that have the parameter.

    The first trials therefore spread over the extractors predicted best; as results
    arrive, observed scores replace predictions and the draw concentrates on the
    extractor that did best, while the base sampler tunes the other parameters. With
    probability ``exploration`` a trial's extractor is drawn by the base sampler instead,
    so that a ranking that misses the best extractor does not hide it for good.

    Every other parameter, the relative search space (without the extractor parameter)
    and every hook (``before_trial``, ``after_trial``, ``reseed_rng``) go to
    ``base_sampler``.

    Parameters
    ----------
    selector : fitted selector
        E.g. :class:`~t2v_automl.estimators.ExtractorSelector`; its predictions for the
        task are computed once, here.
    embedding : Embedding or array-like of shape (dim,), or a task
        The study's task embedding (embed a task first with
        :meth:`Task2VecEmbedder.embed <t2v_automl.estimators.Task2VecEmbedder.embed>`);
        with a :class:`~t2v_automl.estimators.HybridSelector`, preferably the task itself
        (its transferability score for novel tasks needs the images).
    param : str, default="extractor"
        Name of the categorical extractor parameter.
    base_sampler : optuna.samplers.BaseSampler, optional
        Samples everything else. Default: ``TPESampler(seed=seed)``.
    temperature : float, default=0.02
        Initial softmax temperature, in score units (0.02 = two accuracy points: an
        extractor predicted two points below another is drawn ``e`` times less often).
    cooling : float, default=0.9
        Factor in (0, 1] applied to the temperature per completed trial with the parameter.
    seed : int, optional
        Seeds the extractor draw (and the default base sampler).
    prior_weight : float, default=1.0
        Weight of the prediction against observed results, in trials (>= 0).
    min_temperature : float, default=1e-3
        Lower bound of the temperature (> 0).
    score_transform : callable, optional
        Objective value -> score on the selector's scale (higher = better). Required for
        minimisation studies; default: the value itself.
    exploration : float, default=0.2
        Probability, in [0, 1], that a trial's extractor is drawn by the base sampler
        (over all the study's choices) rather than from the ranking: without it the
        softmax settles on a few extractors and misses the best one when the ranking
        does (the share of runs reaching the best achievable accuracy on the warm-start
        benchmark is in ``benchmarks/results/warm_start.md``); 0 draws only from the
        ranking.
    task : task, optional
        The task's images when ``embedding`` is its embedding already (a
        :class:`~t2v_automl.tasks.Task`, an ``(images, labels)`` pair...): a selector with
        ``explain`` (:class:`~t2v_automl.estimators.HybridSelector`) then adds its
        transferability score for a novel task without re-embedding it. Without it, such
        a selector ranks a novel task by its knowledge base alone (and warns). Other
        selectors do not use it.

    Raises
    ------
    InvalidParameterError
        Out-of-range settings.
    InvalidInputTypeError
        Arguments of the wrong type, a task instead of an embedding (but with a selector
        with ``explain``), or ``task`` next to a task.
    IncompatibleEmbeddingError
        The selector was fitted on embeddings made with another probe or settings.
    NotFittedError
        An unfitted selector.

    Notes
    -----
    Choices unknown to the selector are never drawn from the ranking (a
    :class:`UserWarning` says so, once per set of choices; only the base sampler's
    exploration draws may pick them); no known choice at all raises
    :class:`~t2v_automl.exceptions.UnknownNameError`; a non-categorical distribution for
    the parameter raises :class:`~t2v_automl.exceptions.InvalidParameterError`.
    Multi-objective studies, and minimisation studies without ``score_transform``, raise
    :class:`~t2v_automl.exceptions.InvalidParameterError` (a ``ValueError``) at the first
    draw of the extractor. Trials enqueued with a fixed extractor (e.g. by
    :func:`warm_start`) are not sampled, but their results count.
    """

    def __init__(
        self,
        selector: Any,
        embedding: Embedding | Any,
        param: str = "extractor",
        base_sampler: BaseSampler | None = None,
        temperature: float = 0.02,
        cooling: float = 0.9,
        seed: int | None = None,
        *,
        prior_weight: float = 1.0,
        min_temperature: float = 1e-3,
        score_transform: ScoreTransform | None = None,
        exploration: float = 0.2,
        task: Any = None,
    ) -> None:
        self._param = check_param(param)
        if base_sampler is not None and not isinstance(base_sampler, BaseSampler):
            raise InvalidInputTypeError(
                f"base_sampler must be an optuna.samplers.BaseSampler or None; got "
                f"{type(base_sampler).__name__}."
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise InvalidInputTypeError(f"seed must be an int or None; got {seed!r}.")

        def real(v: Any, name: str, ok: Callable[[float], bool], rule: str) -> float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or \
                    not math.isfinite(float(v)) or not ok(float(v)):
                raise InvalidParameterError(f"{name} must be a finite number {rule}; got {v!r}.")
            return float(v)

        self._temperature = real(temperature, "temperature", lambda x: x > 0, "> 0")
        self._cooling = real(cooling, "cooling", lambda x: 0 < x <= 1, "in (0, 1]")
        self._prior_weight = real(prior_weight, "prior_weight", lambda x: x >= 0, ">= 0")
        self._min_temperature = real(min_temperature, "min_temperature",
                                     lambda x: 0 < x <= self._temperature,
                                     "in (0, temperature]")
        self._exploration = real(exploration, "exploration", lambda x: 0 <= x <= 1,
                                 "in [0, 1]")
        self._score_transform = check_transform(score_transform)
        pred = selector_predictions(selector, embedding, None, "embedding", task=task)
        self._names, self._predicted = pred.names, pred.scores
        self._base = base_sampler if base_sampler is not None else TPESampler(seed=seed)
        self._rng = np.random.RandomState(seed)
        self._warned: set[tuple[Any, ...]] = set()
        self._warned_scale = False

    # ------------------------------------------------------------------ inspection
    @property
    def predicted_scores(self) -> dict[str, float]:
        """The selector's predicted score of every extractor for the task (a copy)."""
        return dict(self._predicted)

    def choice_probabilities(self, study: optuna.Study,
                             distribution: CategoricalDistribution) -> dict[str, float]:
        """The probability of each known choice for the next trial of ``study``.

        Parameters
        ----------
        study : optuna.Study
        distribution : CategoricalDistribution
            The distribution of the extractor parameter.

        Returns
        -------
        dict of str to float
            Known choices (in choice order) -> probability; they sum to one.
        """
        direction = single_direction(study, type(self).__name__)
        if direction == StudyDirection.MINIMIZE and self._score_transform is None:
            to_score(0.0, direction, None, type(self).__name__)  # raises, says what to do
        if not isinstance(distribution, CategoricalDistribution):
            raise InvalidParameterError(
                f"parameter {self._param!r} must be categorical "
                f"(trial.suggest_categorical({self._param!r}, [extractor names])); got "
                f"{distribution!r}."
            )
        known = known_choices(distribution.choices, self._names, self._param, self._warned)
        best: dict[str, float] = {}
        count: dict[str, int] = dict.fromkeys(known, 0)
        n = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if self._param not in t.params or t.value is None:
                continue
            n += 1
            c = t.params[self._param]
            if c not in count or not math.isfinite(t.value):
                continue
            s = to_score(t.value, direction, self._score_transform, type(self).__name__)
            if not math.isfinite(s):
                continue
            if self._score_transform is None and not (0.0 <= s <= 1.0) \
                    and not self._warned_scale:
                self._warned_scale = True
                warnings.warn(
                    f"objective value {s!r} is not a score in [0, 1], the scale of the "
                    f"selector's predictions; pass score_transform to map objective values "
                    f"to it, or the blend of predictions and results is meaningless.",
                    UserWarning, stacklevel=2)
            count[c] += 1
            best[c] = max(best.get(c, -math.inf), s)
        pred = np.array([self._predicted[c] for c in known])
        fill = float(np.nanmean(pred)) if np.isfinite(pred).any() else 0.0
        pred = np.where(np.isfinite(pred), pred, fill)
        w = self._prior_weight
        blended = np.array([
            (w * pc + count[c] * best[c]) / (w + count[c]) if count[c] else pc
            for c, pc in zip(known, pred, strict=True)])
        temp = max(self._temperature * self._cooling ** n, self._min_temperature)
        prob = np.exp((blended - blended.max()) / temp)
        prob /= prob.sum()
        return {c: float(v) for c, v in zip(known, prob, strict=True)}

    # ------------------------------------------------------------------ BaseSampler
    def reseed_rng(self) -> None:
        """Reseed the extractor draw and the base sampler."""
        self._rng.seed()
        self._base.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The base sampler's relative search space, without the extractor parameter."""
        single_direction(study, type(self).__name__)
        space = dict(self._base.infer_relative_search_space(study, trial))
        space.pop(self._param, None)
        return space

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """Delegate to the base sampler (the extractor parameter is never sampled here)."""
        single_direction(study, type(self).__name__)
        space = {k: v for k, v in search_space.items() if k != self._param}
        params = dict(self._base.sample_relative(study, trial, space))
        params.pop(self._param, None)
        return params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Draw the extractor from the ranking; delegate any other parameter.

        With probability ``exploration`` the extractor is drawn by the base sampler too.
        """
        single_direction(study, type(self).__name__)
        if param_name != self._param:
            return self._base.sample_independent(study, trial, param_name, param_distribution)
        # the ranking's probabilities first, even for an exploration draw: they validate the
        # study (direction, distribution) the same way whichever draw is taken
        probs = self.choice_probabilities(study, param_distribution)  # type: ignore[arg-type]
        if self._exploration > 0 and self._rng.rand() < self._exploration:
            value = self._base.sample_independent(study, trial, param_name, param_distribution)
            logger.debug("Task2VecSampler: trial %d explores %r (base sampler)", trial.number,
                         value)
            return value
        known = list(probs)
        idx = int(self._rng.choice(len(known), p=np.fromiter(probs.values(), dtype=float)))
        logger.debug("Task2VecSampler: trial %d draws %r (p=%.3f)", trial.number,
                     known[idx], probs[known[idx]])
        return known[idx]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Delegate to the base sampler."""
        self._base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Delegate to the base sampler."""
        self._base.after_trial(study, trial, state, values)
