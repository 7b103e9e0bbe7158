"""`warm_start`: enqueue the extractors the selector ranks best as a study's next trials."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from t2v_automl import distances
from t2v_automl._logging import logger
from t2v_automl.embedding import EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
)
from t2v_automl.integration.optuna._callback import PROVENANCE_KEY
from t2v_automl.integration.optuna._checks import (
    check_param,
    check_study,
    distribution_problem,
    latest_distributions,
    plain_value_problem,
    short_repr,
    split_choices,
    study_distribution,
)
from t2v_automl.integration.optuna._predictions import selector_predictions
from t2v_automl.integration.optuna._sampler import Task2VecSampler
from t2v_automl.integration.optuna._unknown import (
    check_transferability,
    check_unknown,
    interleave,
    order_unknown,
)
from t2v_automl.knowledge import KnowledgeBase

__all__ = ["warm_start"]


def present_choices(study: optuna.Study, param: str) -> set[Any]:
    """Values of ``param`` already enqueued (WAITING) or run (any other state)."""
    present: set[Any] = set()
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            fixed = t.system_attrs.get("fixed_params", {}) or {}
            if param in fixed:
                present.add(fixed[param])
        elif param in t.params:
            present.add(t.params[param])
    return present


def kb_metric(selector: Any) -> str:
    m = getattr(selector, "metric", None)
    return m if isinstance(m, str) and m in distances.DISTANCES else "symmetric"


def kb_best_params(kb: KnowledgeBase, values: np.ndarray, meta: EmbeddingMeta | None,
                    extractors: Sequence[str], metric: str
                    ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per extractor, the nearest task that has best hyper-parameters for it, and those."""
    if meta is not None and kb.meta.compat_key() != meta.compat_key():
        raise IncompatibleEmbeddingError(
            f"the knowledge base's embeddings were made differently from the task's "
            f"({kb.meta.describe_difference(meta)}; knowledge base first, task second)."
        )
    if kb.meta.dim != values.shape[0]:
        raise IncompatibleEmbeddingError(
            f"the knowledge base's embeddings have {kb.meta.dim} values; the task's "
            f"{values.shape[0]}."
        )
    if len(kb) == 0:
        return {}
    E = kb.embeddings
    if metric in ("symmetric", "asymmetric", "hellinger") and \
            ((E < 0).any() or (values < 0).any()):
        metric = "cosine"
    if metric == "asymmetric":
        metric = "symmetric"
    d = distances.pairwise_distances(E, values[None, :], metric=metric)[:, 0]
    order = np.argsort(d, kind="stable")
    prov = kb.provenance
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for ext in extractors:
        for i in order:
            best = prov[i].get(PROVENANCE_KEY, {})
            entry = best.get("best", {}).get(ext) if isinstance(best, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("params"), dict):
                out[ext] = (kb.task_names[i], dict(entry["params"]))
                logger.debug("warm_start: hyper-parameters of %r from task %r (distance %.4g)",
                             ext, kb.task_names[i], d[i])
                break
    return out


def check_distributions(distributions: Any) -> dict[str, BaseDistribution]:
    """``distributions=`` of :func:`warm_start` as a dict name -> Optuna distribution."""
    if distributions is None:
        return {}
    if not isinstance(distributions, Mapping) or not all(
            isinstance(k, str) and isinstance(d, BaseDistribution)
            for k, d in distributions.items()):
        raise InvalidInputTypeError(
            f"distributions must map parameter names to Optuna distributions (e.g. "
            f"{{'C': optuna.distributions.FloatDistribution(1e-3, 1e3, log=True)}}); got "
            f"{distributions!r}."
        )
    return dict(distributions)


def checked_extra(extra: dict[str, Any], known: Mapping[str, BaseDistribution]
                  ) -> dict[str, Any]:
    """``extra_params`` unchanged; raise when a value is outside its known distribution.

    Without a known distribution, a value must be a finite number, a boolean, None or a
    short string.
    """
    for name, value in extra.items():
        problem = (distribution_problem(known[name], value) if name in known
                   else plain_value_problem(value))
        if problem is not None:
            raise InvalidParameterError(
                f"extra_params[{name!r}] = {short_repr(value)} is {problem}; the objective "
                f"would refuse it or run it unchecked. Pass a value inside the parameter's "
                f"distribution."
            )
    return extra


