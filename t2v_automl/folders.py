"""Knowledge from your own folders: task folders -> (train, test) pairs -> a knowledge base.

``t2v-automl knowledge build OUT.npz --tasks DIR...`` calls
:func:`build_knowledge_from_folders`: :func:`folder_tasks` finds the tasks
(:func:`t2v_automl.tasks.task_folders`: ``root/<class>/<image>``,
``root/train|test/<class>/<image>``, or a parent of many), splits those without a test
split (:func:`split_task`: seeded, stratified), and
:func:`t2v_automl.building.build_knowledge` does the rest (resumable from its cache).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t2v_automl.building import DEFAULT_EXTRA_EMBEDDINGS, build_knowledge
from t2v_automl.exceptions import (
    ImageFolderError,
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
)
from t2v_automl.extractors import get_extractor
from t2v_automl.knowledge import KnowledgeBase
from t2v_automl.suites import SuiteTask
from t2v_automl.tasks import Task

__all__ = ["build_knowledge_from_folders", "folder_tasks", "split_task"]


def split_task(task: Task, test_fraction: float = 0.25, seed: int = 0) -> tuple[Task, Task]:
    """A seeded, stratified ``(train, test)`` split of ``task``.

    Each class gives ``round(test_fraction * n)`` of its ``n`` images to the test split,
    at least two, and keeps at least two for training (a task's minimum); both splits keep
    every class and the images' order. Lazy tasks stay lazy.

    Parameters
    ----------
    task : Task
    test_fraction : float, default=0.25
        In (0, 1).
    seed : int, default=0

    Returns
    -------
    train, test : Task
        Named ``task.name`` and ``task.name + "/test"``.

    Raises
    ------
    InvalidParameterError
        ``test_fraction`` outside (0, 1).
    InvalidTaskError
        A class with fewer than 4 images.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) \
            or not 0 < test_fraction < 1:
        raise InvalidParameterError(
            f"test_fraction must be a number in (0, 1); got {test_fraction!r}.")
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(task.n_classes):
        idx = np.flatnonzero(task.labels == c)
        if idx.size < 4:
            raise InvalidTaskError(
                f"class {str(task.classes[c])!r} of task {task.name!r} has {idx.size} images; "
                "a split keeps at least 2 of each class on each side, so it needs 4. Add "
                "images, or give the test split as root/test/<class>/<image>.")
        k = min(idx.size - 2, max(2, round(test_fraction * idx.size)))
        test_idx.append(rng.permutation(idx)[:k])
    test = np.sort(np.concatenate(test_idx))
    train = np.setdiff1d(np.arange(task.n_images), test)
    return task.subset(train), task.subset(test, name=f"{task.name}/test")


def folder_tasks(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                 test_fraction: float = 0.25, seed: int = 0, image_size: int = 64,
                 on_bad_image: str = "skip") -> list[SuiteTask]:
    """The tasks of image folders, each as a ``(train, test)`` suite task.

    Each path is a task laid out as ``root/<class>/<image>`` or
    ``root/train|test/<class>/<image>``, or a folder of such tasks
    (:func:`~t2v_automl.tasks.task_folders`). A task without a ``test`` folder is split by
    :func:`split_task` (``test_fraction``, ``seed``). Images are listed, not decoded.

    Parameters
    ----------
    paths : path-like or sequence of path-like
    test_fraction : float, default=0.25
    seed : int, default=0
    image_size : int, default=64
        Images are resized to this square size when decoded.
    on_bad_image : {"skip", "fail"}, default="skip"
        See :meth:`Task.from_folder <t2v_automl.tasks.Task.from_folder>`.

    Returns
    -------
    list of SuiteTask
        Named after their folders (``parent/name`` where two share a name); provenance
        ``source="folder"``, ``kind="folder"``, ``path``, ``train_path``, ``test_path``,
        ``split`` (``"folders"`` or the fraction and seed), ``classes``.

    Raises
    ------
    ImageFolderError
        A folder that is not a task, has no images, or whose ``test`` split has other
        classes than its ``train`` split (the message names it).
    InvalidTaskError
        A task with fewer than two classes or a class with fewer than two images (the
        message names the folder).
    """
    from t2v_automl.tasks import task_folders

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found = [tf for p in paths for tf in task_folders(p)]
    if not found:
        raise InvalidParameterError("no task folder given: pass at least one path.")
    names = [tf.name for tf in found]
    out = []
    for tf in found:
        name = tf.name if names.count(tf.name) == 1 else f"{tf.path.parent.name}/{tf.name}"
        prov = {"source": "folder", "kind": "folder", "path": str(tf.path.resolve()),
                "train_path": str(tf.train.resolve()),
                "test_path": None if tf.test is None else str(tf.test.resolve()),
                "split": "folders" if tf.test is not None else
                {"test_fraction": float(test_fraction), "seed": int(seed)}}
        try:
            task = Task.from_folder(tf.train, image_size=image_size, name=name,
                                    on_bad_image=on_bad_image, provenance=prov)
            test = None if tf.test is None else Task.from_folder(
                tf.test, image_size=image_size, name=f"{name}/test", on_bad_image=on_bad_image)
            train, test = split_task(task, test_fraction, seed) if test is None \
                else (task, test)
        except InvalidTaskError as exc:
            raise InvalidTaskError(
                f"task folder {str(tf.path)!r}: {exc} Each class is a sub-folder of images "
                "(root/<class>/<image>).") from exc
        if not np.array_equal(train.classes, test.classes):
            raise ImageFolderError(
                f"the test split {str(tf.test)!r} has classes {test.classes.tolist()} but the "
                f"train split {str(tf.train)!r} has {train.classes.tolist()}; give both the "
                "same class folders.")
        out.append(SuiteTask(name, train, test,
                             {**prov, "classes": [str(c) for c in train.classes]}))
    return out


