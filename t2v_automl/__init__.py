"""t2v-automl: Task2Vec task embeddings for choosing a pre-trained feature extractor.

The public API, re-exported here:

- :class:`Task`, :func:`as_task`: labelled image sets (arrays, datasets, folders);
- :func:`list_probes`, :func:`get_probe`: probe networks with offline weights;
- :class:`Task2VecEmbedder`, :class:`ExtractorSelector`: the scikit-learn estimators;
  :class:`Embedding`;
- :func:`list_extractors`, :func:`get_extractor`: the extractor zoo;
- :class:`KnowledgeBase`: tasks x extractors ground truth;
- :class:`T2VError`: the base of every error raised here.
"""

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.estimators import ExtractorSelector, Task2VecEmbedder
from t2v_automl.exceptions import T2VError
from t2v_automl.extractors import get_extractor, list_extractors
from t2v_automl.knowledge import KnowledgeBase
from t2v_automl.probes import get_probe, list_probes
from t2v_automl.tasks import Task, as_task

__version__ = "0.1.0"

__all__ = [
    "Embedding",
    "EmbeddingMeta",
    "ExtractorSelector",
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
