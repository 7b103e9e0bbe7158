"""KnowledgeBase: the ground truth for choosing a feature extractor.

A knowledge base holds, for every known *task*:

- its name (unique) and provenance (a JSON dict: where the task came from; the keys that
  mean something to t2v-automl are the ``PROVENANCE_*`` constants);
- its embedding, one row of an ``(n_tasks, dim)`` float64 matrix; all embeddings share one
  :class:`~t2v_automl.embedding.EmbeddingMeta` (they were made the same way);
- optionally rows of extra named embedding sets (e.g. ``"domain"``, ``"label_stat"``: other
  cheap task embeddings kept for baselines), each set with its own meta; a task without an
  entry in a set has a row of NaN there;
- its row of the tasks x extractors score matrix (NaN = not measured), with matching
  standard-error and evaluation-time (seconds) matrices;
- optionally its embedding time (seconds).

Extractors have unique names and an optional JSON info dict each.

The package, one job per module:

``_table``
    :class:`KnowledgeBase`, the table: add, add_score, merge, subset, accessors, and the
    save/load/locked_update entry points.
``_validate``
    Validation of what enters the table (pure functions).
``_io``
    The byte formats (``.npz`` + JSON + sha256, no pickle, atomic writes) of knowledge
    bases and of embeddings files (:func:`save_embeddings` / :func:`load_embeddings`).
``_lock``
    The inter-process and inter-thread lock of :meth:`KnowledgeBase.locked_update`.
``_query``
    Questions asked of a base (:func:`nearest_tasks`, :func:`extractor_summary`...) and the
    provenance keys.

Choosing an extractor from a base happens elsewhere (:mod:`t2v_automl.estimators`).
"""

from __future__ import annotations

from t2v_automl.knowledge._io import (
    DEFAULT_KNOWLEDGE_FILE,
    EMBEDDINGS_FORMAT,
    FORMAT_NAME,
    FORMAT_VERSION,
    PACKAGED_KNOWLEDGE,
    checksum,
    default_resource,
    load_embeddings,
    save_embeddings,
)
from t2v_automl.knowledge._query import (
    BEST_TOLERANCE,
    PROVENANCE_EVALUATION,
    PROVENANCE_EXTRA_EMBED_TIME,
    PROVENANCE_FINGERPRINT,
    PROVENANCE_KIND,
    PROVENANCE_N_CLASSES,
    PROVENANCE_N_IMAGES,
    PROVENANCE_N_TEST_PER_CLASS,
    PROVENANCE_NAME,
    PROVENANCE_OPTUNA,
    PROVENANCE_PATH,
    PROVENANCE_POOL,
    PROVENANCE_SOURCE,
    PROVENANCE_SOURCE_DATASET,
    PROVENANCE_TASK_FINGERPRINT,
    UNKNOWN_SOURCE,
    ExtractorSummary,
    evaluation_settings,
    extractor_summary,
    nearest_tasks,
    source_counts,
    source_of,
    task_summary,
)
from t2v_automl.knowledge._table import KnowledgeBase

# Public home of the classes (stable pickles and documentation).
KnowledgeBase.__module__ = __name__
ExtractorSummary.__module__ = __name__

#: Former name of :func:`default_resource`, kept because tests/estimators/test_selector.py
#: monkeypatches it; :meth:`KnowledgeBase.default` honours a replacement of either name.
_default_resource = default_resource

__all__ = [
    "BEST_TOLERANCE",
    "DEFAULT_KNOWLEDGE_FILE",
    "EMBEDDINGS_FORMAT",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PACKAGED_KNOWLEDGE",
    "PROVENANCE_EVALUATION",
    "PROVENANCE_EXTRA_EMBED_TIME",
    "PROVENANCE_FINGERPRINT",
    "PROVENANCE_KIND",
    "PROVENANCE_NAME",
    "PROVENANCE_N_CLASSES",
    "PROVENANCE_N_IMAGES",
    "PROVENANCE_N_TEST_PER_CLASS",
    "PROVENANCE_OPTUNA",
    "PROVENANCE_PATH",
    "PROVENANCE_POOL",
    "PROVENANCE_SOURCE",
    "PROVENANCE_SOURCE_DATASET",
    "PROVENANCE_TASK_FINGERPRINT",
    "UNKNOWN_SOURCE",
    "ExtractorSummary",
    "KnowledgeBase",
    "checksum",
    "default_resource",
    "evaluation_settings",
    "extractor_summary",
    "load_embeddings",
    "nearest_tasks",
    "save_embeddings",
    "source_counts",
    "source_of",
    "task_summary",
]
