"""KnowledgeBase: the ground truth for choosing a feature extractor.

A knowledge base holds, for every known *task*:

- its name (unique) and provenance (a JSON dict: where the task came from);
- its embedding, one row of an ``(n_tasks, dim)`` float64 matrix; all embeddings share one
  :class:`~t2v_automl.embedding.EmbeddingMeta` (they were made the same way);
- optionally rows of extra named embedding sets (e.g. ``"domain"``, ``"label_stat"``: other
  cheap task embeddings kept for baselines), each set with its own meta; a task without an
  entry in a set has a row of NaN there;
- its row of the tasks x extractors score matrix (NaN = not measured), with matching
  standard-error and evaluation-time (seconds) matrices;
- optionally its embedding time (seconds).

Extractors have unique names and an optional JSON info dict each.

The class is about storage only: choosing an extractor from it happens elsewhere.

File format
-----------
One ``.npz`` file written with :func:`numpy.savez` (no pickle; it is read back with
``allow_pickle=False``, so loading a file shared by somebody else cannot run code). Its
arrays are

``__meta__``
    uint8, 1-D: UTF-8 JSON metadata (see below).
``embeddings``
    float64 ``(n_tasks, dim)``.
``scores``, ``stderr``, ``eval_time``
    float64 ``(n_tasks, n_extractors)``; NaN = missing.
``embed_time``
    float64 ``(n_tasks,)``; NaN = missing.
``extra_0``, ``extra_1``, ...
    float64 ``(n_tasks, dim_i)``: the extra embedding sets, in the order of the JSON
    ``"extra"`` list.

The JSON object has the keys ``format`` (``"t2v-automl.knowledge-base"``),
``format_version`` (:data:`FORMAT_VERSION`), ``created_by``, ``meta``
(:meth:`EmbeddingMeta.to_dict`), ``task_names``, ``extractor_names``, ``provenance`` (one
dict per task), ``extractor_info`` (name -> dict), ``extra`` (list of ``{"name", "key",
"meta"}``), ``arrays`` (the sorted array keys besides ``__meta__``) and ``sha256``: the
sha256 of the canonical JSON without the ``sha256`` key followed by, for each array key in
sorted order, the key, dtype, shape and raw bytes. A truncated, corrupted or edited file
fails that check (or the zip's own CRC) and is refused with :class:`KnowledgeBaseError`.

Writes are atomic: the file is written to a temporary file in the same directory,
fsync-ed and moved into place with :func:`os.replace`. Several processes may add entries
to one file through :meth:`KnowledgeBase.locked_update`, which holds an exclusive
``fcntl.flock`` on a sidecar ``<path>.lock`` file while it loads, yields and saves.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.resources
import io
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    KnowledgeBaseError,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KnowledgeBase", "FORMAT_NAME", "FORMAT_VERSION", "DEFAULT_KNOWLEDGE_FILE"]

#: Value of the ``format`` field of the JSON metadata.
FORMAT_NAME = "t2v-automl.knowledge-base"
#: Version of the file format written by this module (and the only one it reads).
FORMAT_VERSION = 1
#: File name of the knowledge base shipped as package data (``t2v_automl/data/``).
DEFAULT_KNOWLEDGE_FILE = "knowledge_default.npz"

_META_KEY = "__meta__"
_MATRIX_KEYS = ("embeddings", "scores", "stderr", "eval_time", "embed_time")

EmbeddingLike = Embedding | np.ndarray | Sequence[float]


def _default_resource() -> Traversable:
    """Where the packaged default knowledge base lives (monkeypatched in tests)."""
    return importlib.resources.files("t2v_automl").joinpath("data", DEFAULT_KNOWLEDGE_FILE)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("t2v-automl")
    except Exception:  # noqa: BLE001 - informative field only
        return "unknown"


# ----------------------------------------------------------------------------------------
# Validation helpers (pure: they never touch a KnowledgeBase)
# ----------------------------------------------------------------------------------------


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidInputTypeError(
            f"{what} must be a non-empty str; got {name!r} ({type(name).__name__})."
        )
    return name


def _json_copy(obj: Any, what: str) -> Any:
    """Deep copy of ``obj`` through strict JSON; raise if it is not JSON-serialisable."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise KnowledgeBaseError(
            f"{what} must be JSON-serialisable (str, int, finite float, bool, None, lists "
            f"and dicts with str keys); {exc}. Convert the offending values (e.g. paths to "
            f"str, numpy numbers with float()/int(), NaN to None)."
        ) from exc


def _json_dict(obj: Any, what: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise InvalidInputTypeError(
            f"{what} must be a mapping (dict); got {type(obj).__name__}."
        )
    out = _json_copy(dict(obj), what)
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


def _check_score(value: Any, what: str) -> float:
    v = _as_float(value, what)
    if not (0.0 <= v <= 1.0):
        raise KnowledgeBaseError(
            f"{what} must lie in [0, 1]; got {v!r}. Scores are accuracies (or another "
            f"metric scaled to [0, 1]); to mark a score missing, leave the extractor out."
        )
    return v


def _check_nonneg(value: Any, what: str) -> float:
    v = _as_float(value, what)
    if not (math.isfinite(v) and v >= 0.0):
        raise KnowledgeBaseError(
            f"{what} must be a finite number >= 0; got {v!r}. Leave it out to mark it missing."
        )
    return v


def _meta_mismatch(expected: EmbeddingMeta, got: EmbeddingMeta, what: str) -> None:
    if expected.compat_key() != got.compat_key():
        raise IncompatibleEmbeddingError(
            f"{what} was made differently from the knowledge base's embeddings ("
            f"{expected.describe_difference(got)}; knowledge base first, received second). "
            f"Embed the task with the settings the knowledge base was built with, or start a "
            f"new knowledge base for these settings."
        )


def _vector(value: EmbeddingLike, meta: EmbeddingMeta, what: str) -> np.ndarray:
    """Validate one embedding against ``meta``; return a fresh finite float64 vector."""
    if isinstance(value, Embedding):
        _meta_mismatch(meta, value.meta, what)
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
class _Row:
    """One validated task entry, ready to be written into the matrices."""

    name: str
    embedding: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)
    stderr: dict[str, float] = field(default_factory=dict)
    eval_time: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    embed_time: float = math.nan


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - not supported on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _real_target(path: str | os.PathLike[str]) -> Path:
    """``path`` with symbolic links resolved: the file that is really read and replaced.

    Writers that name one knowledge base through different links (``~/kb.npz`` ->
    ``/shared/kb.npz``) must lock the same sidecar file and replace the real file, not the
    link; otherwise their updates diverge and some are lost.
    """
    return Path(os.path.realpath(os.fspath(path)))


