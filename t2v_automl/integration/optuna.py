"""Optuna integration: warm-start the extractor choice of a study, learn from every study.

A study whose search space holds the feature extractor as a categorical parameter (named
``"extractor"`` by default) spends its first trials guessing. Three pieces use the new
task's embedding and a fitted selector (:class:`~t2v_automl.estimators.ExtractorSelector`,
or anything with ``extractor_names_``, ``embedding_meta_`` and ``predict_scores``) instead:

:func:`warm_start`
    Enqueues the selector's top-k extractors as the study's next trials (with the best
    known hyper-parameters of the nearest known tasks, when a knowledge base has them).
:class:`Task2VecSampler`
    A sampler that draws the extractor from a softmax over the selector's predicted
    scores, blended with the results the study has seen, and delegates every other
    parameter (and every hook) to a base sampler, TPE by default.
:class:`KnowledgeCallback`
    A study callback that records (task embedding, extractor, best score, best
    hyper-parameters) of each finished trial into a
    :class:`~t2v_automl.knowledge.KnowledgeBase` file, safely when many workers finish
    trials at once, so that each study improves the selector of the next.

All three work with any Optuna storage: in-memory, or an RDB storage shared by many
workers (``optuna.storages.RDBStorage("sqlite:///study.db")`` on one machine,
``"postgresql+psycopg2://user@host/db"`` across machines). Unlike the scikit-learn
estimators of the package, these are Optuna objects: they validate their arguments
eagerly, in ``__init__``, and keep private state.

Scores and study directions
---------------------------
The selector predicts scores on the scale of the knowledge base it learned from:
accuracies, or another metric in [0, 1] where higher is better. A study that *maximises*
such a metric (validation accuracy) needs nothing more. A study that *minimises* (error
rate, log-loss), or maximises a metric on another scale, must say how to turn its
objective value into a score in [0, 1] with ``score_transform`` (e.g.
``score_transform=lambda error_rate: 1.0 - error_rate``); without it, the sampler and the
callback refuse minimisation studies with :class:`~t2v_automl.exceptions.InvalidParameterError`
rather than learn from values of the wrong sign. Multi-objective studies are refused.

Choices the selector does not know
----------------------------------
Choices of the extractor parameter that the selector was not fitted on are *ignored with
a warning* (:class:`UserWarning`): :func:`warm_start` never enqueues them and
:class:`Task2VecSampler` never draws them (they can still be run by enqueueing them by
hand). When no choice at all is known to the selector, both raise
:class:`~t2v_automl.exceptions.UnknownNameError`. A search space whose extractor parameter
is not categorical raises :class:`~t2v_automl.exceptions.InvalidParameterError`.

Knowledge-base layout
---------------------
:class:`KnowledgeCallback` keeps, per (task, extractor), the best score seen in the
score matrix and, in the task's provenance under the key ``"optuna"``::

    {"best": {"<extractor>": {"score": 0.93, "value": 0.93, "params": {"C": 0.1},
                              "param": "extractor", "study": "<study name>",
                              "trial": 12}}}

``params`` are the hyper-parameters of the best trial of that extractor (all parameters
but the extractor one). :func:`warm_start` reads them back.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sklearn.exceptions import NotFittedError

from t2v_automl import distances
from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
    UnknownNameError,
)
from t2v_automl.knowledge import KnowledgeBase

__all__ = ["KnowledgeCallback", "Task2VecSampler", "warm_start", "PROVENANCE_KEY"]

#: Key of the task provenance entry written by :class:`KnowledgeCallback`.
PROVENANCE_KEY = "optuna"

ScoreTransform = Callable[[float], float]


# ----------------------------------------------------------------------------------------
# Shared validation helpers
# ----------------------------------------------------------------------------------------


def _check_param(param: Any) -> str:
    if not isinstance(param, str) or not param:
        raise InvalidInputTypeError(
            f"param must be the non-empty name of the study's extractor parameter (str); got "
            f"{param!r}."
        )
    return param


def _check_study(study: Any) -> optuna.Study:
    if not isinstance(study, optuna.Study):
        raise InvalidInputTypeError(
            f"study must be an optuna.Study (optuna.create_study(...) or "
            f"optuna.load_study(...)); got {type(study).__name__}."
        )
    return study


def _check_transform(score_transform: Any) -> ScoreTransform | None:
    if score_transform is not None and not callable(score_transform):
        raise InvalidInputTypeError(
            f"score_transform must be a callable (objective value -> score in [0, 1]) or None; "
            f"got {type(score_transform).__name__}."
        )
    return score_transform


def _is_vector(obj: Any) -> bool:
    """True when ``obj`` is a plain numeric vector (an embedding without metadata)."""
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "fiu"
    if isinstance(obj, list | tuple) and obj:
        return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in obj)
    return False


def _resolve_embedding(obj: Any, embedder: Any, selector_meta: EmbeddingMeta | None,
                       what: str) -> tuple[np.ndarray, EmbeddingMeta | None, Embedding | None]:
    """Return (values, meta or None, Embedding or None) for an embedding, a vector or a task."""
    if isinstance(obj, Embedding):
        return np.array(obj.values, dtype=np.float64), obj.meta, obj
    if _is_vector(obj):
        arr = np.array(obj, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr.reshape(-1)
        if arr.ndim != 1 or arr.size == 0:
            raise InvalidInputTypeError(
                f"{what} must be one task's embedding (an Embedding or a 1-D array); got an "
                f"array of shape {arr.shape}."
            )
        if not np.isfinite(arr).all():
            raise IncompatibleEmbeddingError(
                f"{what} holds NaN or inf; a failed embedding cannot be compared. Re-embed "
                f"the task (more images, fewer classes)."
            )
        return arr, None, None
    if embedder is None:
        raise InvalidInputTypeError(
            f"{what} is a {type(obj).__name__}, not an Embedding: it is taken to be a task, "
            f"and a task needs embedder=<a fitted Task2VecEmbedder> to be embedded. Pass "
            f"one, or embed the task first: embedder.embed([task])[0]."
        )
    if not callable(getattr(embedder, "embed", None)):
        raise InvalidInputTypeError(
            f"embedder must be a fitted Task2VecEmbedder (with an embed() method); got "
            f"{type(embedder).__name__}."
        )
    emeta = getattr(embedder, "embedding_meta_", None)
    if emeta is None:
        raise NotFittedError(
            "the embedder is not fitted yet: call embedder.fit() before passing it."
        )
    if selector_meta is not None and emeta.compat_key() != selector_meta.compat_key():
        raise IncompatibleEmbeddingError(
            f"the embedder makes embeddings unlike those the selector was fitted on "
            f"({selector_meta.describe_difference(emeta)}; selector first, embedder second). "
            f"Use an embedder with the selector's settings, or a selector fitted on this "
            f"embedder's embeddings."
        )
    emb = embedder.embed([obj])[0]
    return np.array(emb.values, dtype=np.float64), emb.meta, emb


def _check_selector(selector: Any, values: np.ndarray,
                    meta: EmbeddingMeta | None) -> list[str]:
    """Check that ``selector`` is fitted and compatible with the embedding; return names."""
    if not callable(getattr(selector, "predict_scores", None)):
        raise InvalidInputTypeError(
            f"selector must be a fitted extractor selector (with predict_scores() and "
            f"extractor_names_), e.g. ExtractorSelector; got {type(selector).__name__}."
        )
    names = getattr(selector, "extractor_names_", None)
    if names is None:
        raise NotFittedError(
            f"this {type(selector).__name__} is not fitted yet: call fit(E, Y) (or "
            f"ExtractorSelector.from_knowledge(kb)) before using it."
        )
    names = [str(n) for n in names]
    smeta = getattr(selector, "embedding_meta_", None)
    if smeta is not None and meta is not None and smeta.compat_key() != meta.compat_key():
        raise IncompatibleEmbeddingError(
            f"the task's embedding was made differently from those the selector was fitted "
            f"on ({smeta.describe_difference(meta)}; selector first, task second). Embed the "
            f"task with the selector's probe and settings."
        )
    expected = smeta.dim if smeta is not None else getattr(selector, "n_features_in_", None)
    if expected is not None and int(expected) != values.shape[0]:
        raise IncompatibleEmbeddingError(
            f"the task's embedding has {values.shape[0]} values; the selector expects "
            f"{int(expected)}. Embed the task with the selector's probe and settings."
        )
    return names


def _predict(selector: Any, names: list[str], values: np.ndarray,
             emb: Embedding | None) -> dict[str, float]:
    """The selector's predicted score of each extractor for one task (NaN = no prediction)."""
    X: Any = [emb] if emb is not None else values[None, :]
    scores = np.asarray(selector.predict_scores(X), dtype=np.float64)
    if scores.shape != (1, len(names)):
        raise InvalidInputTypeError(
            f"selector.predict_scores returned shape {scores.shape} for one task; expected "
            f"(1, {len(names)}) (one column per extractor_names_ entry)."
        )
    return {n: float(s) for n, s in zip(names, scores[0], strict=True)}


