"""Tests of the Optuna integration: warm_start, Task2VecSampler, KnowledgeCallback."""

from __future__ import annotations

import contextlib
import glob
import math
import multiprocessing
import os
import pickle
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)
from optuna.trial import TrialState, create_trial
from sklearn.exceptions import NotFittedError

from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    KnowledgeBaseError,
    UnknownNameError,
)
from t2v_automl.integration.optuna import (
    PROVENANCE_KEY,
    KnowledgeCallback,
    Task2VecSampler,
    warm_start,
)
from t2v_automl.knowledge import KnowledgeBase

optuna.logging.set_verbosity(optuna.logging.WARNING)

META = EmbeddingMeta(probe="tiny_random", weights_sha256="0" * 64, method="exact",
                     input_size=16, layers="test layers", dim=4)
OTHER_META = EmbeddingMeta(probe="mobilenet_v2", weights_sha256="1" * 64, method="exact",
                           input_size=64, layers="test layers", dim=4)
NAMES = ["a", "b", "c", "d"]
PREDICTED = (0.90, 0.80, 0.85, 0.60)  # ranking: a, c, b, d


class StubSelector:
    """Stand-in with the fitted interface of ExtractorSelector (constant predictions)."""

    def __init__(self, names=NAMES, scores=PREDICTED, meta=META):
        self.extractor_names_ = list(names)
        self.embedding_meta_ = meta
        self.n_features_in_ = meta.dim if meta is not None else 4
        self._scores = np.asarray(scores, dtype=np.float64)

    def _matrix(self, E):
        if isinstance(E, list) and E and isinstance(E[0], Embedding):
            for e in E:
                if self.embedding_meta_ is not None:
                    e.check_compatible(self.embedding_meta_)
            return np.vstack([e.values for e in E])
        return np.atleast_2d(np.asarray(E, dtype=np.float64))

    def predict_scores(self, E):
        X = self._matrix(E)
        return np.tile(self._scores, (X.shape[0], 1))

    def rank(self, E):
        s = self.predict_scores(E)
        return [[self.extractor_names_[j] for j in np.argsort(-row, kind="stable")] for row in s]


def emb(values=(1.0, 2.0, 3.0, 4.0), meta=META, name="new-task"):
    return Embedding(np.asarray(values, dtype=np.float64), meta, task_name=name,
                     task_fingerprint="f" * 16)


def waiting_params(study):
    return [t.system_attrs["fixed_params"] for t in study.get_trials(deepcopy=False)
            if t.state == TrialState.WAITING]


def cat_trial(ext, value, state=TrialState.COMPLETE, choices=tuple(NAMES), **other):
    params = {"extractor": ext, **other}
    dists = {"extractor": CategoricalDistribution(list(choices)),
             **{k: FloatDistribution(1e-3, 1e3, log=True) for k in other}}
    return create_trial(state=state, params=params, distributions=dists,
                        value=value if state != TrialState.FAIL else None)


# ======================================================================== warm_start


def test_warm_start_enqueues_top_k_best_first_and_is_idempotent():
    study = optuna.create_study(direction="maximize")
    out = warm_start(study, emb(), StubSelector(), top_k=3, extra_params={"C": 1.0})
    assert [p["extractor"] for p in out] == ["a", "c", "b"]
    assert all(p["C"] == 1.0 for p in out)
    assert waiting_params(study) == out
    ranks = [t.user_attrs["t2v_warm_start_rank"] for t in study.trials]
    assert ranks == [0, 1, 2]
    assert study.trials[0].user_attrs["t2v_predicted_score"] == pytest.approx(0.9)
    # Again (another worker starting): nothing new.
    assert warm_start(study, emb(), StubSelector(), top_k=3) == []
    assert len(study.trials) == 3


def test_warm_start_skips_extractors_already_run_and_runs_them_first():
    study = optuna.create_study(direction="maximize")
    study.add_trial(cat_trial("a", 0.5))
    study.add_trial(cat_trial("c", None, state=TrialState.FAIL))
    out = warm_start(study, emb(), StubSelector(), top_k=3)
    assert [p["extractor"] for p in out] == ["b"]  # top 3 = a, c, b; a and c were run

    seen = []

    def objective(trial):
        seen.append(trial.suggest_categorical("extractor", NAMES))
        return 0.5

    study.optimize(objective, n_trials=1)
    assert seen == ["b"]
    assert warm_start(study, emb(), StubSelector(), top_k=4) == [{"extractor": "d"}]


