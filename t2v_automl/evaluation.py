"""Brute force: how well does each extractor do on each task?

The score of an extractor on a task is the test accuracy of a *linear head* on its frozen
features: a scikit-learn :class:`~sklearn.linear_model.LogisticRegression` on standardised
penultimate-layer features, fitted on the task's training split and measured on its test
split. These scores are the ground truth the selector learns from, so each result also
carries the binomial standard error of its accuracy and the per-image correctness, for
split-half and bootstrap analyses of how precisely the ranking is known.

:func:`evaluate_extractor` scores one extractor on one task; :func:`evaluate_zoo` scores
many extractors on many tasks, in parallel over tasks with joblib and optionally cached
on disk with a joblib :class:`~joblib.Memory`. :func:`make_linear_head` is the
classifier every score is measured with. (The word "probe" is kept for the Task2Vec probe
network of :mod:`t2v_automl.probes`; :func:`make_probe` is a deprecated alias.)

The knowledge-base build that uses these scores is :func:`t2v_automl.building.build_knowledge`
(it needs the embedder, a layer above this module).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t2v_automl._logging import logger
from t2v_automl._parallel import check_allocator, run_jobs
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
    UnknownNameError,
)
from t2v_automl.extractors import (
    ExtractorSpec,
    check_available,
    get_extractor,
    list_extractors,
)
from t2v_automl.tasks import Task, as_task

__all__ = [
    "EvalResult",
    "ZooResults",
    "evaluate_extractor",
    "evaluate_zoo",
    "make_linear_head",
    "make_probe",
]

#: Bump when what a cached result means changes (linear-head recipe, fields).
_CACHE_VERSION = 1


@dataclass(eq=False)
class EvalResult:
    """The score of one extractor on one task.

    Attributes
    ----------
    extractor : str
        Extractor name.
    task : str
        Name of the training task.
    score : float
        Test accuracy of the linear head, in [0, 1].
    stderr : float
        Binomial standard error of ``score``: ``sqrt(score * (1 - score) / n_test)``.
    correct : ndarray of shape (n_test,), bool
        Whether each test image was classified right (test-set order).
    n_train, n_test, n_classes : int
    input_size : int
        Input size the extractor actually ran at.
    C : float
        Inverse regularisation strength used for the final fit (chosen by
        cross-validation when several were given).
    extract_time_s, fit_time_s : float
        Wall time of feature extraction (train + test) and of fitting the linear head
        (cross-validation included).
    weights_sha256 : str
        Digest of the extractor's weights.
    train_fingerprint, test_fingerprint : str
        :attr:`Task.fingerprint` of the two splits.
    """

    extractor: str
    task: str
    score: float
    stderr: float
    correct: np.ndarray = field(repr=False)
    n_train: int
    n_test: int
    n_classes: int
    input_size: int
    C: float
    extract_time_s: float
    fit_time_s: float
    weights_sha256: str = field(repr=False)
    train_fingerprint: str = field(repr=False)
    test_fingerprint: str = field(repr=False)

    @property
    def time_s(self) -> float:
        """Wall time of feature extraction plus linear-head fitting."""
        return self.extract_time_s + self.fit_time_s

    def to_dict(self) -> dict[str, Any]:
        """The result as plain Python values (``correct`` as a list of bools)."""
        d = asdict(self)
        d["correct"] = self.correct.tolist()
        d["time_s"] = self.time_s
        return d


@dataclass(eq=False)
class ZooResults:
    """Scores of several extractors on several tasks.

    Attributes
    ----------
    extractors : list of str
        Column names.
    tasks : list of str
        Row names (training-task names).
    scores : ndarray of shape (n_tasks, n_extractors)
        Test accuracies.
    stderr : ndarray of shape (n_tasks, n_extractors)
        Binomial standard errors of the accuracies.
    times : ndarray of shape (n_tasks, n_extractors)
        Seconds of feature extraction plus linear-head fitting (as measured when computed; a
        cached result keeps its original time).
    results : list of list of EvalResult
        ``results[i][j]`` is task ``i`` and extractor ``j``, with per-image correctness.
    """

    extractors: list[str]
    tasks: list[str]
    scores: np.ndarray
    stderr: np.ndarray
    times: np.ndarray
    results: list[list[EvalResult]] = field(repr=False)

    def correct(self, task: int | str, extractor: int | str) -> np.ndarray:
        """Per-test-image correctness of one (task, extractor) cell.

        Parameters
        ----------
        task : int or str
            Row index or task name.
        extractor : int or str
            Column index or extractor name.

        Returns
        -------
        ndarray of bool
        """
        i = self.tasks.index(task) if isinstance(task, str) else int(task)
        j = self.extractors.index(extractor) if isinstance(extractor, str) else int(extractor)
        return self.results[i][j].correct

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per (task, extractor) without the correctness arrays (for pandas)."""
        rows = []
        for row in self.results:
            for r in row:
                d = r.to_dict()
                del d["correct"]
                rows.append(d)
        return rows


