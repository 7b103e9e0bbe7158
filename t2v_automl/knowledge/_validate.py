"""Validation of what enters a knowledge base: names, JSON dicts, scores, times, vectors.

Pure functions: none of them touches a :class:`~t2v_automl.knowledge.KnowledgeBase`; the
table (:mod:`t2v_automl.knowledge._table`) calls them before it changes anything, so an
error always leaves a base as it was. Also :class:`Row`, one task's entry, and
:func:`reconcile_row`, which merges two entries of one task.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    KnowledgeBaseError,
)

__all__ = [
    "EmbeddingLike", "Row", "as_vector", "check_cells", "check_meta", "check_name",
    "check_extra", "check_nonneg", "check_score", "check_table", "check_unique", "json_copy",
    "json_dict", "reconcile_row", "selection_indices", "task_index", "Table",
]

#: What the table accepts as one embedding: an :class:`Embedding` (whose meta is checked)
#: or a plain 1-D array taken to be made like the base's.
EmbeddingLike = Embedding | np.ndarray | Sequence[float]


def check_name(name: Any, what: str) -> str:
    """``name`` if it is a non-empty str; :class:`InvalidInputTypeError` otherwise.

    Parameters
    ----------
    name : object
        The candidate name.
    what : str
        What the name names, for the error message (e.g. ``"a task name"``).

    Returns
    -------
    str
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputTypeError(
            f"{what} must be a non-empty str; got {name!r} ({type(name).__name__})."
        )
    return name


def check_unique(names: Sequence[str], what: str) -> None:
    """Raise :class:`KnowledgeBaseError` naming the duplicates if ``names`` repeats one.

    Parameters
    ----------
    names : sequence of str
    what : str
        Kind of name, for the error message (``"task"``, ``"extractor"``...).
    """
    seen: set[str] = set()
    dup_set: set[str] = set()
    for x in names:
        if x in seen:
            dup_set.add(x)
        seen.add(x)
    dups = sorted(dup_set)
    if dups:
        raise KnowledgeBaseError(
            f"{what} names must be unique; duplicated: {dups}. Rename them or drop the "
            f"duplicates."
        )


def json_copy(obj: Any, what: str) -> Any:
    """Deep copy of ``obj`` through strict JSON; raise if it is not JSON-serialisable.

    Parameters
    ----------
    obj : object
    what : str
        What ``obj`` is, for the error message.

    Returns
    -------
    object
        The copy (dicts, lists, str, int, float, bool, None).

    Raises
    ------
    KnowledgeBaseError
        ``obj`` holds something JSON cannot represent (a path, a numpy number, NaN...).
    """
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise KnowledgeBaseError(
            f"{what} must be JSON-serialisable (str, int, finite float, bool, None, lists "
            f"and dicts with str keys); {exc}. Convert the offending values (e.g. paths to "
            f"str, numpy numbers with float()/int(), NaN to None)."
        ) from exc


def json_dict(obj: Any, what: str) -> dict[str, Any]:
    """A JSON deep copy of the mapping ``obj`` (``{}`` for None).

    Parameters
    ----------
    obj : mapping or None
    what : str
        What ``obj`` is, for the error message.

    Returns
    -------
    dict
    """
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise InvalidInputTypeError(
            f"{what} must be a mapping (dict); got {type(obj).__name__}."
        )
    out = json_copy(dict(obj), what)
    if not isinstance(out, dict):  # pragma: no cover - a Mapping always gives a dict
        raise KnowledgeBaseError(f"{what} must be a dict.")
    return out