def _selector_predictions(selector: Any, obj: Any, embedder: Any, what: str
                          ) -> tuple[np.ndarray, EmbeddingMeta | None, list[str],
                                     dict[str, float], Any]:
    """Embed ``obj`` if needed and return what the selector predicts for it.

    A :class:`~t2v_automl.estimators.HybridSelector` embeds a task with its own
    ``embedder_`` and, for a novel task, computes its transferability score; given an
    embedding only, it falls back to its knowledge-based ``selector_`` (with a warning:
    the transferability score needs the images).

    Returns
    -------
    values, meta, names, predicted, knowledge_selector
        The embedding's values and metadata, the selector's extractor names, the predicted
        score per name, and the selector whose ``metric`` applies to the knowledge base
        (the hybrid's inner one).
    """
    from t2v_automl.estimators._hybrid import HybridSelector

    inner = selector
    is_task = not (isinstance(obj, Embedding) or _is_vector(obj))
    if isinstance(selector, HybridSelector):
        inner = getattr(selector, "selector_", None)
        if inner is None:
            raise NotFittedError(
                "this HybridSelector is not fitted yet: call fit(tasks, Y) or use "
                "HybridSelector.from_knowledge(kb) before passing it."
            )
        if embedder is None:
            embedder = selector.embedder_
    values, meta, emb = _resolve_embedding(obj, embedder, getattr(inner, "embedding_meta_", None),
                                           what)
    names = _check_selector(inner, values, meta)
    if inner is selector:
        return values, meta, names, _predict(selector, names, values, emb), inner
    if not is_task:
        warnings.warn(
            f"{what} is an embedding: the HybridSelector ranks by its knowledge base only "
            f"(its transferability score for novel tasks needs the images). Pass the task "
            f"itself to use it.", UserWarning, stacklevel=3)
        return values, meta, names, _predict(inner, names, values, emb), inner
    scores = selector.predict_scores([obj], embeddings=[emb])
    predicted = {n: float(v) for n, v in zip(names, scores[0], strict=True)}
    logger.info("HybridSelector: novelty %.2f, weight of %s %.2f", selector.novelty_[0],
                selector.transferability_.measure, selector.gate_[0])
    return values, meta, names, predicted, inner


