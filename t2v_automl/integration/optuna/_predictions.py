"""The selector's predicted score of every extractor for one task.

A task reaches the integration as an :class:`~t2v_automl.embedding.Embedding`, a plain
vector, or the task itself (then embedded); :func:`selector_predictions` resolves it and
asks the selector through its public API:

- a selector with ``explain`` (:class:`~t2v_automl.estimators.HybridSelector`) is asked
  for ``explain([task], embeddings=[embedding])``: the neighbours' ranking, mixed with its
  transferability score when the task is novel and its images are there (the task itself,
  or ``task=`` next to its embedding). Given the embedding only, the estimator ranks a
  novel task by its knowledge base and warns itself;
- any other selector is asked for ``predict_scores`` (the tasks x extractors matrix that
  ``predict`` also returns).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError

from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import IncompatibleEmbeddingError, InvalidInputTypeError


@dataclass(frozen=True)
class Prediction:
    """What :func:`selector_predictions` returns for one task.

    Attributes
    ----------
    values : ndarray of shape (dim,)
        The task's embedding.
    meta : EmbeddingMeta or None
        How it was made (None for a plain vector).
    names : list of str
        The selector's extractor names.
    scores : dict of str to float
        Predicted score per name (NaN = no prediction).
    knowledge_selector : object
        The selector whose ``metric`` applies to the knowledge base: a hybrid's
        ``selector_``, else the selector itself.
    images : task or None
        The task's images when they were given (the task itself, or ``task=``), for a
        transferability score of candidates the selector does not know.
    """

    values: np.ndarray
    meta: EmbeddingMeta | None
    names: list[str]
    scores: dict[str, float]
    knowledge_selector: Any
    images: Any = None


def is_vector(obj: Any) -> bool:
    """True when ``obj`` is a plain numeric vector (an embedding without metadata)."""
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "fiu"
    if isinstance(obj, list | tuple) and obj:
        return all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in obj)
    return False


#: How to embed a task first, for callers that take no ``embedder=`` (the sampler, the
#: callback).
EMBED_FIRST = ("embed the task first: Task2VecEmbedder(...).fit().embed([task])[0] (with the "
               "selector's probe and settings)")


def resolve_embedding(obj: Any, embedder: Any, selector_meta: EmbeddingMeta | None,
                      what: str, no_embedder: str | None = None
                      ) -> tuple[np.ndarray, EmbeddingMeta | None, Embedding | None]:
    """Return (values, meta or None, Embedding or None) for an embedding, a vector or a task.

    ``no_embedder`` is what the message for a task without an embedder advises; None: the
    caller takes ``embedder=``, and the message says to pass one.
    """
    if isinstance(obj, Embedding):
        return np.array(obj.values, dtype=np.float64), obj.meta, obj
    if is_vector(obj):
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
        advice = (no_embedder if no_embedder is not None else
                  "pass embedder=<a fitted Task2VecEmbedder>, or embed the task first: "
                  "embedder.embed([task])[0]")
        raise InvalidInputTypeError(
            f"{what} is a {type(obj).__name__}, not an Embedding or a 1-D array: it is taken "
            f"to be a task, and nothing here can embed it; {advice}."
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


def check_selector(selector: Any, values: np.ndarray, meta: EmbeddingMeta | None) -> list[str]:
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


def _score_row(scores: Any, names: list[str], source: str) -> dict[str, float]:
    """One task's row of a score matrix, as name -> score."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (1, len(names)):
        raise InvalidInputTypeError(
            f"{source} returned shape {arr.shape} for one task; expected "
            f"(1, {len(names)}) (one column per extractor_names_ entry)."
        )
    return {n: float(s) for n, s in zip(names, arr[0], strict=True)}


def selector_predictions(selector: Any, obj: Any, embedder: Any, what: str,
                         task: Any = None, no_embedder: str | None = None) -> Prediction:
    """Embed ``obj`` if needed and return what the selector predicts for it.

    Parameters
    ----------
    selector : fitted selector
        Anything with ``extractor_names_`` and ``predict_scores``; one with ``explain``
        (:class:`~t2v_automl.estimators.HybridSelector`) is asked for its explanation,
        embeds a task with its own ``embedder_`` unless ``embedder`` is given, and adds
        its transferability score for a novel task whose images it has.
    obj : Embedding, array-like of shape (dim,) or task
    embedder : fitted Task2VecEmbedder or None
        Embeds ``obj`` when it is a task.
    what : str
        The argument's name, for error messages.
    task : task, optional
        The task's images when ``obj`` is its embedding: a selector with ``explain`` uses
        them for its transferability score; other selectors do not need them (they come
        back in :attr:`Prediction.images` for candidates the selector does not know).
    no_embedder : str, optional
        The advice of the error for a task that nothing can embed (see
        :func:`resolve_embedding`).

    Returns
    -------
    Prediction
    """
    hybrid = callable(getattr(selector, "explain", None))
    is_task = not (isinstance(obj, Embedding) or is_vector(obj))
    if task is not None and is_task:
        raise InvalidInputTypeError(
            f"task= gives the images of a task whose embedding is {what}; {what} is a "
            f"{type(obj).__name__} (taken to be the task itself). Pass the task once: "
            f"{what}=task, or {what}=<its Embedding> with task=task."
        )
    knowledge_selector = selector
    if hybrid:
        if getattr(selector, "extractor_names_", None) is None:
            raise NotFittedError(
                f"this {type(selector).__name__} is not fitted yet: call fit(tasks, Y) or use "
                f"{type(selector).__name__}.from_knowledge(kb) before passing it."
            )
        knowledge_selector = getattr(selector, "selector_", selector)
        if embedder is None:
            embedder = getattr(selector, "embedder_", None)
    values, meta, emb = resolve_embedding(obj, embedder,
                                          getattr(selector, "embedding_meta_", None), what,
                                          no_embedder)
    names = check_selector(selector, values, meta)
    row: Any = emb if emb is not None else values
    if not hybrid:
        X: Any = [emb] if emb is not None else values[None, :]
        scores = _score_row(selector.predict_scores(X), names, "selector.predict_scores")
        return Prediction(values, meta, names, scores, knowledge_selector,
                          obj if is_task else task)
    images = obj if is_task else task
    # Given the embedding (made here or by the caller), the hybrid skips its domain screen
    # and ranks by its neighbours, mixed with its transferability score when the task is
    # novel and its images are there; without them it warns (the estimator itself).
    explanation = selector.explain(None if images is None else [images], embeddings=[row])
    scores = _score_row(explanation.scores, names, f"{type(selector).__name__}.explain")
    measure = getattr(getattr(selector, "transferability_", None), "measure",
                      "transferability")
    logger.info("%s: novelty %.2f, weight of %s %.2f%s", type(selector).__name__,
                float(explanation.novelty[0]), measure, float(explanation.gate[0]),
                "" if images is not None else " (embedding only: no transferability score)")
    return Prediction(values, meta, names, scores, knowledge_selector, images)