def test_warm_start_choices_from_the_study_unknown_ignored_with_warning():
    study = optuna.create_study(direction="maximize")
    study.add_trial(cat_trial("b", 0.5, choices=("b", "d", "zzz")))
    with pytest.warns(UserWarning, match="zzz"):
        out = warm_start(study, emb(), StubSelector(), top_k=3)
    assert [p["extractor"] for p in out] == ["d"]  # b already run; zzz unknown
    with pytest.raises(UnknownNameError, match="none of the choices"):
        warm_start(study, emb(), StubSelector(), choices=["x", "y"])
    with pytest.raises(InvalidInputTypeError):
        warm_start(study, emb(), StubSelector(), choices="a")


def test_warm_start_bad_search_spaces():
    study = optuna.create_study()
    study.add_trial(create_trial(params={"C": 1.0}, distributions={
        "C": FloatDistribution(0.1, 10)}, value=0.3))
    with pytest.raises(InvalidParameterError, match="no parameter 'extractor'"):
        warm_start(study, emb(), StubSelector())
    with pytest.raises(InvalidParameterError, match="categorical"):
        warm_start(study, emb(), StubSelector(), param="C")
    assert len(study.trials) == 1  # nothing enqueued


def test_warm_start_bad_arguments():
    study = optuna.create_study()
    with pytest.raises(InvalidParameterError):
        warm_start(study, emb(), StubSelector(), top_k=0)
    with pytest.raises(InvalidParameterError, match="must not fix"):
        warm_start(study, emb(), StubSelector(), extra_params={"extractor": "a"})
    with pytest.raises(InvalidInputTypeError):
        warm_start("study", emb(), StubSelector())
    with pytest.raises(InvalidInputTypeError, match="embedder"):
        warm_start(study, (np.zeros((4, 8, 8, 3)), np.array([0, 1, 0, 1])), StubSelector())
    with pytest.raises(IncompatibleEmbeddingError, match="probe"):
        warm_start(study, emb(meta=OTHER_META), StubSelector())
    with pytest.raises(IncompatibleEmbeddingError, match="5 values"):
        warm_start(study, np.ones(5), StubSelector())
    unfitted = StubSelector()
    del unfitted.extractor_names_
    with pytest.raises(NotFittedError):
        warm_start(study, emb(), unfitted)
    assert study.trials == []


def test_warm_start_plain_vector_and_knowledge_hyper_parameters(tmp_path):
    kb = KnowledgeBase.empty(META)
    best = {"a": {"score": 0.9, "params": {"C": 0.5, "gamma": 2.0}},
            "c": {"score": 0.8, "params": {"C": 5000.0}}}
    kb.add("near", [1.0, 2.0, 3.0, 4.1], {"a": 0.9, "c": 0.8},
           provenance={PROVENANCE_KEY: {"best": best}})
    kb.add("far", [4.0, 3.0, 2.0, 1.0], {"a": 0.7, "b": 0.6},
           provenance={PROVENANCE_KEY: {"best": {"a": {"params": {"C": 9.0}},
                                                 "b": {"params": {"C": 7.0}}}}})
    path = tmp_path / "kb.npz"
    kb.save(path)
    study = optuna.create_study(direction="maximize")
    # The study already knows C's range: C=5000 lies outside it and is dropped.
    study.add_trial(cat_trial("d", 0.1, C=1.0))
    out = warm_start(study, np.array([1.0, 2.0, 3.0, 4.0]), StubSelector(),
                     extra_params={"gamma": 1.0}, knowledge=path)
    assert out == [{"C": 0.5, "gamma": 1.0, "extractor": "a"},
                   {"extractor": "c", "gamma": 1.0},
                   {"C": 7.0, "gamma": 1.0, "extractor": "b"}]
    with pytest.raises(IncompatibleEmbeddingError):
        warm_start(optuna.create_study(), emb(meta=OTHER_META), StubSelector(meta=None),
                   knowledge=kb)


def test_warm_start_embeds_a_task_with_the_embedder(digit_tasks):
    from t2v_automl.estimators import Task2VecEmbedder

    embedder = Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=40,
                                head_epochs=3).fit()
    meta = embedder.embedding_meta_
    sel = StubSelector(names=["a", "b"], scores=(0.2, 0.7), meta=meta)
    study = optuna.create_study(direction="maximize")
    out = warm_start(study, digit_tasks[0], sel, top_k=1, embedder=embedder)
    assert out == [{"extractor": "b"}]
    other = StubSelector(names=["a", "b"], scores=(0.2, 0.7), meta=OTHER_META)
    with pytest.raises(IncompatibleEmbeddingError, match="embedder"):
        warm_start(study, digit_tasks[0], other, embedder=embedder)
    with pytest.raises(NotFittedError):
        warm_start(study, digit_tasks[0], sel, embedder=Task2VecEmbedder(probe="tiny_random"))