def _known_choices(choices: Sequence[Any], names: Sequence[str], param: str,
                   warned: set[tuple[Any, ...]] | None = None) -> list[str]:
    """The choices the selector knows, in choice order; warn about the others."""
    known_set = set(names)
    known = [c for c in choices if isinstance(c, str) and c in known_set]
    unknown = [c for c in choices if not (isinstance(c, str) and c in known_set)]
    if not known:
        raise UnknownNameError(
            f"none of the choices {list(choices)!r} of parameter {param!r} is an extractor "
            f"the selector knows ({sorted(known_set)}). Name the extractors as in the "
            f"knowledge base, or fit the selector on these extractors."
        )
    if unknown:
        key = tuple(map(repr, choices))
        if warned is None or key not in warned:
            if warned is not None:
                warned.add(key)
            warnings.warn(
                f"choices {unknown!r} of parameter {param!r} are unknown to the selector "
                f"(fitted on {sorted(known_set)}); they are ignored by the warm start.",
                UserWarning, stacklevel=3)
    return known


def _study_distribution(study: optuna.Study, param: str) -> CategoricalDistribution | None:
    """The distribution of ``param`` in the study's latest trial that has it, if any.

    Raises when the study's trials suggest other parameters but never ``param``, or when
    ``param`` is not categorical.
    """
    dist: BaseDistribution | None = None
    others: set[str] = set()
    for t in study.get_trials(deepcopy=False):
        if param in t.distributions:
            dist = t.distributions[param]
        others.update(t.distributions)
    if dist is None:
        if others:
            raise InvalidParameterError(
                f"the study's search space has no parameter {param!r} (its trials suggest "
                f"{sorted(others)}); pass param=<the name of the categorical extractor "
                f"parameter>."
            )
        return None
    if not isinstance(dist, CategoricalDistribution):
        raise InvalidParameterError(
            f"parameter {param!r} must be categorical (trial.suggest_categorical({param!r}, "
            f"[extractor names])); the study has {dist!r}."
        )
    return dist


