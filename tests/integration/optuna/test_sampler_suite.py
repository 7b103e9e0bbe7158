"""Optuna's own sampler test cases, run on Task2VecSampler.

``optuna.testing.pytest_samplers`` ships the cases every Optuna sampler passes: the basic
ones (every distribution, conditional and dynamic spaces, NaN objectives, partial fixed
sampling), the relative ones, and the multi-objective ones. Here each class gets a
``sampler`` fixture giving a :class:`Task2VecSampler` over a real
:class:`~t2v_automl.estimators.ExtractorSelector`, fitted on a small in-test knowledge base
of four tasks and three extractors ``"a"``, ``"b"``, ``"c"``.

The suites suggest ``"x"``, ``"y"``, ``"z"`` (and ``"category"``): with the default
``param="extractor"`` they check that everything else is delegated faithfully to the base
sampler, whatever the study's directions. The *ranked* fixtures make the suite's own
parameter the extractor parameter where its choices include extractors the selector
knows, so that Optuna's checks also run through the ranking's draw (single- and
multi-objective, the latter with ``objective_index``).
"""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)

from t2v_automl.integration.optuna import Task2VecSampler
from t2v_automl.knowledge import KnowledgeBase
from tests.integration.optuna.helpers import META, emb

SUITE_NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def selector():
    """An ExtractorSelector fitted on a four-task knowledge base (extractors a, b, c)."""
    from t2v_automl.estimators import ExtractorSelector

    kb = KnowledgeBase.empty(META)
    rng = np.random.default_rng(0)
    for i in range(4):
        kb.add(f"known-{i}", rng.uniform(0.5, 2.0, META.dim),
               {"a": 0.9 - 0.1 * i, "b": 0.6 + 0.1 * i, "c": 0.7})
    return ExtractorSelector.from_knowledge(kb)


def _ranked_param(request) -> str:
    """The suite's parameter when its choices include a known extractor, else "extractor"."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    dist = params.get("distribution")
    if isinstance(dist, CategoricalDistribution) and \
            any(isinstance(c, str) and c in SUITE_NAMES for c in dist.choices):
        return "x"
    return "extractor"


class TestBasic(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self, selector):
        return lambda: Task2VecSampler(selector, emb(), seed=0)


class TestRelative(RelativeSamplerTestCase):
    # The relative suite expects sample_relative to sample from the first trial on; TPE
    # does so without start-up trials (the default TPESampler fails it too).
    @pytest.fixture
    def sampler(self, selector):
        return lambda: Task2VecSampler(
            selector, emb(),
            base_sampler=optuna.samplers.TPESampler(seed=0, multivariate=True,
                                                    n_startup_trials=0))


class TestMultiObjective(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self, selector):
        return lambda: Task2VecSampler(selector, emb(), seed=0)


class TestMultiObjectiveNSGAII(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self, selector):
        return lambda: Task2VecSampler(selector, emb(), seed=0, objective_index=1,
                                       base_sampler=optuna.samplers.NSGAIISampler(seed=0))


class TestMultiObjectiveRanked(MultiObjectiveSamplerTestCase):
    # directions ["minimize", "maximize"]: objective 1 is the accuracy-like one
    @pytest.fixture
    def sampler(self, selector, request):
        param = _ranked_param(request)
        return lambda: Task2VecSampler(selector, emb(), param=param, seed=0,
                                       objective_index=1)


class TestRankedCategory:
    """Optuna's conditional case with ``"category"`` as the extractor parameter."""

    @pytest.fixture
    def sampler(self):
        from tests.integration.optuna.helpers import StubSelector

        sel = StubSelector(names=["x", "y"], scores=(0.5, 0.6))
        return lambda: Task2VecSampler(sel, emb(), param="category", seed=0,
                                       score_transform=lambda v: 1.0 - v)

    test_conditional_sample_independent = \
        BasicSamplerTestCase.test_conditional_sample_independent


def test_ranked_multi_objective_draws_follow_the_named_objective(selector):
    """The ranked fixture's draws: known choices by the selector, unknown 1 interleaved."""
    s = Task2VecSampler(selector, emb(), param="x", objective_index=1, exploration=0,
                        seed=0)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=s)
    with pytest.warns(UserWarning, match="unknown to the selector"):
        p = s.choice_probabilities(study, CategoricalDistribution((1, "a")))
    assert list(p) == [1, "a"] and p[1] == pytest.approx(p["a"])  # 1 ties with known #1
