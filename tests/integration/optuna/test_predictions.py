"""The integration with real selectors: ExtractorSelector, and HybridSelector through explain.

Also the duck typing: a selector with ``explain`` is asked for its explanation (the task's
images, ``task=`` next to an embedding), any other for ``predict_scores``.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from sklearn.exceptions import NotFittedError

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import IncompatibleEmbeddingError, InvalidInputTypeError
from t2v_automl.integration.optuna import KnowledgeCallback, Task2VecSampler, warm_start
from t2v_automl.knowledge import KnowledgeBase
from tests.integration.optuna.helpers import NAMES, PREDICTED, StubSelector, emb

HYBRID_NAMES = ["raw_pixels", "mnist_cnn"]
#: What HybridSelector.explain says when it gets embeddings of novel tasks without images.
NO_IMAGES = "only their embeddings were given"


# ======================================================================== real selector


@pytest.fixture(scope="module")
def real_setup(digit_tasks):
    pd = pytest.importorskip("pandas")
    from t2v_automl.estimators import ExtractorSelector, Task2VecEmbedder

    embedder = Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=40,
                                head_epochs=3).fit()
    embs = embedder.embed(digit_tasks)
    Y = pd.DataFrame([[0.9, 0.5, 0.7], [0.6, 0.95, 0.7], [0.5, 0.6, 0.9], [0.4, 0.9, 0.8]],
                     columns=["a", "b", "c"])
    sel = ExtractorSelector(strategy="nearest").fit(embs[1:], Y.iloc[1:])
    return embedder, embs, sel


def test_with_the_real_selector(real_setup, digit_tasks, tmp_path):
    embedder, embs, sel = real_setup
    expected = list(sel.rank([embs[0]])[0])
    assert sel.select([embs[0]])[0] == expected[0]
    study = optuna.create_study(direction="maximize")
    out = warm_start(study, digit_tasks[0], sel, top_k=2, embedder=embedder)
    assert [p["extractor"] for p in out] == expected[:2]
    predicted = sel.predict([embs[0]])[0]  # the score matrix, as predict_scores
    assert study.trials[0].user_attrs["t2v_predicted_score"] == \
        pytest.approx(predicted[sel.extractor_names_.index(expected[0])])
    # exploration=0: only the ranking's draws (the "unknown" choice is interleaved)
    sampler = Task2VecSampler(sel, embs[0], seed=0, exploration=0)
    assert sampler.predicted_scores == dict(zip(sel.extractor_names_, predicted, strict=True))
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                storage=f"sqlite:///{tmp_path / 's.db'}")
    cb = KnowledgeCallback(tmp_path / "kb.npz", embs[0])
    with pytest.warns(UserWarning, match="unknown"):
        study.optimize(lambda t: {"a": 0.8, "b": 0.7, "c": 0.6, "unknown": 0.5}[
            t.suggest_categorical("extractor", ["a", "b", "c", "unknown"])],
            n_trials=4, callbacks=[cb])
    kb = KnowledgeBase.load(tmp_path / "kb.npz")
    assert kb.task_names == [embs[0].task_name]
    other = Embedding(embs[0].values, EmbeddingMeta(**{**embs[0].meta.to_dict(),
                                                       "probe": "mobilenet_v2"}))
    with pytest.raises(IncompatibleEmbeddingError):
        Task2VecSampler(sel, other)
    with pytest.raises(IncompatibleEmbeddingError):
        warm_start(study, other, sel)


# ======================================================================== HybridSelector


def _hybrid(tasks, center):
    pd = pytest.importorskip("pandas")
    from t2v_automl.estimators import HybridSelector, Task2VecEmbedder, TransferabilitySelector

    Y = pd.DataFrame([[0.9, 0.5], [0.9, 0.6], [0.8, 0.7]], columns=HYBRID_NAMES)
    return HybridSelector(
        embedder=Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=40,
                                  head_epochs=3),
        transferability=TransferabilitySelector(measure="knn_accuracy", max_images=40),
        novelty_center=center).fit(tasks, Y)


@pytest.fixture(scope="module")
def far(digit_tasks):
    """A hybrid to which every task is novel: its ranking is the transferability score's."""
    return _hybrid(digit_tasks[1:], -1e6)


@pytest.fixture(scope="module")
def near(digit_tasks):
    """A hybrid to which no task is novel: its ranking is the known tasks'."""
    return _hybrid(digit_tasks[1:], 1e6)


def _expected(far, task):
    direct = far.transferability_.predict_scores([task])[0]
    return [HYBRID_NAMES[j] for j in np.argsort(-direct, kind="stable")]


