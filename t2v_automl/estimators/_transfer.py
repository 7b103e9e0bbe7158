"""TransferabilitySelector: rank candidates by a transferability score of the task's features.

No knowledge base: for each new task and each candidate extractor, the task's images go
through the extractor (:func:`t2v_automl.transferability.task_features`, the one feature
path, cached when ``memory`` is given) and a registered transferability score
(:func:`t2v_automl.transferability.get_transferability`) is computed with the labels. It
costs one forward pass per candidate, far more than one embedding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from t2v_automl._logging import progress
from t2v_automl._validation import check_int
from t2v_automl.estimators._base import SelectorMixin
from t2v_automl.exceptions import InvalidInputTypeError, UnknownNameError
from t2v_automl.tasks import Task, as_task
from t2v_automl.transferability import (
    get_transferability,
    list_transferability,
    softmax,
    subsample_task,
    task_features,
)

__all__ = ["TransferabilitySelector"]


def _tasks(X: Any) -> list[Task]:
    if isinstance(X, Task):
        raise InvalidInputTypeError(
            "X must be a sequence of tasks; got a single Task. Wrap it in a list."
        )
    if X is None:
        raise InvalidInputTypeError(
            "X is None; pass a sequence of tasks (Task objects, (images, labels) pairs or "
            "suite tasks)."
        )
    tasks = []
    for t in X:
        if not isinstance(t, Task) and isinstance(getattr(t, "train", None), Task):
            t = t.train
        tasks.append(as_task(t))
    return tasks


class TransferabilitySelector(SelectorMixin, RegressorMixin, BaseEstimator):
    """Rank extractors for a task by a transferability score of their features.

    For each new task and each candidate extractor, the task's images are passed through
    the extractor (its source head for LEEP and NCE) and the score is computed with the
    task's labels. Nothing is learned from other tasks: ``fit`` only fixes the candidates.

    Parameters
    ----------
    measure : str, default="logme"
        A registered transferability score
        (:func:`~t2v_automl.transferability.list_transferability`: ``"logme"``,
        ``"logme_authors"``, ``"logme_pca"``, ``"ncti"``, ``"etran"``, ``"leep"``,
        ``"nce"``, ``"h_score"``, ``"knn_accuracy"`` and any registered with
        :func:`~t2v_automl.transferability.register_transferability`; the parameter is
        not called ``score`` because :meth:`score` is the ranking-quality method).
        Relative scores (NCTI, ETran) are combined across the candidates of each task,
        so a task's scores depend on which candidates are compared.
        Scores that need the extractor's own source classifier give NaN (ranked last) for
        extractors without one.
    extractors : sequence of str, ExtractorSpec, nn.Module or callable, optional
        Candidates: registered names, scheme names (``"timm:resnet18"``,
        ``"torchvision:resnet18"``, ``"hf:<repo>"``, ``"<arch>@<path>"``), specs from
        :func:`~t2v_automl.extractors.as_extractor`, modules or feature functions
        (:func:`~t2v_automl.extractors.extractor_name` names them). Default: the
        columns of ``Y`` given to :meth:`fit`, or every installed extractor when ``Y``
        is None.
    input_size : int, optional
        Input size for resizable extractors (their native size when None).
    max_images : int or None, default=500
        At most this many images of a task are used (class-stratified, seeded), None = all.
    batch_size : int, default=128
    device : str, default="cpu"
    random_state : int, default=0
        Seeds the image subsample.
    memory : None, str, path or joblib.Memory, default=None
        Disk cache of the features (:func:`~t2v_automl.transferability.task_features`).
    verbose : int, default=0
        A progress bar over the (task, candidate) passes when truthy.

    Attributes
    ----------
    extractor_names_ : list of str
    extractor_specs_ : list of ExtractorSpec
        The candidates' specs (what a pickled selector re-registers in another process).
    """

    def __init__(self, measure: str = "logme", extractors: Sequence[str] | None = None,
                 input_size: int | None = None, max_images: int | None = 500,
                 batch_size: int = 128, device: str = "cpu", random_state: int = 0,
                 memory: Any = None, verbose: int = 0) -> None:
        self.measure = measure
        self.extractors = extractors
        self.input_size = input_size
        self.max_images = max_images
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.memory = memory
        self.verbose = verbose

    def fit(self, X: Any = None, y: Any = None) -> TransferabilitySelector:
        """Fix the candidate extractors.

        Parameters
        ----------
        X : ignored
        y : DataFrame or array-like of shape (n_tasks, n_extractors), optional
            Only its column names are used (a DataFrame), when ``extractors`` is None.

        Returns
        -------
        self

        Raises
        ------
        UnknownNameError
            Unknown measure or extractor names.
        """
        from t2v_automl.extractors import list_extractors, resolve_extractor

        if self.measure not in list_transferability():
            raise UnknownNameError(
                f"unknown measure {self.measure!r}; expected one of "
                f"{', '.join(map(repr, list_transferability()))} (register your own with "
                f"t2v_automl.transferability.register_transferability)."
            )
        if self.max_images is not None:
            check_int(self.max_images, "max_images", 2)
        check_int(self.batch_size, "batch_size", 1)
        if self.extractors is not None:
            if isinstance(self.extractors, str):
                raise InvalidInputTypeError(
                    f"extractors must be a list of names, not one string; got "
                    f"{self.extractors!r}. Pass [{self.extractors!r}]."
                )
            cands = list(self.extractors)
        elif y is not None and hasattr(y, "columns"):
            cands = [str(c) for c in y.columns]
        else:
            cands = list_extractors(available_only=True)
        # names, scheme names ("timm:resnet18"), specs, modules and functions alike; the
        # specs travel with a pickled selector and register themselves where it lands
        specs = [resolve_extractor(e) for e in cands]
        names = [sp.name for sp in specs]
        if not names or len(set(names)) != len(names):
            raise UnknownNameError(f"extractors must be unique and non-empty; got {names}.")
        self.extractor_names_ = names
        self.extractor_specs_ = specs
        return self

    def _inputs(self, name: str, task: Task) -> tuple[Any, float]:
        """(the score's input for this candidate or None, the features' seconds)."""
        from t2v_automl.extractors import get_extractor

        score = get_transferability(self.measure)
        kw: dict[str, Any] = {"input_size": self.input_size, "batch_size": int(self.batch_size),
                              "device": self.device, "memory": self.memory,
                              "return_seconds": True}
        if score.needs == "features":
            return task_features(name, task, **kw)
        if not get_extractor(name, device=self.device).has_source_head:
            return None, 0.0
        logits, seconds = task_features(name, task, kind="source_logits", **kw)
        logits = np.asarray(logits, dtype=np.float64)
        return (softmax(logits) if score.needs == "source_probs"
                else logits.argmax(axis=1)), seconds

    def predict_scores(self, X: Any, return_times: bool = False
                       ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The transferability score of every candidate on every task.

        Parameters
        ----------
        X : sequence of tasks
            :class:`~t2v_automl.tasks.Task` objects, ``(images, labels)`` pairs or suite
            tasks (their ``.train`` split is used).
        return_times : bool, default=False
            Also return the seconds per task and candidate: the features' compute time (for
            features read from ``memory``, the time of the run that computed them: what
            they cost without a cache) plus the score's (a relative score, computed for
            all candidates at once, is shared equally among them).

        Returns
        -------
        scores : ndarray of shape (n_tasks, n_extractors)
            Higher = better; NaN where the score cannot be computed (a source-head score
            for an extractor without one).
        times : ndarray of shape (n_tasks, n_extractors)
            Only with ``return_times``.

        Raises
        ------
        InvalidTaskError
            A candidate's features are unusable (NaN or inf): the message names it.
        """
        from t2v_automl.extractors import extractor_name

        check_is_fitted(self, "extractor_names_")
        tasks = [subsample_task(t, self.max_images, self.random_state) for t in _tasks(X)]
        for spec in getattr(self, "extractor_specs_", ()):
            extractor_name(spec)  # a user's candidate, known in this process too
        names = list(self.extractor_names_)
        score = get_transferability(self.measure)
        out = np.full((len(tasks), len(names)), np.nan)
        times = np.zeros_like(out)
        inputs: list[list[Any]] = [[None] * len(names) for _ in tasks]
        cells = [(i, j) for i in range(len(tasks)) for j in range(len(names))]
        for i, j in progress(cells, verbose=self.verbose, desc=self.measure):
            inputs[i][j], times[i, j] = self._inputs(names[j], tasks[i])
        for i, task in enumerate(tasks):
            if score.relative:
                t0 = time.perf_counter()
                out[i] = score.score_candidates(inputs[i], task.labels, names)
                times[i] += (time.perf_counter() - t0) / len(names)
                continue
            for j in range(len(names)):
                t0 = time.perf_counter()
                out[i, j] = score.score_candidates([inputs[i][j]], task.labels,
                                                   [names[j]])[0]
                times[i, j] += time.perf_counter() - t0
        return (out, times) if return_times else out

    def predict(self, X: Any) -> np.ndarray:
        """The transferability scores (:meth:`predict_scores`): (n_tasks, n_extractors)."""
        return np.asarray(self.predict_scores(X))

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.target_tags.required = False
        return tags
