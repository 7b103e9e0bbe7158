"""The scikit-learn layer: :class:`Task2VecEmbedder`, :class:`ExtractorSelector` and
:class:`HybridSelector`."""

from t2v_automl.estimators._embedder import Task2VecEmbedder, embedder_params_from_meta
from t2v_automl.estimators._hybrid import HybridSelector, hybrid_scores
from t2v_automl.estimators._selector import (
    STRATEGIES,
    ExtractorSelector,
    blend_with_transferability,
    mean_regret,
    mean_weighted_tau,
    top1_regret,
    weighted_tau,
)

__all__ = [
    "STRATEGIES",
    "ExtractorSelector",
    "HybridSelector",
    "Task2VecEmbedder",
    "blend_with_transferability",
    "embedder_params_from_meta",
    "hybrid_scores",
    "mean_regret",
    "mean_weighted_tau",
    "top1_regret",
    "weighted_tau",
]
