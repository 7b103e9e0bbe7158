"""Tests of Task2VecSampler: Optuna's sampler test-suite, the draw, the delegation."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
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
# Optuna's own sampler test cases (basic, relative, multi-objective) run in
# test_sampler_suite.py.


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
                            exploration=exploration, unknown="ignore")
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
    ignoring = Task2VecSampler(StubSelector(), emb(), seed=0, exploration=0,
                               unknown="ignore")
    with pytest.warns(UserWarning, match="unknown to the selector"):
        draws = {ignoring.sample_independent(study, trial._cached_frozen_trial, "extractor",
                                             CategoricalDistribution(["zzz", "d", 3]))
                 for _ in range(5)}
    assert draws == {"d"}
    with pytest.warns(UserWarning, match="unknown to the selector"):
        p = s.choice_probabilities(study, CategoricalDistribution(["zzz", "d", 3]))
    assert list(p) == ["zzz", "d", 3] and p["zzz"] == pytest.approx(p["d"])
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
    with pytest.raises(InvalidParameterError, match="objective_index=<its 0-based"):
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
    (dict(objective_index=-1), InvalidParameterError),
    (dict(objective_index=True), InvalidParameterError),
    (dict(unknown="drop"), InvalidParameterError),
    (dict(transferability="logme"), InvalidInputTypeError),
])
def test_sampler_validates_eagerly(kwargs, error):
    with pytest.raises(error):
        Task2VecSampler(StubSelector(), emb(), **kwargs)


def test_sampler_refuses_other_probe_and_tasks():
    with pytest.raises(IncompatibleEmbeddingError, match="probe"):
        Task2VecSampler(StubSelector(), emb(meta=OTHER_META))
    with pytest.raises(InvalidInputTypeError, match="task") as info:
        Task2VecSampler(StubSelector(), (np.zeros((4, 8, 8)), np.array([0, 1, 0, 1])))
    # the sampler has no embedder= parameter: the message says what it can do instead
    assert "embedder=" not in str(info.value)
    assert "embed the task first" in str(info.value) and "HybridSelector" in str(info.value)


# ======================================================================== unknown candidates


def test_sampler_interleaves_unknown_candidates_with_the_prior_of_the_known_ahead():
    s = Task2VecSampler(StubSelector(), emb(), seed=0, exploration=0)
    dist = CategoricalDistribution(NAMES + ["new1", "new2"])
    with pytest.warns(UserWarning, match="new1"):
        prior = s.prior_scores(dist)
    # merged ranking a, new1, c, new2, b, d: new1 ties with a (known #1), new2 with c
    assert prior == {"a": 0.90, "b": 0.80, "c": 0.85, "d": 0.60, "new1": 0.90, "new2": 0.85}
    study = optuna.create_study(direction="maximize", sampler=s)
    seen = []
    for _ in range(6):
        trial = study.ask()
        ext = trial.suggest_categorical("extractor", list(dist.choices))
        seen.append(ext)
        study.tell(trial, {"a": 0.7, "b": 0.6, "c": 0.6, "d": 0.5, "new1": 0.95,
                           "new2": 0.5}[ext])
    assert "new1" in seen[:4]  # the unknown model is tried early, then its result counts
    p = s.choice_probabilities(study, dist)
    assert max(p, key=p.get) == "new1"


def test_sampler_unknown_candidate_ties_with_the_current_leader_until_tried():
    s = Task2VecSampler(StubSelector(), emb(), seed=0, exploration=0)
    study = optuna.create_study(direction="maximize")
    for _ in range(3):  # "a" (known #1, predicted 0.90) does far better than predicted
        study.add_trial(cat_trial("a", 0.99, choices=NAMES + ["new"]))
    dist = CategoricalDistribution(NAMES + ["new"])
    with pytest.warns(UserWarning, match="new"):
        p = s.choice_probabilities(study, dist)
    assert p["new"] == pytest.approx(p["a"]) and p["new"] > 0.4  # not starved
    for _ in range(6):  # "c" now leads (0.979 against 0.968): "new" ties with the leader
        study.add_trial(cat_trial("c", 1.0, choices=NAMES + ["new"]))
    p = s.choice_probabilities(study, dist)
    assert p["new"] == pytest.approx(p["c"]) and p["new"] > 0.4
    study.add_trial(cat_trial("new", 0.5, choices=NAMES + ["new"]))
    p = s.choice_probabilities(study, dist)
    assert p["new"] < 1e-6  # its own (poor) result counts


def test_sampler_ignores_unknown_candidates_when_asked():
    s = Task2VecSampler(StubSelector(), emb(), seed=0, exploration=0, unknown="ignore")
    with pytest.warns(UserWarning, match="ignored"):
        assert list(s.prior_scores(CategoricalDistribution(NAMES + ["new"]))) == NAMES


# ======================================================================== multi-objective


def test_sampler_multi_objective_ranks_by_the_named_objective():
    s = Task2VecSampler(StubSelector(), emb(), seed=0, objective_index=0, exploration=0,
                        base_sampler=optuna.samplers.NSGAIISampler(seed=0))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=s)
    latency = {"a": 9.0, "b": 1.0, "c": 3.0, "d": 0.5}

    def objective(trial):
        ext = trial.suggest_categorical("extractor", NAMES)
        width = trial.suggest_int("width", 1, 4)
        return {"a": 0.5, "b": 0.7, "c": 0.95, "d": 0.6}[ext], latency[ext] * width

    study.optimize(objective, n_trials=12)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    p = s.choice_probabilities(study, CategoricalDistribution(NAMES))
    assert max(p, key=p.get) == "c"  # the accuracy objective, not the latency
    assert len(study.best_trials) >= 1  # the base sampler's Pareto front is there
    # a transform of all values instead of objective_index
    both = Task2VecSampler(StubSelector(), emb(), exploration=0,
                           score_transform=lambda v: v[0] - 0.1 * v[1])
    q = both.choice_probabilities(study, CategoricalDistribution(NAMES))
    assert q["a"] < 1e-6  # accurate only at a latency cost the transform punishes


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "2 objectives"),
    (dict(objective_index=2), "objective_index=2 but the study has 2 objectives"),
    (dict(objective_index=1), "minimises objective 1"),
])
def test_sampler_multi_objective_errors_say_how_to_name_the_score(kwargs, match):
    s = Task2VecSampler(StubSelector(), emb(), seed=0, **kwargs)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=s)
    with pytest.raises(InvalidParameterError, match=match):
        study.optimize(lambda t: (0.5, float(len(t.suggest_categorical("extractor", NAMES)))),
                       n_trials=1, catch=())
    assert [t.state for t in study.trials] == [TrialState.FAIL]  # nothing else changed
    # the other parameters are sampled whatever the directions
    trial = study.ask()
    assert 0.0 <= trial.suggest_float("C", 0.0, 1.0) <= 1.0
