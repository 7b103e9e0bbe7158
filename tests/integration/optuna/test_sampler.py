"""Tests of Task2VecSampler: Optuna's sampler test-suite, the draw, the delegation."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
    SingleOnlySamplerTestCase,
)
from optuna.trial import TrialState

from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    UnknownNameError,
)
from t2v_automl.integration.optuna import (
    Task2VecSampler,
)
from tests.integration.optuna.helpers import (
    NAMES,
    OTHER_META,
    PREDICTED,
    StubSelector,
    cat_trial,
    emb,
)

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
