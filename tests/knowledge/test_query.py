"""Tests of t2v_automl.knowledge._query: queries and provenance keys."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import t2v_automl.knowledge as knowledge
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import IncompatibleEmbeddingError
from t2v_automl.knowledge import (
    BEST_TOLERANCE,
    ExtractorSummary,
    KnowledgeBase,
    evaluation_settings,
    extractor_summary,
    nearest_tasks,
    source_counts,
    source_of,
    task_summary,
)


def make_meta(**changes: Any) -> EmbeddingMeta:
    fields: dict[str, Any] = dict(probe="p", weights_sha256="0" * 64, method="exact",
                                  input_size=32, layers="all", dim=3)
    fields.update(changes)
    return EmbeddingMeta(**fields)


DOMAIN = make_meta(method="domain", dim=2)


def small_base() -> KnowledgeBase:
    nan = math.nan
    return KnowledgeBase(
        make_meta(), task_names=["a", "b", "c", "d"],
        embeddings=[[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]],
        extractor_names=["x", "y", "z"],
        scores=[[0.9, 0.9 - 1e-13, 0.1], [0.5, 0.7, nan], [nan, nan, nan], [0.2, nan, 0.3]],
        provenance=[{"source_dataset": "mnist"}, {"source": "cli"}, {},
                    {"source_dataset": "mnist", "evaluation": {"C": 2.0}}],
        extra_embeddings={"domain": (DOMAIN, [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5],
                                              [nan, nan]])})


def test_nearest_tasks() -> None:
    kb = small_base()
    got = nearest_tasks(kb, Embedding(np.array([1.0, 0.0, 0.0]), make_meta()), "cosine", 3)
    assert [r["task"] for r in got] == ["a", "b", "c"]  # "c" and "d" tie: row order
    assert got[0] == {"task": "a", "distance": pytest.approx(0.0, abs=1e-12),
                      "source": "mnist", "best": "x", "best_score": 0.9}
    assert (got[1]["source"], got[1]["best"], got[1]["best_score"]) == ("cli", "y", 0.7)
    assert got[0]["distance"] <= got[1]["distance"] <= got[2]["distance"]
    assert len(nearest_tasks(kb, kb.embedding("c"), "cosine", 10)) == 4
    far = nearest_tasks(kb, kb.embedding("c"), "cosine", 1)[0]
    assert far["task"] == "c" and far["best"] == "-" and math.isnan(far["best_score"])
    assert far["source"] == "?"


def test_nearest_tasks_in_an_extra_set() -> None:
    kb = small_base()
    got = nearest_tasks(kb, Embedding(np.array([1.0, 0.0]), DOMAIN), "cosine", 2)
    assert [r["task"] for r in got] == ["b", "c"]
    last = nearest_tasks(kb, Embedding(np.array([1.0, 0.0]), DOMAIN), "cosine", 4)[-1]
    assert last["task"] == "d" and last["distance"] == math.inf  # no domain embedding
    with pytest.raises(IncompatibleEmbeddingError):
        nearest_tasks(kb, Embedding(np.ones(3), make_meta(probe="other")), "cosine", 2)


def test_extractor_summary_counts_ties_as_best() -> None:
    got = extractor_summary(small_base())
    assert [s.name for s in got] == ["x", "y", "z"]
    x, y, z = got
    assert (x.n_measured, x.n_best) == (3, 1)
    assert x.mean_score == pytest.approx((0.9 + 0.5 + 0.2) / 3)
    assert (y.n_measured, y.n_best) == (2, 2)  # within 1e-12 of the best on "a"
    assert (z.n_measured, z.n_best) == (2, 1)
    assert z.to_dict() == {"name": "z", "n_measured": 2, "mean_score": pytest.approx(0.2),
                           "n_best": 1}
    assert BEST_TOLERANCE == 1e-12


def test_extractor_summary_of_unmeasured_and_empty_bases() -> None:
    kb = KnowledgeBase.empty(make_meta(), ["x"])
    assert extractor_summary(KnowledgeBase.empty(make_meta())) == []
    (s,) = extractor_summary(kb)
    assert (s.n_measured, s.n_best) == (0, 0) and math.isnan(s.mean_score)
    kb.add("t", np.ones(3), {})
    (s,) = extractor_summary(kb)
    assert isinstance(s, ExtractorSummary) and (s.n_measured, s.n_best) == (0, 0)


def test_task_summary_sources_and_settings() -> None:
    kb = small_base()
    rows = task_summary(kb)
    assert [(r["task"], r["source"], r["best"]) for r in rows] == [
        ("a", "mnist", "x"), ("b", "cli", "y"), ("c", "?", "-"), ("d", "mnist", "z")]
    assert source_counts(kb) == {"?": 1, "cli": 1, "mnist": 2}
    assert source_of({"source_dataset": "", "source": "cli"}) == "cli"
    assert evaluation_settings(kb) == {}  # read from the first task
    assert evaluation_settings(kb.subset(["d"])) == {"C": 2.0}
    assert evaluation_settings(KnowledgeBase.empty(make_meta())) == {}


# ------------------------------------------------------------------ provenance keys

#: Keys every task of the shipped base has (written by benchmarks/build_knowledge.py).
SHIPPED = ("PROVENANCE_NAME", "PROVENANCE_SOURCE_DATASET", "PROVENANCE_KIND",
           "PROVENANCE_POOL", "PROVENANCE_N_TEST_PER_CLASS", "PROVENANCE_EXTRA_EMBED_TIME",
           "PROVENANCE_EVALUATION")


@pytest.fixture(scope="module")
def default_kb() -> KnowledgeBase:
    return KnowledgeBase.default()


def test_provenance_constants_are_the_keys_of_the_shipped_base(
        default_kb: KnowledgeBase) -> None:
    keys = [getattr(knowledge, c) for c in SHIPPED]
    for p in default_kb.provenance:
        assert all(k in p for k in keys)
    prov = default_kb.provenance[0]
    assert prov[knowledge.PROVENANCE_NAME] == default_kb.task_names[0]
    assert set(prov[knowledge.PROVENANCE_EXTRA_EMBED_TIME]) == set(default_kb.extra_names)
    settings = evaluation_settings(default_kb)
    assert {"C", "input_size"} <= set(settings)
    assert "?" not in source_counts(default_kb)
    assert sum(source_counts(default_kb).values()) == len(default_kb)
    exported = [n for n in knowledge.__all__ if n.startswith("PROVENANCE_")]
    assert len({getattr(knowledge, n) for n in exported}) == len(exported)  # all distinct


def test_optuna_key_is_the_callbacks() -> None:
    optuna_integration = pytest.importorskip("t2v_automl.integration.optuna")
    assert knowledge.PROVENANCE_OPTUNA == optuna_integration.PROVENANCE_KEY


def test_summary_of_the_shipped_base(default_kb: KnowledgeBase) -> None:
    summary = extractor_summary(default_kb)
    assert [s.name for s in summary] == default_kb.extractor_names
    assert sum(s.n_best for s in summary) >= len(default_kb)
    assert all(s.n_measured == len(default_kb) for s in summary)
