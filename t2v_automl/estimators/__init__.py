"""The scikit-learn layer: :class:`Task2VecEmbedder` and :class:`ExtractorSelector`."""

from t2v_automl.estimators._embedder import Task2VecEmbedder
from t2v_automl.estimators._selector import (
    STRATEGIES,
    ExtractorSelector,
    mean_regret,
    mean_weighted_tau,
    top1_regret,
    weighted_tau,
)

__all__ = [
    "STRATEGIES",
    "ExtractorSelector",
    "Task2VecEmbedder",
    "mean_regret",
    "mean_weighted_tau",
    "top1_regret",
    "weighted_tau",
]
