"""scikit-learn estimators: :class:`Task2VecEmbedder` (and, later, the selector)."""

from t2v_automl.estimators._embedder import Task2VecEmbedder

__all__ = ["Task2VecEmbedder"]
