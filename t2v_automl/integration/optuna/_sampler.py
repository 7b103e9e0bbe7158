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
from optuna.trial import FrozenTrial, TrialState

from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding
from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError
from t2v_automl.integration.optuna._checks import (
    ScoreTransform,
    check_objective_index,
    check_param,
    check_transform,
    score_rule,
    split_choices,
)
from t2v_automl.integration.optuna._predictions import EMBED_FIRST, selector_predictions
from t2v_automl.integration.optuna._unknown import (
    check_transferability,
    check_unknown,
    order_unknown,
)

__all__ = ["Task2VecSampler"]


class Task2VecSampler(BaseSampler):
    """Sample the extractor from the selector's ranking; everything else from a base sampler.

    For the extractor parameter, each new trial draws a choice ``c`` with probability
    ``softmax(s_c / T)`` over the choices of the ranking, where

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
    ``base_sampler``, as :class:`optuna.samplers.PartialFixedSampler` hands the unfixed
    parameters to its base sampler. So do multi-objective studies: the base sampler
    (TPE handles several objectives; or ``NSGAIISampler``) searches the Pareto front of
    the other parameters, while the extractor draw follows one score per trial, the
    objective that ``objective_index`` names (or ``score_transform`` of all the values).

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
        Samples everything else. Default: ``TPESampler(seed=seed)``. For a search space
        whose parameters depend on the extractor (see
        :mod:`t2v_automl.integration.optuna`, "Conditional hyper-parameters"),
        ``TPESampler(multivariate=True, group=True)`` models each branch jointly.
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
        minimisation studies; default: the value itself. In a multi-objective study
        without ``objective_index`` it gets the list of all the trial's values.
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
        transferability score for a novel task without re-embedding it, and unknown
        candidates can be ordered by transferability. Without it, such a selector ranks a
        novel task by its knowledge base alone (and warns).
    objective_index : int, optional
        In a multi-objective study, the 0-based position of the objective that is the
        score the selector predicts (e.g. 0 for directions ``["maximize", "minimize"]``
        = accuracy, latency). A multi-objective study needs it or ``score_transform``.
    unknown : {"interleave", "ignore"}, default="interleave"
        Choices the selector was not fitted on: ``"interleave"`` draws them from the
        ranking too: unknown #i (place ``2i`` of the merged ranking known #1, unknown #1,
        known #2, ...) takes as its prediction the i-th best current score of the known
        choices (predictions blended with results), so it is drawn as often as the known
        choice at that place until its own results count (rules:
        :mod:`t2v_automl.integration.optuna._unknown`); ``"ignore"`` leaves them to the
        base sampler's exploration draws.
    transferability : TransferabilitySelector, optional
        Orders two or more unknown candidates by its score on the task's images (cloned
        with ``extractors=<those candidates>``); default: the selector's own
        ``transferability_`` (a HybridSelector's), else choice order. Computed once per set
        of unknown choices, at the first draw that sees them.

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
    No choice known to the selector at all raises
    :class:`~t2v_automl.exceptions.UnknownNameError`; a non-categorical distribution for
    the parameter raises :class:`~t2v_automl.exceptions.InvalidParameterError`. A
    minimisation study without ``score_transform``, or a multi-objective study with
    neither ``objective_index`` nor ``score_transform``, raises
    :class:`~t2v_automl.exceptions.InvalidParameterError` (a ``ValueError``) at the first
    draw of the extractor; the other parameters are sampled by the base sampler whatever
    the directions. Trials enqueued with a fixed extractor (e.g. by :func:`warm_start`)
    are not sampled, but their results count.

    Examples
    --------
    Accuracy against latency, the extractor ranked by the accuracy objective::

        sampler = Task2VecSampler(selector, embedding, objective_index=0,
                                  base_sampler=optuna.samplers.NSGAIISampler(seed=0))
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
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
        objective_index: int | None = None,
        unknown: str = "interleave",
        transferability: Any = None,
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
        self._objective_index = check_objective_index(objective_index)
        self._unknown = check_unknown(unknown)
        self._transferability = check_transferability(transferability)
        pred = selector_predictions(
            selector, embedding, None, "embedding", task=task,
            no_embedder=f"{EMBED_FIRST}, or use a HybridSelector, which embeds a task itself")
        self._names, self._predicted = pred.names, pred.scores
        # what orders unknown candidates (rule 2 of _unknown), kept until first needed
        self._scorer = (self._transferability if self._transferability is not None
                        else getattr(selector, "transferability_", None))
        self._images = pred.images if self._scorer is not None else None
        self._unknown_order: dict[tuple[str, ...], list[Any]] = {}
        self._base = base_sampler if base_sampler is not None else TPESampler(seed=seed)
        self._rng = np.random.RandomState(seed)
        self._warned: set[tuple[Any, ...]] = set()
        self._warned_scale = False

    # ------------------------------------------------------------------ inspection
    @property
    def predicted_scores(self) -> dict[str, float]:
        """The selector's predicted score of every extractor for the task (a copy)."""
        return dict(self._predicted)

    def _ordered_unknown(self, unknown: list[Any]) -> list[Any]:
        """The unknown choices in their order (computed once per set of choices)."""
        key = tuple(map(repr, unknown))
        if key not in self._unknown_order:
            self._unknown_order[key] = order_unknown(unknown, None, self._scorer,
                                                     self._images)[0]
        return self._unknown_order[key]

    def _prior(self, distribution: BaseDistribution) -> list[tuple[Any, float, int | None]]:
        """(choice, prior score, unknown rank) of each choice drawn from the ranking.

        In choice order. The unknown rank is ``i`` for unknown choice #i (0-based, in the
        order of :func:`~t2v_automl.integration.optuna._unknown.order_unknown`), None for
        a known choice.
        """
        if not isinstance(distribution, CategoricalDistribution):
            raise InvalidParameterError(
                f"parameter {self._param!r} must be categorical "
                f"(trial.suggest_categorical({self._param!r}, [extractor names])); got "
                f"{distribution!r}."
            )
        known, unknown = split_choices(distribution.choices, self._names, self._param,
                                       self._unknown, self._warned)
        pred = np.array([self._predicted[c] for c in known])
        fill = float(np.nanmean(pred)) if np.isfinite(pred).any() else 0.0
        pred = np.where(np.isfinite(pred), pred, fill)
        prior: dict[str, tuple[float, int | None]] = {
            repr(c): (float(p), None) for c, p in zip(known, pred, strict=True)}
        ahead = np.sort(pred)[::-1]
        for i, c in enumerate(self._ordered_unknown(unknown) if unknown else []):
            prior[repr(c)] = (float(ahead[min(i, len(ahead) - 1)]), i)
        return [(c, *prior[repr(c)]) for c in distribution.choices if repr(c) in prior]

    def prior_scores(self, distribution: CategoricalDistribution) -> dict[Any, float]:
        """The prior score of each choice drawn from the ranking, in choice order.

        A known choice's prior is its predicted score (the mean prediction where the
        selector has none); with ``unknown="interleave"``, unknown choice #i (in the order
        of :mod:`~t2v_automl.integration.optuna._unknown`) gets the predicted score of
        known choice #i, the one just ahead of it in the merged ranking (of the last known
        choice when there are more unknown than known choices). Once the known choices have
        results, the draw gives unknown choice #i the i-th best of their blended scores.

        Parameters
        ----------
        distribution : CategoricalDistribution
            The distribution of the extractor parameter.

        Returns
        -------
        dict
            Choice -> prior score.
        """
        return {c: p for c, p, _ in self._prior(distribution)}

    def _probabilities(self, study: optuna.Study, distribution: BaseDistribution
                       ) -> tuple[list[Any], np.ndarray]:
        """The choices drawn from the ranking and their probabilities for the next trial."""
        to_score = score_rule(study.directions, self._objective_index, self._score_transform,
                              type(self).__name__)
        prior = self._prior(distribution)
        index = {repr(c): k for k, (c, _, _) in enumerate(prior)}
        best: dict[int, float] = {}
        count = [0] * len(prior)
        n = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if self._param not in t.params or t.values is None:
                continue
            n += 1
            k = index.get(repr(t.params[self._param]))
            if k is None or not all(math.isfinite(v) for v in t.values):
                continue
            s = to_score(t.values)
            if not math.isfinite(s):
                continue
            if self._score_transform is None and not (0.0 <= s <= 1.0) \
                    and not self._warned_scale:
                self._warned_scale = True
                warnings.warn(
                    f"objective value {s!r} is not a score in [0, 1], the scale of the "
                    f"selector's predictions; pass score_transform to map objective values "
                    f"to it, or the blend of predictions and results is meaningless.",
                    UserWarning, stacklevel=3)
            count[k] += 1
            best[k] = max(best.get(k, -math.inf), s)
        w = self._prior_weight

        def blend(k: int, pc: float) -> float:
            return (w * pc + count[k] * best[k]) / (w + count[k]) if count[k] else pc

        blended = np.array([blend(k, pc) for k, (_, pc, _) in enumerate(prior)])
        # unknown #i's prediction: the i-th best current score of the known choices (their
        # predictions blended with their results), the place it holds in the ranking
        ahead = np.sort([blended[k] for k, (_, _, i) in enumerate(prior) if i is None])[::-1]
        for k, (_, _, i) in enumerate(prior):
            if i is not None:
                blended[k] = blend(k, float(ahead[min(i, len(ahead) - 1)]))
        temp = max(self._temperature * self._cooling ** n, self._min_temperature)
        prob = np.exp((blended - blended.max()) / temp)
        return [c for c, _, _ in prior], prob / prob.sum()

    def choice_probabilities(self, study: optuna.Study,
                             distribution: CategoricalDistribution) -> dict[Any, float]:
        """The probability of each choice drawn from the ranking, for the next trial.

        Parameters
        ----------
        study : optuna.Study
        distribution : CategoricalDistribution
            The distribution of the extractor parameter.

        Returns
        -------
        dict
            Choices (in choice order: the known ones, and with ``unknown="interleave"`` the
            unknown ones) -> probability; they sum to one.

        Raises
        ------
        InvalidParameterError
            The study's directions give no score (see ``objective_index``), or the
            distribution is not categorical.
        UnknownNameError
            No choice is known to the selector.
        """
        choices, prob = self._probabilities(study, distribution)
        return {c: float(p) for c, p in zip(choices, prob, strict=True)}

    # ------------------------------------------------------------------ BaseSampler
    def reseed_rng(self) -> None:
        """Reseed the extractor draw and the base sampler."""
        self._rng.seed()
        self._base.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The base sampler's relative search space, without the extractor parameter."""
        space = dict(self._base.infer_relative_search_space(study, trial))
        space.pop(self._param, None)
        return space

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """Delegate to the base sampler (the extractor parameter is never sampled here)."""
        space = {k: v for k, v in search_space.items() if k != self._param}
        params = dict(self._base.sample_relative(study, trial, space))
        params.pop(self._param, None)
        return params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Draw the extractor from the ranking; delegate any other parameter.

        With probability ``exploration`` the extractor is drawn by the base sampler too.
        """
        if param_name != self._param:
            return self._base.sample_independent(study, trial, param_name, param_distribution)
        # the ranking's probabilities first, even for an exploration draw: they validate the
        # study (directions, distribution) the same way whichever draw is taken
        choices, prob = self._probabilities(study, param_distribution)
        if self._exploration > 0 and self._rng.rand() < self._exploration:
            value = self._base.sample_independent(study, trial, param_name, param_distribution)
            logger.debug("Task2VecSampler: trial %d explores %r (base sampler)", trial.number,
                         value)
            return value
        idx = int(self._rng.choice(len(choices), p=prob))
        logger.debug("Task2VecSampler: trial %d draws %r (p=%.3f)", trial.number,
                     choices[idx], prob[idx])
        return choices[idx]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Delegate to the base sampler."""
        self._base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Delegate to the base sampler."""
        self._base.after_trial(study, trial, state, values)
