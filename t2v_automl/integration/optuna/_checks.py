"""Argument and study checks shared by :func:`warm_start`, :class:`Task2VecSampler` and
:class:`KnowledgeCallback`."""

from __future__ import annotations

import math
import numbers
import reprlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
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


def study_distribution(study: optuna.Study, param: str,
                       names: Sequence[str] | None = None) -> CategoricalDistribution | None:
    """The distribution of ``param`` in the study's latest trial that has it, if any.

    Parameters
    ----------
    study : optuna.Study
    param : str
        The extractor parameter's name.
    names : sequence of str, optional
        The selector's extractor names: a categorical parameter of another name whose
        choices include some of them is named in the error ("did you mean ...?").

    Returns
    -------
    CategoricalDistribution or None
        None when no trial has suggested any parameter yet.

    Raises
    ------
    InvalidParameterError
        The study's trials suggest other parameters but never ``param``, or ``param`` is
        not categorical.
    """
    dist: BaseDistribution | None = None
    others: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        if param in t.distributions:
            dist = t.distributions[param]
        others.update(t.distributions)
    if dist is None:
        if others:
            known = set(names or ())
            similar = [k for k, d in others.items() if isinstance(d, CategoricalDistribution)
                       and any(isinstance(c, str) and c in known for c in d.choices)]
            hint = (f"did you mean param={similar[0]!r}? Its choices include extractors the "
                    f"selector knows. " if similar else "")
            raise InvalidParameterError(
                f"the study's search space has no parameter {param!r} (its trials suggest "
                f"{sorted(others)}); {hint}pass param=<the name the objective gives "
                f"trial.suggest_categorical for the extractor>."
            )
        return None
    if not isinstance(dist, CategoricalDistribution):
        raise InvalidParameterError(
            f"parameter {param!r} must be categorical (trial.suggest_categorical({param!r}, "
            f"[extractor names])); the study has {dist!r}."
        )
    return dist


def latest_distributions(study: optuna.Study) -> dict[str, BaseDistribution]:
    """Each parameter's distribution in the latest trial of the study that suggests it."""
    out: dict[str, BaseDistribution] = {}
    for t in study.get_trials(deepcopy=False):
        out.update(t.distributions)
    return out


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to about 60 characters (for messages)."""
    return _SHORT.repr(value)


#: Longest string value taken from a knowledge base for a parameter the study has not
#: suggested yet.
MAX_STRING_LENGTH = 200


def plain_value_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a hyper-parameter of unknown distribution, or None.

    Accepted: finite real numbers, integers, booleans, None and strings of at most
    :data:`MAX_STRING_LENGTH` characters (what ``suggest_float``, ``suggest_int`` and
    ``suggest_categorical`` return).
    """
    if value is None or isinstance(value, bool | np.bool_ | numbers.Integral):
        return None
    if isinstance(value, numbers.Real):
        return None if math.isfinite(float(value)) else "not a finite number"
    if isinstance(value, str):
        return (None if len(value) <= MAX_STRING_LENGTH else
                f"a string of {len(value)} characters (at most {MAX_STRING_LENGTH})")
    return f"a {type(value).__name__}, not a number, a boolean or a short string"


def distribution_problem(dist: BaseDistribution, value: Any) -> str | None:
    """Why ``dist`` (as ``trial.suggest_*`` would build it) refuses ``value``, or None.

    Stricter than Optuna, which runs an enqueued value outside its distribution with a
    warning and turns ``"0.5"`` or ``True`` into a float: the value must have the type the
    objective's ``suggest_*`` returns and lie in the distribution.
    """
    if isinstance(dist, FloatDistribution | IntDistribution):
        kind = "suggest_float" if isinstance(dist, FloatDistribution) else "suggest_int"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"a {type(value).__name__} where the objective's {kind} takes a number"
        if not math.isfinite(float(value)):
            return "not a finite number"
        if isinstance(dist, IntDistribution) and not float(value).is_integer():
            return "not an integer, for the objective's suggest_int"
    elif isinstance(dist, CategoricalDistribution):
        if not any(c is value or (type(c) is type(value) and c == value)
                   for c in dist.choices):
            return f"not one of the choices {list(dist.choices)!r}"
    try:
        inside = bool(dist._contains(dist.to_internal_repr(value)))
    except (TypeError, ValueError, OverflowError):
        inside = False
    return None if inside else f"outside {dist}"
