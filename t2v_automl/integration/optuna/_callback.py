"""`KnowledgeCallback`: record each finished trial of a study in a knowledge base."""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
)
from t2v_automl.integration.optuna._checks import (
    ScoreTransform,
    check_objective_index,
    check_param,
    check_transform,
    score_rule,
)
from t2v_automl.integration.optuna._predictions import EMBED_FIRST, resolve_embedding
from t2v_automl.knowledge import (
    PROVENANCE_OPTUNA,
    PROVENANCE_TASK_FINGERPRINT,
    KnowledgeBase,
)

__all__ = ["PROVENANCE_KEY", "KnowledgeCallback"]

#: Key of the task provenance entry written by :class:`KnowledgeCallback`
#: (:data:`t2v_automl.knowledge.PROVENANCE_OPTUNA`).
PROVENANCE_KEY = PROVENANCE_OPTUNA


class KnowledgeCallback:
    """Record each completed trial's (task embedding, extractor, score) in a knowledge base.

    Pass it to ``study.optimize(..., callbacks=[KnowledgeCallback(...)])``. For every
    COMPLETE trial, the score of its extractor on the task is kept when it beats the one
    recorded (per task and extractor, the best score wins), together with that trial's
    other parameters (the best hyper-parameters) in the task's provenance (layout: see
    :mod:`t2v_automl.integration.optuna`). Failed, pruned and other unfinished trials are
    ignored.

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
        In a multi-objective study without ``objective_index`` it gets the list of all
        the trial's values (e.g. ``lambda v: v[0]``).
    task_name : str, optional
        The task's name in the base. Default: ``embedding.task_name``. All studies of one
        task should use the same name; a name already taken by a task with another
        embedding is refused.
    timeout : float, optional
        Seconds to wait for the file lock (default: forever).
    errors : {"raise", "warn"}, default="raise"
        What to do with a trial that cannot be recorded (a score outside [0, 1], a
        non-string extractor, a name clash, a minimisation study without
        ``score_transform``, a multi-objective study with neither ``objective_index`` nor
        ``score_transform``): raise (stopping ``optimize``), or warn and skip it.
        Nothing is written in either case.
    objective_index : int, optional
        In a multi-objective study, the 0-based position of the objective whose value is
        recorded (the accuracy of ``directions=["maximize", "minimize"]`` = accuracy,
        latency: 0). A multi-objective study needs it or ``score_transform``; without
        either, every trial raises (or warns, with ``errors="warn"``) and nothing is
        written. The knowledge base keeps one score per (task, extractor): the best of
        that objective, not a Pareto front; the provenance entry keeps all the values
        of that trial under ``"values"``.

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
        objective_index: int | None = None,
    ) -> None:
        self._param = check_param(param)
        self._score_transform = check_transform(score_transform)
        self._objective_index = check_objective_index(objective_index)
        if errors not in ("raise", "warn"):
            raise InvalidParameterError(f"errors must be 'raise' or 'warn'; got {errors!r}.")
        self._errors = errors
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, numbers.Real) or timeout < 0):
            raise InvalidParameterError(f"timeout must be a number >= 0 or None; got {timeout!r}.")
        self._timeout = None if timeout is None else float(timeout)
        self._thread_lock = threading.Lock()
        values, meta, emb = resolve_embedding(embedding, None, None, "embedding",
                                              no_embedder=EMBED_FIRST)
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
               ) -> tuple[str, float, dict[str, Any], list[float], str, int, float | None] | None:
        """Validate a trial; return (extractor, score, params, values, study, number, secs)."""
        to_score = score_rule(study.directions, self._objective_index, self._score_transform,
                              "KnowledgeCallback")
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
        if trial.values is None:  # pragma: no cover - a COMPLETE trial has values
            return None
        values = [float(v) for v in trial.values]
        score = to_score(values)
        if not (math.isfinite(score) and 0.0 <= score <= 1.0):
            shown = values[0] if len(values) == 1 else values
            raise KnowledgeBaseError(
                f"trial {trial.number} (extractor {ext!r}) has score {score!r} (objective "
                f"value{'s' if len(values) > 1 else ''} {shown!r}); knowledge-base scores lie "
                f"in [0, 1], higher = better. Pass score_transform to map objective values "
                f"to such scores"
                + ("" if len(values) == 1 else
                   ", or objective_index=<the position of the accuracy-like objective>")
                + "."
            )
        params = {k: v for k, v in trial.params.items() if k != self._param}
        try:
            params = json.loads(json.dumps(params, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise KnowledgeBaseError(
                f"the parameters of trial {trial.number} are not JSON-serialisable: {exc}"
            ) from exc
        secs = trial.duration.total_seconds() if trial.duration is not None else None
        return ext, score, params, values, study.study_name, int(trial.number), secs

    def _record(self, kb: KnowledgeBase, ext: str, score: float, params: dict[str, Any],
                values: list[float], study_name: str, number: int, secs: float | None
                ) -> None:
        """Write one result into ``kb`` with a single (all-or-nothing) mutation."""
        if len(values) == 1:
            value: float | None = values[0]
        else:
            value = values[self._objective_index] if self._objective_index is not None \
                else None
        best_entry: dict[str, Any] = {"score": score, "value": value, "params": params,
                                      "param": self._param, "study": study_name,
                                      "trial": number}
        if len(values) > 1:  # JSON has no inf: an infinite value is kept as None
            best_entry["values"] = [v if math.isfinite(v) else None for v in values]
            if self._objective_index is not None:
                best_entry["objective_index"] = self._objective_index
        name = self._task_name
        if name not in kb:
            prov: dict[str, Any] = {PROVENANCE_KEY: {"best": {ext: best_entry}}}
            if self._fingerprint:
                prov[PROVENANCE_TASK_FINGERPRINT] = self._fingerprint
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