#: One lock per knowledge-base file for the threads of this process. ``flock`` already
#: excludes threads that open the lock file separately on a local file system, but where
#: it is emulated with POSIX record locks (NFS), locks belong to the process and threads
#: would not exclude each other.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(target: Path) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(str(target), threading.Lock())


def _fresh_thread_locks() -> None:
    """In a forked child only the forking thread survives: locks held by others are void."""
    global _THREAD_LOCKS_GUARD
    _THREAD_LOCKS_GUARD = threading.Lock()
    _THREAD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_thread_locks)


def _checksum(meta_doc: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of the canonical JSON (without ``sha256``) and of every array but ``__meta__``."""
    doc = {k: v for k, v in meta_doc.items() if k != "sha256"}
    h = hashlib.sha256()
    h.update(json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())
    for key in sorted(arrays):
        if key == _META_KEY:
            continue
        a = np.ascontiguousarray(arrays[key])
        h.update(b"\0" + key.encode() + b"\0" + a.dtype.str.encode() + b"\0")
        h.update(repr(tuple(int(s) for s in a.shape)).encode() + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# KnowledgeBase
# ----------------------------------------------------------------------------------------


class KnowledgeBase:
    """Tasks, their embeddings and the scores of every extractor on them.

    Parameters
    ----------
    meta : EmbeddingMeta
        How every embedding of the base was made (shared by all rows).
    task_names : sequence of str, optional
        Unique task names, one per row.
    embeddings : array-like of shape (n_tasks, meta.dim), optional
        Finite embedding rows. Required when ``task_names`` is not empty.
    extractor_names : sequence of str, optional
        Unique extractor names, one per column of the score matrices.
    scores : array-like of shape (n_tasks, n_extractors), optional
        Scores in [0, 1]; NaN = not measured. Default: all NaN.
    stderr : array-like of shape (n_tasks, n_extractors), optional
        Standard errors of the scores (>= 0, NaN = unknown); only where a score exists.
    eval_time : array-like of shape (n_tasks, n_extractors), optional
        Evaluation times in seconds (>= 0, NaN = unknown); only where a score exists.
    embed_time : array-like of shape (n_tasks,), optional
        Embedding time per task in seconds (>= 0, NaN = unknown).
    provenance : sequence of dict, optional
        One JSON-serialisable dict per task. Default: empty dicts.
    extractor_info : mapping of str to dict, optional
        JSON-serialisable info per extractor (architecture, training data...). Keys must be
        extractor names.
    extra_embeddings : mapping of str to (EmbeddingMeta, array of shape (n_tasks, dim)), optional
        Extra named embedding sets; a row of all NaN marks a task without that embedding.

    Raises
    ------
    KnowledgeBaseError
        When the arrays disagree in shape or hold invalid values, or names are not unique.

    Notes
    -----
    Mutating methods validate everything before they change anything, so an error leaves
    the base as it was. Accessors return copies.
    """

    def __init__(
        self,
        meta: EmbeddingMeta,
        *,
        task_names: Sequence[str] = (),
        embeddings: Any = None,
        extractor_names: Sequence[str] = (),
        scores: Any = None,
        stderr: Any = None,
        eval_time: Any = None,
        embed_time: Any = None,
        provenance: Sequence[Mapping[str, Any]] | None = None,
        extractor_info: Mapping[str, Mapping[str, Any]] | None = None,
        extra_embeddings: Mapping[str, tuple[EmbeddingMeta, Any]] | None = None,
    ) -> None:
        if not isinstance(meta, EmbeddingMeta):
            raise InvalidInputTypeError(
                f"meta must be an EmbeddingMeta; got {type(meta).__name__}. Use "
                f"embedding.meta of an Embedding made with the settings of this base."
            )
        tasks = [_check_name(t, "a task name") for t in task_names]
        extractors = [_check_name(e, "an extractor name") for e in extractor_names]
        self._check_unique(tasks, "task")
        self._check_unique(extractors, "extractor")
        n, m = len(tasks), len(extractors)

        def matrix(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
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

        if embeddings is None and n:
            raise KnowledgeBaseError(
                f"{n} task names were given without embeddings; pass an array of shape "
                f"({n}, {meta.dim})."
            )
        emb = matrix(embeddings, (n, meta.dim), "embeddings")
        if not np.isfinite(emb).all():
            bad = np.argwhere(~np.isfinite(emb))[0]
            raise KnowledgeBaseError(
                f"embeddings must be finite; task {tasks[bad[0]]!r} has a NaN or inf at "
                f"index {int(bad[1])}. Remove or re-embed that task."
            )
        sc = matrix(scores, (n, m), "scores")
        ok = np.isnan(sc) | ((sc >= 0.0) & (sc <= 1.0))
        if not ok.all():
            i, j = np.argwhere(~ok)[0]
            raise KnowledgeBaseError(
                f"scores must lie in [0, 1] (NaN = missing); task {tasks[i]!r}, extractor "
                f"{extractors[j]!r} has {sc[i, j]!r}."
            )
        se = matrix(stderr, (n, m), "stderr")
        et = matrix(eval_time, (n, m), "eval_time")
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
        emt = matrix(embed_time, (n,), "embed_time")
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
            prov = [_json_dict(p, f"provenance of task {t!r}")
                    for t, p in zip(tasks, provenance, strict=True)]
        info: dict[str, dict[str, Any]] = {}
        for name, d in (extractor_info or {}).items():
            if name not in extractors:
                raise KnowledgeBaseError(
                    f"extractor_info names {name!r}, which is not among the extractors "
                    f"{extractors}; add the extractor first."
                )
            info[name] = _json_dict(d, f"extractor_info[{name!r}]")
        extra: dict[str, tuple[EmbeddingMeta, np.ndarray]] = {}
        for name, pair in (extra_embeddings or {}).items():
            _check_name(name, "an extra embedding set name")
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
            arr = matrix(values, (n, emeta.dim), f"extra_embeddings[{name!r}]")
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

        self._meta = meta
        self._tasks = tasks
        self._extractors = extractors
        self._emb = emb
        self._scores = sc
        self._stderr = se
        self._eval_time = et
        self._embed_time = emt
        self._provenance = prov
        self._extractor_info = info
        self._extra = extra

    # ------------------------------------------------------------------ construction

    @classmethod
    def empty(cls, meta: EmbeddingMeta, extractor_names: Sequence[str] = ()) -> KnowledgeBase:
        """A base with no task yet.

        Parameters
        ----------
        meta : EmbeddingMeta
            How the embeddings of this base are (to be) made.
        extractor_names : sequence of str, optional
            Extractor columns to start with (more are added as scores name them).

        Returns
        -------
        KnowledgeBase
        """
        return cls(meta, extractor_names=extractor_names)

    @staticmethod
    def _check_unique(names: Sequence[str], what: str) -> None:
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

    # ------------------------------------------------------------------ accessors

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_name: object) -> bool:
        return task_name in self._tasks

    def __repr__(self) -> str:
        return (
            f"KnowledgeBase(n_tasks={len(self)}, n_extractors={len(self._extractors)}, "
            f"probe={self._meta.probe!r}, method={self._meta.method!r}, dim={self._meta.dim}, "
            f"measured={int(np.isfinite(self._scores).sum())}/{self._scores.size}, "
            f"extra={sorted(self._extra)})"
        )

    @property
    def meta(self) -> EmbeddingMeta:
        """How every embedding of the base was made."""
        return self._meta

    @property
    def task_names(self) -> list[str]:
        """Task names, in row order (a copy)."""
        return list(self._tasks)

    @property
    def extractor_names(self) -> list[str]:
        """Extractor names, in column order (a copy)."""
        return list(self._extractors)

    @property
    def embeddings(self) -> np.ndarray:
        """Embedding matrix, shape ``(n_tasks, dim)``, float64 (a copy)."""
        return self._emb.copy()

    @property
    def scores(self) -> np.ndarray:
        """Score matrix, shape ``(n_tasks, n_extractors)``; NaN = missing (a copy)."""
        return self._scores.copy()

    @property
    def stderr(self) -> np.ndarray:
        """Standard errors of the scores, same shape as :attr:`scores` (a copy)."""
        return self._stderr.copy()

    @property
    def eval_time(self) -> np.ndarray:
        """Evaluation times in seconds, same shape as :attr:`scores` (a copy)."""
        return self._eval_time.copy()

    @property
    def embed_time(self) -> np.ndarray:
        """Embedding time per task in seconds, shape ``(n_tasks,)``; NaN = unknown (a copy)."""
        return self._embed_time.copy()

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """Provenance dict per task, in row order (deep copies)."""
        return copy.deepcopy(self._provenance)

    @property
    def extractor_info(self) -> dict[str, dict[str, Any]]:
        """Info dict per extractor, for those that have one (deep copies)."""
        return copy.deepcopy(self._extractor_info)

    @property
    def extra_names(self) -> list[str]:
        """Names of the extra embedding sets, sorted."""
        return sorted(self._extra)

    def extra_embeddings(self, name: str) -> tuple[EmbeddingMeta, np.ndarray]:
        """One extra embedding set.

        Parameters
        ----------
        name : str
            Set name (see :attr:`extra_names`).

        Returns
        -------
        meta : EmbeddingMeta
        values : ndarray of shape (n_tasks, meta.dim)
            A copy; rows of NaN mark tasks without this embedding.
        """
        if name not in self._extra:
            raise KeyError(
                f"no extra embedding set named {name!r}; the base has {self.extra_names}."
            )
        meta, values = self._extra[name]
        return meta, values.copy()

    def index(self, task_name: str) -> int:
        """Row index of ``task_name``; :class:`KnowledgeBaseError` if it is unknown."""
        try:
            return self._tasks.index(task_name)
        except ValueError:
            shown = self._tasks[:5] + (["..."] if len(self._tasks) > 5 else [])
            raise KnowledgeBaseError(
                f"no task named {task_name!r} in the knowledge base ({len(self)} tasks: "
                f"{shown}); add it first with add()."
            ) from None

    def embedding(self, task_name: str) -> Embedding:
        """The stored embedding of one task as an :class:`Embedding`."""
        i = self.index(task_name)
        return Embedding(self._emb[i].copy(), self._meta, task_name=task_name)

    def scores_frame(self) -> pd.DataFrame:
        """Score matrix as a pandas DataFrame (tasks x extractors).

        Returns
        -------
        pandas.DataFrame
            Index: task names; columns: extractor names; NaN = missing.

        Raises
        ------
        ImportError
            When pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "scores_frame() needs pandas, which is not installed; run `pip install "
                "pandas` or use the .scores array with .task_names / .extractor_names."
            ) from exc
        return pd.DataFrame(self.scores, index=pd.Index(self.task_names, name="task"),
                            columns=pd.Index(self.extractor_names, name="extractor"))

    # ------------------------------------------------------------------ row helpers

    def _row(self, i: int) -> _Row:
        """The stored entry of row ``i`` as a :class:`_Row` (copies)."""
        def cells(arr: np.ndarray) -> dict[str, float]:
            return {e: float(arr[i, j]) for j, e in enumerate(self._extractors)
                    if not np.isnan(arr[i, j])}

        extra = {name: vals[i].copy() for name, (_, vals) in self._extra.items()
                 if not np.isnan(vals[i]).all()}
        return _Row(name=self._tasks[i], embedding=self._emb[i].copy(),
                    scores=cells(self._scores), stderr=cells(self._stderr),
                    eval_time=cells(self._eval_time),
                    provenance=copy.deepcopy(self._provenance[i]), extra=extra,
                    embed_time=float(self._embed_time[i]))

    def _validate_cells(
        self, task_name: str, scores: Mapping[str, Any], stderr: Mapping[str, Any] | None,
        eval_time: Mapping[str, Any] | None,
    ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        if not isinstance(scores, Mapping):
            raise InvalidInputTypeError(
                f"scores must be a mapping extractor name -> score; got "
                f"{type(scores).__name__}."
            )
        sc = {_check_name(e, "an extractor name"):
              _check_score(v, f"score of extractor {e!r} on task {task_name!r}")
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
            out.append({e: _check_nonneg(v, f"{what} of extractor {e!r} on task "
                                            f"{task_name!r}") for e, v in arg.items()})
        return out[0], out[1], out[2]

    def _validate_extra(
        self, task_name: str, extra: Mapping[str, EmbeddingLike] | None,
    ) -> tuple[dict[str, np.ndarray], dict[str, EmbeddingMeta]]:
        """Validated extra rows, plus the metas of sets that do not exist yet."""
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
            _check_name(name, "an extra embedding set name")
            what = f"extra embedding {name!r} of task {task_name!r}"
            if name in self._extra:
                set_meta = self._extra[name][0]
            elif isinstance(value, Embedding):
                set_meta = value.meta
                new_sets[name] = set_meta
            else:
                raise KnowledgeBaseError(
                    f"{what} starts a new embedding set, so it must be an Embedding (which "
                    f"carries its metadata); got {type(value).__name__}."
                )
            rows[name] = _vector(value, set_meta, what)
        return rows, new_sets

    def _apply(self, rows: Sequence[_Row], new_sets: Mapping[str, EmbeddingMeta],
               new_extractors: Sequence[str] = (),
               extractor_info: Mapping[str, dict[str, Any]] | None = None) -> None:
        """Write validated rows (replacing rows of the same name). Cannot fail halfway:
        everything is computed into new arrays first, then assigned."""
        extractors = list(self._extractors)
        for e in list(new_extractors) + [e for r in rows for e in r.scores]:
            if e not in extractors:
                extractors.append(e)
        tasks = list(self._tasks)
        targets: list[int] = []
        for r in rows:
            if r.name in tasks:
                targets.append(tasks.index(r.name))
            else:
                tasks.append(r.name)
                targets.append(len(tasks) - 1)
        n, n_old, m = len(tasks), len(self._tasks), len(extractors)

        def grow(old: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
            new = np.full(shape, np.nan)
            new[tuple(slice(0, s) for s in old.shape)] = old
            return new

        emb = np.zeros((n, self._meta.dim))
        emb[:n_old] = self._emb
        sc, se, et = (grow(a, (n, m)) for a in (self._scores, self._stderr, self._eval_time))
        emt = grow(self._embed_time, (n,))
        prov = list(self._provenance) + [{} for _ in range(n - n_old)]
        extra = {name: (meta, grow(vals, (n, meta.dim)))
                 for name, (meta, vals) in self._extra.items()}
        for name, meta in new_sets.items():
            extra[name] = (meta, np.full((n, meta.dim), np.nan))
        col = {e: j for j, e in enumerate(extractors)}
        for i, r in zip(targets, rows, strict=True):
            emb[i] = r.embedding
            for a, cells in ((sc, r.scores), (se, r.stderr), (et, r.eval_time)):
                a[i] = np.nan
                for e, v in cells.items():
                    a[i, col[e]] = v
            emt[i] = r.embed_time
            prov[i] = r.provenance
            for _, vals in extra.values():
                vals[i] = np.nan
            for name, ev in r.extra.items():
                extra[name][1][i] = ev
        info = dict(self._extractor_info)
        info.update(extractor_info or {})
        # Commit: plain assignments only.
        self._tasks, self._extractors = tasks, extractors
        self._emb, self._scores, self._stderr, self._eval_time = emb, sc, se, et
        self._embed_time, self._provenance, self._extra = emt, prov, extra
        self._extractor_info = info

    # ------------------------------------------------------------------ mutation

    def add(
        self,
        task_name: str,
        embedding: EmbeddingLike,
        scores: Mapping[str, float],
        stderr: Mapping[str, float] | None = None,
        eval_time: Mapping[str, float] | None = None,
        provenance: Mapping[str, Any] | None = None,
        extra_embeddings: Mapping[str, EmbeddingLike] | None = None,
        overwrite: bool = False,
        *,
        embed_time: float | None = None,
    ) -> None:
        """Add one task (or replace it, with ``overwrite=True``).

        Parameters
        ----------
        task_name : str
            Unique task name.
        embedding : Embedding or array-like of shape (dim,)
            The task's embedding. An :class:`Embedding` must have been made like the base's
            (same probe, weights, method, input size, layers and dim); a plain array is
            taken to be so and only its length is checked.
        scores : mapping of str to float
            Extractor name -> score in [0, 1]. Extractors the base does not know yet get a
            new column (NaN for the other tasks); extractors left out are missing (NaN).
        stderr, eval_time : mapping of str to float, optional
            Standard error of each score, and evaluation time in seconds (finite, >= 0);
            only for extractors that appear in ``scores``.
        provenance : mapping, optional
            JSON-serialisable description of where the task came from.
        extra_embeddings : mapping of str to Embedding or array-like, optional
            Entries of extra embedding sets (e.g. ``{"domain": emb}``). A set the base does
            not have yet is created from an :class:`Embedding`'s meta; entries of an
            existing set must be compatible with its meta.
        overwrite : bool, default False
            Replace an existing task of that name entirely (scores it does not name become
            missing). Without it a duplicate name is an error.
        embed_time : float, optional
            Seconds it took to embed the task.

        Raises
        ------
        KnowledgeBaseError
            Duplicate name without ``overwrite``, non-finite embedding values, scores out of
            [0, 1], negative times, non-JSON provenance.
        IncompatibleEmbeddingError
            The embedding was made differently from the base's (the message names how).

        Notes
        -----
        Everything is validated before anything changes: after an error the base is as it
        was.
        """
        _check_name(task_name, "task_name")
        if task_name in self._tasks and not overwrite:
            raise KnowledgeBaseError(
                f"a task named {task_name!r} is already in the knowledge base; pass "
                f"overwrite=True to replace it, add_score() to add scores to it, or choose "
                f"another name."
            )
        vec = _vector(embedding, self._meta, f"the embedding of task {task_name!r}")
        sc, se, et = self._validate_cells(task_name, scores, stderr, eval_time)
        prov = _json_dict(provenance, f"provenance of task {task_name!r}")
        extra, new_sets = self._validate_extra(task_name, extra_embeddings)
        emt = math.nan if embed_time is None else _check_nonneg(
            embed_time, f"embed_time of task {task_name!r}")
        self._apply([_Row(task_name, vec, sc, se, et, prov, extra, emt)], new_sets)

    def add_score(
        self,
        task_name: str,
        extractor: str,
        score: float,
        stderr: float | None = None,
        eval_time: float | None = None,
        overwrite: bool = False,
    ) -> None:
        """Record the score of one extractor on a task already in the base.

        Parameters
        ----------
        task_name : str
            A task of the base.
        extractor : str
            Extractor name; a new one gets a column of NaN for the other tasks.
        score : float
            Score in [0, 1].
        stderr, eval_time : float, optional
            Standard error of the score; evaluation time in seconds.
        overwrite : bool, default False
            Replace a score already recorded; without it that is an error.

        Raises
        ------
        KnowledgeBaseError
            Unknown task, score out of [0, 1], existing score without ``overwrite``.
        """
        i = self.index(task_name)
        _check_name(extractor, "extractor")
        cells = self._validate_cells(
            task_name, {extractor: score},
            None if stderr is None else {extractor: stderr},
            None if eval_time is None else {extractor: eval_time})
        if extractor in self._extractors:
            j = self._extractors.index(extractor)
            old = self._scores[i, j]
            if not np.isnan(old) and not overwrite:
                raise KnowledgeBaseError(
                    f"task {task_name!r} already has a score for extractor {extractor!r} "
                    f"({old!r}); pass overwrite=True to replace it with {cells[0][extractor]!r}."
                )
        row = self._row(i)
        for target, new in zip((row.scores, row.stderr, row.eval_time), cells, strict=True):
            target.pop(extractor, None)
            target.update(new)
        self._apply([row], {})

    def add_extractor(self, name: str, info: Mapping[str, Any] | None = None) -> None:
        """Add an extractor column (all NaN) if it is new, and set its info dict if given.

        Parameters
        ----------
        name : str
            Extractor name.
        info : mapping, optional
            JSON-serialisable description (architecture, training data, source task...);
            replaces the previous info of that extractor.
        """
        _check_name(name, "an extractor name")
        new_info = None if info is None else {name: _json_dict(info, f"info of {name!r}")}
        self._apply([], {}, new_extractors=[name], extractor_info=new_info)

    def merge(self, other: KnowledgeBase, overwrite: bool = False) -> None:
        """Add the content of ``other`` to this base, in place.

        Tasks only in ``other`` are appended. For a task in both, the cells ``other`` has
        (scores, their stderr/eval_time, extra embeddings, embedding time, provenance keys)
        fill the ones this base lacks; the embeddings must be equal.

        Parameters
        ----------
        other : KnowledgeBase
            A base made with compatible embeddings (same probe, weights, method...).
        overwrite : bool, default False
            When both bases hold different values for the same thing (an embedding, a
            score, an extractor's info...), take ``other``'s. Without it that is an error.

        Raises
        ------
        IncompatibleEmbeddingError
            The bases' embeddings (or a shared extra set) were made differently.
        KnowledgeBaseError
            Conflicting values without ``overwrite``. Nothing is changed then.
        """
        if not isinstance(other, KnowledgeBase):
            raise InvalidInputTypeError(
                f"merge() takes a KnowledgeBase; got {type(other).__name__}."
            )
        _meta_mismatch(self._meta, other._meta, "the other knowledge base")
        new_sets: dict[str, EmbeddingMeta] = {}
        for name, (meta, _) in other._extra.items():
            if name in self._extra:
                my_meta = self._extra[name][0]
                if my_meta.compat_key() != meta.compat_key():
                    raise IncompatibleEmbeddingError(
                        f"extra embedding set {name!r} was made differently in the two bases "
                        f"({my_meta.describe_difference(meta)}; this base first). Rename one set "
                        f"or re-embed."
                    )
            else:
                new_sets[name] = meta
        conflicts: list[str] = []

        def note(what: str) -> None:
            conflicts.append(what)

        rows: list[_Row] = []
        for k, name in enumerate(other._tasks):
            theirs = other._row(k)
            if name not in self._tasks:
                rows.append(theirs)
                continue
            mine = self._row(self._tasks.index(name))
            if not np.array_equal(mine.embedding, theirs.embedding):
                note(f"embedding of task {name!r}")
                if overwrite:
                    mine.embedding = theirs.embedding
            for mine_d, their_d, what in (
                (mine.scores, theirs.scores, "score"),
                (mine.stderr, theirs.stderr, "stderr"),
                (mine.eval_time, theirs.eval_time, "eval_time"),
            ):
                for e, v in their_d.items():
                    if e in mine_d and mine_d[e] != v:
                        note(f"{what} of {e!r} on task {name!r} ({mine_d[e]!r} vs {v!r})")
                        if not overwrite:
                            continue
                    mine_d[e] = v
            for s, ev in theirs.extra.items():
                if s in mine.extra and not np.array_equal(mine.extra[s], ev):
                    note(f"extra embedding {s!r} of task {name!r}")
                    if not overwrite:
                        continue
                mine.extra[s] = ev
            if not math.isnan(theirs.embed_time):
                if not math.isnan(mine.embed_time) and mine.embed_time != theirs.embed_time:
                    note(f"embed_time of task {name!r}")
                if overwrite or math.isnan(mine.embed_time):
                    mine.embed_time = theirs.embed_time
            for key, v in theirs.provenance.items():
                if key in mine.provenance and mine.provenance[key] != v:
                    note(f"provenance[{key!r}] of task {name!r}")
                    if not overwrite:
                        continue
                mine.provenance[key] = v
            rows.append(mine)
        info: dict[str, dict[str, Any]] = {}
        for e, d in other._extractor_info.items():
            if e in self._extractor_info and self._extractor_info[e] != d:
                note(f"info of extractor {e!r}")
                if not overwrite:
                    continue
            info[e] = copy.deepcopy(d)
        if conflicts and not overwrite:
            shown = conflicts[:5] + ([f"... {len(conflicts) - 5} more"]
                                     if len(conflicts) > 5 else [])
            raise KnowledgeBaseError(
                f"cannot merge: the bases disagree on {len(conflicts)} value(s): "
                f"{'; '.join(shown)}. Pass overwrite=True to take the other base's values, or "
                f"reconcile them first. Nothing was changed."
            )
        self._apply(rows, new_sets, new_extractors=other._extractors, extractor_info=info)

    def subset(self, task_mask_or_names: Any) -> KnowledgeBase:
        """A new base with only some tasks (all extractors and extra sets are kept).

        Parameters
        ----------
        task_mask_or_names : array-like of bool of shape (n_tasks,), iterable of str, or ints
            A boolean mask over the rows, task names, or row indices (the new base takes
            the order of the names or indices).

        Returns
        -------
        KnowledgeBase
            An independent copy.
        """
        sel = task_mask_or_names
        if isinstance(sel, str):
            sel = [sel]
        is_mask = (isinstance(sel, np.ndarray) and sel.dtype == bool) or (
            isinstance(sel, Sequence) and len(sel) > 0
            and all(isinstance(x, bool | np.bool_) for x in sel))
        if is_mask:
            mask = np.asarray(sel, dtype=bool)
            if mask.shape != (len(self),):
                raise KnowledgeBaseError(
                    f"a task mask must have shape ({len(self)},); got {mask.shape}."
                )
            idx = np.flatnonzero(mask)
        elif (isinstance(sel, np.ndarray) and sel.dtype.kind in "iu") or (
                isinstance(sel, Sequence) and len(sel) > 0
                and all(isinstance(x, int | np.integer) for x in sel)):
            idx = np.asarray(sel, dtype=np.intp).reshape(-1)
            if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise KnowledgeBaseError(
                    f"task indices must lie in [-{len(self)}, {len(self)}); got "
                    f"{idx.min()}..{idx.max()}."
                )
            idx = idx % max(len(self), 1)
            if len(set(idx.tolist())) != idx.size:
                raise KnowledgeBaseError("task indices given to subset() must be unique.")
        else:
            names = list(sel)
            for t in names:
                if not isinstance(t, str):
                    raise InvalidInputTypeError(
                        f"subset() takes a boolean mask or task names; got an item {t!r} "
                        f"({type(t).__name__})."
                    )
            self._check_unique(names, "selected task")
            idx = np.array([self.index(t) for t in names], dtype=np.intp)
        return KnowledgeBase(
            self._meta, task_names=[self._tasks[i] for i in idx],
            embeddings=self._emb[idx], extractor_names=self._extractors,
            scores=self._scores[idx], stderr=self._stderr[idx],
            eval_time=self._eval_time[idx], embed_time=self._embed_time[idx],
            provenance=[self._provenance[i] for i in idx],
            extractor_info=self._extractor_info,
            extra_embeddings={k: (m, v[idx]) for k, (m, v) in self._extra.items()})

    # ------------------------------------------------------------------ persistence

    def _to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {
            "embeddings": self._emb, "scores": self._scores, "stderr": self._stderr,
            "eval_time": self._eval_time, "embed_time": self._embed_time,
        }
        extra_doc = []
        for k, name in enumerate(sorted(self._extra)):
            meta, vals = self._extra[name]
            key = f"extra_{k}"
            arrays[key] = vals
            extra_doc.append({"name": name, "key": key, "meta": meta.to_dict()})
        arrays = {k: np.ascontiguousarray(v, dtype="<f8") for k, v in arrays.items()}
        doc: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_by": f"t2v-automl {_package_version()}",
            "meta": self._meta.to_dict(),
            "task_names": self._tasks,
            "extractor_names": self._extractors,
            "provenance": self._provenance,
            "extractor_info": self._extractor_info,
            "extra": extra_doc,
            "arrays": sorted(arrays),
        }
        doc = _json_copy(doc, "the knowledge base metadata (including meta.settings)")
        doc["sha256"] = _checksum(doc, arrays)
        blob = json.dumps(doc, sort_keys=True, allow_nan=False).encode("utf-8")
        arrays[_META_KEY] = np.frombuffer(blob, dtype=np.uint8)
        return arrays

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the base to ``path`` atomically (see the module docstring for the format).

        The data go to a temporary file in the same directory, which is fsync-ed and then
        moved over ``path`` with :func:`os.replace`, so readers see either the old or the
        new file, never a partial one. No suffix is added to ``path``; a symbolic link is
        followed (the file it points to is replaced, the link stays). Concurrent writers
        should use :meth:`locked_update`.

        Parameters
        ----------
        path : str or path-like
            Target file, conventionally ``*.npz``. Its directory must exist.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        target = _real_target(path)
        directory = target.parent
        if not directory.is_dir():
            raise KnowledgeBaseError(
                f"cannot save the knowledge base to {str(path)!r}: directory "
                f"{str(directory)!r} does not exist. Create it first."
            )
        arrays = self._to_arrays()
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.",
                                        suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(directory)
        logger.debug("saved knowledge base with %d tasks to %s", len(self), target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str],
             expected_meta: EmbeddingMeta | Embedding | None = None) -> KnowledgeBase:
        """Read a base written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
            The ``.npz`` file.
        expected_meta : EmbeddingMeta or Embedding, optional
            Refuse a base whose embeddings were made differently (other probe, weights,
            method, input size, layers or dim).

        Returns
        -------
        KnowledgeBase

        Raises
        ------
        KnowledgeBaseError
            The file is missing, truncated, corrupted, tampered with, holds pickled objects,
            or was written by an unsupported format version.
        IncompatibleEmbeddingError
            ``expected_meta`` disagrees with the base's meta (the message names how).
        """
        p = Path(path)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise KnowledgeBaseError(
                f"knowledge base file {str(p)!r} does not exist; check the path, or build "
                f"one with KnowledgeBase.empty(...).save(path)."
            ) from None
        except OSError as exc:
            raise KnowledgeBaseError(
                f"cannot read knowledge base file {str(p)!r}: {exc}."
            ) from exc
        kb = cls._from_bytes(data, str(p))
        if expected_meta is not None:
            em = expected_meta.meta if isinstance(expected_meta, Embedding) else expected_meta
            if em.compat_key() != kb._meta.compat_key():
                raise IncompatibleEmbeddingError(
                    f"knowledge base {str(p)!r} was built with embeddings made differently "
                    f"from the expected ones ({em.describe_difference(kb._meta)}; expected "
                    f"first, file second). Use a knowledge base built with the same probe and "
                    f"method, or embed with the settings of this one."
                )
        return kb

    @classmethod
    def _from_bytes(cls, data: bytes, source: str) -> KnowledgeBase:
        def fail(msg: str, exc: BaseException | None = None) -> KnowledgeBaseError:
            err = KnowledgeBaseError(f"refusing knowledge base {source!r}: {msg}")
            if exc is not None:
                err.__cause__ = exc
            return err

        try:
            npz = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any reader error means a bad file
            raise fail(
                f"it is not a readable .npz file ({type(exc).__name__}: {exc}); it may be "
                f"truncated or corrupted. Restore it from a copy or rebuild it.", exc) from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise fail("it holds a single array, not a knowledge base (.npz archive).")
        arrays: dict[str, np.ndarray] = {}
        with npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as exc:
                    if "pickle" in str(exc).lower():
                        raise fail(
                            f"array {key!r} holds pickled Python objects, which a knowledge "
                            f"base never contains; loading it could run code. Do not use this "
                            f"file.", exc) from None
                    raise fail(f"array {key!r} cannot be read ({exc}); the file is corrupted.",
                               exc) from None
                except Exception as exc:  # noqa: BLE001 - CRC errors, truncation...
                    raise fail(
                        f"array {key!r} cannot be read ({type(exc).__name__}: {exc}); the file "
                        f"is truncated or corrupted. Restore it from a copy or rebuild it.",
                        exc) from None
        if _META_KEY not in arrays:
            raise fail(f"it has no {_META_KEY!r} metadata array (arrays: {sorted(arrays)}); "
                       f"it is not a t2v-automl knowledge base.")
        blob = arrays.pop(_META_KEY)
        if blob.dtype != np.uint8 or blob.ndim != 1:
            raise fail(f"the {_META_KEY!r} array must be 1-D uint8; got {blob.dtype} "
                       f"{blob.shape}.")
        try:
            doc = json.loads(blob.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise fail(f"its metadata is not valid JSON ({exc}); the file is corrupted.",
                       exc) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise fail(f"its metadata format is {got!r}, expected {FORMAT_NAME!r}; it is not a "
                       f"t2v-automl knowledge base.")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            hint = ("upgrade t2v-automl to read it" if isinstance(version, int)
                    and version > FORMAT_VERSION else "rebuild it with this t2v-automl")
            raise fail(f"it has format version {version!r}; this t2v-automl reads version "
                       f"{FORMAT_VERSION} only. {hint[0].upper() + hint[1:]}.")
        required = ("meta", "task_names", "extractor_names", "provenance", "extractor_info",
                    "extra", "arrays", "sha256")
        missing = [k for k in required if k not in doc]
        if missing:
            raise fail(f"its metadata lacks the field(s) {missing}; the file is damaged.")
        listed = doc["arrays"]
        if not isinstance(listed, list) or sorted(map(str, listed)) != sorted(arrays):
            absent = sorted(set(map(str, listed)) - set(arrays)) if isinstance(
                listed, list) else []
            unexpected = sorted(set(arrays) - set(map(str, listed))) if isinstance(
                listed, list) else sorted(arrays)
            raise fail(f"its arrays do not match its metadata (missing: {absent}, unexpected: "
                       f"{unexpected}); the file is damaged or was edited.")
        for key in _MATRIX_KEYS:
            if key not in arrays:
                raise fail(f"the required array {key!r} is missing.")
        for key, a in arrays.items():
            if a.dtype != np.dtype("<f8"):
                raise fail(f"array {key!r} has dtype {a.dtype}; expected little-endian "
                           f"float64.")
        expected_sum = doc["sha256"]
        try:
            actual_sum = _checksum(doc, arrays)
        except (TypeError, ValueError) as exc:
            raise fail(f"its metadata cannot be checked ({exc}); the file is damaged.",
                       exc) from None
        if expected_sum != actual_sum:
            raise fail(f"its sha256 checksum does not match its content (recorded "
                       f"{str(expected_sum)[:16]}..., computed {actual_sum[:16]}...); the file "
                       f"was truncated, corrupted or edited. Restore it from a copy or rebuild "
                       f"it.")
        try:
            meta = EmbeddingMeta.from_dict(doc["meta"])
            extra: dict[str, tuple[EmbeddingMeta, np.ndarray]] = {}
            for entry in doc["extra"]:
                extra[str(entry["name"])] = (EmbeddingMeta.from_dict(entry["meta"]),
                                             arrays[str(entry["key"])])
            return cls(
                meta, task_names=doc["task_names"], embeddings=arrays["embeddings"],
                extractor_names=doc["extractor_names"], scores=arrays["scores"],
                stderr=arrays["stderr"], eval_time=arrays["eval_time"],
                embed_time=arrays["embed_time"], provenance=doc["provenance"],
                extractor_info=doc["extractor_info"], extra_embeddings=extra)
        except (KnowledgeBaseError, InvalidInputTypeError, KeyError, TypeError,
                ValueError) as exc:
            raise fail(f"its content is inconsistent ({exc}).", exc) from None

    @classmethod
    def default(cls, expected_meta: EmbeddingMeta | Embedding | None = None) -> KnowledgeBase:
        """The knowledge base shipped with the package (``t2v_automl/data/``).

        Parameters
        ----------
        expected_meta : EmbeddingMeta or Embedding, optional
            As in :meth:`load`.

        Returns
        -------
        KnowledgeBase

        Raises
        ------
        KnowledgeBaseError
            The packaged file is not there (or is damaged).
        """
        resource = _default_resource()
        if not resource.is_file():
            raise KnowledgeBaseError(
                f"the default knowledge base {DEFAULT_KNOWLEDGE_FILE!r} is not installed with "
                f"this copy of t2v-automl (looked for {str(resource)!r}). Build one with the "
                f"benchmark scripts and load it with KnowledgeBase.load(path), or reinstall a "
                f"t2v-automl release that ships it."
            )
        with importlib.resources.as_file(resource) as p:
            return cls.load(p, expected_meta=expected_meta)

    @classmethod
    @contextlib.contextmanager
    def locked_update(
        cls,
        path: str | os.PathLike[str],
        meta: EmbeddingMeta | None = None,
        extractor_names: Sequence[str] = (),
        *,
        timeout: float | None = None,
    ) -> Iterator[KnowledgeBase]:
        """Load (or create), mutate and save a base while holding an exclusive file lock.

        Several processes (on one machine, or on a file system where ``flock`` works) may
        add entries to one file this way without losing any::

            with KnowledgeBase.locked_update("kb.npz", meta) as kb:
                kb.add("task-7", embedding, scores)

        Parameters
        ----------
        path : str or path-like
            The knowledge base file. Symbolic links are resolved first, so writers naming
            the file through different links exclude each other. The lock is taken on the
            sidecar ``<file>.lock`` next to the real file, which is left in place (removing
            it would open a race), and, for the threads of one process, on an in-process
            lock per file.
        meta : EmbeddingMeta, optional
            Needed when the file does not exist yet (a new base is created with it). When the
            file exists, it must have been made compatibly.
        extractor_names : sequence of str, optional
            Extractor columns of a newly created base.
        timeout : float, optional
            Seconds to wait for the lock; default: wait forever.

        Yields
        ------
        KnowledgeBase
            The base to mutate. It is saved atomically when the ``with`` block ends
            normally; when the block raises, nothing is saved.

        Raises
        ------
        KnowledgeBaseError
            No ``fcntl`` on this platform, the lock was not obtained within ``timeout``, or
            the file is absent and no ``meta`` was given.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            raise KnowledgeBaseError(
                "locked_update() needs fcntl.flock, which this platform lacks; run the "
                "writers on a POSIX system, or write separate files and merge() them."
            ) from None
        target = _real_target(path)
        lock_path = target.with_name(target.name + ".lock")
        if not target.parent.is_dir():
            raise KnowledgeBaseError(
                f"cannot lock {str(path)!r}: directory {str(target.parent)!r} does not "
                f"exist. Create it first."
            )
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))

        def too_late() -> KnowledgeBaseError:
            return KnowledgeBaseError(
                f"could not lock {str(lock_path)!r} within {timeout} s: another process or "
                f"thread holds it. Retry later or raise the timeout."
            )

        thread_lock = _thread_lock(target)
        if not thread_lock.acquire(timeout=-1 if deadline is None
                                   else max(0.0, deadline - time.monotonic())):
            raise too_late()
        try:
            with open(lock_path, "a+b") as lock_fh:
                if deadline is None:
                    fcntl.flock(lock_fh.fileno(), fcntl.LOCK_EX)
                else:
                    while True:
                        try:
                            fcntl.flock(lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() >= deadline:
                                raise too_late() from None
                            time.sleep(0.05)
                try:
                    if target.exists():
                        kb = cls.load(target, expected_meta=meta)
                    elif meta is not None:
                        kb = cls.empty(meta, extractor_names)
                    else:
                        raise KnowledgeBaseError(
                            f"knowledge base {str(path)!r} does not exist and no meta was "
                            f"given to create it; pass meta=<EmbeddingMeta of your embeddings>."
                        )
                    yield kb
                    kb.save(target)
                finally:
                    fcntl.flock(lock_fh.fileno(), fcntl.LOCK_UN)
        finally:
            thread_lock.release()