def _single_direction(study: optuna.Study, who: str) -> StudyDirection:
    if len(study.directions) != 1:
        raise InvalidParameterError(
            f"{who} supports single-objective studies only; this study has "
            f"{len(study.directions)} objectives."
        )
    return study.directions[0]


def _to_score(value: float, direction: StudyDirection, transform: ScoreTransform | None,
              who: str) -> float:
    """Objective value -> score (higher = better), on the selector's scale when possible."""
    if transform is not None:
        try:
            return float(transform(value))
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"score_transform failed on objective value {value!r}: {exc}"
            ) from exc
    if direction == StudyDirection.MINIMIZE:
        raise InvalidParameterError(
            f"{who}: the study minimises its objective, so its values are not scores where "
            f"higher is better; pass score_transform mapping a value to a score in [0, 1] "
            f"(e.g. score_transform=lambda error_rate: 1.0 - error_rate)."
        )
    return float(value)


# ----------------------------------------------------------------------------------------
# warm_start
# ----------------------------------------------------------------------------------------


def _present_choices(study: optuna.Study, param: str) -> set[Any]:
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


def _kb_metric(selector: Any) -> str:
    m = getattr(selector, "metric", None)
    return m if isinstance(m, str) and m in distances.DISTANCES else "symmetric"


def _kb_best_params(kb: KnowledgeBase, values: np.ndarray, meta: EmbeddingMeta | None,
                    extractors: Sequence[str], metric: str) -> dict[str, dict[str, Any]]:
    """Per extractor, the best known hyper-parameters of the nearest task that has some."""
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
    out: dict[str, dict[str, Any]] = {}
    for ext in extractors:
        for i in order:
            best = prov[i].get(PROVENANCE_KEY, {})
            entry = best.get("best", {}).get(ext) if isinstance(best, dict) else None
            if isinstance(entry, dict) and isinstance(entry.get("params"), dict):
                out[ext] = dict(entry["params"])
                logger.debug("warm_start: hyper-parameters of %r from task %r (distance %.4g)",
                             ext, kb.task_names[i], d[i])
                break
    return out