# ----------------------------------------------------------------------------- checks
def _check_pair(train: Any, test: Any) -> tuple[Task, Task]:
    for what, obj in (("train", train), ("test", test)):
        if not isinstance(obj, Task):
            raise InvalidInputTypeError(
                f"the {what} split must be a Task; got {type(obj).__name__}. Build one with "
                "Task.from_arrays(images, labels) or t2v_automl.as_task(...)."
            )
    if not (train.classes.shape == test.classes.shape
            and np.array_equal(train.classes, test.classes)):
        raise InvalidTaskError(
            f"train task {train.name!r} and test task {test.name!r} are not splits of one "
            f"task: their classes differ (train: {train.classes.tolist()[:10]}, test: "
            f"{test.classes.tolist()[:10]}). Expected equal `classes` arrays, so that label "
            "code k means the same class in both; split one Task with Task.subset, or make "
            "sure both splits contain every class."
        )
    return train, test


def _check_C(C: float | Sequence[float]) -> tuple[float, ...]:
    values = (C,) if isinstance(C, int | float | np.floating | np.integer) else tuple(C)
    if not values or any(isinstance(c, bool) or not np.isfinite(c) or c <= 0 for c in values):
        raise InvalidParameterError(
            f"C must be a positive number or a non-empty sequence of positive numbers; got {C!r}.")
    return tuple(float(c) for c in values)


def _check_extractor(extractor: Any) -> ExtractorSpec:
    """The spec of a name, scheme name, spec, module or function (registered here)."""
    return check_available(extractor)


