from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from t2v_automl import knowledge
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.estimators import (
    ExtractorSelector,
    Task2VecEmbedder,
    mean_regret,
    mean_weighted_tau,
    top1_regret,
    weighted_tau,
)
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
    T2VError,
    UnknownNameError,
)
from t2v_automl.knowledge import KnowledgeBase

NAMES = ["a", "b", "c"]

def clusters(n=40, d=12, seed=0, noise=0.02):
    """Two groups of tasks; extractor a wins on group 0, b on group 1, c is middling."""
    rng = np.random.default_rng(seed)
    g = np.arange(n) % 2
    E = rng.random((n, d)) * 0.3 + 0.1
    E[g == 1, : d // 2] += 2.0
    E[g == 0, d // 2:] += 2.0
    Y = np.where(g[:, None] == 0, [0.9, 0.6, 0.75], [0.55, 0.92, 0.75])
    Y = np.clip(Y + noise * rng.standard_normal(Y.shape), 0, 1)
    return E, Y, g


@pytest.mark.parametrize("params", [
    dict(strategy="nearest"), dict(strategy="nearest", metric="asymmetric"),
    dict(strategy="nearest", metric="hellinger"),
    dict(strategy="nearest", metric="normalized_cosine", weights="uniform", n_neighbors=5),
    dict(strategy="model2vec"), dict(strategy="model2vec", metric="normalized_cosine"),
])
def test_recovers_the_best_extractor(params):
    E, Y, g = clusters()
    sel = ExtractorSelector(**params, extractor_names=NAMES).fit(E[:30], Y[:30])
    pred = sel.select(E[30:])
    assert pred.tolist() == [("a", "b")[k] for k in g[30:]]
    ranks = sel.rank(E[30:])
    assert ranks.shape == (10, 3) and set(ranks[0]) == set(NAMES)
    assert (ranks[:, 0] == pred).all()
    S = sel.predict_scores(E[30:])
    assert S.shape == (10, 3) and np.isfinite(S).all()
    assert sel.score(E[30:], Y[30:]) > 0.5
    assert mean_regret(Y[30:], S) == 0.0
    assert sel.rank(E[30:], candidates=["c", "b"]).shape == (10, 2)
    assert set(sel.select(E[30:], candidates=["c"])) == {"c"}


def test_dataframe_columns_and_score_on_subset():
    E, Y, g = clusters()
    df = pd.DataFrame(Y, columns=NAMES)
    sel = ExtractorSelector(strategy="nearest").fit(E[:30], df.iloc[:30])
    assert sel.extractor_names_ == NAMES
    test = df.iloc[30:]
    assert sel.score(E[30:], test[["b", "a"]]) == pytest.approx(
        mean_weighted_tau(test[["b", "a"]].to_numpy(), sel.predict_scores(E[30:])[:, [1, 0]]))
    with pytest.raises(UnknownNameError, match="unknown extractor"):
        sel.score(E[30:], test.rename(columns={"a": "zzz"}))
    with pytest.raises(KnowledgeBaseError, match="shape"):
        sel.score(E[30:], Y[30:, :2])
    with pytest.raises(UnknownNameError, match="disagree"):
        ExtractorSelector(extractor_names=["x", "y", "z"]).fit(E, df)


def test_missing_scores_use_the_nearest_measured_tasks():
    E, Y, _ = clusters(noise=0.0)
    Y = Y.copy()
    # task 0 (group 0) is the query; hide "a" on its nearest group-0 neighbours but one
    Y[2:30:2, 0] = np.nan
    Y[28, 0] = 0.9
    sel = ExtractorSelector(strategy="nearest", n_neighbors=1).fit(E[1:30], Y[1:30])
    S = sel.predict_scores(E[:1])
    assert S[0, 0] == pytest.approx(0.9)  # the measured neighbour, not NaN
    assert np.isfinite(sel.predict_scores(E)).all()
    m2v = ExtractorSelector(extractor_names=NAMES).fit(E[1:30], Y[1:30])
    assert np.isfinite(m2v.predict_scores(E)).all()
    # where "a" is missing, "c" was the best measured: both are fair picks, never "b"
    assert m2v.select(E[:1])[0] in ("a", "c")


def test_model2vec_is_deterministic_and_refit_safe():
    E, Y, _ = clusters()
    a = ExtractorSelector(strategy="model2vec").fit(E, Y)
    b = ExtractorSelector(strategy="model2vec").fit(E, Y)
    assert np.array_equal(a.coef_, b.coef_) and np.array_equal(a.anchors_, b.anchors_)
    assert a.anchors_.shape == (3, E.shape[1])
    P = a.predict_scores(E)
    assert np.array_equal(P, a.fit(E, Y).predict_scores(E))
    # subset and order invariance (what the expected-failed sklearn checks test on predict)
    perm = np.random.default_rng(1).permutation(len(E))
    assert np.allclose(a.predict_scores(E[perm]), P[perm])
    assert np.allclose(a.predict_scores(E[:5]), P[:5])
    # higher temperature -> softer labels -> anchors closer to the overall mean
    hot = ExtractorSelector(strategy="model2vec", temperature=10.0).fit(E, Y)
    spread = np.ptp(a.anchors_, axis=0).sum()
    assert np.ptp(hot.anchors_, axis=0).sum() < spread


def test_pickle_clone_and_grid_search():
    E, Y, _ = clusters()
    sel = ExtractorSelector(strategy="nearest", extractor_names=NAMES).fit(E, Y)
    loaded = pickle.loads(pickle.dumps(sel))
    assert np.array_equal(loaded.predict_scores(E), sel.predict_scores(E))
    assert (loaded.select(E) == sel.select(E)).all()
    c = clone(sel)
    assert c.get_params() == sel.get_params() and not hasattr(c, "extractor_names_")
    gs = GridSearchCV(ExtractorSelector(strategy="nearest"), {"n_neighbors": [1, 3]},
                      cv=KFold(3, shuffle=True, random_state=0)).fit(E, Y)
    assert gs.best_params_["n_neighbors"] in (1, 3) and gs.best_score_ > 0.5


def _meta(method="exact", dim=12, probe="p"):
    return EmbeddingMeta(probe=probe, weights_sha256="0" * 64, method=method, input_size=32,
                         layers="l", dim=dim)


def test_embedding_objects_keep_and_check_their_meta():
    E, Y, _ = clusters()
    embs = [Embedding(e, _meta()) for e in E]
    sel = ExtractorSelector().fit(embs[:30], Y[:30])
    assert sel.embedding_meta_.compat_key() == _meta().compat_key()
    assert np.array_equal(sel.predict_scores(embs[30:]), sel.predict_scores(E[30:]))
    other = [Embedding(e, _meta(method="montecarlo")) for e in E[30:]]
    with pytest.raises(IncompatibleEmbeddingError, match="method: 'exact' vs 'montecarlo'"):
        sel.select(other)
    with pytest.raises(IncompatibleEmbeddingError, match="cannot mix"):
        ExtractorSelector().fit(embs[:2] + other[:1], Y[:3])
    with pytest.raises(InvalidInputTypeError, match="single Embedding"):
        sel.select(embs[0])
    with pytest.raises(InvalidInputTypeError, match="mixes"):
        sel.select([embs[0], E[1]])
    plain = ExtractorSelector().fit(E, Y)
    assert plain.embedding_meta_ is None


def test_bad_inputs_give_clear_errors():
    E, Y, _ = clusters()
    sel = ExtractorSelector().fit(E, Y)
    with pytest.raises(IncompatibleEmbeddingError,
                       match="X has 5 features, but ExtractorSelector is expecting 12"):
        sel.select(E[:, :5])
    bad = E.copy()
    bad[3, 4] = np.nan
    with pytest.raises(IncompatibleEmbeddingError, match="NaN or inf.*row 3, column 4"):
        ExtractorSelector().fit(bad, Y)
    bad[3, 4] = np.inf
    with pytest.raises(IncompatibleEmbeddingError, match="NaN or inf"):
        sel.select(bad)
    Ymiss = Y.copy()
    Ymiss[:, 1] = np.nan
    with pytest.raises(KnowledgeBaseError, match=r"\['b'\] have no score"):
        ExtractorSelector(extractor_names=NAMES).fit(E, Ymiss)
    with pytest.raises(KnowledgeBaseError, match="at least two known tasks"):
        ExtractorSelector().fit(E[:1], Y[:1])
    Yone = np.full_like(Y, np.nan)
    Yone[0] = Y[0]
    with pytest.raises(KnowledgeBaseError, match="only 1 task"):
        ExtractorSelector().fit(E, Yone)
    with pytest.raises(KnowledgeBaseError, match="2-D"):
        ExtractorSelector().fit(E, Y[:, 0])
    with pytest.raises(KnowledgeBaseError, match="rows"):
        ExtractorSelector().fit(E, Y[:-1])
    with pytest.raises(KnowledgeBaseError, match="inf"):
        ExtractorSelector().fit(E, np.where(Y > 0.9, np.inf, Y))
    with pytest.raises(KnowledgeBaseError, match="y is None"):
        ExtractorSelector().fit(E, None)
    with pytest.raises(UnknownNameError, match="3 columns"):
        ExtractorSelector(extractor_names=["a", "b"]).fit(E, Y)
    with pytest.raises(UnknownNameError, match="unique"):
        ExtractorSelector(extractor_names=["a", "a", "b"]).fit(E, Y)
    with pytest.raises(UnknownNameError, match="unknown extractor"):
        sel.rank(E, candidates=["extractor0", "nope"])
    with pytest.raises(InvalidInputTypeError, match="not one string"):
        sel.rank(E, candidates="extractor0")
    with pytest.raises(UnknownNameError, match="unknown strategy 'knn'"):
        ExtractorSelector(strategy="knn").fit(E, Y)
    with pytest.raises(UnknownNameError, match="metric"):
        ExtractorSelector(metric="euclid").fit(E, Y)
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        ExtractorSelector(n_neighbors=0).fit(E, Y)
    with pytest.raises(InvalidParameterError, match="temperature"):
        ExtractorSelector(temperature=0).fit(E, Y)
    with pytest.raises(IncompatibleEmbeddingError, match="non-negative"):
        ExtractorSelector(metric="symmetric").fit(E - 1.0, Y)
    # every error is a T2VError and a ValueError/TypeError
    with pytest.raises(T2VError):
        sel.select(E[:, :5])


def test_metrics():
    t = np.array([[0.9, 0.8, 0.7, 0.6], [0.5, 0.5, 0.5, 0.5], [0.9, np.nan, 0.6, 0.7]])
    assert weighted_tau(t, t)[0] == pytest.approx(1.0)
    assert weighted_tau(t, -t)[0] == pytest.approx(-1.0)
    assert np.isnan(weighted_tau(t, t)[1])  # all tied: nothing to rank
    assert weighted_tau(t, np.zeros_like(t))[0] == 0.0
    r = top1_regret(t, np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 5, 1, 0.]]))
    assert r == pytest.approx([10.0, 0.0, 30.0])  # NaN-scored pick is skipped
    assert mean_regret(t, t) == 0.0 and mean_weighted_tau(t, t) == pytest.approx(1.0)
    with pytest.raises(IncompatibleEmbeddingError, match="one shape"):
        weighted_tau(t, t[:, :2])


