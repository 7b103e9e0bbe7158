"""The one knowledge-base build: brute-force scores plus Task2Vec embeddings of tasks.

:func:`build_knowledge` scores every extractor on every task (the linear head of
:func:`t2v_automl.evaluation.evaluate_zoo`), embeds each task's *training* split with a
:class:`~t2v_automl.estimators.Task2VecEmbedder` (plus extra embedding sets kept for
baselines) and returns a :class:`~t2v_automl.knowledge.KnowledgeBase`.
:func:`build_knowledge_details` does the same and also returns what the build measured
(per-image correctness, raw timings), which ``benchmarks/build_knowledge.py`` writes out.

The tasks are a built-in suite by name (:func:`t2v_automl.suites.list_suites`; its tasks
are made one at a time, so only one task's images are held) or the user's own
``(train, test)`` pairs of :class:`~t2v_automl.tasks.Task` or
:class:`~t2v_automl.suites.SuiteTask` objects. :func:`build_knowledge_from_folders` takes
image folders (:func:`folder_tasks`: ``root/<class>/<image>``,
``root/train|test/<class>/<image>`` or a folder of such tasks; a seeded stratified
:func:`split_task` where no test folder is given) and keeps the ``domain`` embeddings that
the hybrid selector's screen needs. Own tasks are evaluated in parallel (``n_jobs`` or an
enclosing ``joblib.parallel_config``: loky, Dask, Ray); a suite task by task.

This module sits above :mod:`t2v_automl.estimators` (it needs the embedder), and
:mod:`t2v_automl.evaluation` stays below it.

Two savings, neither of which changes a score:

- the relabel tasks of one image pool have identical images, so the features of identical
  image arrays are computed once per extractor and reused (``share_features``); the
  evaluation time recorded for each task of a pool is the pool's extraction time plus the
  task's own fit time, i.e. what evaluating that task alone would cost;
- with ``memory``, every evaluation and every embedding is cached on disk (joblib), keyed
  so that a change of settings, weights, embedder parameters or embedding code recomputes
  it; an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2v_automl._logging import logger, progress
from t2v_automl._parallel import run_jobs
from t2v_automl.estimators import Task2VecEmbedder
from t2v_automl.evaluation import evaluate_zoo
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    T2VError,
)
from t2v_automl.extractors import (
    Extractor,
    get_extractor,
    list_extractors,
    resolve_extractor,
)
from t2v_automl.knowledge import KnowledgeBase
from t2v_automl.suites import SuiteTask, iter_suite
from t2v_automl.tasks import Task

__all__ = [
    "DEFAULT_EXTRA_EMBEDDINGS",
    "EvaluationNotCachedError",
    "KnowledgeBuild",
    "build_knowledge",
    "build_knowledge_details",
    "cap_test_split",
]

#: Extra embedding sets kept in the knowledge base for baselines: name -> the
#: ``Task2VecEmbedder`` parameters that differ from the main embedder's.
DEFAULT_EXTRA_EMBEDDINGS: dict[str, dict[str, Any]] = {
    "domain": {"method": "domain"},
    "label_stat": {"method": "label_stat"},
    "montecarlo_full": {"method": "montecarlo", "skip_layers": 0},
}

#: Files whose code decides what an embedding is; their digest is part of the cache key.
_EMBEDDING_CODE = ("fisher.py", "probes.py", "embedding.py", "estimators/_embedder.py")
#: Estimator parameters that do not change an embedding's values.
_RUNTIME_PARAMS = ("memory", "verbose", "n_jobs")
#: Bump when what a cached embedding entry holds changes.
_EMBED_CACHE_VERSION = 1

TaskInput = SuiteTask | tuple[Task, Task]


class EvaluationNotCachedError(T2VError, LookupError):
    """An evaluation is missing from the cache while ``evaluations="cached"``."""


@dataclass(eq=False)
class KnowledgeBuild:
    """A knowledge base and what its build measured.

    Attributes
    ----------
    knowledge : KnowledgeBase
    extractors : list of str
    rows : list of dict
        Per task: ``name``, ``kind``, ``n_classes``, ``provenance``, ``n_train``,
        ``n_test_full``, ``n_test``, ``train_fingerprint``, ``test_fingerprint``,
        ``scores``, ``stderr``, ``extract_time``, ``fit_time``, ``input_size`` (arrays over
        extractors), ``correct`` (bool, ``(n_extractors, n_test)``), ``y_test``,
        ``wall_s`` and ``computed`` (False when every cell came from the cache).
    eval_time, extract_time : ndarray of shape (n_tasks, n_extractors)
        Seconds per cell as if each task were evaluated alone (pool sharing undone), and
        the extraction part alone.
    embeddings : dict
        Per embedding set (``""`` is the main one): ``meta``, ``params``, ``values``,
        ``n_images``, ``time_s``.
    settings : dict
        The evaluation settings recorded in every task's provenance.
    evaluation_wall_s, embedding_wall_s : float
    n_computed : int
        Tasks whose evaluation was computed (not all read from the cache).
    """

    knowledge: KnowledgeBase
    extractors: list[str]
    rows: list[dict[str, Any]] = field(repr=False)
    eval_time: np.ndarray = field(repr=False)
    extract_time: np.ndarray = field(repr=False)
    embeddings: dict[str, dict[str, Any]] = field(repr=False)
    settings: dict[str, Any]
    evaluation_wall_s: float
    embedding_wall_s: float
    n_computed: int


# ----------------------------------------------------------------------------- helpers
def _code_digest() -> str:
    """sha256 of the source files that decide what an embedding is (missing ones skipped)."""
    import t2v_automl

    pkg = Path(t2v_automl.__file__).resolve().parent
    h = hashlib.sha256()
    for rel in _EMBEDDING_CODE:
        path = pkg / rel
        if path.is_file():
            h.update(rel.encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def cap_test_split(test: Task, cap: int | None) -> Task:
    """A stratified, deterministic subsample of at most ``cap`` test images.

    Each class keeps a share of ``cap`` proportional to its size (largest remainders, at
    least one image), taken from the start of the split's own order; the images keep
    their relative order. ``test`` itself is returned when it is small enough.
    """
    n = test.n_images
    if cap is None or n <= cap:
        return test
    counts = np.bincount(test.labels, minlength=test.n_classes)
    exact = counts * cap / n
    keep = np.maximum(np.floor(exact).astype(int), 1)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for c in order[: max(0, cap - int(keep.sum()))]:
        keep[c] += 1
    keep = np.minimum(keep, counts)
    idx = np.sort(np.concatenate([np.flatnonzero(test.labels == c)[:k]
                                  for c, k in enumerate(keep)]))
    return Task(test.images[idx], test.labels[idx], test.classes.copy(), test.name,
                dict(test.provenance))


class _FeatureMemo:
    """Reuse features of identical image arrays across tasks, for the build's duration.

    Shadows ``transform`` of the shared extractor instances with a memoising wrapper
    (removed by :meth:`restore`). The key is a digest of the image bytes plus the call's
    settings, so features are reused only for identical inputs: bit-for-bit what a fresh
    call returns.
    """

    def __init__(self, maxsize: int = 40, forbid: bool = False) -> None:
        # maxsize 0: count the passes (``misses``), keep nothing
        self.maxsize = maxsize
        self.forbid = forbid
        self.store: collections.OrderedDict[tuple[Any, ...], np.ndarray] = \
            collections.OrderedDict()
        self.hits = 0
        self.misses = 0
        self._wrapped: list[Extractor] = []

    def wrap(self, ext: Extractor) -> None:
        """Shadow ``ext.transform`` by a memoising wrapper (once)."""
        if "transform" in vars(ext):
            return
        original: Callable[..., np.ndarray] = ext.transform

        def transform(images: Any, batch_size: int = 128,
                      input_size: int | None = None) -> np.ndarray:
            arr = np.ascontiguousarray(images)
            digest = hashlib.blake2b(arr.tobytes(), digest_size=20).hexdigest()
            key = (ext.name, digest, arr.shape, str(arr.dtype), batch_size, input_size)
            if self.maxsize > 0 and key in self.store:
                self.hits += 1
                self.store.move_to_end(key)
                return self.store[key].copy()
            if self.forbid:
                raise EvaluationNotCachedError(
                    f"the evaluation of extractor {ext.name!r} is not in the cache, and "
                    "evaluations='cached' forbids computing it. Run the build once with "
                    "evaluations='compute' (the same memory) first."
                )
            self.misses += 1
            out = original(images, batch_size=batch_size, input_size=input_size)
            if self.maxsize <= 0:  # counting only
                return out
            self.store[key] = out.copy()
            while len(self.store) > self.maxsize:
                self.store.popitem(last=False)
            return out

        ext.transform = transform  # type: ignore[method-assign]
        self._wrapped.append(ext)

    def restore(self) -> None:
        """Remove every wrapper; the extractors are as before."""
        for ext in self._wrapped:
            vars(ext).pop("transform", None)
        self._wrapped.clear()
        self.store.clear()


def _as_memory(memory: Any) -> Any:
    if memory is None:
        return None
    from joblib import Memory

    if isinstance(memory, Memory):
        return memory
    if isinstance(memory, str | Path):
        return Memory(location=str(memory), verbose=0)
    raise InvalidInputTypeError(
        f"memory must be None, a directory path or a joblib.Memory; got "
        f"{type(memory).__name__}. Pass a folder, e.g. memory='~/.cache/t2v-build'."
    )


def _as_suite_task(item: Any, i: int) -> SuiteTask:
    if isinstance(item, SuiteTask):
        return item
    if isinstance(item, tuple | list) and len(item) == 2 \
            and all(isinstance(t, Task) for t in item):
        train, test = item
        return SuiteTask(train.name, train, test, dict(train.provenance))
    raise InvalidInputTypeError(
        f"tasks[{i}] must be a SuiteTask or a (train, test) pair of Tasks; got "
        f"{type(item).__name__}. Build Tasks with Task.from_arrays(images, labels)."
    )


def _task_source(tasks: Any, seed: int, limit: int | None, skip_missing: bool
                 ) -> tuple[Callable[[], Iterator[SuiteTask] | list[SuiteTask]], str | None]:
    """A function that yields the tasks afresh (a list for own tasks), and the suite name
    (None for own tasks)."""
    if isinstance(tasks, str):
        name = tasks

        def suite() -> Iterator[SuiteTask]:
            it = iter_suite(name, seed, skip_missing=skip_missing)
            return itertools.islice(it, limit) if limit else it

        return suite, name
    if not isinstance(tasks, Iterable):
        raise InvalidInputTypeError(
            f"tasks must be a suite name (see t2v_automl.suites.list_suites()) or a list of "
            f"SuiteTask / (train, test) pairs of Tasks; got {type(tasks).__name__}."
        )
    items = [_as_suite_task(t, i) for i, t in enumerate(tasks)]
    if limit:
        items = items[:limit]
    if not items:
        raise InvalidParameterError("tasks is empty: pass at least one (train, test) pair.")
    names = [st.name for st in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InvalidParameterError(
            f"task names must be unique in a knowledge base; these repeat: {dup[:5]}. Give "
            "each training Task its own name."
        )
    return lambda: list(items), None


def _extractor_info(names: list[str], input_size: int | None, C: float, device: str
                    ) -> dict[str, dict[str, Any]]:
    """What the knowledge base records about each extractor."""
    info = {}
    for name in names:
        ext = get_extractor(name, device)
        info[name] = {
            "source_dataset": ext.source,
            "description": ext.description,
            "pretrained": ext.pretrained,
            "native_input_size": int(ext.input_size),
            "input_size_used": int(ext.resolve_input_size(input_size)),
            "resizable": bool(ext.resizable),
            "channels": int(ext.channels),
            "feature_dim": int(ext.feature_dim),
            "weights_sha256": ext.weights_sha256,
            "weights_file": None if ext.weights_path is None else Path(ext.weights_path).name,
            "has_source_head": bool(ext.has_source_head),
            "n_source_classes": ext.n_source_classes,
            "linear_head": f"StandardScaler + LogisticRegression(C={C:g}) on frozen features",
        }
    return info


# ----------------------------------------------------------------------------- phase 1
def _evaluate_task(st: SuiteTask, names: list[Any], memory: Any, input_size: int | None,
                   C: float, test_cap: int | None, device: str) -> dict[str, Any]:
    """Score every extractor on one task: the task's row (``computed`` left to the caller)."""
    test = cap_test_split(st.test, test_cap if st.kind == "subset" else None)
    t0 = time.perf_counter()
    zoo = evaluate_zoo(names, [(st.train, test)], n_jobs=1, memory=memory,
                       input_size=input_size, C=C, device=device)
    res = zoo.results[0]
    return {
        "name": st.name, "kind": st.kind, "n_classes": st.n_classes,
        "provenance": dict(st.provenance), "n_train": st.train.n_images,
        "n_test_full": st.test.n_images, "n_test": test.n_images,
        "train_fingerprint": st.train.fingerprint,
        "test_fingerprint": test.fingerprint,
        "scores": zoo.scores[0], "stderr": zoo.stderr[0],
        "extract_time": np.array([r.extract_time_s for r in res]),
        "fit_time": np.array([r.fit_time_s for r in res]),
        "input_size": np.array([r.input_size for r in res]),
        "correct": np.stack([r.correct for r in res]),
        "y_test": test.labels.copy(), "wall_s": time.perf_counter() - t0,
    }