def _no_embedding(selector, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the task was embedded again")
    monkeypatch.setattr(selector.embedder_, "embed", refuse)


def test_with_a_hybrid_selector(far, digit_tasks):
    from t2v_automl.estimators import HybridSelector

    expected = _expected(far, digit_tasks[0])
    study = optuna.create_study(direction="maximize")
    out = warm_start(study, digit_tasks[0], far, top_k=2)  # embeds with its own embedder
    assert [p["extractor"] for p in out] == expected
    sampler = Task2VecSampler(far, digit_tasks[0], seed=0)
    assert max(sampler.predicted_scores, key=sampler.predicted_scores.get) == expected[0]
    e = far.embedder_.embed(digit_tasks[:1])[0]
    assert sampler.predicted_scores == pytest.approx(dict(zip(
        HYBRID_NAMES, far.explain(digit_tasks[:1], embeddings=[e]).scores[0], strict=True)))
    # given only an embedding, the hybrid ranks by its knowledge base, and says so (once)
    with pytest.warns(UserWarning, match=NO_IMAGES) as record:
        out = warm_start(optuna.create_study(direction="maximize"), e, far, top_k=1)
    assert sum(NO_IMAGES in str(w.message) for w in record) == 1
    assert out[0]["extractor"] == far.selector_.select([e])[0]
    with pytest.raises(NotFittedError, match="HybridSelector"):
        warm_start(study, digit_tasks[0], HybridSelector())


def test_hybrid_task_keyword_adds_transferability_without_re_embedding(
        far, digit_tasks, monkeypatch):
    task = digit_tasks[0]
    e = far.embedder_.embed([task])[0]
    given_task = Task2VecSampler(far, task, seed=0)
    from_task = given_task.predicted_scores
    _no_embedding(far, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the images are there: no "embeddings only" warning
        study = optuna.create_study(direction="maximize")
        out = warm_start(study, e, far, top_k=2, task=task)
        sampler = Task2VecSampler(far, e, seed=0, task=task)
        vector = Task2VecSampler(far, e.values, seed=0, task=task)  # a plain vector too
    assert [p["extractor"] for p in out] == _expected(far, task)
    assert sampler.predicted_scores == pytest.approx(from_task)
    assert vector.predicted_scores == pytest.approx(from_task)
    assert study.trials[0].user_attrs["t2v_predicted_score"] == \
        pytest.approx(from_task[out[0]["extractor"]])
    # the same draws as the sampler given the task itself
    draws = []
    for s in (given_task, sampler):
        st = optuna.create_study(direction="maximize", sampler=s)
        st.optimize(lambda t: {"raw_pixels": 0.6, "mnist_cnn": 0.5}[
            t.suggest_categorical("extractor", HYBRID_NAMES)], n_trials=8)
        draws.append([t.params["extractor"] for t in st.trials])
    assert draws[0] == draws[1]


def test_hybrid_task_keyword_on_a_known_task_changes_nothing(near, digit_tasks):
    e = near.embedder_.embed(digit_tasks[:1])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known task needs no images: no warning either way
        plain = Task2VecSampler(near, e, seed=0).predicted_scores
        with_task = Task2VecSampler(near, e, seed=0, task=digit_tasks[0]).predicted_scores
    assert with_task == plain
    assert plain == pytest.approx(dict(zip(HYBRID_NAMES, near.selector_.predict([e])[0],
                                           strict=True)))


def test_task_keyword_is_refused_next_to_a_task(far, digit_tasks):
    study = optuna.create_study(direction="maximize")
    with pytest.raises(InvalidInputTypeError, match="task="):
        warm_start(study, digit_tasks[0], far, task=digit_tasks[0])
    with pytest.raises(InvalidInputTypeError, match="task="):
        Task2VecSampler(far, digit_tasks[0], task=digit_tasks[0])
    assert study.trials == []


# ======================================================================== duck typing


class StubHybrid(StubSelector):
    """A selector with ``explain``: no embedder_, selector_ or other internals."""

    def __init__(self, novelty=3.0, gate=0.9):
        super().__init__()
        self.calls = []
        self._novelty, self._gate = novelty, gate

    def explain(self, X=None, embeddings=None, domain_embeddings=None):
        self.calls.append((X, embeddings, domain_embeddings))
        scores = self.predict_scores(embeddings)
        if X is not None:  # the transferability score reverses the ranking
            scores = 1.0 - scores
        return SimpleNamespace(extractor_names=list(self.extractor_names_), scores=scores,
                               novelty=np.array([self._novelty]), gate=np.array([self._gate]))


def test_a_selector_with_explain_is_asked_through_it():
    images = object()  # the stub never looks at the task
    e = emb()
    hyb = StubHybrid()
    out = warm_start(optuna.create_study(direction="maximize"), e, hyb, top_k=2)
    assert [p["extractor"] for p in out] == ["a", "c"]  # PREDICTED's order
    X, embeddings, domain = hyb.calls[-1]
    assert X is None and embeddings == [e] and domain is None
    out = warm_start(optuna.create_study(direction="maximize"), e, hyb, top_k=2, task=images)
    assert [p["extractor"] for p in out] == ["d", "b"]  # the reversed order
    X, embeddings, _ = hyb.calls[-1]
    assert X == [images] and embeddings == [e]
    sampler = Task2VecSampler(hyb, e.values, task=images)
    assert sampler.predicted_scores == pytest.approx(
        {n: 1.0 - p for n, p in zip(NAMES, PREDICTED, strict=True)})
    X, embeddings, _ = hyb.calls[-1]
    assert X == [images] and np.array_equal(embeddings[0], e.values)
    # a task without embedder: the stub has no embedder_ to embed it with
    with pytest.raises(InvalidInputTypeError, match="embedder"):
        warm_start(optuna.create_study(), (np.zeros((4, 8, 8)), np.array([0, 1, 0, 1])), hyb)
    unfitted = StubHybrid()
    unfitted.extractor_names_ = None
    with pytest.raises(NotFittedError, match="StubHybrid"):
        warm_start(optuna.create_study(), e, unfitted)


def test_other_selectors_ignore_the_task_keyword():
    plain = warm_start(optuna.create_study(direction="maximize"), emb(), StubSelector())
    given = warm_start(optuna.create_study(direction="maximize"), emb(), StubSelector(),
                       task=object())
    assert given == plain
    assert Task2VecSampler(StubSelector(), emb(), task=object()).predicted_scores == \
        dict(zip(NAMES, PREDICTED, strict=True))


def test_a_selector_returning_the_wrong_shape_is_refused():
    class Wrong(StubSelector):
        def predict_scores(self, E):
            return np.zeros((1, 2))

    with pytest.raises(InvalidInputTypeError, match="shape"):
        Task2VecSampler(Wrong(), emb())
