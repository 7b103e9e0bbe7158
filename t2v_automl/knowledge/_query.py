"""Questions asked of a knowledge base: nearest tasks, per-extractor statistics, sources.

Also the names of the provenance keys that the package writes and reads. A task's
provenance is a free JSON dict; these constants are the keys that have a meaning to
t2v-automl (the shipped base has the ``PROVENANCE_*`` keys of its build on every task; the
others are written by ``t2v-automl knowledge add`` and the Optuna callback).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from t2v_automl.distances import pairwise_distances
from t2v_automl.embedding import Embedding

if TYPE_CHECKING:
    from t2v_automl.knowledge._table import KnowledgeBase

__all__ = [
    "BEST_TOLERANCE", "PROVENANCE_EVALUATION", "PROVENANCE_EXTRA_EMBED_TIME",
    "PROVENANCE_FINGERPRINT", "PROVENANCE_KIND", "PROVENANCE_N_CLASSES",
    "PROVENANCE_N_IMAGES", "PROVENANCE_N_TEST_PER_CLASS", "PROVENANCE_NAME",
    "PROVENANCE_OPTUNA", "PROVENANCE_PATH", "PROVENANCE_POOL", "PROVENANCE_SOURCE",
    "PROVENANCE_SOURCE_DATASET", "PROVENANCE_TASK_FINGERPRINT", "UNKNOWN_SOURCE",
    "ExtractorSummary", "evaluation_settings", "extractor_summary", "nearest_tasks",
    "source_counts", "source_of", "task_summary",
]

# -- keys of the provenance dicts of the shipped base (benchmarks/build_knowledge.py and
#    `t2v-automl knowledge build`) -----------------------------------------------------------
#: Task name as the suite spells it.
PROVENANCE_NAME = "name"
#: Dataset the task's images come from (``"mnist"``, ``"fashion_mnist"``...).
PROVENANCE_SOURCE_DATASET = "source_dataset"
#: How the task was cut from its pool (``"subset"``, ``"superclass"``...).
PROVENANCE_KIND = "kind"
#: Pool of images the task was drawn from; tasks of one pool share images.
PROVENANCE_POOL = "pool"
#: Test images per class of the task's evaluation.
PROVENANCE_N_TEST_PER_CLASS = "n_test_per_class"
#: Seconds spent on each extra embedding set (dict set name -> seconds).
PROVENANCE_EXTRA_EMBED_TIME = "extra_embed_time_s"
#: Settings of the evaluation that produced the scores (dict: ``C``, ``input_size``...).
PROVENANCE_EVALUATION = "evaluation"

# -- keys written by `t2v-automl knowledge add` -----------------------------------------------
#: Where the task came from when no dataset is named (``"cli"`` for ``knowledge add``).
PROVENANCE_SOURCE = "source"
#: Absolute path of the dataset that was added.
PROVENANCE_PATH = "path"
#: Fingerprint of the added task's images.
PROVENANCE_FINGERPRINT = "fingerprint"
#: Number of images of the added task.
PROVENANCE_N_IMAGES = "n_images"
#: Number of classes of the added task.
PROVENANCE_N_CLASSES = "n_classes"

# -- keys written by the Optuna callback (t2v_automl.integration.optuna) ----------------------
#: Section of the Optuna callback (best trials per extractor); its ``PROVENANCE_KEY``.
PROVENANCE_OPTUNA = "optuna"
#: Fingerprint of the task a study ran on.
PROVENANCE_TASK_FINGERPRINT = "task_fingerprint"

#: Source shown for a task whose provenance names none.
UNKNOWN_SOURCE = "?"
#: Scores within this of a task's best count as best too (ties).
BEST_TOLERANCE = 1e-12


def source_of(provenance: Mapping[str, Any]) -> str:
    """Where a task came from: its source dataset, else its source, else ``"?"``.

    Parameters
    ----------
    provenance : mapping
        One task's provenance dict.

    Returns
    -------
    str
    """
    return str(provenance.get(PROVENANCE_SOURCE_DATASET) or provenance.get(PROVENANCE_SOURCE)
               or UNKNOWN_SOURCE)


def source_counts(kb: KnowledgeBase) -> dict[str, int]:
    """Number of tasks per source (:func:`source_of`), sorted by source.

    Parameters
    ----------
    kb : KnowledgeBase

    Returns
    -------
    dict of str to int
    """
    counts: dict[str, int] = {}
    for p in kb.provenance:
        s = source_of(p)
        counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items()))


def evaluation_settings(kb: KnowledgeBase) -> dict[str, Any]:
    """Settings of the evaluation that scored the base (first task's, ``{}`` if none).

    Parameters
    ----------
    kb : KnowledgeBase

    Returns
    -------
    dict
        The :data:`PROVENANCE_EVALUATION` entry of the first task (a copy), or ``{}`` for an
        empty base or a base built without one.
    """
    if not len(kb):
        return {}
    return dict(kb.provenance[0].get(PROVENANCE_EVALUATION, {}))


def _best(row: np.ndarray, names: list[str]) -> tuple[str, float]:
    if np.isnan(row).all():
        return "-", math.nan
    j = int(np.nanargmax(row))
    return names[j], float(row[j])


def task_summary(kb: KnowledgeBase) -> list[dict[str, Any]]:
    """Per task, in row order: its source and its best measured extractor.

    Parameters
    ----------
    kb : KnowledgeBase

    Returns
    -------
    list of dict
        ``task``, ``source`` (:func:`source_of`), ``best`` (extractor name, ``"-"`` when
        nothing was measured) and ``best_score`` (NaN then). The first of tied extractors
        is named.
    """
    S, names = kb.scores, kb.extractor_names
    out = []
    for i, (t, p) in enumerate(zip(kb.task_names, kb.provenance, strict=True)):
        best, score = _best(S[i], names)
        out.append({"task": t, "source": source_of(p), "best": best, "best_score": score})
    return out


def nearest_tasks(kb: KnowledgeBase, embedding: Embedding, metric: str, k: int
                  ) -> list[dict[str, Any]]:
    """The ``k`` known tasks nearest to ``embedding``, with their best extractor.

    Parameters
    ----------
    kb : KnowledgeBase
    embedding : Embedding
        Made like the base's main embeddings, or like one of its extra sets (e.g. a domain
        embedding: compared with that set).
    metric : str
        A distance of :mod:`t2v_automl.distances` (``"hellinger"``, ``"cosine"``...).
    k : int
        How many tasks (fewer when the base is smaller).

    Returns
    -------
    list of dict
        Nearest first (ties in row order): ``task``, ``distance``, ``source``, ``best``
        (extractor, ``"-"`` when none was measured) and ``best_score`` (NaN then). A task
        without an entry in the extra set compared with comes last, at distance inf.

    Raises
    ------
    IncompatibleEmbeddingError
        ``embedding`` was made like neither the main embeddings nor an extra set.
    """
    E, meta = kb.embeddings, kb.meta
    for name in kb.extra_names:
        extra_meta, values = kb.extra_embeddings(name)
        if extra_meta.compat_key() == embedding.meta.compat_key() \
                and meta.compat_key() != embedding.meta.compat_key():
            E, meta = values, extra_meta
            break
    embedding.check_compatible(meta)
    # Tasks without an entry in an extra set (rows of NaN) are never near.
    present = np.isfinite(E).all(axis=1)
    d = np.full(len(E), np.inf)
    if present.any():
        d[present] = pairwise_distances(E[present], embedding.values[None, :],
                                        metric=metric)[:, 0]
    d = np.where(np.isfinite(d), d, np.inf)
    order = np.argsort(d, kind="stable")[:k]
    S, names, prov, tasks = kb.scores, kb.extractor_names, kb.provenance, kb.task_names
    out = []
    for i in order:
        best, score = _best(S[i], names)
        out.append({"task": tasks[i], "distance": float(d[i]),
                    "source": source_of(prov[i]), "best": best, "best_score": score})
    return out


@dataclass(frozen=True)
class ExtractorSummary:
    """What the base knows about one extractor.

    Attributes
    ----------
    name : str
        Extractor name.
    n_measured : int
        Tasks with a score for it.
    mean_score : float
        Mean of its known scores (NaN when none).
    n_best : int
        Tasks on which it is best, ties within :data:`BEST_TOLERANCE` included (so the
        counts of all extractors may add up to more than the number of tasks).
    """

    name: str
    n_measured: int
    mean_score: float
    n_best: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


def extractor_summary(kb: KnowledgeBase) -> list[ExtractorSummary]:
    """Per extractor, in column order: tasks measured, mean known score, tasks best.

    Parameters
    ----------
    kb : KnowledgeBase

    Returns
    -------
    list of ExtractorSummary
    """
    S = kb.scores
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows and columns
        best = np.nanmax(S, axis=1) if S.size else np.full(len(kb), np.nan)
        out = []
        for j, name in enumerate(kb.extractor_names):
            col = S[:, j]
            ok = ~np.isnan(col)
            out.append(ExtractorSummary(
                name=name, n_measured=int(ok.sum()),
                mean_score=float(np.nanmean(col)) if ok.any() else math.nan,
                n_best=int(np.sum(ok & (col >= best - BEST_TOLERANCE)))))
    return out