def _evaluate_job(st: SuiteTask, specs: list[Any], memory: Any, input_size: int | None,
                  C: float, test_cap: int | None, device: str) -> dict[str, Any]:
    """:func:`_evaluate_task` in a joblib worker; ``computed`` counts the extractor passes.

    ``specs`` travel by value (a zoo file's entries need no registration in the worker).
    No features are shared between tasks here. Under the threading backend another job may
    hold an extractor's counter: the task is then reported as computed.
    """
    memo = _FeatureMemo(maxsize=0)
    try:
        for spec in specs:
            memo.wrap(get_extractor(spec, device))
        counted = len(memo._wrapped) == len(specs)
        row = _evaluate_task(st, specs, memory, input_size, C, test_cap, device)
    finally:
        memo.restore()
    row["computed"] = memory is None or not counted or memo.misses > 0
    return row


def _log_row(i: int, row: dict[str, Any], names: list[str]) -> None:
    if row["computed"]:
        best = int(np.argmax(row["scores"]))
        logger.info("%d %s: n_train=%d n_test=%d best=%s (%.3f) %.1fs", i, row["name"],
                    row["n_train"], row["n_test"], names[best], row["scores"][best],
                    row["wall_s"])


def _evaluate_all(tasks: Iterator[SuiteTask] | list[SuiteTask], names: list[str], memory: Any,
                  input_size: int | None, C: float, test_cap: int | None, device: str,
                  share_features: bool, forbid: bool, verbose: int | bool,
                  n_jobs: int | None = 1) -> tuple[list[dict[str, Any]], int]:
    """Score every extractor on every task; per-task rows.

    With ``n_jobs`` (or a ``joblib.parallel_config``) above one and a list of tasks (own
    tasks, not a suite's), the tasks are evaluated in parallel through
    :func:`t2v_automl._parallel.run_jobs`; otherwise one at a time in this process,
    sharing the features of identical image arrays (``share_features``).
    """
    from joblib import delayed, effective_n_jobs

    if isinstance(tasks, list) and not forbid and len(tasks) > 1 \
            and effective_n_jobs(n_jobs) > 1:
        specs = [resolve_extractor(name) for name in names]
        jobs = [delayed(_evaluate_job)(st, specs, memory, input_size, C, test_cap, device)
                for st in tasks]
        rows = run_jobs(jobs, n_jobs, verbose=verbose, desc="brute force")
        for i, row in enumerate(rows, start=1):
            _log_row(i, row, names)
        return rows, sum(1 for r in rows if r["computed"])
    # room for the train and test features of every extractor of one image pool (and a
    # capped test split): an image pool's later label functions find all of them
    memo = _FeatureMemo(maxsize=max(40, 4 * len(names)), forbid=forbid) \
        if share_features or forbid else None
    rows = []
    try:
        if memo is not None:
            for name in names:
                memo.wrap(get_extractor(name, device))
        n_calls = 0
        for st in progress(tasks, verbose=verbose, desc="brute force",
                           total=len(tasks) if isinstance(tasks, list) else None):
            row = _evaluate_task(st, names, memory, input_size, C, test_cap, device)
            calls = (memo.hits + memo.misses) if memo is not None else n_calls + 1
            row["computed"] = memory is None or calls > n_calls
            n_calls = calls
            rows.append(row)
            _log_row(len(rows), row, names)
    finally:
        if memo is not None:
            memo.restore()
    if not rows:
        raise InvalidParameterError("the build has no task: the suite yielded none (are its "
                                    "image sources installed?).")
    return rows, sum(1 for r in rows if r["computed"])


