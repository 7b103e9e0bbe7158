"""Real studies: accuracy against latency, the user's newest model, per-extractor spaces.

- multi-objective studies through ``warm_start``, ``Task2VecSampler`` and
  ``KnowledgeCallback`` (the score is the objective ``objective_index`` names, or
  ``score_transform`` of all the values);
- candidates the selector was never fitted on: interleaved in the warm start's ranking,
  ordered among themselves by a transferability score when the task's images are there;
- conditional hyper-parameters per extractor (define-by-run), the example of
  :mod:`t2v_automl.integration.optuna`.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState
from sklearn.base import BaseEstimator

from t2v_automl.exceptions import InvalidParameterError, KnowledgeBaseError, UnknownNameError
from t2v_automl.integration.optuna import (
    PROVENANCE_KEY,
    KnowledgeCallback,
    Task2VecSampler,
    warm_start,
)
from t2v_automl.knowledge import KnowledgeBase
from tests.integration.optuna.helpers import META, NAMES, StubSelector, emb, waiting_params

ACCURACY = {"a": 0.80, "b": 0.70, "c": 0.95, "d": 0.60, "new1": 0.97, "new2": 0.50}
LATENCY = {"a": 5.0, "b": 1.0, "c": 9.0, "d": 0.5, "new1": 2.0, "new2": 0.2}


# ======================================================================== multi-objective


def test_accuracy_vs_latency_study_end_to_end(tmp_path):
    """warm_start + Task2VecSampler(objective_index=0) + KnowledgeCallback, two objectives."""
    sampler = Task2VecSampler(StubSelector(), emb(), seed=0, objective_index=0,
                              base_sampler=optuna.samplers.NSGAIISampler(seed=0))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    out = warm_start(study, emb(), StubSelector(), top_k=2, choices=NAMES,
                     extra_params={"batch": 32})
    assert [p["extractor"] for p in out] == ["a", "c"]  # as for a single objective
    cb = KnowledgeCallback(tmp_path / "kb.npz", emb(), objective_index=0)

    def objective(trial):
        ext = trial.suggest_categorical("extractor", NAMES)
        batch = trial.suggest_int("batch", 8, 64, log=True)
        return ACCURACY[ext] - 1e-4 * batch, LATENCY[ext] * batch / 32

    study.optimize(objective, n_trials=8, callbacks=[cb])
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert [t.params["extractor"] for t in study.trials[:2]] == ["a", "c"]
    kb = KnowledgeBase.load(tmp_path / "kb.npz")
    best = kb.provenance[0][PROVENANCE_KEY]["best"]
    for ext, entry in best.items():
        j = kb.extractor_names.index(ext)
        assert entry["score"] == kb.scores[0, j] == entry["value"] == entry["values"][0]
        assert entry["objective_index"] == 0 and len(entry["values"]) == 2
        runs = [t for t in study.trials if t.params["extractor"] == ext]
        assert entry["score"] == max(t.values[0] for t in runs)  # best accuracy, not Pareto
    # the next study of the same task reads the best batch of each extractor back
    nxt = optuna.create_study(directions=["maximize", "minimize"])
    again = warm_start(nxt, emb(), StubSelector(), top_k=1, choices=NAMES, knowledge=kb)
    assert again == [{"batch": best["a"]["params"]["batch"], "extractor": "a"}]


def test_callback_multi_objective_rules(tmp_path):
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.add_trial(optuna.trial.create_trial(
        params={"extractor": "a"}, distributions={
            "extractor": optuna.distributions.CategoricalDistribution(NAMES)},
        values=[3.0, 0.75]))
    trial = study.trials[-1]
    # nothing names the score: refused, nothing written
    cb = KnowledgeCallback(tmp_path / "kb.npz", emb())
    with pytest.raises(InvalidParameterError, match="objective_index=<its 0-based position>"):
        cb(study, trial)
    assert not (tmp_path / "kb.npz").exists()
    with pytest.warns(UserWarning, match="not recorded"):
        KnowledgeCallback(tmp_path / "kb.npz", emb(), errors="warn")(study, trial)
    assert not (tmp_path / "kb.npz").exists()
    # objective 0 is minimised (latency): not a score without a transform
    with pytest.raises(InvalidParameterError, match="minimises objective 0"):
        KnowledgeCallback(tmp_path / "kb.npz", emb(), objective_index=0)(study, trial)
    # a latency in [0, 1]-free units is refused as a score
    with pytest.raises(KnowledgeBaseError, match="objective_index"):
        KnowledgeCallback(tmp_path / "kb.npz", emb(),
                          score_transform=lambda v: v[0])(study, trial)
    # objective_index=1: the accuracy
    KnowledgeCallback(tmp_path / "kb.npz", emb(), objective_index=1)(study, trial)
    kb = KnowledgeBase.load(tmp_path / "kb.npz")
    assert kb.scores[0, 0] == 0.75
    entry = kb.provenance[0][PROVENANCE_KEY]["best"]["a"]
    assert entry["values"] == [3.0, 0.75] and entry["value"] == 0.75
    # score_transform of all the values
    other = KnowledgeBase.empty(META)
    KnowledgeCallback(other, emb(), score_transform=lambda v: v[1] - 0.01 * v[0])(study,
                                                                                  trial)
    assert other.scores[0, 0] == pytest.approx(0.72)
    assert other.provenance[0][PROVENANCE_KEY]["best"]["a"]["value"] is None
    with pytest.raises(InvalidParameterError, match="objective_index must be None or an int"):
        KnowledgeCallback(other, emb(), objective_index="accuracy")


def test_single_objective_accepts_objective_index_zero_only():
    study = optuna.create_study(direction="maximize")
    s = Task2VecSampler(StubSelector(), emb(), objective_index=1)
    from optuna.distributions import CategoricalDistribution

    with pytest.raises(InvalidParameterError, match="1 objective "):
        s.choice_probabilities(study, CategoricalDistribution(NAMES))
    ok = Task2VecSampler(StubSelector(), emb(), objective_index=0)
    assert sum(ok.choice_probabilities(study, CategoricalDistribution(NAMES)).values()) == \
        pytest.approx(1.0)


# ======================================================================== unknown candidates


class StubTransfer(BaseEstimator):
    """A TransferabilitySelector stand-in: a fixed score per extractor name."""

    SCORES = {"new1": -1.0, "new2": 2.0, "new3": float("nan")}

    def __init__(self, extractors=None, fail=False):
        self.extractors = extractors
        self.fail = fail

    def fit(self, X=None, y=None):
        if self.fail:
            raise UnknownNameError(f"unknown extractor(s) {self.extractors}")
        self.extractor_names_ = list(self.extractors)
        return self

    def predict_scores(self, X):
        assert len(X) == 1
        return np.array([[self.SCORES[n] for n in self.extractor_names_]])


IMAGES = (np.zeros((4, 3, 8, 8)), np.array([0, 1, 0, 1]))


def test_warm_start_orders_unknown_candidates_by_transferability():
    choices = NAMES + ["new1", "new2", "new3"]
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning, match="unknown to the selector"):
        out = warm_start(study, emb(), StubSelector(), top_k=6, choices=choices,
                         task=IMAGES, transferability=StubTransfer())
    # known a, c, b, d interleaved with the unknown ones by score: new2, new1, new3 (NaN)
    assert [p["extractor"] for p in out] == ["a", "new2", "c", "new1", "b", "new3"]
    # without the images: choice order
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning, match="unknown to the selector"):
        out = warm_start(study, emb(), StubSelector(), top_k=4, choices=choices,
                         transferability=StubTransfer())
    assert [p["extractor"] for p in out] == ["a", "new1", "c", "new2"]
    # a scorer that cannot load them: choice order, and a warning that says why
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning, match="could not be scored"):
        out = warm_start(study, emb(), StubSelector(), top_k=2, choices=choices,
                         task=IMAGES, transferability=StubTransfer(fail=True))
    assert [p["extractor"] for p in out] == ["a", "new1"]
    # top_k=1: no unknown candidate can be enqueued, nothing is scored
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning, match="unknown to the selector"):
        out = warm_start(study, emb(), StubSelector(), top_k=1, choices=choices,
                         task=IMAGES, transferability=StubTransfer(fail=True))
    assert [p["extractor"] for p in out] == ["a"]


def test_sampler_orders_unknown_candidates_by_transferability_once():
    calls = []

    class Counting(StubTransfer):
        def predict_scores(self, X):
            calls.append(list(self.extractor_names_))
            return super().predict_scores(X)

    s = Task2VecSampler(StubSelector(), emb(), task=IMAGES, transferability=Counting())
    from optuna.distributions import CategoricalDistribution

    dist = CategoricalDistribution(NAMES + ["new1", "new2"])
    with pytest.warns(UserWarning, match="unknown"):
        prior = s.prior_scores(dist)
    assert prior["new2"] == 0.90 and prior["new1"] == 0.85  # new2 scores higher: known #1
    s.prior_scores(dist)
    assert calls == [["new1", "new2"]]


def test_unknown_best_model_is_tried_early_by_the_warm_start():
    """The user's newest model, unknown to the selector and the best: trial 2 of 3."""
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=0,
                                                                   n_startup_trials=3))
    choices = NAMES + ["new1"]
    with pytest.warns(UserWarning, match="new1"):
        warm_start(study, emb(), StubSelector(), top_k=3, choices=choices)
    assert [p["extractor"] for p in waiting_params(study)] == ["a", "new1", "c"]
    study.optimize(lambda t: ACCURACY[t.suggest_categorical("extractor", choices)],
                   n_trials=3)
    assert study.best_params == {"extractor": "new1"} and study.best_trial.number == 1