def build_knowledge_from_folders(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    extractors: Sequence[str] | None = None,
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
    image_size: int | None = None,
    on_bad_image: str = "skip",
    extra_embeddings: Mapping[str, Mapping[str, Any]] | None = None,
    **params: Any,
) -> KnowledgeBase:
    """Build a knowledge base from image folders: :func:`folder_tasks`, then
    :func:`build_knowledge`.

    Parameters
    ----------
    paths : path-like or sequence of path-like
        Tasks (``root/<class>/<image>``, ``root/train|test/<class>/<image>``) or folders
        of tasks.
    extractors : sequence of str, optional
        Extractor names (the zoo); ``None`` means every available one.
    test_fraction, seed, on_bad_image
        As in :func:`folder_tasks`: a task without a ``test`` folder gets a seeded,
        stratified split.
    image_size : int, optional
        The size images are decoded at; default: the larger of ``input_size`` (224 when
        None) and the embedder's ``image_size``.
    extra_embeddings : mapping, optional
        ``None`` means only the ``"domain"`` set (what
        :class:`~t2v_automl.estimators.HybridSelector`'s screen needs); ``{}`` none.
    **params
        The other parameters of :func:`build_knowledge`: ``embedder``, ``input_size``,
        ``C``, ``n_jobs`` (tasks are evaluated and embedded in parallel, on the backend of
        an enclosing ``joblib.parallel_config``), ``memory`` (a cache folder: a killed
        build resumes from it), ``verbose`` (progress bars)...

    Returns
    -------
    KnowledgeBase
        One task per folder, in the order found; provenance with the folders and the split.

    Raises
    ------
    ImageFolderError, InvalidTaskError
        See :func:`folder_tasks`.
    UnknownNameError, WeightsNotFoundError
        An extractor is unknown or not installed (before any work).
    """
    for key in ("tasks", "seed", "limit", "skip_missing"):
        if key in params:
            raise InvalidParameterError(
                f"build_knowledge_from_folders() takes no {key!r}; the tasks are the "
                "folders (use build_knowledge for suites).")
    if isinstance(extractors, str):
        raise InvalidInputTypeError(
            f"extractors must be a list of names, not one string; got {extractors!r}. Pass "
            f"[{extractors!r}].")
    for name in extractors or ():  # unknown extractors fail before the folders are read
        get_extractor(name, params.get("device", "cpu"))
    if image_size is None:
        embedder = params.get("embedder")
        size = params.get("input_size", 64)
        image_size = max(size or 224, int(getattr(embedder, "image_size", 64) or 64), 32)
    tasks = folder_tasks(paths, test_fraction=test_fraction, seed=seed,
                         image_size=image_size, on_bad_image=on_bad_image)
    extra = {"domain": DEFAULT_EXTRA_EMBEDDINGS["domain"]} if extra_embeddings is None \
        else extra_embeddings
    return build_knowledge(tasks, extractors, extra_embeddings=extra, **params)
