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
rather than learn from values of the wrong sign.

Multi-objective studies
-----------------------
Backbone choice is often accuracy against latency:
``optuna.create_study(directions=["maximize", "minimize"])``. All three pieces take such
studies, and the rule that turns a trial into a score is the same for the sampler and the
callback:

- ``objective_index=i`` names the objective that is the score (``values[i]``, through
  ``score_transform`` when given; a minimised objective needs one);
- without ``objective_index``, ``score_transform`` gets the list of all the trial's values
  (``score_transform=lambda v: v[0] - 0.01 * v[1]``);
- with neither, :class:`Task2VecSampler` (at its first draw of the extractor) and
  :class:`KnowledgeCallback` (at the first trial) raise
  :class:`~t2v_automl.exceptions.InvalidParameterError` saying so; nothing is written.

:func:`warm_start` enqueues the ranked candidates as for a single objective.
:class:`Task2VecSampler` orders the extractor choice by that score and hands every other
parameter, and the multi-objective search itself, to its base sampler (the default
``TPESampler`` handles several objectives; ``NSGAIISampler`` too), so
``study.best_trials`` is the base sampler's Pareto front. :class:`KnowledgeCallback`
records, per (task, extractor), the best score (not a Pareto front) with that trial's
hyper-parameters and all its values (``"values"`` in the provenance entry).

Example::

    sampler = Task2VecSampler(selector, embedding, objective_index=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    warm_start(study, embedding, selector, choices=CANDIDATES)
    study.optimize(objective, n_trials=40,  # objective returns (accuracy, latency_ms)
                   callbacks=[KnowledgeCallback("kb.npz", embedding, objective_index=0)])

Choices the selector does not know
----------------------------------
A choice of the extractor parameter that the selector was not fitted on (the user's newest
model) is not left out: with ``unknown="interleave"`` (the default of both) the merged
ranking alternates known and unknown candidates (known #1, unknown #1, known #2, unknown
#2, ...), so :func:`warm_start` with ``top_k=3`` runs one unknown candidate as the second
trial, and :class:`Task2VecSampler` draws unknown #i as often as the known candidate at
the i-th place of the current ranking (its score: the i-th best of the known candidates'
predictions blended with their results) until its own results count. Two or more unknown
candidates are ordered among themselves by a transferability score of the task's images
when they are there (the task, or ``task=``): the ``transferability=`` given or the hybrid
selector's own ``transferability_`` (LogME), else in choice order. The places are fixed
because a transferability score is not on the knowledge base's accuracy scale. On the
warm-start benchmark (25 tasks, each task's best model removed from the knowledge base),
``warm_start`` + TPE first tries it at trial 2 on every task, against a median of 16
(6-28) with ``unknown="ignore"`` and 7 (6-19) for plain TPE
(``benchmarks/results/warm_start_unknown.md``). A :class:`UserWarning` names the unknown
choices (a misspelt extractor name shows there); ``unknown="ignore"`` leaves them out as
earlier versions did (they can still be enqueued by hand). When no choice at all is known
to the selector, both raise :class:`~t2v_automl.exceptions.UnknownNameError`. A search
space whose extractor parameter is not categorical raises
:class:`~t2v_automl.exceptions.InvalidParameterError`.

Conditional hyper-parameters per extractor
------------------------------------------
Write them define-by-run, one name per branch where the range depends on the extractor,
one shared name where it does not::

    def objective(trial):
        ext = trial.suggest_categorical("extractor", CANDIDATES)
        lr = trial.suggest_float(f"lr_{ext}", *LR_RANGE[ext], log=True)
        size = trial.suggest_categorical(f"input_size_{ext}", SIZES[ext])
        dropout = trial.suggest_float("dropout", 0.0, 0.5)  # every branch
        return train_and_score(ext, lr, size, dropout)

Under one name a categorical's choices may not change (Optuna raises "does not support
dynamic value space"), and a range that moves with the extractor mixes the branches in one
model of that name; hence ``f"lr_{ext}"`` rather than one ``"lr"``. How the pieces treat
them:

- :class:`KnowledgeCallback` records, per extractor, the parameters of its best trial:
  only that branch's (``lr_vit``, ``input_size_vit``, ``dropout``);
- :func:`warm_start` (``knowledge=``) enqueues each extractor with its own branch's
  recorded values, each checked against the study's distribution of that name (or
  ``distributions=`` on a fresh study) and skipped with a warning when outside it;
  ``extra_params`` go to every enqueued trial, and a branch that does not suggest one
  simply does not use it;
- :class:`Task2VecSampler` draws the extractor first (it is never in the relative search
  space) and hands the branch's parameters to the base sampler: with
  ``TPESampler(multivariate=True, group=True)`` TPE models each branch's parameters
  jointly, from the trials of that branch only.

``tests/integration/optuna/test_real_studies.py`` runs this example end to end.

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