def _kb(E, Y, with_domain=True):
    extra = None
    if with_domain:
        D = np.random.default_rng(3).standard_normal((len(E), 5))
        D[: len(E) // 2] += 3.0
        D[-1] = np.nan  # one task without a domain embedding
        extra = {"domain": (_meta(method="domain", dim=5), D)}
    return KnowledgeBase(_meta(), task_names=[f"t{i}" for i in range(len(E))], embeddings=E,
                         extractor_names=NAMES, scores=Y, extra_embeddings=extra)


def test_from_knowledge_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    E, Y, g = clusters()
    Y = Y.copy()
    Y[5] = np.nan  # a task without scores is left out
    kb = _kb(E, Y)
    sel = ExtractorSelector.from_knowledge(kb, strategy="nearest")
    assert sel.extractor_names_ == NAMES and sel.embeddings_.shape == (39, 12)
    assert sel.embedding_meta_ == kb.meta
    assert sel.select([kb.embedding("t1")])[0] == "b"
    with pytest.raises(IncompatibleEmbeddingError, match="method"):
        sel.select([Embedding(E[0], _meta(method="domain"))])
    dom = ExtractorSelector.from_knowledge(kb, embedding="domain", metric="normalized_cosine")
    assert dom.embeddings_.shape == (38, 5) and dom.embedding_meta_.method == "domain"
    with pytest.raises(KeyError, match="no extra embedding set"):
        ExtractorSelector.from_knowledge(kb, embedding="nope")
    with pytest.raises(InvalidParameterError, match="extractor_names"):
        ExtractorSelector.from_knowledge(kb, extractor_names=NAMES)
    with pytest.raises(InvalidInputTypeError, match="KnowledgeBase"):
        ExtractorSelector.from_knowledge(E)
    kb.save(tmp_path / "knowledge_default.npz")
    monkeypatch.setattr(knowledge, "_default_resource",
                        lambda: tmp_path / "knowledge_default.npz")
    default = ExtractorSelector.default()
    assert default.strategy == "nearest" and default.metric == "hellinger"
    assert (default.select(E[30:]) == np.array(["a", "b"], dtype=object)[g[30:]]).all()
    monkeypatch.setattr(knowledge, "_default_resource", lambda: tmp_path / "absent.npz")
    with pytest.raises(KnowledgeBaseError, match="not installed"):
        ExtractorSelector.default()


def test_pipeline_after_task2vec_embedder(digits):
    from tests.conftest import make_digit_task

    classes = [(0, 1), (0, 7), (1, 7), (2, 3), (3, 8), (2, 8), (4, 9), (5, 6)]
    tasks = [make_digit_task(digits, c, n_per_class=15, seed=i) for i, c in enumerate(classes)]
    Y = pd.DataFrame(np.random.default_rng(0).uniform(0.5, 1.0, (len(tasks), 3)),
                     columns=NAMES)
    pipe = make_pipeline(
        Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=30, head_epochs=2),
        ExtractorSelector(),
    )
    pipe.fit(tasks[:6], Y.iloc[:6])
    scores = pipe.predict(tasks[6:])  # the score matrix, like Y
    assert scores.shape == (2, 3)
    pred = pipe[-1].select(pipe[:-1].transform(tasks[6:]))
    assert pred.shape == (2,) and set(pred) <= set(NAMES)
    assert (pred == np.asarray(NAMES)[scores.argmax(axis=1)]).all()
    assert pipe[-1].n_features_in_ == 40
    assert -1.0 <= pipe.score(tasks[6:], Y.iloc[6:]) <= 1.0


