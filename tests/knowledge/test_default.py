"""The knowledge base shipped with the package (``t2v_automl/data/knowledge_default.npz``).

Rebuilt by ``benchmarks/build_knowledge.py`` (``--embed-only`` after a change of the
embedder's defaults); these tests catch a stale or damaged file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from t2v_automl.embedding import EmbeddingMeta
from t2v_automl.estimators import Task2VecEmbedder
from t2v_automl.exceptions import WeightsNotFoundError
from t2v_automl.extractors import list_extractors
from t2v_automl.knowledge import KnowledgeBase

REBUILD = "rebuild it with `python benchmarks/build_knowledge.py --embed-only`"

#: Extra embedding sets of the default base and the parameters they were made with
#: (kept in step with ``EXTRA_EMBEDDERS`` of benchmarks/build_knowledge.py).
EXTRA_SETS: dict[str, dict[str, Any]] = {
    "domain": {"method": "domain"},
    "label_stat": {"method": "label_stat"},
    "montecarlo_full": {"method": "montecarlo", "skip_layers": 0},
}


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.default()


def _fitted_meta(**params: Any) -> EmbeddingMeta:
    try:
        return Task2VecEmbedder(device="cpu", **params).fit().embedding_meta_
    except WeightsNotFoundError as exc:  # pragma: no cover - weights are a dependency
        pytest.skip(f"probe weights not installed: {exc}")


def test_loads_with_enough_tasks(kb: KnowledgeBase) -> None:
    assert len(kb) >= 150
    assert len(set(kb.task_names)) == len(kb)


def test_has_every_extractor_column(kb: KnowledgeBase) -> None:
    missing = sorted(set(list_extractors()) - set(kb.extractor_names))
    assert not missing, f"extractors without a column in the default base: {missing}; {REBUILD}"


def test_scores_complete_and_valid(kb: KnowledgeBase) -> None:
    scores = kb.scores
    all_nan = [n for n, col in zip(kb.extractor_names, scores.T, strict=True)
               if np.isnan(col).all()]
    assert not all_nan, f"extractors never measured: {all_nan}"
    measured = ~np.isnan(scores)
    assert ((scores[measured] >= 0) & (scores[measured] <= 1)).all()
    assert np.isfinite(kb.stderr[measured]).all()
    assert (kb.eval_time[measured] > 0).all()


def test_embeddings_finite(kb: KnowledgeBase) -> None:
    assert kb.embeddings.shape == (len(kb), kb.meta.dim)
    assert np.isfinite(kb.embeddings).all()
    assert np.isfinite(kb.embed_time).all() and (kb.embed_time > 0).all()
    for name in kb.extra_names:
        meta, values = kb.extra_embeddings(name)
        assert values.shape == (len(kb), meta.dim)
        assert np.isfinite(values).all(), f"extra set {name!r} has missing or bad rows"


def test_provenance(kb: KnowledgeBase) -> None:
    for name, prov in zip(kb.task_names, kb.provenance, strict=True):
        assert prov.get("kind") in ("subset", "relabel"), name
        assert prov.get("source_dataset"), name
        assert prov["n_train"] > 0 and prov["n_test"] > 0, name
    kinds = {p["kind"] for p in kb.provenance}
    assert kinds == {"subset", "relabel"}
    for name, info in kb.extractor_info.items():
        assert {"source_dataset", "input_size_used", "feature_dim",
                "weights_sha256"} <= set(info), name


@pytest.mark.slow
def test_meta_matches_default_embedder(kb: KnowledgeBase) -> None:
    """A change of Task2VecEmbedder's defaults without a rebuild is caught here."""
    current = _fitted_meta()
    assert kb.meta.compat_key() == current.compat_key(), (
        f"the default knowledge base was embedded differently from Task2VecEmbedder() "
        f"({kb.meta.describe_difference(current)}; file first); {REBUILD}")
    assert dict(kb.meta.settings) == dict(current.settings), (
        f"embedder settings changed: file {dict(kb.meta.settings)}, now "
        f"{dict(current.settings)}; {REBUILD}")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXTRA_SETS))
def test_extra_sets_match_their_embedders(kb: KnowledgeBase, name: str) -> None:
    assert name in kb.extra_names
    meta, _ = kb.extra_embeddings(name)
    current = _fitted_meta(**EXTRA_SETS[name])
    assert meta.compat_key() == current.compat_key(), (
        f"extra set {name!r}: {meta.describe_difference(current)} (file first); {REBUILD}")
