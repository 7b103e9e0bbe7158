"""Integrations of t2v-automl with hyper-parameter search frameworks.

:mod:`t2v_automl.integration.optuna`
    Warm-start an Optuna study's extractor choice from a task embedding
    (:func:`~t2v_automl.integration.optuna.warm_start`,
    :class:`~t2v_automl.integration.optuna.Task2VecSampler`) and record finished trials
    into a knowledge base (:class:`~t2v_automl.integration.optuna.KnowledgeCallback`).
"""

from t2v_automl.integration.optuna import KnowledgeCallback, Task2VecSampler, warm_start

__all__ = ["KnowledgeCallback", "Task2VecSampler", "warm_start"]