def _fits(study: optuna.Study, name: str, value: Any) -> bool:
    """False when the study knows a distribution for ``name`` that does not contain value."""
    for t in reversed(study.get_trials(deepcopy=False)):
        if name in t.distributions:
            dist = t.distributions[name]
            try:
                return bool(dist._contains(dist.to_internal_repr(value)))
            except (TypeError, ValueError):
                return False
    return True


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
    embedder : Task2VecEmbedder, optional
        A fitted embedder, needed when ``task_or_embedding`` is a task.
    knowledge : KnowledgeBase or path, optional
        A knowledge base written by :class:`KnowledgeCallback`. For each enqueued
        extractor, the best hyper-parameters recorded for it on the nearest known task
        that has them (distance: the selector's ``metric``, else the symmetric Task2Vec
        distance; cosine for embeddings with negative values) are fixed too, except those
        the study already knows to lie outside their distribution.
    choices : sequence, optional
        The choices of the extractor parameter. Default: those of the study's
        distribution for ``param`` when a trial has it, else every extractor the selector
        knows.

    Returns
    -------
    list of dict
        The parameters of each enqueued trial, best-ranked first (``param`` included).
        Empty when every top-k extractor was already enqueued or run.

    Raises
    ------
    InvalidInputTypeError
        A task without ``embedder``, or arguments of the wrong type.
    IncompatibleEmbeddingError
        The selector (or knowledge base, or embedder) was made with another probe or
        settings than the task's embedding.
    UnknownNameError
        No choice of ``param`` is known to the selector.
    InvalidParameterError
        ``top_k`` < 1, ``extra_params`` naming ``param``, or a study whose trials never
        suggest ``param`` or suggest it as a non-categorical parameter.
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
    Each enqueued trial carries the user attributes ``t2v_warm_start_rank`` (0 = best)
    and ``t2v_predicted_score``.

    The enqueued trials count as start-up trials of a TPE sampler, whose default of 10
    random start-up trials then scatters the next ones over the whole search space: give
    the study ``TPESampler(n_startup_trials=top_k)`` (on ``benchmarks/warm_start.py``,
    47 held-out tasks, the median gap to the best accuracy after 10 trials halves, 0.40
    to 0.20 points) or a :class:`Task2VecSampler`.
    """
    _check_study(study)
    param = _check_param(param)
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
    dist = _study_distribution(study, param)
    values, meta, names, predicted, inner = _selector_predictions(
        selector, task_or_embedding, embedder, "task_or_embedding")
    if choices is None:
        choices = list(dist.choices) if dist is not None else list(names)
    elif isinstance(choices, str):
        raise InvalidInputTypeError(
            f"choices must be a list of extractor names, not one string; got {choices!r}."
        )
    known = _known_choices(list(choices), names, param)
    ranked = sorted(known, key=lambda c: (-predicted[c] if math.isfinite(predicted[c])
                                          else math.inf, known.index(c)))
    top = ranked[:int(top_k)]
    present = _present_choices(study, param)
    todo = [c for c in top if c not in present]
    kb_params = (_kb_best_params(kb, values, meta, todo, _kb_metric(inner))
                 if kb is not None and todo else {})
    enqueued: list[dict[str, Any]] = []
    for c in todo:
        hp = {k: v for k, v in kb_params.get(c, {}).items()
              if k != param and _fits(study, k, v)}
        params = {**hp, **extra, param: c}
        study.enqueue_trial(params, user_attrs={
            "t2v_warm_start_rank": ranked.index(c),
            "t2v_predicted_score": predicted[c] if math.isfinite(predicted[c]) else None})
        enqueued.append(params)
    skipped = [c for c in top if c in present]
    logger.info("warm_start: enqueued %s; skipped (already in the study) %s",
                [p[param] for p in enqueued], skipped)
    return enqueued


# ----------------------------------------------------------------------------------------
# Task2VecSampler
# ----------------------------------------------------------------------------------------


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
        (over all the study's choices) rather than from the ranking. On the warm-start
        benchmark (``benchmarks/results/warm_start.md``) 0.1-0.3 raise the share of runs
        that reach the best achievable accuracy within 40 trials from 75 % to 84-87 %
        without slowing the first trials; 0 draws only from the ranking.

    Raises
    ------
    InvalidParameterError
        Out-of-range settings.
    InvalidInputTypeError
        Arguments of the wrong type, or a task instead of an embedding.
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
    ) -> None:
        self._param = _check_param(param)
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
        self._score_transform = _check_transform(score_transform)
        _, _, self._names, self._predicted, _ = _selector_predictions(
            selector, embedding, None, "embedding")
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
        direction = _single_direction(study, type(self).__name__)
        if direction == StudyDirection.MINIMIZE and self._score_transform is None:
            _to_score(0.0, direction, None, type(self).__name__)  # raises, says what to do
        if not isinstance(distribution, CategoricalDistribution):
            raise InvalidParameterError(
                f"parameter {self._param!r} must be categorical "
                f"(trial.suggest_categorical({self._param!r}, [extractor names])); got "
                f"{distribution!r}."
            )
        known = _known_choices(distribution.choices, self._names, self._param, self._warned)
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
            s = _to_score(t.value, direction, self._score_transform, type(self).__name__)
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
        _single_direction(study, type(self).__name__)
        space = dict(self._base.infer_relative_search_space(study, trial))
        space.pop(self._param, None)
        return space

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """Delegate to the base sampler (the extractor parameter is never sampled here)."""
        _single_direction(study, type(self).__name__)
        space = {k: v for k, v in search_space.items() if k != self._param}
        params = dict(self._base.sample_relative(study, trial, space))
        params.pop(self._param, None)
        return params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Draw the extractor from the ranking; delegate any other parameter.

        With probability ``exploration`` the extractor is drawn by the base sampler too.
        """
        _single_direction(study, type(self).__name__)
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