def checked_knowledge(params: Mapping[str, Any], known: Mapping[str, BaseDistribution],
                      extractor: str, task: str, skip: set[str]) -> dict[str, Any]:
    """The hyper-parameters from the knowledge base the objective can take; warn the rest.

    A parameter with a known distribution (the study's, else ``distributions=``) must lie
    in it; any other must be a finite number, a boolean, None or a short string.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name in skip:
            continue
        problem = (distribution_problem(known[name], value) if name in known
                   else plain_value_problem(value))
        if problem is None:
            out[name] = value
            continue
        msg = (f"warm_start: hyper-parameter {name!r} = {short_repr(value)} of extractor "
               f"{extractor!r} (from knowledge-base task {task!r}) is {problem}; it is not "
               f"enqueued (the trial samples it instead).")
        logger.warning(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    return out


def warm_start(
    study: optuna.Study,
    task_or_embedding: Any,
    selector: Any,
    param: str = "extractor",
    top_k: int = 3,
    extra_params: Mapping[str, Any] | None = None,
    embedder: Any = None,
    knowledge: KnowledgeBase | str | os.PathLike[str] | None = None,
    *,
    choices: Sequence[Any] | None = None,
    task: Any = None,
    distributions: Mapping[str, BaseDistribution] | None = None,
    unknown: str = "interleave",
    transferability: Any = None,
) -> list[dict[str, Any]]:
    """Enqueue the extractors the selector ranks best as the study's next trials.

    Parameters
    ----------
    study : optuna.Study
        The study; any storage (in memory, SQLite, PostgreSQL...).
    task_or_embedding : Embedding, array-like of shape (dim,) or task
        The new task's embedding, or the task itself (a
        :class:`~t2v_automl.tasks.Task`, an ``(images, labels)`` pair, a torch
        ``Dataset`` or an image folder), which is then embedded with ``embedder``.
    selector : fitted selector
        E.g. :class:`~t2v_automl.estimators.ExtractorSelector`: ``extractor_names_``,
        ``embedding_meta_`` and ``predict_scores(E)``; or a fitted
        :class:`~t2v_automl.estimators.HybridSelector`, which embeds a task with its own
        embedder (``embedder`` is then optional) and adds LogME for novel tasks.
    param : str, default="extractor"
        Name of the study's categorical extractor parameter.
    top_k : int, default=3
        How many of the best-ranked extractors to enqueue.
    extra_params : mapping, optional
        Other parameters to fix in every enqueued trial (e.g. ``{"C": 1.0}``). They
        override hyper-parameters taken from ``knowledge``; they may not name ``param``.
        They are checked as those are (see ``knowledge``), but a value that fails raises
        :class:`~t2v_automl.exceptions.InvalidParameterError` before anything is enqueued.
    embedder : Task2VecEmbedder, optional
        A fitted embedder, needed when ``task_or_embedding`` is a task.
    knowledge : KnowledgeBase or path, optional
        A knowledge base written by :class:`KnowledgeCallback`. For each enqueued
        extractor, the best hyper-parameters recorded for it on the nearest known task
        that has them (distance: the selector's ``metric``, else the symmetric Task2Vec
        distance; cosine for embeddings with negative values) are fixed too. Each is
        checked first and skipped with a :class:`UserWarning` naming it and its value
        (the trial then samples it): against its distribution where one is known (the
        study's, else ``distributions``), where its type must be the one the objective's
        ``suggest_*`` returns and its value must lie inside; otherwise it must be a finite
        number, a boolean, None or a string of at most 200 characters.
    choices : sequence, optional
        The choices of the extractor parameter. Default: those of the study's
        distribution for ``param`` when a trial has it, else every extractor the selector
        knows (and a log warning says so: on a fresh study, pass the choices your
        objective gives ``trial.suggest_categorical(param, ...)``, since an enqueued
        extractor that is not among them makes its trial fail).
    task : task, optional
        The task's images when ``task_or_embedding`` is its embedding already (a
        :class:`~t2v_automl.tasks.Task`, an ``(images, labels)`` pair...): a selector with
        ``explain`` (:class:`~t2v_automl.estimators.HybridSelector`) then adds its
        transferability score for a novel task without re-embedding it. Without it, such
        a selector ranks a novel task by its knowledge base alone (and warns). Other
        selectors do not use it.
    distributions : mapping of str to optuna distribution, optional
        The objective's distributions of other parameters (e.g. ``{"C":
        FloatDistribution(1e-3, 1e3, log=True)}``), to check ``extra_params`` and the
        knowledge base's hyper-parameters against on a study that has not suggested them
        yet. The study's own distribution of a parameter, once a trial has it, wins.
    unknown : {"interleave", "ignore"}, default="interleave"
        Choices the selector was not fitted on (the user's newest model): with
        ``"interleave"`` they take every second place of the ranking from the 2nd on
        (known #1, unknown #1, known #2, ...), so ``top_k=3`` tries one of them at the
        second enqueued trial; ``"ignore"`` never enqueues them. A :class:`UserWarning`
        names them either way (a misspelt name shows there).
    transferability : TransferabilitySelector, optional
        Orders two or more unknown candidates by its score on the task's images (the task,
        or ``task=``), cloned with ``extractors=<those candidates>``; default: the
        selector's own ``transferability_`` (a HybridSelector's), else choice order.

    Returns
    -------
    list of dict
        The parameters of each enqueued trial, best-ranked first (``param`` included).
        Empty when every top-k extractor was already enqueued or run.

    Raises
    ------
    InvalidInputTypeError
        A task without ``embedder``, ``task`` next to a task (not an embedding), a
        ``transferability`` that is not a TransferabilitySelector, or arguments of the
        wrong type.
    IncompatibleEmbeddingError
        The selector (or knowledge base, or embedder) was made with another probe or
        settings than the task's embedding.
    UnknownNameError
        No choice of ``param`` is known to the selector.
    InvalidParameterError
        ``top_k`` < 1; ``unknown`` not "interleave" or "ignore"; ``extra_params`` naming
        ``param`` or holding a value outside its known distribution (or, without one, not
        a finite number, boolean, None or short string); a study whose trials never
        suggest ``param`` (the message names a categorical parameter whose choices are
        the selector's extractors: "did you mean param='backbone'?") or suggest it as a
        non-categorical parameter; a study whose sampler is a :class:`Task2VecSampler` of
        another ``param``.
    NotFittedError
        An unfitted selector or embedder.

    Notes
    -----
    Only the top ``top_k`` of the ranking are considered: an extractor among them that
    already has a trial (waiting, running or finished in any state, failed included) is
    skipped, not replaced by the next one. Calling ``warm_start`` again, e.g. from every
    worker of a distributed study, therefore enqueues nothing new. Two workers calling it
    at the very same moment may both enqueue (as with Optuna's
    ``enqueue_trial(skip_if_exists=True)``): call it once, before starting the workers.
    Each enqueued trial carries the user attributes ``t2v_warm_start_rank`` (0 = best,
    in the merged ranking) and ``t2v_predicted_score`` (None for an unknown candidate).

    The warm start does not look at the study's directions: in a multi-objective study
    (e.g. accuracy and latency) it enqueues the ranked candidates exactly as for a single
    objective, and the sampler (a multi-objective one, or a :class:`Task2VecSampler` with
    ``objective_index``) takes over after them. A search space whose other parameters
    depend on the extractor works too: a parameter the enqueued extractor's branch does
    not suggest is simply not used by that trial (see :mod:`t2v_automl.integration.optuna`,
    "Conditional hyper-parameters").

    The enqueued trials count as start-up trials of a TPE sampler, whose default of 10
    random start-up trials then scatters the next ones over the whole search space: give
    the study ``TPESampler(n_startup_trials=top_k)`` (it halves the median gap to the best
    accuracy after 10 trials on the warm-start benchmark:
    ``benchmarks/results/warm_start_pooled.md``) or a :class:`Task2VecSampler`.

    On a fresh study (no trial has suggested anything yet), ``warm_start`` cannot see the
    objective's parameter names: an objective that names its extractor parameter other
    than ``param`` ignores the enqueued extractor. The next ``warm_start`` call (or
    :class:`KnowledgeCallback`) then reports it; without ``choices`` a log warning says
    so at once. It is a log record, not a :class:`UserWarning`, because this is the
    documented way to start a study and would warn on every correct use.
    """
    check_study(study)
    param = check_param(param)
    unknown = check_unknown(unknown)
    transferability = check_transferability(transferability)
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise InvalidParameterError(f"top_k must be an integer >= 1; got {top_k!r}.")
    if extra_params is not None and not isinstance(extra_params, Mapping):
        raise InvalidInputTypeError(
            f"extra_params must be a mapping parameter name -> value; got "
            f"{type(extra_params).__name__}."
        )
    extra = dict(extra_params or {})
    if param in extra:
        raise InvalidParameterError(
            f"extra_params must not fix {param!r}: warm_start chooses it. Restrict the "
            f"candidates with choices=[...] instead."
        )
    kb: KnowledgeBase | None
    if knowledge is None or isinstance(knowledge, KnowledgeBase):
        kb = knowledge
    elif isinstance(knowledge, str | os.PathLike):
        kb = KnowledgeBase.load(knowledge)
    else:
        raise InvalidInputTypeError(
            f"knowledge must be a KnowledgeBase, a path to one, or None; got "
            f"{type(knowledge).__name__}."
        )
    known_dists = {**check_distributions(distributions), **latest_distributions(study)}
    extra = checked_extra(extra, known_dists)
    sampler_param = getattr(study.sampler, "_param", param) \
        if isinstance(study.sampler, Task2VecSampler) else param
    if sampler_param != param:
        raise InvalidParameterError(
            f"the study's Task2VecSampler draws parameter {sampler_param!r} but warm_start "
            f"was given param={param!r}; pass the name the objective gives "
            f"trial.suggest_categorical to both."
        )
    dist = study_distribution(study, param, getattr(selector, "extractor_names_", None))
    if dist is None and choices is None:
        logger.warning(
            "warm_start: the study has no trial yet, so the choices of %r are the "
            "selector's extractors; %r must be the name the objective gives "
            "trial.suggest_categorical, and choices=[...] its choices (an enqueued "
            "extractor outside them makes its trial fail).", param, param)
    pred = selector_predictions(selector, task_or_embedding, embedder, "task_or_embedding",
                                task=task)
    names, predicted = pred.names, pred.scores
    if choices is None:
        choices = list(dist.choices) if dist is not None else list(names)
    elif isinstance(choices, str):
        raise InvalidInputTypeError(
            f"choices must be a list of extractor names, not one string; got {choices!r}."
        )
    known, others = split_choices(list(choices), names, param, unknown)
    ranked_known = sorted(known, key=lambda c: (-predicted[c] if math.isfinite(predicted[c])
                                                else math.inf, known.index(c)))
    # unknown candidates: every second place from the 2nd on (rules: _unknown.py); their
    # transferability only orders them among themselves, and only when it can matter
    ranked = interleave(ranked_known, others)
    if any(c in others for c in ranked[:int(top_k)]):
        ranked = interleave(ranked_known, order_unknown(others, selector, transferability,
                                                        pred.images)[0])
    top = ranked[:int(top_k)]
    present = present_choices(study, param)
    todo = [c for c in top if c not in present]
    kb_params = (kb_best_params(kb, pred.values, pred.meta, todo,
                               kb_metric(pred.knowledge_selector))
                 if kb is not None and todo else {})
    enqueued: list[dict[str, Any]] = []
    for c in todo:
        source, kb_hp = kb_params.get(c, ("", {}))
        hp = checked_knowledge(kb_hp, known_dists, c, source, {param, *extra})
        params = {**hp, **extra, param: c}
        score = predicted.get(c, math.nan) if isinstance(c, str) else math.nan
        study.enqueue_trial(params, user_attrs={
            "t2v_warm_start_rank": ranked.index(c),
            "t2v_predicted_score": score if math.isfinite(score) else None})
        enqueued.append(params)
    skipped = [c for c in top if c in present]
    logger.info("warm_start: enqueued %s; skipped (already in the study) %s",
                [p[param] for p in enqueued], skipped)
    return enqueued
