"""The scikit-learn layer.

- :class:`Task2VecEmbedder`: tasks -> Task2Vec embeddings;
- selectors, whose rows are tasks and whose ``predict`` returns the tasks x extractors
  score matrix (names from ``select`` / ``rank``): :class:`ExtractorSelector` (the known
  tasks nearest in embedding space), :class:`HybridSelector` (the product default:
  neighbours where the task is known, a transferability score where it is new; its
  :meth:`~HybridSelector.explain` says how), :class:`TransferabilitySelector` (no
  knowledge base: LogME & co. on the task's own images), and the baselines
  :class:`BestOnAverage`, :class:`FixedExtractor`, :class:`MetaFeatureKNN`;
- the gate functions the hybrid is composed of: :func:`novelty_gate`,
  :func:`blend_with_transferability`, :func:`hybrid_scores`;
- ranking metrics (from :mod:`t2v_automl.metrics`).
"""

from t2v_automl.estimators._base import SelectorMixin, neighbour_average
from t2v_automl.estimators._baselines import (
    BestOnAverage,
    FixedExtractor,
    MetaFeatureKNN,
    meta_features,
)
from t2v_automl.estimators._embedder import Task2VecEmbedder, embedder_params_from_meta
from t2v_automl.estimators._gate import (
    NOVELTY_CENTER,
    NOVELTY_STEEPNESS,
    blend_with_transferability,
    evidence_blend,
    evidence_weight,
    hybrid_scores,
    novelty_gate,
    rank_standardise,
    row_standardise,
)
from t2v_automl.estimators._hybrid import HybridExplanation, HybridSelector
from t2v_automl.estimators._selector import STRATEGIES, ExtractorSelector
from t2v_automl.estimators._transfer import TransferabilitySelector
from t2v_automl.metrics import mean_regret, mean_weighted_tau, top1_regret, weighted_tau

__all__ = [
    "NOVELTY_CENTER",
    "NOVELTY_STEEPNESS",
    "STRATEGIES",
    "BestOnAverage",
    "ExtractorSelector",
    "FixedExtractor",
    "HybridExplanation",
    "HybridSelector",
    "MetaFeatureKNN",
    "SelectorMixin",
    "Task2VecEmbedder",
    "TransferabilitySelector",
    "blend_with_transferability",
    "embedder_params_from_meta",
    "evidence_blend",
    "evidence_weight",
    "hybrid_scores",
    "mean_regret",
    "mean_weighted_tau",
    "meta_features",
    "neighbour_average",
    "novelty_gate",
    "rank_standardise",
    "row_standardise",
    "top1_regret",
    "weighted_tau",
]