# ======================================================================== Task2VecSampler
# Optuna's shipped sampler test-suite. Its tests suggest "x", "y", "z" (and "category" in
# test_conditional_sample_independent): with param="extractor" they check that everything
# is delegated faithfully; the second fixture makes "category" the extractor parameter,
# so that test exercises the ranking path through Optuna's own checks.


def _suite_sampler():
    return Task2VecSampler(StubSelector(), emb(), seed=0)


class TestShippedBasic(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return _suite_sampler


class TestShippedRelative(RelativeSamplerTestCase):
    # The relative suite expects sample_relative to sample from the first trial on; TPE
    # does so without start-up trials (the default TPESampler fails it too).
    @pytest.fixture
    def sampler(self):
        return lambda: Task2VecSampler(
            StubSelector(), emb(),
            base_sampler=optuna.samplers.TPESampler(seed=0, multivariate=True,
                                                    n_startup_trials=0))


class TestShippedSingleOnly(SingleOnlySamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return _suite_sampler


class TestShippedRankedCategory:
    @pytest.fixture
    def sampler(self):
        sel = StubSelector(names=["x", "y"], scores=(0.5, 0.6))
        return lambda: Task2VecSampler(sel, emb(), param="category", seed=0,
                                       score_transform=lambda v: 1.0 - v)

    test_conditional_sample_independent = \
        BasicSamplerTestCase.test_conditional_sample_independent


def _draws(sampler, n=30, choices=tuple(NAMES)):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dist = CategoricalDistribution(list(choices))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(trial.suggest_categorical("extractor", list(dist.choices)))
        study.tell(trial, state=TrialState.FAIL)  # results do not move the draw
    return out


def test_sampler_draws_known_str_choices_following_the_ranking():
    s = Task2VecSampler(StubSelector(), emb(), seed=1)
    study = optuna.create_study(direction="maximize")
    p = s.choice_probabilities(study, CategoricalDistribution(NAMES))
    assert list(p) == NAMES and sum(p.values()) == pytest.approx(1.0)
    assert p["a"] > p["c"] > p["b"] > p["d"]
    assert p["a"] / p["c"] == pytest.approx(math.exp(0.05 / 0.02))
    draws = _draws(s)
    assert set(draws) <= set(NAMES) and all(type(d) is str for d in draws)
    assert draws.count("a") > draws.count("d")
    assert s.predicted_scores == dict(zip(NAMES, PREDICTED, strict=True))


def test_sampler_results_take_over_as_temperature_cools():
    s = Task2VecSampler(StubSelector(), emb(), seed=0, temperature=0.05, cooling=0.8)
    study = optuna.create_study(direction="maximize")
    dist = CategoricalDistribution(NAMES)
    assert max(s.choice_probabilities(study, dist), key=s.choice_probabilities(
        study, dist).get) == "a"
    # Real results: "a" disappoints, "d" (predicted worst) is best.
    for _ in range(6):
        study.add_trial(cat_trial("a", 0.55))
        study.add_trial(cat_trial("d", 0.97))
    study.add_trial(cat_trial("d", None, state=TrialState.PRUNED))
    p = s.choice_probabilities(study, dist)
    assert max(p, key=p.get) == "d" and p["d"] > 0.99
    # Unseen "c" now beats observed "a" (0.85 predicted vs (0.9 + 6 * 0.55) / 7).
    assert p["c"] > p["a"]


def test_sampler_seed_reseed_and_pickle():
    a = _draws(Task2VecSampler(StubSelector(), emb(), seed=3, temperature=0.2))
    b = _draws(Task2VecSampler(StubSelector(), emb(), seed=3, temperature=0.2))
    assert a == b and len(set(a)) > 1
    s = Task2VecSampler(StubSelector(), emb(), seed=3, temperature=0.2)
    clone = pickle.loads(pickle.dumps(s))
    assert _draws(clone) == a
    s.reseed_rng()
    assert _draws(s) != a  # 4**30 sequences: equal only by a freak chance


class SpySampler(optuna.samplers.RandomSampler):
    def __init__(self):
        super().__init__(seed=0)
        self.calls = []

    def before_trial(self, study, trial):
        self.calls.append("before_trial")
        super().before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self.calls.append("after_trial")
        super().after_trial(study, trial, state, values)

    def reseed_rng(self):
        self.calls.append("reseed_rng")
        super().reseed_rng()

    def infer_relative_search_space(self, study, trial):
        self.calls.append("infer_relative_search_space")
        return {"extractor": CategoricalDistribution(NAMES),
                "C": FloatDistribution(0.1, 10)}

    def sample_relative(self, study, trial, search_space):
        self.calls.append(("sample_relative", tuple(sorted(search_space))))
        return {"C": 2.0, "extractor": "d"}

    def sample_independent(self, study, trial, name, dist):
        self.calls.append(("sample_independent", name))
        return super().sample_independent(study, trial, name, dist)


def test_sampler_delegates_everything_but_the_extractor():
    spy = SpySampler()
    s = Task2VecSampler(StubSelector(), emb(), base_sampler=spy, seed=0, exploration=0)
    study = optuna.create_study(direction="maximize", sampler=s)

    def objective(trial):
        trial.suggest_categorical("extractor", NAMES)
        trial.suggest_float("C", 0.1, 10)
        trial.suggest_int("k", 1, 5)
        return 0.5

    study.optimize(objective, n_trials=2)
    s.reseed_rng()
    assert spy.calls.count("before_trial") == 2 and spy.calls.count("after_trial") == 2
    assert ("sample_relative", ("C",)) in spy.calls  # extractor removed from the space
    assert ("sample_independent", "k") in spy.calls
    assert ("sample_independent", "extractor") not in spy.calls
    assert spy.calls[-1] == "reseed_rng"
    assert all(t.params["C"] == 2.0 and t.params["extractor"] in NAMES for t in study.trials)
    rel = s.infer_relative_search_space(study, study.trials[0])
    assert set(rel) == {"C"}


def test_sampler_exploration_hands_some_extractor_draws_to_the_base_sampler():
    def draws(exploration):
        spy = SpySampler()
        s = Task2VecSampler(StubSelector(), emb(), base_sampler=spy, seed=0,
                            exploration=exploration)
        study = optuna.create_study(direction="maximize", sampler=s)
        study.optimize(lambda t: {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.8, "zzz": 0.9}[
            t.suggest_categorical("extractor", NAMES + ["zzz"])], n_trials=40)
        return spy.calls.count(("sample_independent", "extractor")), \
            [t.params["extractor"] for t in study.trials]

    with pytest.warns(UserWarning, match="unknown to the selector"):
        never, picked0 = draws(0.0)
        always, picked1 = draws(1.0)
        some, _ = draws(0.3)
    assert never == 0 and "zzz" not in picked0  # only the ranking: known choices only
    assert always == 40 and "zzz" in picked1  # the base sampler sees every choice
    assert 3 <= some <= 25  # ~12 expected of 40


def test_sampler_with_multivariate_tpe_partial_fixed_and_sqlite(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    s = Task2VecSampler(StubSelector(), emb(), seed=0,
                        base_sampler=optuna.samplers.TPESampler(
                            seed=0, multivariate=True, n_startup_trials=2))
    study = optuna.create_study(direction="maximize", sampler=s, storage=storage)

    def objective(trial):
        ext = trial.suggest_categorical("extractor", NAMES)
        c = trial.suggest_float("C", 1e-2, 1e2, log=True)
        return 0.5 + 0.1 * NAMES.index(ext) - 0.01 * abs(math.log10(c))

    study.optimize(objective, n_trials=6)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.PartialFixedSampler({"extractor": "b"}, s)
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].params["extractor"] == "b"


def test_sampler_bad_search_spaces_and_directions():
    s = Task2VecSampler(StubSelector(), emb(), seed=0, exploration=0)  # the ranking's draws
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    with pytest.warns(UserWarning, match="unknown to the selector"):
        draws = {s.sample_independent(study, trial._cached_frozen_trial, "extractor",
                                      CategoricalDistribution(["zzz", "d", 3]))
                 for _ in range(5)}
    assert draws == {"d"}
    with pytest.raises(UnknownNameError):
        s.sample_independent(study, trial._cached_frozen_trial, "extractor",
                             CategoricalDistribution(["x", "y"]))
    with pytest.raises(InvalidParameterError, match="categorical"):
        s.sample_independent(study, trial._cached_frozen_trial, "extractor",
                             FloatDistribution(0, 1))
    minimise = optuna.create_study(direction="minimize")
    with pytest.raises(InvalidParameterError, match="score_transform"):
        s.choice_probabilities(minimise, CategoricalDistribution(NAMES))
    minimise.add_trial(cat_trial("a", 0.1))
    with pytest.raises(InvalidParameterError, match="score_transform"):
        s.choice_probabilities(minimise, CategoricalDistribution(NAMES))
    flipped = Task2VecSampler(StubSelector(), emb(), score_transform=lambda e: 1.0 - e)
    assert flipped.choice_probabilities(minimise, CategoricalDistribution(NAMES))["a"] > 0.5
    multi = optuna.create_study(directions=["maximize", "minimize"])
    with pytest.raises(ValueError):
        s.choice_probabilities(multi, CategoricalDistribution(NAMES))


@pytest.mark.parametrize("kwargs, error", [
    (dict(temperature=0), InvalidParameterError),
    (dict(temperature=float("nan")), InvalidParameterError),
    (dict(cooling=1.5), InvalidParameterError),
    (dict(cooling=0), InvalidParameterError),
    (dict(prior_weight=-1), InvalidParameterError),
    (dict(exploration=-0.1), InvalidParameterError),
    (dict(exploration=1.5), InvalidParameterError),
    (dict(exploration=float("nan")), InvalidParameterError),
    (dict(min_temperature=1.0), InvalidParameterError),
    (dict(param=""), InvalidInputTypeError),
    (dict(base_sampler="tpe"), InvalidInputTypeError),
    (dict(seed=1.5), InvalidInputTypeError),
    (dict(score_transform=3), InvalidInputTypeError),
])
def test_sampler_validates_eagerly(kwargs, error):
    with pytest.raises(error):
        Task2VecSampler(StubSelector(), emb(), **kwargs)


def test_sampler_refuses_other_probe_and_tasks():
    with pytest.raises(IncompatibleEmbeddingError, match="probe"):
        Task2VecSampler(StubSelector(), emb(meta=OTHER_META))
    with pytest.raises(InvalidInputTypeError, match="task"):
        Task2VecSampler(StubSelector(), (np.zeros((4, 8, 8)), np.array([0, 1, 0, 1])))


# ======================================================================== real selector


@pytest.fixture(scope="module")
def real_setup(digit_tasks):
    pd = pytest.importorskip("pandas")
    from t2v_automl.estimators import Task2VecEmbedder

    try:
        from t2v_automl.estimators._selector import ExtractorSelector
    except ImportError:  # pragma: no cover - until the selector lands
        pytest.skip("ExtractorSelector is not there yet")
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
    study = optuna.create_study(direction="maximize")
    out = warm_start(study, digit_tasks[0], sel, top_k=2, embedder=embedder)
    assert [p["extractor"] for p in out] == expected[:2]
    # exploration=0: the objective below has no value for the "unknown" choice
    sampler = Task2VecSampler(sel, embs[0], seed=0, exploration=0)
    study = optuna.create_study(direction="maximize", sampler=sampler,
                                storage=f"sqlite:///{tmp_path / 's.db'}")
    cb = KnowledgeCallback(tmp_path / "kb.npz", embs[0])
    with pytest.warns(UserWarning, match="unknown"):
        study.optimize(lambda t: {"a": 0.8, "b": 0.7, "c": 0.6}[
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


def test_with_a_hybrid_selector(digit_tasks):
    pd = pytest.importorskip("pandas")
    from t2v_automl.baselines import TransferabilitySelector
    from t2v_automl.estimators import HybridSelector, Task2VecEmbedder

    names = ["raw_pixels", "mnist_cnn"]
    Y = pd.DataFrame([[0.9, 0.5], [0.9, 0.6], [0.8, 0.7]], columns=names)

    def hybrid(center):
        return HybridSelector(
            embedder=Task2VecEmbedder(probe="tiny_random", image_size=16, max_images=40,
                                      head_epochs=3),
            transferability=TransferabilitySelector(measure="knn_accuracy", max_images=40),
            novelty_center=center).fit(digit_tasks[1:], Y)

    far = hybrid(-1e6)  # every task is novel: the ranking is the transferability score's
    direct = far.transferability_.predict_scores(digit_tasks[:1])[0]
    expected = [names[j] for j in np.argsort(-direct, kind="stable")]
    study = optuna.create_study(direction="maximize")
    out = warm_start(study, digit_tasks[0], far, top_k=2)  # embeds with its own embedder
    assert [p["extractor"] for p in out] == expected
    sampler = Task2VecSampler(far, digit_tasks[0], seed=0)
    assert max(sampler.predicted_scores, key=sampler.predicted_scores.get) == expected[0]
    # given only an embedding, the hybrid ranks by its knowledge base, and says so
    e = far.embedder_.embed(digit_tasks[:1])[0]
    with pytest.warns(UserWarning, match="knowledge base only"):
        out = warm_start(optuna.create_study(direction="maximize"), e, far, top_k=1)
    assert out[0]["extractor"] == far.selector_.predict([e])[0]
    with pytest.raises(NotFittedError, match="HybridSelector"):
        warm_start(study, digit_tasks[0], HybridSelector())


# ======================================================================== KnowledgeCallback


def run_trials(study, cb, trials):
    for t in trials:
        study.add_trial(t)
        cb(study, study.trials[-1])


def test_callback_keeps_best_score_and_hyper_parameters(tmp_path):
    path = tmp_path / "kb.npz"
    cb = KnowledgeCallback(path, emb())
    study = optuna.create_study(direction="maximize", study_name="s1")
    run_trials(study, cb, [
        cat_trial("a", 0.6, C=1.0), cat_trial("a", 0.8, C=2.0), cat_trial("a", 0.7, C=3.0),
        cat_trial("b", 0.5, C=4.0),
        cat_trial("b", 0.99, state=TrialState.PRUNED, C=5.0),
        cat_trial("c", None, state=TrialState.FAIL, C=6.0),
    ])
    kb = KnowledgeBase.load(path)
    assert kb.task_names == ["new-task"] and kb.extractor_names == ["a", "b"]
    np.testing.assert_array_equal(kb.scores, [[0.8, 0.5]])
    np.testing.assert_array_equal(kb.embeddings[0], emb().values)
    prov = kb.provenance[0]
    assert prov["task_fingerprint"] == "f" * 16
    best = prov[PROVENANCE_KEY]["best"]
    assert best["a"]["params"] == {"C": 2.0} and best["a"]["trial"] == 1
    assert best["a"]["study"] == "s1" and best["b"]["params"] == {"C": 4.0}
    # warm_start reads them back for the same (nearest) task.
    out = warm_start(optuna.create_study(direction="maximize"), emb(), StubSelector(),
                     top_k=1, knowledge=kb)
    assert out == [{"C": 2.0, "extractor": "a"}]


def test_callback_refuses_bad_scores_without_touching_the_file(tmp_path):
    path = tmp_path / "kb.npz"
    cb = KnowledgeCallback(path, emb())
    study = optuna.create_study(direction="maximize")
    run_trials(study, cb, [cat_trial("a", 0.6)])
    before = path.read_bytes()
    with pytest.raises(KnowledgeBaseError, match=r"\[0, 1\]"):
        run_trials(study, cb, [cat_trial("a", 1.5)])
    with pytest.raises(KnowledgeBaseError):
        run_trials(study, cb, [cat_trial("b", float("inf"))])
    assert path.read_bytes() == before
    lenient = KnowledgeCallback(path, emb(), errors="warn")
    with pytest.warns(UserWarning, match="not recorded"):
        run_trials(study, lenient, [cat_trial("a", -0.2)])
    assert path.read_bytes() == before
    # A minimisation study needs score_transform.
    minimise = optuna.create_study(direction="minimize")
    with pytest.raises(InvalidParameterError, match="score_transform"):
        run_trials(minimise, cb, [cat_trial("a", 0.1)])
    flip = KnowledgeCallback(path, emb(), score_transform=lambda err: 1.0 - err)
    run_trials(minimise, flip, [cat_trial("a", 0.1)])
    assert KnowledgeBase.load(path).scores[0, 0] == pytest.approx(0.9)


def test_callback_other_bad_input(tmp_path):
    kb = KnowledgeBase.empty(META)
    cb = KnowledgeCallback(kb, np.array([1.0, 2.0, 3.0, 4.0]), task_name="t")
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning, match="no parameter 'extractor'"):
        study.add_trial(create_trial(params={"C": 1.0},
                                     distributions={"C": FloatDistribution(0.1, 10)},
                                     value=0.5))
        cb(study, study.trials[-1])
    study.add_trial(create_trial(params={"extractor": 3},
                                 distributions={"extractor": CategoricalDistribution([3])},
                                 value=0.5))
    with pytest.raises(InvalidParameterError, match="strings"):
        cb(study, study.trials[-1])
    assert len(kb) == 0
    run_trials(study, cb, [cat_trial("a", 0.5)])
    assert kb.task_names == ["t"]
    clash = KnowledgeCallback(kb, np.array([9.0, 2.0, 3.0, 4.0]), task_name="t")
    with pytest.raises(KnowledgeBaseError, match="another embedding"):
        run_trials(study, clash, [cat_trial("b", 0.5)])
    assert kb.extractor_names == ["a"]
    with pytest.raises(ValueError):
        cb(optuna.create_study(directions=["maximize", "maximize"]),
           create_trial(params={"extractor": "a"},
                        distributions={"extractor": CategoricalDistribution(["a"])},
                        values=[0.5, 0.5]))
    with pytest.raises(IncompatibleEmbeddingError):
        KnowledgeCallback(kb, emb(meta=OTHER_META))
    with pytest.raises(InvalidInputTypeError, match="Embedding"):
        KnowledgeCallback(tmp_path / "kb.npz", np.ones(4), task_name="t")
    with pytest.raises(InvalidInputTypeError, match="task_name"):
        KnowledgeCallback(kb, np.ones(4))
    with pytest.raises(InvalidParameterError):
        KnowledgeCallback(kb, emb(), errors="ignore")
    with pytest.raises(KnowledgeBaseError, match="does not exist"):
        KnowledgeCallback(tmp_path / "missing" / "kb.npz", emb())
    KnowledgeBase.empty(OTHER_META).save(tmp_path / "other.npz")
    with pytest.raises(IncompatibleEmbeddingError):
        KnowledgeCallback(tmp_path / "other.npz", emb())


def test_callback_keeps_other_task_content():
    kb = KnowledgeBase.empty(META)
    kb.add("t", [1.0, 2.0, 3.0, 4.0], {"x": 0.3, "a": 0.2}, stderr={"x": 0.01, "a": 0.02},
           provenance={"source_dataset": "digits"}, embed_time=1.5,
           extra_embeddings={"domain": Embedding(np.ones(2), EmbeddingMeta(
               probe="p", weights_sha256="w", method="domain", input_size=16,
               layers="penultimate", dim=2))})
    cb = KnowledgeCallback(kb, emb(values=[1.0, 2.0, 3.0, 4.0], name="t"))
    run_trials(optuna.create_study(direction="maximize"), cb, [cat_trial("a", 0.6, C=1.0)])
    assert kb.scores_frame().loc["t"].to_dict() == {"x": 0.3, "a": 0.6}
    assert kb.stderr[0, 0] == 0.01 and np.isnan(kb.stderr[0, 1])
    assert kb.provenance[0]["source_dataset"] == "digits"
    assert kb.embed_time[0] == 1.5
    np.testing.assert_array_equal(kb.extra_embeddings("domain")[1][0], [1.0, 1.0])


# -------------------------------------------------------------- several workers, one file
EXTS = ["a", "b", "c"]


def _value(number, ext, c):
    # Grows with the trial number, so (nearly) every completed trial beats the recorded
    # score and writes the file: the workers contend for it all the time.
    return min(1.0, 0.3 + 0.02 * number + 0.001 * EXTS.index(ext) + 0.0001 * math.log(c))


def _storage(url):
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def _worker(url, study_name, kb_path, values, meta, task_name, seed, n_trials, barrier):
    study = optuna.load_study(study_name=study_name, storage=_storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    cb = KnowledgeCallback(kb_path, Embedding(np.asarray(values), EmbeddingMeta.from_dict(meta),
                                              task_name=task_name), timeout=300)

    def objective(trial):
        ext = trial.suggest_categorical("extractor", EXTS)
        c = trial.suggest_float("C", 1e-2, 1e2, log=True)
        if trial.number % 5 == 3:
            raise optuna.TrialPruned()
        if trial.number % 7 == 5:
            raise RuntimeError("a failed trial")
        return _value(trial.number, ext, c)

    barrier.wait(timeout=120)  # start together
    study.optimize(objective, n_trials=n_trials, callbacks=[cb], catch=(RuntimeError,))


def _run_workers(url, tmp_path, n_workers=4, n_trials=6):
    kb_path = tmp_path / "shared_kb.npz"
    tasks = {"task-A": [1.0, 2.0, 3.0, 4.0], "task-B": [4.0, 1.0, 1.0, 2.0]}
    storage = _storage(url)
    suffix = os.urandom(4).hex()
    names = {t: f"{t}-{suffix}" for t in tasks}
    for n in names.values():
        optuna.create_study(study_name=n, storage=storage, direction="maximize")
    del storage
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(n_workers)
    procs = []
    for w in range(n_workers):
        task = list(tasks)[w % 2]
        procs.append(ctx.Process(target=_worker, args=(
            url, names[task], kb_path, tasks[task], META.to_dict(), task, w, n_trials,
            barrier)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * n_workers
    kb = KnowledgeBase.load(kb_path)
    storage = _storage(url)
    n_complete = 0
    for task, study_name in names.items():
        trials = optuna.load_study(study_name=study_name, storage=storage).trials
        assert {t.state for t in trials} >= {TrialState.COMPLETE}
        assert len(trials) == n_trials * n_workers // 2
        best: dict[str, optuna.trial.FrozenTrial] = {}
        for t in trials:
            if t.state == TrialState.COMPLETE:
                n_complete += 1
                e = t.params["extractor"]
                if e not in best or t.value > best[e].value:
                    best[e] = t
        i = kb.index(task)
        recorded = {e: kb.scores[i, j] for j, e in enumerate(kb.extractor_names)
                    if not np.isnan(kb.scores[i, j])}
        assert recorded == {e: t.value for e, t in best.items()}  # nothing lost
        prov = kb.provenance[i][PROVENANCE_KEY]["best"]
        assert {e: (v["trial"], v["params"]) for e, v in prov.items()} == \
            {e: (t.number, {"C": t.params["C"]}) for e, t in best.items()}
    assert sorted(kb.task_names) == sorted(tasks)
    assert n_complete > 0


def test_callback_in_memory_base_from_many_threads():
    kb = KnowledgeBase.empty(META, NAMES)
    cb = KnowledgeCallback(kb, emb())
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        trial.suggest_categorical("extractor", NAMES)
        return 0.5 + trial.number / 1000.0

    study.optimize(objective, n_trials=60, n_jobs=8, callbacks=[cb])
    best = {}
    for t in study.trials:
        best[t.params["extractor"]] = max(best.get(t.params["extractor"], 0), t.value)
    row = kb.scores[kb.index(cb.task_name)]
    assert {n: row[NAMES.index(n)] for n in best} == pytest.approx(best)
    assert pickle.loads(pickle.dumps(cb)).task_name == cb.task_name  # the lock is not pickled


def test_callback_several_workers_sqlite(tmp_path):
    _run_workers(f"sqlite:///{tmp_path / 'studies.db'}", tmp_path)


# -------------------------------------------------------------- PostgreSQL


def _pg_tool(name):
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


def _pg_driver():
    for module, dialect in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        try:
            __import__(module)
            return dialect
        except ImportError:
            continue
    return None


@pytest.fixture(scope="module")
def postgres_url():
    dialect = _pg_driver()
    if dialect is None:
        pytest.skip("PostgreSQL test: neither psycopg2 nor psycopg is importable "
                    "(pip install psycopg2-binary)")
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL test: initdb/pg_ctl not found (apt-get install postgresql)")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL test: running as root and there is no 'postgres' user")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("PostgreSQL test: running as root without runuser")
        prefix = [runuser, "-u", "postgres", "--"]
    base = tempfile.mkdtemp(prefix="t2v-pg-")
    os.chmod(base, 0o755)
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data = os.path.join(base, "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def run(*cmd):
        return subprocess.run(prefix + list(cmd), check=True, capture_output=True, text=True,
                              timeout=120)

    try:
        run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run(pg_ctl, "-D", data, "-l", os.path.join(base, "log"), "-w", "-t", "60", "-o",
            f"-k {base} -p {port} -c listen_addresses='' -c fsync=off", "start")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        shutil.rmtree(base, ignore_errors=True)
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"PostgreSQL test: could not start a local server: {detail}")
    try:
        yield f"{dialect}://postgres@/postgres?host={base}&port={port}"
    finally:
        with contextlib.suppress(Exception):
            run(pg_ctl, "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_postgresql_storage(postgres_url, tmp_path):
    _run_workers(postgres_url, tmp_path, n_workers=4, n_trials=5)
    storage = _storage(postgres_url)
    study = optuna.create_study(storage=storage, direction="maximize",
                                sampler=Task2VecSampler(StubSelector(), emb(), seed=0))
    assert [p["extractor"] for p in warm_start(study, emb(), StubSelector(), top_k=2)] == \
        ["a", "c"]
    cb = KnowledgeCallback(Path(tmp_path) / "pg_kb.npz", emb())
    study.optimize(lambda t: 0.1 * NAMES.index(t.suggest_categorical("extractor", NAMES)),
                   n_trials=4, callbacks=[cb])
    assert [t.params["extractor"] for t in study.trials[:2]] == ["a", "c"]
    assert KnowledgeBase.load(Path(tmp_path) / "pg_kb.npz").task_names == ["new-task"]