# ======================================================================== conditional spaces
# The example of t2v_automl.integration.optuna ("Conditional hyper-parameters").

LR_RANGE = {"a": (1e-4, 1e-2), "b": (1e-3, 1e-1), "c": (1e-5, 1e-3), "d": (1e-3, 1e-1)}
SIZES = {"a": [64, 128], "b": [64], "c": [224, 256], "d": [64]}


def conditional_objective(trial):
    ext = trial.suggest_categorical("extractor", NAMES)
    lr = trial.suggest_float(f"lr_{ext}", *LR_RANGE[ext], log=True)  # one name per branch
    size = trial.suggest_categorical(f"input_size_{ext}", SIZES[ext])
    dropout = trial.suggest_float("dropout", 0.0, 0.5)  # shared by every branch
    lo, hi = LR_RANGE[ext]
    centre = math.sqrt(lo * hi)
    return ACCURACY[ext] - 0.05 * abs(math.log10(lr / centre)) - 0.1 * dropout \
        + 1e-4 * size


def test_conditional_hyper_parameters_per_extractor(tmp_path):
    # a first study of the task, recorded by the callback
    first = optuna.create_study(direction="maximize", sampler=Task2VecSampler(
        StubSelector(), emb(), seed=0,
        base_sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True,
                                                n_startup_trials=4)))
    kb = KnowledgeBase.empty(META)
    first.optimize(conditional_objective, n_trials=15,
                   callbacks=[KnowledgeCallback(kb, emb())])
    for t in first.trials:  # each trial has its branch's parameters only
        ext = t.params["extractor"]
        assert set(t.params) == {"extractor", f"lr_{ext}", f"input_size_{ext}", "dropout"}
    best = kb.provenance[0][PROVENANCE_KEY]["best"]
    assert {"a", "c"} <= set(best)  # the two best-ranked extractors were run
    for ext, entry in best.items():
        assert set(entry["params"]) == {f"lr_{ext}", f"input_size_{ext}", "dropout"}
    # the next study warm-starts with each extractor's own branch, checked against the
    # distributions given for a fresh study (one is out of range: skipped, sampled)
    nxt = optuna.create_study(direction="maximize")
    dists = {f"lr_{e}": FloatDistribution(*LR_RANGE[e], log=True) for e in NAMES}
    dists["lr_a"] = FloatDistribution(0.5, 1.0)  # the objective's range changed
    with pytest.warns(UserWarning, match="lr_a"):
        out = warm_start(nxt, emb(), StubSelector(), top_k=2, choices=NAMES, knowledge=kb,
                         distributions=dists)
    assert out == [
        {"input_size_a": best["a"]["params"]["input_size_a"],
         "dropout": best["a"]["params"]["dropout"], "extractor": "a"},  # lr_a: sampled
        {**best["c"]["params"], "extractor": "c"}]
    nxt.optimize(conditional_objective, n_trials=len(out))
    assert [t.params["extractor"] for t in nxt.trials] == [p["extractor"] for p in out]
    for t, p in zip(nxt.trials, out, strict=True):  # the enqueued branch values were used
        assert all(t.params[k] == v for k, v in p.items())


def test_unknown_candidates_ordered_by_a_real_transferability_selector(digit_tasks):
    """The real path: TransferabilitySelector cloned with the unknown candidates' names."""
    from t2v_automl.estimators import TransferabilitySelector

    scorer = TransferabilitySelector(measure="knn_accuracy", max_images=40)
    unknown = ["raw_pixels", "mnist_cnn"]
    expected = scorer.set_params(extractors=unknown).fit().predict_scores([digit_tasks[0]])[0]
    order = [unknown[k] for k in np.argsort(-expected, kind="stable")]
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning, match="unknown to the selector"):
        out = warm_start(study, emb(), StubSelector(), top_k=4, choices=NAMES + unknown,
                         task=digit_tasks[0],
                         transferability=TransferabilitySelector(measure="knn_accuracy",
                                                                 max_images=40))
    assert [p["extractor"] for p in out] == ["a", order[0], "c", order[1]]
