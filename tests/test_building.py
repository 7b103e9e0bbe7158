"""Tests of the knowledge-base build (tiny real builds: raw pixels, small embedder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from t2v_automl.building import (
    DEFAULT_EXTRA_EMBEDDINGS,
    EvaluationNotCachedError,
    build_knowledge,
    build_knowledge_details,
)
from t2v_automl.estimators import Task2VecEmbedder
from t2v_automl.evaluation import evaluate_zoo
from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError, UnknownNameError
from t2v_automl.knowledge import KnowledgeBase
from t2v_automl.tasks import Task


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small_embedder() -> Task2VecEmbedder:
    return Task2VecEmbedder(image_size=32, max_images=30, device="cpu")


@pytest.fixture(scope="module")
def pairs() -> list[tuple[Task, Task]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    out = []
    for k, digits in enumerate(((0, 1), (3, 8))):
        keep = np.flatnonzero(np.isin(d.target, digits))
        idx = np.random.default_rng(k).permutation(keep)
        tr, te = idx[:24], idx[24:84]
        out.append((Task.from_arrays(d.images[tr] / 16.0, d.target[tr], name=f"own{k}"),
                    Task.from_arrays(d.images[te] / 16.0, d.target[te], name=f"own{k}-test")))
    return out


def test_own_tasks(pairs: list[tuple[Task, Task]]) -> None:
    kb = build_knowledge(pairs, ["raw_pixels"], embedder=_small_embedder(),
                         extra_embeddings={"domain": {"method": "domain"}})
    assert isinstance(kb, KnowledgeBase)
    assert kb.task_names == ["own0", "own1"] and kb.extractor_names == ["raw_pixels"]
    zoo = evaluate_zoo(["raw_pixels"], pairs, input_size=64)
    np.testing.assert_array_equal(kb.scores, zoo.scores)
    np.testing.assert_array_equal(kb.stderr, zoo.stderr)
    emb = _small_embedder().fit().embed([tr for tr, _ in pairs])
    np.testing.assert_array_equal(kb.embeddings, np.stack([e.values for e in emb]))
    assert kb.extra_names == ["domain"]
    assert kb.extractor_info["raw_pixels"]["linear_head"].startswith("StandardScaler")
    assert kb.provenance[0]["evaluation"]["C"] == 1.0


def test_suite_with_cache_and_cached_only(tmp_path: Path) -> None:
    kw = {"seed": 0, "limit": 2, "embedder": _small_embedder(), "extra_embeddings": {},
          "test_cap": 20}
    with pytest.raises(EvaluationNotCachedError, match="evaluations='compute'"):
        build_knowledge("mini", ["raw_pixels"], memory=tmp_path, evaluations="cached", **kw)
    first = build_knowledge_details("mini", ["raw_pixels"], memory=tmp_path, **kw)
    assert first.n_computed == 2 and len(first.knowledge) == 2
    assert first.knowledge.provenance[0]["n_test_evaluated"] == 20
    again = build_knowledge_details("mini", ["raw_pixels"], memory=tmp_path,
                                    evaluations="cached", **kw)
    assert again.n_computed == 0
    np.testing.assert_array_equal(again.knowledge.scores, first.knowledge.scores)
    np.testing.assert_array_equal(again.knowledge.embeddings, first.knowledge.embeddings)
    # the shared extractor instances are left as they were
    from t2v_automl.extractors import get_extractor

    assert "transform" not in vars(get_extractor("raw_pixels"))


def test_bad_arguments(pairs: list[tuple[Task, Task]]) -> None:
    with pytest.raises(UnknownNameError):
        build_knowledge(pairs, ["nope"])
    with pytest.raises(InvalidInputTypeError, match="list of names"):
        build_knowledge(pairs, "raw_pixels")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputTypeError, match=r"tasks\[0\]"):
        build_knowledge([pairs[0][0]], ["raw_pixels"])  # type: ignore[list-item]
    with pytest.raises(InvalidParameterError, match="unique"):
        build_knowledge([pairs[0], pairs[0]], ["raw_pixels"])
    with pytest.raises(InvalidParameterError, match="needs memory"):
        build_knowledge(pairs, ["raw_pixels"], evaluations="cached")
    assert set(DEFAULT_EXTRA_EMBEDDINGS) == {"domain", "label_stat", "montecarlo_full"}
