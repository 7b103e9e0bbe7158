"""Optuna integration: warm-start the extractor choice of a study, learn from every study.

A study whose search space holds the feature extractor as a categorical parameter (named
``"extractor"`` by default) spends its first trials guessing. Three pieces use the new
task's embedding and a fitted selector (:class:`~t2v_automl.estimators.ExtractorSelector`,
or anything with ``extractor_names_``, ``embedding_meta_`` and ``predict_scores``) instead:

:func:`warm_start`
    Enqueues the selector's top-k extractors as the study's next trials (with the best
    known hyper-parameters of the nearest known tasks, when a knowledge base has them).
:class:`Task2VecSampler`
    A sampler that draws the extractor from a softmax over the selector's predicted
    scores, blended with the results the study has seen, and delegates every other
    parameter (and every hook) to a base sampler, TPE by default.
:class:`KnowledgeCallback`
    A study callback that records (task embedding, extractor, best score, best
    hyper-parameters) of each finished trial into a
    :class:`~t2v_automl.knowledge.KnowledgeBase` file, safely when many workers finish
    trials at once, so that each study improves the selector of the next.

A :class:`~t2v_automl.estimators.HybridSelector` (or any selector with ``explain``) is asked
for its explanation: given the task, it embeds it with its own embedder and, for a novel
task, adds its transferability score (LogME). Given the task's embedding, pass the task's
images as ``task=`` too (``warm_start(study, embedding, hybrid, task=task)``,
``Task2VecSampler(hybrid, embedding, task=task)``) for that score without re-embedding;
with the embedding alone, a novel task is ranked by the knowledge base (and the estimator
warns).

All three work with any Optuna storage: in-memory, or an RDB storage shared by many
workers (``optuna.storages.RDBStorage("sqlite:///study.db")`` on one machine,
``"postgresql+psycopg2://user@host/db"`` across machines). Unlike the scikit-learn
estimators of the package, these are Optuna objects: they validate their arguments
eagerly, in ``__init__``, and keep private state.

Scores and study directions
---------------------------
The selector predicts scores on the scale of the knowledge base it learned from:
accuracies, or another metric in [0, 1] where higher is better. A study that *maximises*
such a metric (validation accuracy) needs nothing more. A study that *minimises* (error
rate, log-loss), or maximises a metric on another scale, must say how to turn its
objective value into a score in [0, 1] with ``score_transform`` (e.g.
``score_transform=lambda error_rate: 1.0 - error_rate``); without it, the sampler and the
callback refuse minimisation studies with :class:`~t2v_automl.exceptions.InvalidParameterError`
rather than learn from values of the wrong sign. Multi-objective studies are refused.

Choices the selector does not know
----------------------------------
Choices of the extractor parameter that the selector was not fitted on are *ignored with
a warning* (:class:`UserWarning`): :func:`warm_start` never enqueues them and
:class:`Task2VecSampler` never draws them (they can still be run by enqueueing them by
hand). When no choice at all is known to the selector, both raise
:class:`~t2v_automl.exceptions.UnknownNameError`. A search space whose extractor parameter
is not categorical raises :class:`~t2v_automl.exceptions.InvalidParameterError`.

Knowledge-base layout
---------------------
:class:`KnowledgeCallback` keeps, per (task, extractor), the best score seen in the
score matrix and, in the task's provenance under the key ``"optuna"``::

    {"best": {"<extractor>": {"score": 0.93, "value": 0.93, "params": {"C": 0.1},
                              "param": "extractor", "study": "<study name>",
                              "trial": 12}}}

``params`` are the hyper-parameters of the best trial of that extractor (all parameters
but the extractor one). :func:`warm_start` reads them back and enqueues only those the
objective can take: inside the study's distribution of the parameter once a trial has
suggested it (or one given as ``distributions=``), else of a plain type (a finite number,
a boolean, None, a short string); each other one is skipped with a :class:`UserWarning`
naming it and its value.
"""

from t2v_automl.integration.optuna._callback import PROVENANCE_KEY, KnowledgeCallback
from t2v_automl.integration.optuna._sampler import Task2VecSampler
from t2v_automl.integration.optuna._warm_start import warm_start

__all__ = ["PROVENANCE_KEY", "KnowledgeCallback", "Task2VecSampler", "warm_start"]
