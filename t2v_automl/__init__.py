"""t2v-automl: Task2Vec task embeddings for choosing a pre-trained feature extractor."""

from t2v_automl.exceptions import T2VError
from t2v_automl.probes import get_probe, list_probes
from t2v_automl.tasks import Task, as_task

__version__ = "0.1.0"

__all__ = ["T2VError", "Task", "as_task", "get_probe", "list_probes", "__version__"]