# ----------------------------------------------------------------------------- the linear head
def make_linear_head(C: float = 1.0, random_state: int = 0) -> Any:
    """The linear head every score of a knowledge base is measured with (unfitted).

    ``StandardScaler`` then ``LogisticRegression(C, max_iter=2000)``; give it float64
    features (``StandardScaler`` treats float32 columns with tiny variance as constant).

    Parameters
    ----------
    C : float, default=1.0
        Inverse regularisation strength of the logistic regression.
    random_state : int, default=0

    Returns
    -------
    sklearn.pipeline.Pipeline
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(),
                         LogisticRegression(C=C, max_iter=2000, random_state=random_state))


def make_probe(C: float = 1.0, random_state: int = 0) -> Any:
    """Deprecated alias of :func:`make_linear_head` (emits a ``FutureWarning``).

    "Probe" names the Task2Vec probe network (:mod:`t2v_automl.probes`); the classifier
    on frozen extractor features is the *linear head*.

    Parameters
    ----------
    C : float, default=1.0
    random_state : int, default=0

    Returns
    -------
    sklearn.pipeline.Pipeline
    """
    warnings.warn("t2v_automl.evaluation.make_probe is deprecated; use make_linear_head (the "
                  "same pipeline). It will be removed in a future release.", FutureWarning,
                  stacklevel=2)
    return make_linear_head(C, random_state)


def _fit_linear_head(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray,
                     Cs: tuple[float, ...], n_splits: int, random_state: int
                     ) -> tuple[np.ndarray, float]:
    """Fit the standardised logistic-regression linear head; return predictions and C."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    # float64: StandardScaler treats float32 columns with tiny variance as constant
    x_train = f_train.astype(np.float64)
    x_test = f_test.astype(np.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        C = Cs[0]
        if len(Cs) > 1:
            folds = min(int(n_splits), int(np.bincount(y_train).min()))
            if folds < 2:
                C = Cs[len(Cs) // 2]
                logger.info("too few images per class to cross-validate C; using C=%g", C)
            else:
                cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
                means = [cross_val_score(make_linear_head(c, random_state), x_train, y_train,
                                         cv=cv).mean() for c in Cs]
                C = Cs[int(np.argmax(means))]
        model = make_linear_head(C, random_state).fit(x_train, y_train)
        pred = model.predict(x_test)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        logger.info("the logistic-regression linear head did not fully converge (C=%g)", C)
    return pred, C


def evaluate_extractor(extractor_name: Any, train: Task, test: Task, *,
                       input_size: int | None = None, C: float | Sequence[float] = 1.0,
                       n_splits: int = 3, random_state: int = 0, device: str = "cpu",
                       batch_size: int = 128) -> EvalResult:
    """Score one extractor on one task with a linear head on its frozen features.

    Parameters
    ----------
    extractor_name : str, ExtractorSpec, nn.Module or callable
        One of :func:`~t2v_automl.extractors.list_extractors`, a scheme name
        (``"timm:resnet18@/path/r18.pth"``), a spec from
        :func:`~t2v_automl.extractors.as_extractor`, or a module or function giving
        ``(n, d)`` features (see :func:`~t2v_automl.extractors.get_extractor`).
    train, test : Task
        The two splits of one task (equal ``classes``). The test split sets the precision
        of the score: with ``n`` test images the standard error is up to ``0.5/sqrt(n)``.
    input_size : int, optional
        Input size for resizable extractors (native size when ``None``); fixed-size
        extractors ignore it. The size used is recorded in the result.
    C : float or sequence of float, default=1.0
        Inverse L2 regularisation strength. With several values, the one with the best
        stratified ``n_splits``-fold cross-validated accuracy on the training split is used.
    n_splits : int, default=3
        Folds for choosing ``C`` (capped by the smallest class count).
    random_state : int, default=0
        Seeds the folds and the solver; the result is deterministic for fixed inputs.
    device : str, default="cpu"
    batch_size : int, default=128
        Images per forward pass.

    Returns
    -------
    EvalResult

    Raises
    ------
    UnknownNameError
        Unknown extractor name.
    WeightsNotFoundError
        The extractor's package is not installed.
    InvalidTaskError
        ``train`` and ``test`` have different ``classes``.
    """
    train, test = _check_pair(train, test)
    Cs = _check_C(C)
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer) or n_splits < 2:
        raise InvalidParameterError(f"n_splits must be an integer >= 2; got {n_splits!r}.")
    ext = get_extractor(_check_extractor(extractor_name), device)
    size = ext.resolve_input_size(input_size)
    if test.n_images < 100:
        logger.info("task %r: only %d test images; the accuracy's standard error is up to "
                    "%.1f points", test.name, test.n_images, 50 / math.sqrt(test.n_images))

    t0 = time.perf_counter()
    f_train = ext.transform(train.images, batch_size=batch_size, input_size=size)
    f_test = ext.transform(test.images, batch_size=batch_size, input_size=size)
    t1 = time.perf_counter()
    pred, C_used = _fit_linear_head(f_train, train.labels, f_test, Cs, n_splits, random_state)
    t2 = time.perf_counter()

    correct = np.asarray(pred == test.labels, dtype=bool)
    score = float(correct.mean())
    stderr = math.sqrt(score * (1.0 - score) / correct.size)
    logger.debug("%s on %s: accuracy %.4f +- %.4f (%.2fs)", ext.name, train.name, score,
                 stderr, t2 - t0)
    return EvalResult(
        extractor=ext.name, task=train.name, score=score, stderr=stderr, correct=correct,
        n_train=train.n_images, n_test=test.n_images, n_classes=train.n_classes,
        input_size=size, C=C_used, extract_time_s=t1 - t0, fit_time_s=t2 - t1,
        weights_sha256=ext.weights_sha256, train_fingerprint=train.fingerprint,
        test_fingerprint=test.fingerprint,
    )


# ----------------------------------------------------------------------------- the zoo
def _evaluate_cached(key: dict[str, Any], train: Task, test: Task,
                     spec: ExtractorSpec | None = None) -> EvalResult:
    """What a joblib Memory caches: ``key`` identifies the call; tasks and spec are ignored."""
    return evaluate_extractor(key["extractor"] if spec is None else spec, train, test,
                              **key["settings"])


def _evaluate_pair(extractors: list[ExtractorSpec], train: Task, test: Task,
                   settings: dict[str, Any], memory: Any) -> list[EvalResult]:
    """One task, every extractor: the specs travel with the call (to a worker, by value)."""
    check_allocator()
    out = []
    cached = None if memory is None else memory.cache(_evaluate_cached,
                                                      ignore=["train", "test", "spec"])
    train_fp, test_fp = (train.fingerprint, test.fingerprint) if cached else ("", "")
    for spec in extractors:
        if cached is None:
            out.append(evaluate_extractor(spec, train, test, **settings))
            continue
        ext = get_extractor(spec, settings["device"])
        key = {"version": _CACHE_VERSION, "extractor": spec.name,
               "weights_sha256": ext.weights_sha256, "settings": settings,
               "train": [train.name, train_fp, [str(c) for c in train.classes]],
               "test": [test.name, test_fp]}
        out.append(cached(key, train, test, spec))
    return out


def _as_memory(memory: Any) -> Any:
    if memory is None:
        return None
    from joblib import Memory

    if isinstance(memory, Memory):
        return memory if memory.location is not None else None
    if isinstance(memory, str | Path):
        return Memory(location=str(memory), verbose=0)
    raise InvalidInputTypeError(
        f"memory must be None, a directory path or a joblib.Memory; got "
        f"{type(memory).__name__}."
    )


def evaluate_zoo(extractors: Sequence[Any] | None, pairs: Sequence[tuple[Task, Task]],
                 n_jobs: int | None = None, memory: Any = None, verbose: int = 0, *,
                 input_size: int | None = None, C: float | Sequence[float] = 1.0,
                 n_splits: int = 3, random_state: int = 0, device: str = "cpu",
                 batch_size: int = 128) -> ZooResults:
    """Score every extractor on every task (brute force).

    Parameters
    ----------
    extractors : sequence or None
        Extractor names, scheme names (``"timm:resnet18@/path/r18.pth"``), specs
        (:func:`~t2v_automl.extractors.as_extractor`, :func:`~t2v_automl.extractors.read_zoo`
        names) or modules / feature functions; ``None`` means every available registered
        one (``list_extractors(available_only=True)``). Each travels to the workers with
        the call (a spec by value, a scheme name resolved there), so user extractors need
        no registration in the workers.
    pairs : sequence of (Task, Task)
        ``(train, test)`` splits of each task; the two of a pair must have equal
        ``classes``.
    n_jobs : int or None, default=None
        Tasks evaluated in parallel by joblib (``-1``: all cores). None means 1 unless
        inside a ``joblib.parallel_config`` context, whose backend (loky, threading, dask,
        Ray...) and ``n_jobs`` are then used. Each worker loads the extractors once.
        Results do not depend on ``n_jobs`` or the backend.
    memory : str, path, joblib.Memory or None, default=None
        Cache each (extractor, task) result on disk; a cached result is keyed by the
        extractor, its weights digest, the task fingerprints and names, and the settings.
    verbose : int, default=0
        Show a tqdm progress bar over tasks when truthy.
    input_size, C, n_splits, random_state, device, batch_size
        As in :func:`evaluate_extractor`; the same for every cell.

    Returns
    -------
    ZooResults

    Raises
    ------
    UnknownNameError, WeightsNotFoundError
        An extractor is unknown or not installed (checked before any work).
    InvalidTaskError
        A pair's splits have different classes, or ``pairs`` is empty.
    """
    from joblib import delayed

    if isinstance(extractors, str):
        raise InvalidInputTypeError(
            f"extractors must be a list of names, not one string; got {extractors!r}. Pass "
            f"[{extractors!r}]."
        )
    wanted = list(list_extractors(available_only=True) if extractors is None else extractors)
    if not wanted:
        raise UnknownNameError("no extractors to evaluate: pass a non-empty list of names.")
    specs = [_check_extractor(e) for e in wanted]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise UnknownNameError(f"extractor names must be unique; got {names}.")
    checked: list[tuple[Task, Task]] = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidInputTypeError(
                f"pairs[{i}] must be a (train, test) pair of Tasks; got "
                f"{type(pair).__name__}."
            )
        checked.append(_check_pair(as_task(pair[0]), as_task(pair[1])))
    if not checked:
        raise InvalidTaskError("pairs is empty: pass at least one (train, test) pair.")
    _check_C(C)
    mem = _as_memory(memory)
    settings = {"input_size": input_size, "C": C if isinstance(C, int | float) else list(C),
                "n_splits": n_splits, "random_state": random_state, "device": device,
                "batch_size": batch_size}

    jobs = [delayed(_evaluate_pair)(specs, tr, te, settings, mem) for tr, te in checked]
    logger.info("evaluating %d extractors on %d tasks (n_jobs=%s)", len(names), len(checked),
                n_jobs)
    rows = run_jobs(jobs, n_jobs, verbose=verbose, desc="tasks")

    shape = (len(checked), len(names))
    scores, stderr, times = np.empty(shape), np.empty(shape), np.empty(shape)
    for i, row in enumerate(rows):
        for j, r in enumerate(row):
            scores[i, j], stderr[i, j], times[i, j] = r.score, r.stderr, r.time_s
    return ZooResults(extractors=names, tasks=[tr.name for tr, _ in checked], scores=scores,
                      stderr=stderr, times=times, results=rows)
