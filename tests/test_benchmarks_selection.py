"""The protocol code of ``benchmarks/selection.py`` on a small synthetic knowledge base."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import ModuleType

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from t2v_automl.embedding import EmbeddingMeta
from t2v_automl.knowledge import KnowledgeBase
from tests.conftest import load_benchmark

EXTRACTORS = ["efficientnet_lite0", "mnist_cnn", "raw_pixels", "mobilenet_v2"]
SOURCES = ["alpha", "beta", "gamma"]
FUNCTIONS = ["f-one", "f-two"]


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    # tiny L-BFGS problems are ~10x slower with a multi-threaded BLAS on a busy machine
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def sel() -> ModuleType:
    return load_benchmark("selection", "bench_selection")


def _meta(method: str, dim: int) -> EmbeddingMeta:
    return EmbeddingMeta(probe="tiny", weights_sha256="0" * 64, method=method, input_size=32,
                         layers="all", dim=dim)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    """3 sources x (4 subset tasks + one relabel pool with 2 label functions)."""
    rng = np.random.default_rng(0)
    names, prov, emb, scores = [], [], [], []
    for s, source in enumerate(SOURCES):
        centre = rng.random(8) + 0.5
        centre[s] += 3.0
        best = s  # each source has its own best extractor
        rows = [("subset", f"{source}/subset/t{i}", source + "/s" + str(i), "identity")
                for i in range(4)]
        rows += [("relabel", f"{source}/relabel-a/{f}", f"{source}/relabel-a", f)
                 for f in FUNCTIONS]
        for kind, name, pool, func in rows:
            names.append(name)
            prov.append({"kind": kind, "source_dataset": source, "pool": pool,
                         "label_function": func,
                         "extra_embed_time_s": {"domain": 0.1, "label_stat": 0.1,
                                                "montecarlo_full": 2.0},
                         "evaluation": {"suite": "synthetic", "seed": 0, "input_size": 64}})
            emb.append(np.abs(centre + 0.1 * rng.standard_normal(8)))
            y = 0.6 + 0.05 * rng.random(len(EXTRACTORS))
            y[best] += 0.2
            if func == "f-two":  # the label function changes the winner
                y[3] += 0.3
            scores.append(np.round(y, 3))
    emb_arr, n = np.array(emb), len(names)
    extra = {"domain": (_meta("domain", 8), emb_arr + 0.05 * rng.random((n, 8))),
             "label_stat": (_meta("label_stat", 8), rng.random((n, 8))),
             "montecarlo_full": (_meta("montecarlo", 8), emb_arr * 1.1)}
    return KnowledgeBase(_meta("exact", 8), task_names=names, embeddings=emb_arr,
                         extractor_names=EXTRACTORS, scores=np.array(scores),
                         eval_time=np.full((n, len(EXTRACTORS)), 10.0),
                         embed_time=np.full(n, 1.0), provenance=prov,
                         extra_embeddings=extra)


def test_from_knowledge(sel: ModuleType, kb: KnowledgeBase) -> None:
    data = sel.BenchData.from_knowledge(kb)
    assert len(data) == 18 and data.n_extractors == 4
    assert set(data.embeddings) == {"fisher", "domain", "label_stat", "montecarlo_full"}
    assert data.embed_time["montecarlo_full"][0] == pytest.approx(2.0)
    assert (data.kind == "relabel").sum() == 6


def test_folds(sel: ModuleType, kb: KnowledgeBase) -> None:
    data = sel.BenchData.from_knowledge(kb)
    loto = sel.folds(data, "loto")
    assert len(loto) == 18
    for _, test, known in loto:
        assert known.sum() == 17 and not known[test].any()
    for source, test, known in sel.folds(data, "loso"):
        assert set(data.source[test]) == {source}
        assert source not in set(data.source[known])
    lolo = sel.folds(data, "lolo")
    assert [f for f, _, _ in lolo] == FUNCTIONS
    held = np.concatenate([t for _, t, _ in lolo])
    assert sorted(held.tolist()) == sorted(np.flatnonzero(data.kind == "relabel").tolist())
    for func, test, known in lolo:
        assert len(test) == 3  # the function in every pool at once
        assert func not in set(data.label_function[known])
        # the other label function of the same image pools stays known
        assert set(data.pool[test]) <= set(data.pool[known])
        assert (data.kind[known] == "subset").sum() == 12
    with pytest.raises(ValueError, match="unknown protocol"):
        sel.folds(data, "nope")


def test_top3_and_chance(sel: ModuleType) -> None:
    y = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.9, 0.9, 0.1, 0.1, 0.1]])
    pred = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 0.0, 4.0, 3.0, 2.0]])
    np.testing.assert_array_equal(sel.top3_hit(y, pred), [0.0, 1.0])
    np.testing.assert_array_equal(sel.top3_hit(y, y), [1.0, 1.0])
    tau, reg, hit = sel.chance_metrics(y, n_perm=400)
    np.testing.assert_allclose(reg, [100 * (0.9 - 0.7), 100 * (0.9 - 0.42)])
    # P(a best among 3 of 5 drawn) = 1 - C(4,3)/C(5,3) with one best, 1 - C(3,3)/C(5,3) with 2
    np.testing.assert_allclose(hit, [1 - 4 / 10, 1 - 1 / math.comb(5, 3)])
    assert np.all(np.abs(tau) < 0.25)


def test_run_protocols(sel: ModuleType, kb: KnowledgeBase) -> None:
    data = sel.BenchData.from_knowledge(kb)
    rng = np.random.default_rng(1)
    data.meta_features = rng.random((len(data), 4)) + 1
    data.meta_time = np.full(len(data), 0.01)
    data.transfer = {m: (rng.random((len(data), 4)), np.full(len(data), 3.0))
                     for m in sel.MEASURES}
    data.transfer["logme"][0][0] = np.nan  # a task without scores is left out of the row
    ms = sel.methods(data)
    names = [m.name for m in ms]
    assert sel.DEFAULT_METHOD in names and "LogME" in names and "meta-feature kNN" in names
    results, goals = {}, {}
    for p in sel.PROTOCOLS:
        res = sel.run_protocol(data, p, ms, n_boot=200)
        results[p], goals[p] = res, sel.goal_check(res, n_boot=200)
        opt = res["methods"]["optimal (brute force)"]
        assert opt["regret"] == 0 and opt["tau"] == pytest.approx(1.0) and opt["top3"] == 1
        assert opt["time_s"] == pytest.approx(40.0)
        for name, r in res["methods"].items():
            if name != "LogME":
                assert r["n_tasks"] == res["n_tasks"], name
            assert np.isfinite(r["regret"]) and r["regret"] >= 0, name
            lo, hi = r["regret_ci"]
            assert lo <= r["regret"] + 1e-9 and r["regret"] <= hi + 1e-9, name
        d = res["methods"][sel.DEFAULT_METHOD]
        assert d["time_s"] >= 1.0  # embedding time + selection
        assert goals[p]["cost_ratio"] == pytest.approx(40.0 / d["time_s"])
    assert results["loto"]["methods"]["LogME"]["n_tasks"] == 17
    assert results["lolo"]["n_tasks"] == 6
    assert "best of same image pool" in results["lolo"]["methods"]
    assert "best of same image pool" not in results["loso"]["methods"]
    # on LOTO the synthetic sources are trivially recognisable: the Fisher neighbours find
    # the source's winner on every subset task
    loto = results["loto"]["methods"]
    subset = data.kind[[data.task_names.index(t) for t in results["loto"]["task_names"]]] \
        == "subset"
    assert np.nanmean(loto["Fisher: nearest sym"]["per_task"]["regret"][subset]) == 0.0
    info = {"command": "python benchmarks/selection.py", "kb": "synthetic",
            "machine_text": "test", "wall_s": 1.0}
    md = sel.markdown(results, goals, data, info, "A note.")
    for title in sel.PROTOCOL_TITLES.values():
        assert title in md
    assert "A note." in md and "Paired differences" in md and "Table 1" in md
    js = sel._to_json(results, goals, info)
    assert js["protocols"]["loso"]["methods"]["chance"]["n_tasks"] == 18


def test_parallel_matches_serial(sel: ModuleType, kb: KnowledgeBase) -> None:
    cloudpickle = pytest.importorskip("cloudpickle")
    # the script is not an importable module: send its functions to joblib workers by value
    cloudpickle.register_pickle_by_value(sel)
    import _common  # the script's sibling module, on sys.path as the script puts it there

    cloudpickle.register_pickle_by_value(_common)
    data = sel.BenchData.from_knowledge(kb)
    ms = [m for m in sel.methods(data, inner_cv=False)
          if m.name in ("best on average", sel.DEFAULT_METHOD, "domain: nearest ncos")]
    one = sel.run_protocol(data, "lolo", ms, n_boot=100)
    two = sel.run_protocol(data, "lolo", ms, n_boot=100, n_jobs=2)
    assert list(one["methods"]) == list(two["methods"])
    for name, r in one["methods"].items():
        np.testing.assert_array_equal(r["per_task"]["regret"],
                                      two["methods"][name]["per_task"]["regret"])
        assert r["tau"] == two["methods"][name]["tau"]


def test_hybrid_domain_screen(sel: ModuleType, kb: KnowledgeBase) -> None:
    data = sel.BenchData.from_knowledge(kb)
    rng = np.random.default_rng(2)
    logme = rng.random((len(data), 4))
    data.transfer = {"logme": (logme, np.full(len(data), 3.0))}
    test = np.flatnonzero(data.source == "alpha")
    known = np.flatnonzero(data.source != "alpha")
    # every task screened: LogME alone ranks, no Fisher embedding is charged
    scores, t = sel.hybrid_predictor(domain_screen=0.0)(data, known, test)
    assert (np.argsort(-scores, axis=1) == np.argsort(-logme[test], axis=1)).all()
    assert (t > 3.0 + 0.1 - 1e-9).all() and (t < 3.0 + 0.1 + 0.5).all()
    # never screened: the same ranking as without a screen, plus the domain pass
    never, t_never = sel.hybrid_predictor(domain_screen=1e9)(data, known, test)
    off, t_off = sel.hybrid_predictor(use_screen=False)(data, known, test)
    assert np.array_equal(never, off)
    assert np.allclose(t_never - t_off, 0.1, atol=0.05)
