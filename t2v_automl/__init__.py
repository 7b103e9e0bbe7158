"""t2v-automl: Task2Vec task embeddings for choosing a pre-trained feature extractor.

The public API, re-exported here (imported lazily, so that ``import t2v_automl`` and
``t2v-automl --help`` do not load torch):

- :class:`Task`, :func:`as_task`: labelled image sets (arrays, datasets, folders);
- :func:`list_probes`, :func:`get_probe`: probe networks with offline weights;
- :class:`Task2VecEmbedder`, :class:`ExtractorSelector`, :class:`HybridSelector`: the
  scikit-learn estimators;
  :class:`Embedding`, :class:`EmbeddingMeta`;
- :func:`list_extractors`, :func:`get_extractor`: the extractor zoo;
- :class:`KnowledgeBase`: tasks x extractors ground truth;
- :class:`T2VError`: the base of every error raised here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Embedding": "t2v_automl.embedding",
    "EmbeddingMeta": "t2v_automl.embedding",
    "ExtractorSelector": "t2v_automl.estimators",
    "HybridSelector": "t2v_automl.estimators",
    "KnowledgeBase": "t2v_automl.knowledge",
    "T2VError": "t2v_automl.exceptions",
    "Task": "t2v_automl.tasks",
    "Task2VecEmbedder": "t2v_automl.estimators",
    "as_task": "t2v_automl.tasks",
    "get_extractor": "t2v_automl.extractors",
    "get_probe": "t2v_automl.probes",
    "list_extractors": "t2v_automl.extractors",
    "list_probes": "t2v_automl.probes",
}

__all__ = [
    "Embedding",
    "EmbeddingMeta",
    "ExtractorSelector",
    "HybridSelector",
    "KnowledgeBase",
    "T2VError",
    "Task",
    "Task2VecEmbedder",
    "__version__",
    "as_task",
    "get_extractor",
    "get_probe",
    "list_extractors",
    "list_probes",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from t2v_automl.embedding import Embedding, EmbeddingMeta
    from t2v_automl.estimators import ExtractorSelector, HybridSelector, Task2VecEmbedder
    from t2v_automl.exceptions import T2VError
    from t2v_automl.extractors import get_extractor, list_extractors
    from t2v_automl.knowledge import KnowledgeBase
    from t2v_automl.probes import get_probe, list_probes
    from t2v_automl.tasks import Task, as_task


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 't2v_automl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