# ----------------------------------------------------------------------------------------
# KnowledgeCallback
# ----------------------------------------------------------------------------------------


class KnowledgeCallback:
    """Record each completed trial's (task embedding, extractor, score) in a knowledge base.

    Pass it to ``study.optimize(..., callbacks=[KnowledgeCallback(...)])``. For every
    COMPLETE trial, the score of its extractor on the task is kept when it beats the one
    recorded (per task and extractor, the best score wins), together with that trial's
    other parameters (the best hyper-parameters) in the task's provenance (see the module
    docstring for the layout). Failed, pruned and other unfinished trials are ignored.

    Parameters
    ----------
    path_or_kb : str, path-like or KnowledgeBase
        A knowledge base file (created on the first write when absent) or an in-memory
        :class:`~t2v_automl.knowledge.KnowledgeBase`. A file is updated through
        :meth:`KnowledgeBase.locked_update <t2v_automl.knowledge.KnowledgeBase.locked_update>`:
        each write holds an exclusive lock, loads, changes and atomically replaces the
        file, so several workers (processes sharing the file system; ``flock`` must work
        on it) finishing trials at once lose nothing. An in-memory base is for one process
        (its threads included: writes are serialised).
    embedding : Embedding or array-like of shape (dim,)
        The study's task embedding. With a path, it must be an :class:`Embedding` (its
        metadata creates or checks the file).
    param : str, default="extractor"
        Name of the extractor parameter.
    score_transform : callable, optional
        Objective value -> score in [0, 1], higher = better. Default: the value itself,
        which must be a score in [0, 1] of a maximised objective (e.g. accuracy). A
        minimisation study must pass one (e.g. ``lambda error_rate: 1.0 - error_rate``).
    task_name : str, optional
        The task's name in the base. Default: ``embedding.task_name``. All studies of one
        task should use the same name; a name already taken by a task with another
        embedding is refused.
    timeout : float, optional
        Seconds to wait for the file lock (default: forever).
    errors : {"raise", "warn"}, default="raise"
        What to do with a trial that cannot be recorded (a score outside [0, 1], a
        non-string extractor, a name clash, a minimisation study without
        ``score_transform``): raise (stopping ``optimize``), or warn and skip it.
        Nothing is written in either case.

    Raises
    ------
    InvalidInputTypeError, InvalidParameterError
        Invalid arguments.
    IncompatibleEmbeddingError, KnowledgeBaseError
        The embedding was made unlike the base's, or the existing file is unreadable.
    """

    def __init__(
        self,
        path_or_kb: str | os.PathLike[str] | KnowledgeBase,
        embedding: Embedding | Any,
        param: str = "extractor",
        score_transform: ScoreTransform | None = None,
        *,
        task_name: str | None = None,
        timeout: float | None = None,
        errors: str = "raise",
    ) -> None:
        self._param = _check_param(param)
        self._score_transform = _check_transform(score_transform)
        if errors not in ("raise", "warn"):
            raise InvalidParameterError(f"errors must be 'raise' or 'warn'; got {errors!r}.")
        self._errors = errors
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, numbers.Real) or timeout < 0):
            raise InvalidParameterError(f"timeout must be a number >= 0 or None; got {timeout!r}.")
        self._timeout = None if timeout is None else float(timeout)
        self._thread_lock = threading.Lock()
        values, meta, emb = _resolve_embedding(embedding, None, None, "embedding")
        if task_name is None:
            if emb is None:
                raise InvalidInputTypeError(
                    "a plain array has no task name: pass task_name=... (or an Embedding)."
                )
            task_name = emb.task_name
        if not isinstance(task_name, str) or not task_name:
            raise InvalidInputTypeError(f"task_name must be a non-empty str; got {task_name!r}.")
        self._task_name = task_name
        self._values = values
        self._fingerprint = emb.task_fingerprint if emb is not None else ""
        self._kb: KnowledgeBase | None = None
        self._path: Path | None = None
        if isinstance(path_or_kb, KnowledgeBase):
            self._kb = path_or_kb
            self._meta = path_or_kb.meta
            if meta is not None and meta.compat_key() != self._meta.compat_key():
                raise IncompatibleEmbeddingError(
                    f"the embedding was made differently from the knowledge base's "
                    f"({self._meta.describe_difference(meta)}; knowledge base first)."
                )
            if values.shape[0] != self._meta.dim:
                raise IncompatibleEmbeddingError(
                    f"the embedding has {values.shape[0]} values; the knowledge base expects "
                    f"{self._meta.dim}."
                )
        elif isinstance(path_or_kb, str | os.PathLike):
            if meta is None:
                raise InvalidInputTypeError(
                    "with a knowledge base file, embedding must be an Embedding: its metadata "
                    "creates the file or is checked against it."
                )
            self._path = Path(path_or_kb)
            self._meta = meta
            if not self._path.parent.is_dir():
                raise KnowledgeBaseError(
                    f"directory {str(self._path.parent)!r} of the knowledge base does not "
                    f"exist; create it first."
                )
            if self._path.exists():  # fail now, not after the first trial
                KnowledgeBase.load(self._path, expected_meta=meta)
        else:
            raise InvalidInputTypeError(
                f"path_or_kb must be a path or a KnowledgeBase; got {type(path_or_kb).__name__}."
            )
        self._warned_missing = False

    @property
    def task_name(self) -> str:
        """The task's name in the knowledge base."""
        return self._task_name

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)  # locks do not pickle; each copy gets its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Record ``trial`` when it is COMPLETE and has the extractor parameter."""
        if trial.state != TrialState.COMPLETE:
            logger.debug("KnowledgeCallback: trial %d is %s, not recorded", trial.number,
                         trial.state.name)
            return
        try:
            entry = self._entry(study, trial)
            if entry is None:
                return
            if self._kb is not None:
                with self._thread_lock:  # optimize(n_jobs=k) calls back from k threads
                    self._record(self._kb, *entry)
            else:
                assert self._path is not None
                with KnowledgeBase.locked_update(self._path, self._meta,
                                                 timeout=self._timeout) as kb:
                    self._record(kb, *entry)
        except (KnowledgeBaseError, InvalidParameterError, IncompatibleEmbeddingError) as exc:
            if self._errors == "raise":
                raise
            warnings.warn(f"KnowledgeCallback: trial {trial.number} not recorded: {exc}",
                          UserWarning, stacklevel=2)
            logger.warning("KnowledgeCallback: trial %d not recorded: %s", trial.number, exc)

    def _entry(self, study: optuna.Study, trial: FrozenTrial
               ) -> tuple[str, float, dict[str, Any], float, str, int, float | None] | None:
        """Validate a trial; return (extractor, score, params, value, study, number, secs)."""
        direction = _single_direction(study, "KnowledgeCallback")
        if self._param not in trial.params:
            if not self._warned_missing:
                self._warned_missing = True
                warnings.warn(
                    f"KnowledgeCallback: trial {trial.number} has no parameter "
                    f"{self._param!r} (parameters: {sorted(trial.params)}); trials without it "
                    f"are not recorded. Pass param=<the extractor parameter's name>.",
                    UserWarning, stacklevel=3)
            return None
        ext = trial.params[self._param]
        if not isinstance(ext, str) or not ext:
            raise InvalidParameterError(
                f"the value of {self._param!r} in trial {trial.number} is {ext!r}; extractor "
                f"names in a knowledge base are non-empty strings."
            )
        value = trial.value
        if value is None:  # pragma: no cover - a COMPLETE single-objective trial has one
            return None
        score = _to_score(float(value), direction, self._score_transform, "KnowledgeCallback")
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            raise KnowledgeBaseError(
                f"trial {trial.number} (extractor {ext!r}) has score {score!r} (objective "
                f"value {value!r}); knowledge-base scores lie in [0, 1], higher = better. "
                f"Pass score_transform to map objective values to such scores."
            )
        params = {k: v for k, v in trial.params.items() if k != self._param}
        try:
            params = json.loads(json.dumps(params, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise KnowledgeBaseError(
                f"the parameters of trial {trial.number} are not JSON-serialisable: {exc}"
            ) from exc
        secs = trial.duration.total_seconds() if trial.duration is not None else None
        return ext, score, params, float(value), study.study_name, int(trial.number), secs

    def _record(self, kb: KnowledgeBase, ext: str, score: float, params: dict[str, Any],
                value: float, study_name: str, number: int, secs: float | None) -> None:
        """Write one result into ``kb`` with a single (all-or-nothing) mutation."""
        best_entry = {"score": score, "value": value, "params": params, "param": self._param,
                      "study": study_name, "trial": number}
        name = self._task_name
        if name not in kb:
            prov: dict[str, Any] = {PROVENANCE_KEY: {"best": {ext: best_entry}}}
            if self._fingerprint:
                prov["task_fingerprint"] = self._fingerprint
            kb.add(name, self._values, {ext: score},
                   eval_time=None if secs is None else {ext: max(secs, 0.0)},
                   provenance=prov)
            logger.info("KnowledgeCallback: new task %r, %r = %.4f", name, ext, score)
            return
        i = kb.index(name)
        stored = kb.embeddings[i]
        if not np.allclose(stored, self._values, rtol=1e-9, atol=1e-12):
            raise KnowledgeBaseError(
                f"the knowledge base already has a task named {name!r} with another "
                f"embedding; pass task_name=<a unique name> for this task."
            )
        names = kb.extractor_names
        old = kb.scores[i, names.index(ext)] if ext in names else math.nan
        if not math.isnan(old) and score <= old:
            logger.debug("KnowledgeCallback: %r on %r: %.4f does not beat %.4f", ext, name,
                         score, old)
            return

        def cells(arr: np.ndarray) -> dict[str, float]:
            return {e: float(arr[i, j]) for j, e in enumerate(names)
                    if e != ext and not math.isnan(arr[i, j])}

        scores, stderr, eval_time = cells(kb.scores), cells(kb.stderr), cells(kb.eval_time)
        scores[ext] = score
        if secs is not None:
            eval_time[ext] = max(secs, 0.0)
        stderr = {e: v for e, v in stderr.items() if e in scores}
        eval_time = {e: v for e, v in eval_time.items() if e in scores}
        prov = copy.deepcopy(kb.provenance[i])
        section = prov.get(PROVENANCE_KEY)
        if not isinstance(section, dict):
            section = {}
        best = section.get("best")
        if not isinstance(best, dict):
            best = {}
        best[ext] = best_entry
        section["best"] = best
        prov[PROVENANCE_KEY] = section
        extra = {}
        for set_name in kb.extra_names:
            vals = kb.extra_embeddings(set_name)[1][i]
            if not np.isnan(vals).all():
                extra[set_name] = vals
        emt = float(kb.embed_time[i])
        kb.add(name, stored, scores, stderr=stderr, eval_time=eval_time, provenance=prov,
               extra_embeddings=extra or None, overwrite=True,
               embed_time=None if math.isnan(emt) else emt)
        logger.info("KnowledgeCallback: task %r, %r = %.4f (was %s)", name, ext, score,
                    "missing" if math.isnan(old) else f"{old:.4f}")
