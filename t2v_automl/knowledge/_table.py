"""The knowledge-base table: tasks x extractors, with embeddings and provenance.

:class:`KnowledgeBase` holds the data and their invariants; the byte format is
:mod:`t2v_automl.knowledge._io`, the inter-process lock :mod:`t2v_automl.knowledge._lock`
and the validation of inputs :mod:`t2v_automl.knowledge._validate`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.resources
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from t2v_automl._logging import logger
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    KnowledgeBaseError,
    UnknownNameError,
)
from t2v_automl.knowledge._io import (
    decode_knowledge,
    encode_knowledge,
    read_file_bytes,
    real_target,
    refusal,
    write_npz,
)
from t2v_automl.knowledge._lock import exclusive_lock
from t2v_automl.knowledge._packaged import packaged_file
from t2v_automl.knowledge._validate import (
    EmbeddingLike,
    Row,
    as_vector,
    check_cells,
    check_extra,
    check_meta,
    check_name,
    check_nonneg,
    check_table,
    json_dict,
    reconcile_row,
    selection_indices,
    task_index,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KnowledgeBase"]


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
        t = check_table(meta, task_names, embeddings, extractor_names, scores, stderr,
                        eval_time, embed_time, provenance, extractor_info, extra_embeddings)
        self._meta = meta
        self._tasks = t.tasks
        self._extractors = t.extractors
        self._emb = t.emb
        self._scores = t.scores
        self._stderr = t.stderr
        self._eval_time = t.eval_time
        self._embed_time = t.embed_time
        self._provenance = t.provenance
        self._extractor_info = t.extractor_info
        self._extra = t.extra


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
        return task_index(self._tasks, task_name)

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

    def _row(self, i: int) -> Row:
        """The stored entry of row ``i`` as a :class:`Row` (copies)."""
        def cells(arr: np.ndarray) -> dict[str, float]:
            return {e: float(arr[i, j]) for j, e in enumerate(self._extractors)
                    if not np.isnan(arr[i, j])}

        extra = {name: vals[i].copy() for name, (_, vals) in self._extra.items()
                 if not np.isnan(vals[i]).all()}
        return Row(name=self._tasks[i], embedding=self._emb[i].copy(),
                    scores=cells(self._scores), stderr=cells(self._stderr),
                    eval_time=cells(self._eval_time),
                    provenance=copy.deepcopy(self._provenance[i]), extra=extra,
                    embed_time=float(self._embed_time[i]))

    def _apply(self, rows: Sequence[Row], new_sets: Mapping[str, EmbeddingMeta],
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
        check_name(task_name, "task_name")
        if task_name in self._tasks and not overwrite:
            raise KnowledgeBaseError(
                f"a task named {task_name!r} is already in the knowledge base; pass "
                f"overwrite=True to replace it, add_score() to add scores to it, or choose "
                f"another name."
            )
        vec = as_vector(embedding, self._meta, f"the embedding of task {task_name!r}")
        sc, se, et = check_cells(task_name, scores, stderr, eval_time)
        prov = json_dict(provenance, f"provenance of task {task_name!r}")
        extra, new_sets = check_extra(task_name, extra_embeddings,
                                      {k: m for k, (m, _) in self._extra.items()})
        emt = math.nan if embed_time is None else check_nonneg(
            embed_time, f"embed_time of task {task_name!r}")
        self._apply([Row(task_name, vec, sc, se, et, prov, extra, emt)], new_sets)

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
        check_name(extractor, "extractor")
        cells = check_cells(
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
        check_name(name, "an extractor name")
        new_info = None if info is None else {name: json_dict(info, f"info of {name!r}")}
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
        check_meta(self._meta, other._meta, "the other knowledge base")
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

        rows: list[Row] = []
        for k, name in enumerate(other._tasks):
            theirs = other._row(k)
            if name not in self._tasks:
                rows.append(theirs)
                continue
            mine = self._row(self._tasks.index(name))
            reconcile_row(mine, theirs, overwrite, conflicts)
            rows.append(mine)
        info: dict[str, dict[str, Any]] = {}
        for e, d in other._extractor_info.items():
            if e in self._extractor_info and self._extractor_info[e] != d:
                conflicts.append(f"info of extractor {e!r}")
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
        idx = selection_indices(task_mask_or_names, self._tasks)
        return KnowledgeBase(
            self._meta, task_names=[self._tasks[i] for i in idx],
            embeddings=self._emb[idx], extractor_names=self._extractors,
            scores=self._scores[idx], stderr=self._stderr[idx],
            eval_time=self._eval_time[idx], embed_time=self._embed_time[idx],
            provenance=[self._provenance[i] for i in idx],
            extractor_info=self._extractor_info,
            extra_embeddings={k: (m, v[idx]) for k, (m, v) in self._extra.items()})

    def select_extractors(self, names: Sequence[str]) -> KnowledgeBase:
        """A new base with only some extractor columns (all tasks and embeddings kept).

        Parameters
        ----------
        names : sequence of str
            Extractor names of this base; the new base takes their order.

        Returns
        -------
        KnowledgeBase
            An independent copy.

        Raises
        ------
        UnknownNameError
            A name is not an extractor of this base (the message lists them).
        KnowledgeBaseError
            ``names`` is empty or names one extractor twice.
        """
        names = [names] if isinstance(names, str) else list(names)
        missing = [n for n in names if n not in self._extractors]
        if missing:
            raise UnknownNameError(
                f"extractor(s) {missing} are not in this knowledge base; it has "
                f"{self._extractors}.")
        if not names or len(set(names)) != len(names):
            raise KnowledgeBaseError(
                f"select_extractors needs distinct extractor names, at least one; got {names}.")
        cols = [self._extractors.index(n) for n in names]
        return KnowledgeBase(
            self._meta, task_names=list(self._tasks), embeddings=self._emb.copy(),
            extractor_names=names, scores=self._scores[:, cols],
            stderr=self._stderr[:, cols], eval_time=self._eval_time[:, cols],
            embed_time=self._embed_time.copy(), provenance=copy.deepcopy(self._provenance),
            extractor_info={n: self._extractor_info[n] for n in names
                            if n in self._extractor_info},
            extra_embeddings={k: (m, v.copy()) for k, (m, v) in self._extra.items()})

    # ------------------------------------------------------------------ persistence

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays :meth:`save` writes, ``__meta__`` (JSON with checksum) included.

        Returns
        -------
        dict of str to ndarray
            See :mod:`t2v_automl.knowledge._io` for the format.
        """
        return encode_knowledge(
            self._meta, self._tasks, self._extractors,
            {"embeddings": self._emb, "scores": self._scores, "stderr": self._stderr,
             "eval_time": self._eval_time, "embed_time": self._embed_time},
            self._provenance, self._extractor_info, self._extra)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the base to ``path`` atomically (see :mod:`t2v_automl.knowledge._io`).

        The data go to a temporary file in the same directory, which is fsync-ed and then
        moved over ``path`` with :func:`os.replace`, so readers see either the old or the
        new file, never a partial one. No suffix is added to ``path``; a symbolic link is
        followed (the file it points to is replaced, the link stays), as by every writer
        of the package; temporary files left by killed writers are removed. Concurrent
        writers should use :meth:`locked_update`.

        Parameters
        ----------
        path : str or path-like
            Target file, conventionally ``*.npz``: a regular file, a link to one, or a new
            path. Its directory must exist.

        Returns
        -------
        pathlib.Path
            The path written (links resolved).

        Raises
        ------
        KnowledgeBaseError
            No such directory, or ``path`` leads to a directory, a device (``/dev/null``),
            a named pipe or a socket: nothing is written.
        """
        target = real_target(path)
        if not target.parent.is_dir():
            raise KnowledgeBaseError(
                f"cannot save the knowledge base to {str(path)!r}: directory "
                f"{str(target.parent)!r} does not exist. Create it first."
            )
        write_npz(target, self.to_arrays())
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
            The file is missing, not a regular file, damaged (truncated, corrupted, edited
            without recomputing its sha256: it detects damage, not tampering), holds
            pickled objects, or has an unsupported format version.
        IncompatibleEmbeddingError
            ``expected_meta`` disagrees with the base's meta (the message names how).
        """
        p = Path(path)
        kb = cls.from_bytes(read_file_bytes(p), str(p))
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
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> KnowledgeBase:
        """A base from the bytes of a file written by :meth:`save`.

        Parameters
        ----------
        data : bytes
            The whole file.
        source : str, default "<bytes>"
            Where the bytes came from, for the error messages.

        Returns
        -------
        KnowledgeBase

        Raises
        ------
        KnowledgeBaseError
            As :meth:`load`.
        """
        meta, kwargs = decode_knowledge(data, source)
        try:
            return cls(meta, **kwargs)
        except (KnowledgeBaseError, InvalidInputTypeError, KeyError, TypeError,
                ValueError) as exc:
            raise refusal(source, f"its content is inconsistent ({exc}).", exc) from None

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
        return cls.named("default", expected_meta)

    @classmethod
    def named(cls, name: str,
              expected_meta: EmbeddingMeta | Embedding | None = None) -> KnowledgeBase:
        """A knowledge base shipped with the package, by name.

        Parameters
        ----------
        name : {"default", "experts"}
            ``"default"``: :meth:`default`. ``"experts"``: the same kind of tasks scored for
            the 13 built-in extractors *and* the 22 experts of :mod:`t2v_automl.experts`
            (fine-tuned MobileNetV2s; ``benchmarks/build_knowledge_v2.py`` rebuilds their
            weights, which choosing among them by embedding does not need).
        expected_meta : EmbeddingMeta or Embedding, optional
            As in :meth:`load`.

        Returns
        -------
        KnowledgeBase

        Raises
        ------
        UnknownNameError
            Not a packaged base (the message lists them).
        KnowledgeBaseError
            This copy of t2v-automl does not ship that base (an older release, or a source
            checkout without the data): the message says how to get or build it.
        """
        with importlib.resources.as_file(packaged_file(name)) as p:
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

        Several processes (on one machine, or on a file system where file locks work) may
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
            lock per file (see :mod:`t2v_automl.knowledge._lock`). A writer killed while it
            holds the lock releases it.
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
            The directory does not exist, the file system cannot lock, the lock was not
            obtained within ``timeout``, or the file is absent and no ``meta`` was given.
        """
        target = real_target(path)
        if not target.parent.is_dir():
            raise KnowledgeBaseError(
                f"cannot lock {str(path)!r}: directory {str(target.parent)!r} does not "
                f"exist. Create it first."
            )
        with exclusive_lock(target, timeout):
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