def _as_float(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputTypeError(
            f"{what} must be a real number; got {value!r} ({type(value).__name__})."
        ) from exc


def check_score(value: Any, what: str) -> float:
    """``value`` as a float in [0, 1]; :class:`KnowledgeBaseError` otherwise."""
    v = _as_float(value, what)
    if not (0.0 <= v <= 1.0):
        raise KnowledgeBaseError(
            f"{what} must lie in [0, 1]; got {v!r}. Scores are accuracies (or another "
            f"metric scaled to [0, 1]); to mark a score missing, leave the extractor out."
        )
    return v


def check_nonneg(value: Any, what: str) -> float:
    """``value`` as a finite float >= 0; :class:`KnowledgeBaseError` otherwise."""
    v = _as_float(value, what)
    if not (math.isfinite(v) and v >= 0.0):
        raise KnowledgeBaseError(
            f"{what} must be a finite number >= 0; got {v!r}. Leave it out to mark it missing."
        )
    return v


def check_meta(expected: EmbeddingMeta, got: EmbeddingMeta, what: str) -> None:
    """Raise :class:`IncompatibleEmbeddingError` unless ``got`` was made like ``expected``."""
    if expected.compat_key() != got.compat_key():
        raise IncompatibleEmbeddingError(
            f"{what} was made differently from the knowledge base's embeddings ("
            f"{expected.describe_difference(got)}; knowledge base first, received second). "
            f"Embed the task with the settings the knowledge base was built with, or start a "
            f"new knowledge base for these settings."
        )


def as_vector(value: EmbeddingLike, meta: EmbeddingMeta, what: str) -> np.ndarray:
    """Validate one embedding against ``meta``; return a fresh finite float64 vector.

    Parameters
    ----------
    value : Embedding or array-like of shape (meta.dim,)
    meta : EmbeddingMeta
        How the set ``value`` enters was made.
    what : str
        What ``value`` is, for the error message.

    Returns
    -------
    ndarray of shape (meta.dim,)
    """
    if isinstance(value, Embedding):
        check_meta(meta, value.meta, what)
        arr = value.values
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputTypeError(
                f"{what} must be an Embedding or a 1-D array of numbers; got "
                f"{type(value).__name__}."
            ) from exc
    arr = np.array(arr, dtype=np.float64, copy=True)
    if arr.ndim != 1:
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        else:
            raise IncompatibleEmbeddingError(
                f"{what} must be 1-D of length {meta.dim}; got an array of shape {arr.shape}."
            )
    if arr.shape[0] != meta.dim:
        raise IncompatibleEmbeddingError(
            f"{what} has {arr.shape[0]} values; the knowledge base expects dim={meta.dim} "
            f"(probe {meta.probe!r}, method {meta.method!r}). Embed the task with the same "
            f"settings as the knowledge base."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise KnowledgeBaseError(
            f"{what} has {int(bad.sum())} non-finite value(s) (NaN or inf), first at index "
            f"{int(np.flatnonzero(bad)[0])}. A failed embedding must not enter the knowledge "
            f"base: re-embed the task (more images, fewer classes) or leave it out."
        )
    return arr


@dataclass
class Row:
    """One validated task entry, ready to be written into the matrices."""

    name: str
    embedding: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    eval_time: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    embed_time: float = math.nan


def check_cells(
    task_name: str, scores: Mapping[str, Any], stderr: Mapping[str, Any] | None,
    eval_time: Mapping[str, Any] | None,
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Validated score, stderr and eval_time cells of one task.

    Parameters
    ----------
    task_name : str
        For the error messages.
    scores : mapping of str to float
        Extractor name -> score in [0, 1].
    stderr, eval_time : mapping of str to float or None
        Values >= 0, only for extractors that have a score.

    Returns
    -------
    (dict, dict, dict)
        Scores, stderr and eval_time as plain float dicts.
    """
    if not isinstance(scores, Mapping):
        raise InvalidInputTypeError(
            f"scores must be a mapping extractor name -> score; got "
            f"{type(scores).__name__}."
        )
    sc = {check_name(e, "an extractor name"):
          check_score(v, f"score of extractor {e!r} on task {task_name!r}")
          for e, v in scores.items()}
    out = [sc]
    for arg, what in ((stderr, "stderr"), (eval_time, "eval_time")):
        if arg is None:
            out.append({})
            continue
        if not isinstance(arg, Mapping):
            raise InvalidInputTypeError(
                f"{what} must be a mapping extractor name -> value; got "
                f"{type(arg).__name__}."
            )
        extra_keys = sorted(set(arg) - set(sc))
        if extra_keys:
            raise KnowledgeBaseError(
                f"{what} names extractors without a score on task {task_name!r}: "
                f"{extra_keys}; give their scores too, or drop them from {what}."
            )
        out.append({e: check_nonneg(v, f"{what} of extractor {e!r} on task "
                                       f"{task_name!r}") for e, v in arg.items()})
    return out[0], out[1], out[2]


def check_extra(
    task_name: str, extra: Mapping[str, EmbeddingLike] | None,
    existing: Mapping[str, EmbeddingMeta],
) -> tuple[dict[str, np.ndarray], dict[str, EmbeddingMeta]]:
    """Validated extra-embedding rows of one task, plus the metas of sets that are new.

    Parameters
    ----------
    task_name : str
        For the error messages.
    extra : mapping of str to Embedding or array-like, or None
        Set name -> embedding of the task in that set.
    existing : mapping of str to EmbeddingMeta
        The sets the base already has, with their metas.

    Returns
    -------
    rows : dict of str to ndarray
    new_sets : dict of str to EmbeddingMeta
    """
    rows: dict[str, np.ndarray] = {}
    new_sets: dict[str, EmbeddingMeta] = {}
    if extra is None:
        return rows, new_sets
    if not isinstance(extra, Mapping):
        raise InvalidInputTypeError(
            f"extra_embeddings must be a mapping set name -> Embedding; got "
            f"{type(extra).__name__}."
        )
    for name, value in extra.items():
        check_name(name, "an extra embedding set name")
        what = f"extra embedding {name!r} of task {task_name!r}"
        if name in existing:
            set_meta = existing[name]
        elif isinstance(value, Embedding):
            set_meta = value.meta
            new_sets[name] = set_meta
        else:
            raise KnowledgeBaseError(
                f"{what} starts a new embedding set, so it must be an Embedding (which "
                f"carries its metadata); got {type(value).__name__}."
            )
        rows[name] = as_vector(value, set_meta, what)
    return rows, new_sets


def _matrix(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    if value is None:
        return np.full(shape, np.nan)
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise InvalidInputTypeError(f"{what} must be an array of numbers.") from exc
    if arr.size == 0 and int(np.prod(shape)) == 0:
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise KnowledgeBaseError(
            f"{what} must have shape {shape} (tasks x ...); got {arr.shape}."
        )
    return arr


@dataclass
class Table:
    """The validated content of a knowledge base (what its constructor stores)."""

    tasks: list[str]
    extractors: list[str]
    emb: np.ndarray
    scores: np.ndarray
    stderr: np.ndarray
    eval_time: np.ndarray
    embed_time: np.ndarray
    provenance: list[dict[str, Any]]
    extractor_info: dict[str, dict[str, Any]]
    extra: dict[str, tuple[EmbeddingMeta, np.ndarray]]


def check_table(
    meta: EmbeddingMeta, task_names: Sequence[str], embeddings: Any,
    extractor_names: Sequence[str], scores: Any, stderr: Any, eval_time: Any,
    embed_time: Any, provenance: Sequence[Mapping[str, Any]] | None,
    extractor_info: Mapping[str, Mapping[str, Any]] | None,
    extra_embeddings: Mapping[str, tuple[EmbeddingMeta, Any]] | None,
) -> Table:
    """Validate the constructor arguments of a knowledge base (see its docstring).

    Returns
    -------
    Table
        Fresh float64 arrays and JSON copies, nothing shared with the arguments.

    Raises
    ------
    KnowledgeBaseError, InvalidInputTypeError
        The first problem found, naming the task and extractor concerned.
    """
    if not isinstance(meta, EmbeddingMeta):
        raise InvalidInputTypeError(
            f"meta must be an EmbeddingMeta; got {type(meta).__name__}. Use "
            f"embedding.meta of an Embedding made with the settings of this base."
        )
    tasks = [check_name(t, "a task name") for t in task_names]
    extractors = [check_name(e, "an extractor name") for e in extractor_names]
    check_unique(tasks, "task")
    check_unique(extractors, "extractor")
    n, m = len(tasks), len(extractors)
    if embeddings is None and n:
        raise KnowledgeBaseError(
            f"{n} task names were given without embeddings; pass an array of shape "
            f"({n}, {meta.dim})."
        )
    emb = _matrix(embeddings, (n, meta.dim), "embeddings")
    if not np.isfinite(emb).all():
        bad = np.argwhere(~np.isfinite(emb))[0]
        raise KnowledgeBaseError(
            f"embeddings must be finite; task {tasks[bad[0]]!r} has a NaN or inf at "
            f"index {int(bad[1])}. Remove or re-embed that task."
        )
    sc = _matrix(scores, (n, m), "scores")
    ok = np.isnan(sc) | ((sc >= 0.0) & (sc <= 1.0))
    if not ok.all():
        i, j = np.argwhere(~ok)[0]
        raise KnowledgeBaseError(
            f"scores must lie in [0, 1] (NaN = missing); task {tasks[i]!r}, extractor "
            f"{extractors[j]!r} has {sc[i, j]!r}."
        )
    se = _matrix(stderr, (n, m), "stderr")
    et = _matrix(eval_time, (n, m), "eval_time")
    for arr, what in ((se, "stderr"), (et, "eval_time")):
        ok = np.isnan(arr) | (np.isfinite(arr) & (arr >= 0.0))
        if not ok.all():
            i, j = np.argwhere(~ok)[0]
            raise KnowledgeBaseError(
                f"{what} must be finite and >= 0 (NaN = missing); task {tasks[i]!r}, "
                f"extractor {extractors[j]!r} has {arr[i, j]!r}."
            )
        orphan = ~np.isnan(arr) & np.isnan(sc)
        if orphan.any():
            i, j = np.argwhere(orphan)[0]
            raise KnowledgeBaseError(
                f"{what} is given for task {tasks[i]!r}, extractor {extractors[j]!r} but "
                f"the score is missing; record a {what} only with its score."
            )
    emt = _matrix(embed_time, (n,), "embed_time")
    ok = np.isnan(emt) | (np.isfinite(emt) & (emt >= 0.0))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise KnowledgeBaseError(
            f"embed_time must be finite and >= 0 (NaN = missing); task {tasks[i]!r} has "
            f"{emt[i]!r}."
        )
    if provenance is None:
        prov: list[dict[str, Any]] = [{} for _ in range(n)]
    else:
        if len(provenance) != n:
            raise KnowledgeBaseError(
                f"provenance must have one dict per task ({n}); got {len(provenance)}."
            )
        prov = [json_dict(p, f"provenance of task {t!r}")
                for t, p in zip(tasks, provenance, strict=True)]
    info: dict[str, dict[str, Any]] = {}
    for name, d in (extractor_info or {}).items():
        if name not in extractors:
            raise KnowledgeBaseError(
                f"extractor_info names {name!r}, which is not among the extractors "
                f"{extractors}; add the extractor first."
            )
        info[name] = json_dict(d, f"extractor_info[{name!r}]")
    extra: dict[str, tuple[EmbeddingMeta, np.ndarray]] = {}
    for name, pair in (extra_embeddings or {}).items():
        check_name(name, "an extra embedding set name")
        try:
            emeta, values = pair
        except (TypeError, ValueError) as exc:
            raise InvalidInputTypeError(
                f"extra_embeddings[{name!r}] must be a (EmbeddingMeta, array) pair."
            ) from exc
        if not isinstance(emeta, EmbeddingMeta):
            raise InvalidInputTypeError(
                f"extra_embeddings[{name!r}] must start with an EmbeddingMeta; got "
                f"{type(emeta).__name__}."
            )
        arr = _matrix(values, (n, emeta.dim), f"extra_embeddings[{name!r}]")
        finite = np.isfinite(arr)
        missing = np.isnan(arr).all(axis=1)
        bad_rows = ~(finite.all(axis=1) | missing)
        if bad_rows.any():
            i = int(np.flatnonzero(bad_rows)[0])
            raise KnowledgeBaseError(
                f"extra embedding set {name!r}: task {tasks[i]!r} has non-finite values; "
                f"a row must be all finite, or all NaN for a task without that embedding."
            )
        extra[name] = (emeta, arr)
    return Table(tasks, extractors, emb, sc, se, et, emt, prov, info, extra)


def selection_indices(sel: Any, tasks: list[str]) -> np.ndarray:
    """Row indices selected by a boolean mask, task names or row indices.

    Parameters
    ----------
    sel : array-like of bool of shape (n_tasks,), str, iterable of str, or ints
        As :meth:`KnowledgeBase.subset` takes it.
    tasks : list of str
        The base's task names, in row order.

    Returns
    -------
    ndarray of intp
        Row indices, in the order of the names or indices given.
    """
    n = len(tasks)
    if isinstance(sel, str):
        sel = [sel]
    is_mask = (isinstance(sel, np.ndarray) and sel.dtype == bool) or (
        isinstance(sel, Sequence) and len(sel) > 0
        and all(isinstance(x, bool | np.bool_) for x in sel))
    if is_mask:
        mask = np.asarray(sel, dtype=bool)
        if mask.shape != (n,):
            raise KnowledgeBaseError(
                f"a task mask must have shape ({n},); got {mask.shape}."
            )
        return np.flatnonzero(mask)
    if (isinstance(sel, np.ndarray) and sel.dtype.kind in "iu") or (
            isinstance(sel, Sequence) and len(sel) > 0
            and all(isinstance(x, int | np.integer) for x in sel)):
        idx = np.asarray(sel, dtype=np.intp).reshape(-1)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise KnowledgeBaseError(
                f"task indices must lie in [-{n}, {n}); got {idx.min()}..{idx.max()}."
            )
        idx = idx % max(n, 1)
        if len(set(idx.tolist())) != idx.size:
            raise KnowledgeBaseError("task indices given to subset() must be unique.")
        return idx
    names = list(sel)
    for t in names:
        if not isinstance(t, str):
            raise InvalidInputTypeError(
                f"subset() takes a boolean mask or task names; got an item {t!r} "
                f"({type(t).__name__})."
            )
    check_unique(names, "selected task")
    return np.array([task_index(tasks, t) for t in names], dtype=np.intp)


def task_index(tasks: list[str], task_name: str) -> int:
    """Row index of ``task_name`` in ``tasks``; :class:`KnowledgeBaseError` if it is absent."""
    try:
        return tasks.index(task_name)
    except ValueError:
        shown = tasks[:5] + (["..."] if len(tasks) > 5 else [])
        raise KnowledgeBaseError(
            f"no task named {task_name!r} in the knowledge base ({len(tasks)} tasks: "
            f"{shown}); add it first with add()."
        ) from None


def reconcile_row(mine: Row, theirs: Row, overwrite: bool, conflicts: list[str]) -> None:
    """Fill ``mine`` (a task of this base) with the cells of ``theirs`` (same task, other base).

    Cells only ``theirs`` has are copied; where both differ, the difference is appended to
    ``conflicts`` and ``theirs`` wins only with ``overwrite``.

    Parameters
    ----------
    mine : Row
        Changed in place.
    theirs : Row
        The same task in the other base.
    overwrite : bool
        Take ``theirs``'s value where both differ.
    conflicts : list of str
        Receives one description per differing value.
    """
    if not np.array_equal(mine.embedding, theirs.embedding):
        conflicts.append(f"embedding of task {theirs.name!r}")
        if overwrite:
            mine.embedding = theirs.embedding
    for mine_d, their_d, what in (
        (mine.scores, theirs.scores, "score"),
        (mine.stderr, theirs.stderr, "stderr"),
        (mine.eval_time, theirs.eval_time, "eval_time"),
    ):
        for e, v in their_d.items():
            if e in mine_d and mine_d[e] != v:
                conflicts.append(f"{what} of {e!r} on task {theirs.name!r} "
                                 f"({mine_d[e]!r} vs {v!r})")
                if not overwrite:
                    continue
            mine_d[e] = v
    for s, ev in theirs.extra.items():
        if s in mine.extra and not np.array_equal(mine.extra[s], ev):
            conflicts.append(f"extra embedding {s!r} of task {theirs.name!r}")
            if not overwrite:
                continue
        mine.extra[s] = ev
    if not math.isnan(theirs.embed_time):
        if not math.isnan(mine.embed_time) and mine.embed_time != theirs.embed_time:
            conflicts.append(f"embed_time of task {theirs.name!r}")
        if overwrite or math.isnan(mine.embed_time):
            mine.embed_time = theirs.embed_time
    for key, v in theirs.provenance.items():
        if key in mine.provenance and mine.provenance[key] != v:
            conflicts.append(f"provenance[{key!r}] of task {theirs.name!r}")
            if not overwrite:
                continue
        mine.provenance[key] = v
