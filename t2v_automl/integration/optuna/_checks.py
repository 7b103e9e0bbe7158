"""Argument and study checks shared by :func:`warm_start`, :class:`Task2VecSampler` and
:class:`KnowledgeCallback`."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import StudyDirection

from t2v_automl.exceptions import InvalidInputTypeError, InvalidParameterError, UnknownNameError

ScoreTransform = Callable[[float], float]


def check_param(param: Any) -> str:
    if not isinstance(param, str) or not param:
        raise InvalidInputTypeError(
            f"param must be the non-empty name of the study's extractor parameter (str); got "
            f"{param!r}."
        )
    return param


def check_study(study: Any) -> optuna.Study:
    if not isinstance(study, optuna.Study):
        raise InvalidInputTypeError(
            f"study must be an optuna.Study (optuna.create_study(...) or "
            f"optuna.load_study(...)); got {type(study).__name__}."
        )
    return study


def check_transform(score_transform: Any) -> ScoreTransform | None:
    if score_transform is not None and not callable(score_transform):
        raise InvalidInputTypeError(
            f"score_transform must be a callable (objective value -> score in [0, 1]) or None; "
            f"got {type(score_transform).__name__}."
        )
    return score_transform


def single_direction(study: optuna.Study, who: str) -> StudyDirection:
    if len(study.directions) != 1:
        raise InvalidParameterError(
            f"{who} supports single-objective studies only; this study has "
            f"{len(study.directions)} objectives."
        )
    return study.directions[0]


def to_score(value: float, direction: StudyDirection, transform: ScoreTransform | None,
             who: str) -> float:
    """Objective value -> score (higher = better), on the selector's scale when possible."""
    if transform is not None:
        try:
            return float(transform(value))
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"score_transform failed on objective value {value!r}: {exc}"
            ) from exc
    if direction == StudyDirection.MINIMIZE:
        raise InvalidParameterError(
            f"{who}: the study minimises its objective, so its values are not scores where "
            f"higher is better; pass score_transform mapping a value to a score in [0, 1] "
            f"(e.g. score_transform=lambda error_rate: 1.0 - error_rate)."
        )
    return float(value)


def known_choices(choices: Sequence[Any], names: Sequence[str], param: str,
                  warned: set[tuple[Any, ...]] | None = None) -> list[str]:
    """The choices the selector knows, in choice order; warn about the others."""
    known_set = set(names)
    known = [c for c in choices if isinstance(c, str) and c in known_set]
    unknown = [c for c in choices if not (isinstance(c, str) and c in known_set)]
    if not known:
        raise UnknownNameError(
            f"none of the choices {list(choices)!r} of parameter {param!r} is an extractor "
            f"the selector knows ({sorted(known_set)}). Name the extractors as in the "
            f"knowledge base, or fit the selector on these extractors."
        )
    if unknown:
        key = tuple(map(repr, choices))
        if warned is None or key not in warned:
            if warned is not None:
                warned.add(key)
            warnings.warn(
                f"choices {unknown!r} of parameter {param!r} are unknown to the selector "
                f"(fitted on {sorted(known_set)}); they are ignored by the warm start.",
                UserWarning, stacklevel=3)
    return known


def study_distribution(study: optuna.Study, param: str) -> CategoricalDistribution | None:
    """The distribution of ``param`` in the study's latest trial that has it, if any.

    Raises when the study's trials suggest other parameters but never ``param``, or when
    ``param`` is not categorical.
    """
    dist: BaseDistribution | None = None
    others: set[str] = set()
    for t in study.get_trials(deepcopy=False):
        if param in t.distributions:
            dist = t.distributions[param]
        others.update(t.distributions)
    if dist is None:
        if others:
            raise InvalidParameterError(
                f"the study's search space has no parameter {param!r} (its trials suggest "
                f"{sorted(others)}); pass param=<the name of the categorical extractor "
                f"parameter>."
            )
        return None
    if not isinstance(dist, CategoricalDistribution):
        raise InvalidParameterError(
            f"parameter {param!r} must be categorical (trial.suggest_categorical({param!r}, "
            f"[extractor names])); the study has {dist!r}."
        )
    return dist