@pytest.mark.parametrize("strategy,metric", [("nearest", "hellinger"),
                                             ("nearest", "normalized_cosine"),
                                             ("nearest", "asymmetric"),
                                             ("model2vec", "symmetric")])
def test_float32_halves_memory_and_ranks_alike(strategy, metric):
    E, Y, _ = clusters(n=60, d=32, seed=3)
    names = ["a", "b", "c"]
    ref = ExtractorSelector(strategy=strategy, metric=metric, extractor_names=names).fit(E, Y)
    half = ExtractorSelector(strategy=strategy, metric=metric, extractor_names=names,
                             dtype="float32").fit(E, Y)
    assert half.embeddings_.dtype == np.float32
    assert half.embeddings_.nbytes * 2 == ref.embeddings_.nbytes
    Q = E[:12] + 0.01
    assert half.predict_scores(Q).dtype == np.float64
    np.testing.assert_allclose(half.predict_scores(Q), ref.predict_scores(Q), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(half.novelty(Q), ref.novelty(Q), atol=1e-4)
    assert (half.select(Q) == ref.select(Q)).all()


def test_bad_dtype():
    E, Y, _ = clusters(n=10)
    with pytest.raises(UnknownNameError, match="dtype"):
        ExtractorSelector(dtype="float16").fit(E, Y)