def _pool_eval_times(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation time per cell as if each task were evaluated alone.

    For the relabel tasks of one image pool the extraction time charged to each is the
    largest one recorded in the pool (the one that actually ran), plus the task's own fit
    time. Returns ``(eval_time, extract_time)``.
    """
    extract = np.stack([r["extract_time"] for r in rows])
    fit = np.stack([r["fit_time"] for r in rows])
    pools: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r["kind"] == "relabel" and "pool" in r["provenance"]:
            pools.setdefault(r["provenance"]["pool"], []).append(i)
    corrected = extract.copy()
    for idx in pools.values():
        corrected[idx] = extract[idx].max(axis=0)
    return corrected + fit, corrected


# ----------------------------------------------------------------------------- phase 2
def _embed_cached(key: dict[str, Any], task: Task) -> dict[str, Any]:
    """Embed one task with ``Task2VecEmbedder(**key["params"])``; what the cache stores."""
    est = Task2VecEmbedder(**key["params"]).fit()
    t0 = time.perf_counter()
    [emb] = est.embed([task])
    dt = time.perf_counter() - t0
    return {"values": np.asarray(emb.values, dtype=np.float64),
            "n_images": int(emb.meta.n_images), "time_s": float(dt),
            "meta": emb.meta.to_dict()}


def _embedders(embedder: Task2VecEmbedder | None,
               extra: Mapping[str, Mapping[str, Any]]) -> dict[str, Task2VecEmbedder]:
    """The main (``""``) and extra embedders, fitted."""
    from sklearn.base import clone

    if embedder is not None and not isinstance(embedder, Task2VecEmbedder):
        raise InvalidInputTypeError(
            f"embedder must be a Task2VecEmbedder or None; got {type(embedder).__name__}.")
    main = Task2VecEmbedder() if embedder is None else clone(embedder)
    out = {"": main}
    for name, overrides in extra.items():
        if not name or not isinstance(name, str):
            raise InvalidParameterError(
                f"extra embedding names must be non-empty strings; got {name!r}.")
        out[name] = clone(main).set_params(**dict(overrides))
    return {name: est.fit() for name, est in out.items()}


def _reused(kb: KnowledgeBase | None, name: str, meta: Any
            ) -> Callable[[Task], dict[str, Any] | None]:
    """A lookup of the embeddings of set ``name`` that ``kb`` already holds for a task."""
    if kb is None:
        return lambda task: None
    if name:
        if name not in kb.extra_names or kb.extra_embeddings(name)[0] != meta:
            return lambda task: None
        values = kb.extra_embeddings(name)[1]
    elif kb.meta != meta:
        return lambda task: None
    else:
        values = kb.embeddings

    def lookup(task: Task) -> dict[str, Any] | None:
        if task.name not in kb:
            return None
        i = kb.index(task.name)
        p = kb.provenance[i]
        if p.get("train_fingerprint") != task.fingerprint:
            return None
        if name:
            n_img = p.get("extra_embedding_n_images", {}).get(name)
            t = p.get("extra_embed_time_s", {}).get(name)
        else:
            n_img, t = p.get("embedding_n_images"), float(kb.embed_time[i])
        if n_img is None or t is None:
            return None
        return {"values": np.asarray(values[i], dtype=np.float64), "n_images": int(n_img),
                "time_s": float(t)}

    return lookup


def _embed_all(tasks: Callable[[], Iterator[Task]], n_tasks: int, embedders: dict[str, Any],
               memory: Any, n_jobs: int | None, verbose: int | bool,
               reuse: KnowledgeBase | None = None) -> dict[str, Any]:
    """Embed every training task with every embedder (cached when ``memory``; taken from
    ``reuse`` where it holds the same task, same training images, same embedder)."""
    from joblib import Parallel, delayed

    digest = _code_digest()
    fn = _embed_cached if memory is None else memory.cache(_embed_cached, ignore=["task"])
    out: dict[str, Any] = {}
    for name, est in embedders.items():
        params = {k: v for k, v in est.get_params().items() if k not in _RUNTIME_PARAMS}
        label = name or "main"
        logger.info("embedding set %r: %s", label, params)
        base = {"version": _EMBED_CACHE_VERSION, "params": params,
                "meta": est.embedding_meta_.to_dict(), "code": digest}
        lookup = _reused(reuse, name, est.embedding_meta_)
        found = {t.name: r for t in tasks() if (r := lookup(t)) is not None}
        if found:
            logger.info("embedding set %r: %d of %d tasks taken from the given knowledge base",
                        label, len(found), n_tasks)
        jobs = (delayed(fn)({**base, "task": [t.name, t.fingerprint]}, t) for t in tasks()
                if t.name not in found)
        computed = iter(progress(Parallel(n_jobs=n_jobs, return_as="generator")(jobs),
                                 verbose=verbose, desc=f"embedding ({label})",
                                 total=n_tasks - len(found)))
        res = [found[t.name] if t.name in found else next(computed) for t in tasks()]
        out[name] = {"meta": est.embedding_meta_, "params": params,
                     "values": np.stack([r["values"] for r in res]),
                     "n_images": [r["n_images"] for r in res],
                     "time_s": np.array([r["time_s"] for r in res])}
    return out


def _assemble(rows: list[dict[str, Any]], names: list[str], emb: dict[str, Any],
              eval_time: np.ndarray, info: dict[str, dict[str, Any]],
              settings: dict[str, Any]) -> KnowledgeBase:
    main = emb[""]
    extra = [k for k in emb if k]
    provenance = []
    for i, r in enumerate(rows):
        p = dict(r["provenance"])
        p.update({
            "name": r["name"],
            "n_train": int(r["n_train"]),
            "n_test": int(r["n_test_full"]),
            "n_test_evaluated": int(r["n_test"]),
            "test_subsampled": bool(r["n_test"] < r["n_test_full"]),
            "features_shared_in_pool": r["kind"] == "relabel",
            "train_fingerprint": r["train_fingerprint"],
            "test_fingerprint": r["test_fingerprint"],
            "embedding_n_images": int(main["n_images"][i]),
            "extra_embedding_n_images": {k: int(emb[k]["n_images"][i]) for k in extra},
            "extra_embed_time_s": {k: float(emb[k]["time_s"][i]) for k in extra},
            "evaluation": settings,
        })
        provenance.append(p)
    return KnowledgeBase(
        main["meta"],
        task_names=[r["name"] for r in rows],
        embeddings=main["values"],
        extractor_names=names,
        scores=np.stack([r["scores"] for r in rows]),
        stderr=np.stack([r["stderr"] for r in rows]),
        eval_time=eval_time,
        embed_time=main["time_s"],
        provenance=provenance,
        extractor_info=info,
        extra_embeddings={k: (emb[k]["meta"], emb[k]["values"]) for k in extra},
    )


# ----------------------------------------------------------------------------- public
def build_knowledge_details(
    tasks: str | Iterable[TaskInput],
    extractors: Sequence[str] | None = None,
    *,
    seed: int = 0,
    limit: int | None = None,
    skip_missing: bool = False,
    embedder: Task2VecEmbedder | None = None,
    extra_embeddings: Mapping[str, Mapping[str, Any]] | None = None,
    input_size: int | None = 64,
    C: float = 1.0,
    test_cap: int | None = None,
    device: str = "cpu",
    share_features: bool = True,
    evaluations: str = "compute",
    n_jobs: int | None = None,
    memory: Any = None,
    verbose: int | bool = False,
    reuse_embeddings: KnowledgeBase | None = None,
) -> KnowledgeBuild:
    """Build a knowledge base and keep what the build measured.

    Parameters are those of :func:`build_knowledge`.

    Returns
    -------
    KnowledgeBuild
    """
    if evaluations not in ("compute", "cached"):
        raise InvalidParameterError(
            f"evaluations must be 'compute' or 'cached'; got {evaluations!r}.")
    if evaluations == "cached" and memory is None:
        raise InvalidParameterError(
            "evaluations='cached' reads every score from the cache, so it needs memory (the "
            "folder or joblib.Memory of an earlier build); got memory=None.")
    if isinstance(C, bool) or not isinstance(C, int | float) or not np.isfinite(C) or C <= 0:
        raise InvalidParameterError(f"C must be a positive number; got {C!r}.")
    if test_cap is not None and (isinstance(test_cap, bool) or int(test_cap) < 1):
        raise InvalidParameterError(f"test_cap must be None or a positive integer; got "
                                    f"{test_cap!r}.")
    if isinstance(extractors, str):
        raise InvalidInputTypeError(
            f"extractors must be a list of names, not one string; got {extractors!r}. Pass "
            f"[{extractors!r}].")
    names = list(list_extractors(available_only=True) if extractors is None else extractors)
    for name in names:  # unknown or missing extractors fail before any work
        get_extractor(name, device)
    source, suite_name = _task_source(tasks, seed, limit, skip_missing)
    embs = _embedders(embedder, DEFAULT_EXTRA_EMBEDDINGS if extra_embeddings is None
                      else extra_embeddings)
    mem = _as_memory(memory)
    settings: dict[str, Any] = {"suite": suite_name, "seed": seed, "input_size": input_size,
                                "C": C, "test_cap_subset_tasks": test_cap, "n_jobs": 1,
                                "torch_threads": torch.get_num_threads(), "device": device}
    if suite_name is None:
        del settings["suite"], settings["seed"]

    t0 = time.perf_counter()
    rows, n_computed = _evaluate_all(source(), names, mem, input_size, C, test_cap, device,
                                     share_features, evaluations == "cached", verbose, n_jobs)
    t_eval = time.perf_counter() - t0
    logger.info("brute force done in %.0fs (%d of %d tasks computed)", t_eval, n_computed,
                len(rows))
    eval_time, extract_time = _pool_eval_times(rows)

    t0 = time.perf_counter()
    n = len(rows)
    emb = _embed_all(lambda: (st.train for st in itertools.islice(source(), n)), n, embs,
                     mem, n_jobs, verbose, reuse_embeddings)
    t_emb = time.perf_counter() - t0
    info = _extractor_info(names, input_size, C, device)
    kb = _assemble(rows, names, emb, eval_time, info, settings)
    logger.info("built a knowledge base of %d tasks x %d extractors (embedding dim %d) in "
                "%.0fs", len(kb), len(names), kb.meta.dim, t_eval + t_emb)
    return KnowledgeBuild(knowledge=kb, extractors=names, rows=rows, eval_time=eval_time,
                          extract_time=extract_time, embeddings=emb, settings=settings,
                          evaluation_wall_s=t_eval, embedding_wall_s=t_emb,
                          n_computed=n_computed)


def build_knowledge(
    tasks: str | Iterable[TaskInput],
    extractors: Sequence[str] | None = None,
    *,
    seed: int = 0,
    limit: int | None = None,
    skip_missing: bool = False,
    embedder: Task2VecEmbedder | None = None,
    extra_embeddings: Mapping[str, Mapping[str, Any]] | None = None,
    input_size: int | None = 64,
    C: float = 1.0,
    test_cap: int | None = None,
    device: str = "cpu",
    share_features: bool = True,
    evaluations: str = "compute",
    n_jobs: int | None = None,
    memory: Any = None,
    verbose: int | bool = False,
    reuse_embeddings: KnowledgeBase | None = None,
) -> KnowledgeBase:
    """Score extractors on tasks, embed the tasks, and return the knowledge base.

    Parameters
    ----------
    tasks : str or iterable of SuiteTask or (Task, Task)
        A built-in suite name (``"default"``, ``"mini"``; see
        :func:`~t2v_automl.suites.list_suites`), whose tasks are made one at a time, or
        the user's own tasks: :class:`~t2v_automl.suites.SuiteTask` objects or
        ``(train, test)`` pairs of :class:`~t2v_automl.tasks.Task` with equal ``classes``
        (a pair is named after its training task; names must be unique).
    extractors : sequence of str, optional
        Extractor names; ``None`` means every available one.
    seed : int, default=0
        Seed of a built-in suite (ignored for own tasks).
    limit : int, optional
        Only the first ``limit`` tasks (``None`` or 0: all).
    skip_missing : bool, default=False
        Leave out the suite's tasks whose image sources are not installed (else raise).
    embedder : Task2VecEmbedder, optional
        The main embedder (cloned, then fitted); ``None`` means ``Task2VecEmbedder()``.
    extra_embeddings : mapping of str to dict, optional
        Extra embedding sets kept for baselines: name -> parameters that differ from the
        main embedder's. ``None`` means :data:`DEFAULT_EXTRA_EMBEDDINGS`; ``{}`` none.
    input_size : int or None, default=64
        Input size of the resizable extractors (``None``: native sizes).
    C : float, default=1.0
        Inverse regularisation strength of the linear head.
    test_cap : int, optional
        Largest test split of a ``"subset"`` task (a stratified, deterministic
        subsample); relabel tasks and own tasks keep theirs.
    device : str, default="cpu"
        Device of the extractors (the embedder has its own ``device``).
    share_features : bool, default=True
        Compute the features of identical image arrays once per extractor (scores are
        unchanged).
    evaluations : {"compute", "cached"}, default="compute"
        ``"cached"`` takes every score from ``memory`` and raises
        :class:`EvaluationNotCachedError` for a missing one (re-embed only).
    n_jobs : int, optional
        Parallel jobs (joblib; None defers to an enclosing ``joblib.parallel_config``) of
        the embedding phase and, for own tasks, of the evaluation (a suite is evaluated
        task by task, sharing a pool's features). Results do not depend on it.
    memory : str, path or joblib.Memory, optional
        Cache of evaluations and embeddings; an interrupted build resumes from it (the
        knowledge base itself is only returned at the end: nothing half-built).
    verbose : int or bool, default=False
        tqdm progress bars.
    reuse_embeddings : KnowledgeBase, optional
        Take the embeddings (main and extra sets, with their recorded times) of the tasks
        this base already holds — same name, same training images (its provenance's
        ``train_fingerprint``), same embedder settings (equal ``EmbeddingMeta``) — instead
        of computing them: adding extractors to a base's tasks costs only their
        evaluation. Anything that differs is embedded as usual.

    Returns
    -------
    KnowledgeBase
        Tasks in input order, ``extractors`` in the given order; embeddings of the
        training splits; ``extra_embeddings`` as given; provenance with the evaluation
        settings.

    Raises
    ------
    UnknownNameError, WeightsNotFoundError
        An extractor or suite is unknown or not installed (before any work).
    InvalidInputTypeError, InvalidParameterError
        Malformed tasks or settings.
    EvaluationNotCachedError
        ``evaluations="cached"`` and a score is not in the cache.
    """
    return build_knowledge_details(
        tasks, extractors, seed=seed, limit=limit, skip_missing=skip_missing,
        embedder=embedder, extra_embeddings=extra_embeddings, input_size=input_size, C=C,
        test_cap=test_cap, device=device, share_features=share_features,
        evaluations=evaluations, n_jobs=n_jobs, memory=memory, verbose=verbose,
        reuse_embeddings=reuse_embeddings,
    ).knowledge
