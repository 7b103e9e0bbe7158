"""Tests of warm_start: what it enqueues, and what it refuses."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from sklearn.exceptions import NotFittedError

from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    UnknownNameError,
)
from t2v_automl.integration.optuna import (
    PROVENANCE_KEY,
    Task2VecSampler,
    warm_start,
)
from t2v_automl.knowledge import KnowledgeBase
from tests.integration.optuna.helpers import (
    META,
    NAMES,
    OTHER_META,
    StubSelector,
    cat_trial,
    emb,
    waiting_params,
)


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


def test_warm_start_choices_from_the_study_unknown_interleaved_with_warning():
    study = optuna.create_study(direction="maximize")
    study.add_trial(cat_trial("b", 0.5, choices=("b", "d", "zzz")))
    with pytest.warns(UserWarning, match="zzz.*unknown to the selector.*second place"):
        out = warm_start(study, emb(), StubSelector(), top_k=3)
    # merged ranking b, zzz, d: b already run; zzz (unknown) takes the 2nd place
    assert [p["extractor"] for p in out] == ["zzz", "d"]
    zzz = study.trials[1]
    assert zzz.user_attrs == {"t2v_warm_start_rank": 1, "t2v_predicted_score": None}
    ignoring = optuna.create_study(direction="maximize")
    ignoring.add_trial(cat_trial("b", 0.5, choices=("b", "d", "zzz")))
    with pytest.warns(UserWarning, match="ignored by the warm start"):
        out = warm_start(ignoring, emb(), StubSelector(), top_k=3, unknown="ignore")
    assert [p["extractor"] for p in out] == ["d"]  # b already run; zzz left out
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
    with pytest.warns(UserWarning, match="'C' = 5000.0 of extractor 'c'.*task 'near'"):
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


def _kb_with(best):
    kb = KnowledgeBase.empty(META)
    kb.add("near", [1.0, 2.0, 3.0, 4.0], {e: 0.5 for e in best},
           provenance={PROVENANCE_KEY: {"best": {e: {"params": p} for e, p in best.items()}}})
    return kb


def _knowledge_trial(ext, value):
    return create_trial(
        params={"extractor": ext, "C": 1.0, "solver": "lbfgs", "n": 3},
        distributions={"extractor": CategoricalDistribution(NAMES),
                       "C": FloatDistribution(1e-3, 1e3, log=True),
                       "solver": CategoricalDistribution(["lbfgs", "saga"]),
                       "n": IntDistribution(1, 10)}, value=value)


def test_warm_start_never_enqueues_knowledge_values_the_objective_refuses():
    kb = _kb_with({"a": {"C": 1e30, "solver": "newton", "n": 3},
                   "c": {"C": "0.5", "solver": "saga"},
                   "b": {"C": True, "n": 2.5}})
    study = optuna.create_study(direction="maximize")
    study.add_trial(_knowledge_trial("d", 0.1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = warm_start(study, emb(), StubSelector(), knowledge=kb)
    said = [str(w.message) for w in caught if w.category is UserWarning]
    for name, value in [("C", "1e+30"), ("solver", "'newton'"), ("C", "'0.5'"),
                        ("C", "True"), ("n", "2.5")]:
        assert any(f"{name!r} = {value} " in m for m in said), (name, value, said)
    assert out == [{"n": 3, "extractor": "a"}, {"solver": "saga", "extractor": "c"},
                   {"extractor": "b"}]
    assert waiting_params(study) == out  # nothing else was enqueued

    def objective(trial):  # what the bad values would have reached
        c = trial.suggest_float("C", 1e-3, 1e3, log=True)
        trial.suggest_categorical("solver", ["lbfgs", "saga"])
        n = trial.suggest_int("n", 1, 10)
        assert isinstance(c, float) and 1e-3 <= c <= 1e3 and isinstance(n, int)
        trial.suggest_categorical("extractor", NAMES)
        return 0.5

    study.optimize(objective, n_trials=3)
    assert [t.state for t in study.trials[1:]] == [TrialState.COMPLETE] * 3


def test_warm_start_type_checks_knowledge_values_on_a_fresh_study():
    kb = _kb_with({"a": {"C": 1e30, "kernel": "rbf", "deep": True, "none": None,
                         "steps": [1, 2], "blob": "x" * 500, "cfg": {"k": 1}}})
    study = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning) as caught:
        out = warm_start(study, emb(), StubSelector(), top_k=1, knowledge=kb,
                         choices=NAMES)
    said = " | ".join(str(w.message) for w in caught)
    for name in ("steps", "blob", "cfg"):
        assert f"hyper-parameter {name!r} = " in said
    # without a known distribution a finite number passes; with one, C = 1e30 does not
    assert out == [{"C": 1e30, "kernel": "rbf", "deep": True, "none": None, "extractor": "a"}]
    assert "'x" in said and "x" * 100 not in said  # the long value is cut in the message
    fresh = optuna.create_study(direction="maximize")
    with pytest.warns(UserWarning) as caught:
        out = warm_start(fresh, emb(), StubSelector(), top_k=1, knowledge=kb, choices=NAMES,
                         distributions={"C": FloatDistribution(1e-3, 1e3, log=True)})
    assert any("'C' = 1e+30 of extractor 'a'" in str(w.message) and "outside Float" in
               str(w.message) for w in caught)
    assert "C" not in out[0] and waiting_params(fresh) == out
    with pytest.raises(InvalidInputTypeError, match="distributions must map"):
        warm_start(fresh, emb(), StubSelector(), distributions={"C": (1e-3, 1e3)})


def test_warm_start_refuses_extra_params_outside_their_distribution():
    study = optuna.create_study(direction="maximize")
    study.add_trial(_knowledge_trial("d", 0.1))
    for extra, match in [({"C": 1e30}, "outside FloatDistribution"),
                         ({"C": "0.5"}, "takes a number"),
                         ({"solver": "newton"}, "not one of the choices"),
                         ({"n": 2.5}, "not an integer")]:
        with pytest.raises(InvalidParameterError, match=match):
            warm_start(study, emb(), StubSelector(), extra_params=extra)
    with pytest.raises(InvalidParameterError, match="list"):
        warm_start(optuna.create_study(), emb(), StubSelector(), extra_params={"x": [1]})
    assert len(study.trials) == 1  # nothing enqueued


def test_warm_start_names_the_extractor_parameter_the_study_uses(caplog):
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(
        params={"backbone": "b", "C": 1.0},
        distributions={"backbone": CategoricalDistribution(["b", "d", "zzz"]),
                       "C": FloatDistribution(1e-3, 1e3, log=True)}, value=0.5))
    with pytest.raises(InvalidParameterError, match="did you mean param='backbone'"):
        warm_start(study, emb(), StubSelector())
    assert len(study.trials) == 1  # nothing enqueued
    with pytest.warns(UserWarning, match="zzz"):
        assert warm_start(study, emb(), StubSelector(), param="backbone") == \
            [{"backbone": "zzz"}, {"backbone": "d"}]
    # a Task2VecSampler that draws another parameter than the one warm_start fixes
    other = optuna.create_study(sampler=Task2VecSampler(StubSelector(), emb(),
                                                        param="backbone", seed=0))
    with pytest.raises(InvalidParameterError, match="Task2VecSampler draws parameter"):
        warm_start(other, emb(), StubSelector())
    assert other.trials == []
    # a fresh study: the choices come from the selector, and the log says so
    with caplog.at_level("WARNING", logger="t2v_automl"):
        warm_start(optuna.create_study(), emb(), StubSelector(), top_k=1)
        assert any("choices of 'extractor' are the selector's" in r.getMessage()
                   for r in caplog.records)
        caplog.clear()
        warm_start(optuna.create_study(), emb(), StubSelector(), top_k=1, choices=NAMES)
        assert caplog.records == []
