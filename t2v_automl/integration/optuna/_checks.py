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


def check_objective_index(objective_index: Any) -> int | None:
    """``objective_index`` as an int >= 0, or None."""
    if objective_index is None:
        return None
    if isinstance(objective_index, bool) or not isinstance(objective_index, numbers.Integral) \
            or objective_index < 0:
        raise InvalidParameterError(
            f"objective_index must be None or an int >= 0 (the position of the accuracy-like "
            f"objective in the study's directions); got {objective_index!r}."
        )
    return int(objective_index)


def _apply(transform: ScoreTransform, value: Any) -> float:
    try:
        return float(transform(value))
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise InvalidParameterError(
            f"score_transform failed on objective value {short_repr(value)}: {exc}"
        ) from exc


def score_rule(directions: Sequence[StudyDirection], objective_index: int | None,
               transform: ScoreTransform | None, who: str
               ) -> Callable[[Sequence[float]], float]:
    """The map from a trial's objective values to a score (higher = better).

    The rule, for single- and multi-objective studies alike:

    - ``objective_index=i`` (a multi-objective study, or 0 for a single one) names the
      objective that is the score: ``transform(values[i])`` with a transform, else
      ``values[i]``, which must then be maximised;
    - ``objective_index=None`` in a single-objective study is objective 0;
    - ``objective_index=None`` in a multi-objective study needs ``transform``, which then
      gets the list of all the trial's values (e.g. ``lambda v: v[0] - 0.01 * v[1]``).

    Parameters
    ----------
    directions : sequence of StudyDirection
        The study's directions.
    objective_index : int or None
        Checked by :func:`check_objective_index`.
    transform : callable or None
        Checked by :func:`check_transform`.
    who : str
        The caller, for messages.

    Returns
    -------
    callable
        ``rule(values) -> float`` for a trial's values (``trial.values``).

    Raises
    ------
    InvalidParameterError
        ``objective_index`` outside the study's objectives; a multi-objective study with
        neither ``objective_index`` nor ``score_transform``; the named objective minimised
        without ``score_transform``. Raised here, before any trial is looked at.
    """
    n = len(directions)
    if objective_index is not None and objective_index >= n:
        raise InvalidParameterError(
            f"{who}: objective_index={objective_index} but the study has {n} objective"
            f"{'s' if n != 1 else ''} (directions "
            f"{[d.name.lower() for d in directions]}); pass the 0-based position of the "
            f"accuracy-like objective."
        )
    if n > 1 and objective_index is None:
        if transform is None:
            raise InvalidParameterError(
                f"{who}: the study has {n} objectives (directions "
                f"{[d.name.lower() for d in directions]}) and nothing says which is the "
                f"score the selector predicts (an accuracy in [0, 1], higher = better). Pass "
                f"objective_index=<its 0-based position> (e.g. objective_index=0 for "
                f"directions ['maximize', 'minimize'] = accuracy, latency), or "
                f"score_transform=<a callable taking the list of the {n} objective values "
                f"and returning that score>."
            )
        return lambda values: _apply(transform, list(values))
    i = 0 if objective_index is None else objective_index
    direction = directions[i]
    if transform is not None:
        return lambda values: _apply(transform, values[i])
    if direction == StudyDirection.MINIMIZE:
        which = "its objective" if n == 1 else f"objective {i}"
        raise InvalidParameterError(
            f"{who}: the study minimises {which}, so its values are not scores where "
            f"higher is better; pass score_transform mapping a value to a score in [0, 1] "
            f"(e.g. score_transform=lambda error_rate: 1.0 - error_rate)."
        )
    return lambda values: float(values[i])


def split_choices(choices: Sequence[Any], names: Sequence[str], param: str, unknown: str,
                  warned: set[tuple[Any, ...]] | None = None) -> tuple[list[str], list[Any]]:
    """The choices the selector knows and the others, each in choice order.

    With ``unknown="ignore"`` the others are returned empty (and a warning says they are
    left out); with ``"interleave"`` a warning says they are interleaved.

    Raises
    ------
    UnknownNameError
        No choice is known to the selector.
    """
    known_set = set(names)
    known = [c for c in choices if isinstance(c, str) and c in known_set]
    others = [c for c in choices if not (isinstance(c, str) and c in known_set)]
    if not known:
        raise UnknownNameError(
            f"none of the choices {list(choices)!r} of parameter {param!r} is an extractor "
            f"the selector knows ({sorted(known_set)}). Name the extractors as in the "
            f"knowledge base, or fit the selector on these extractors (to rank candidates "
            f"no knowledge base has seen, use TransferabilitySelector directly)."
        )
    if others:
        key = tuple(map(repr, choices))
        if warned is None or key not in warned:
            if warned is not None:
                warned.add(key)
            what = ("they take every second place of the ranking from the 2nd on "
                    "(unknown='interleave'; unknown='ignore' leaves them out)"
                    if unknown == "interleave" else
                    "they are ignored by the warm start (unknown='ignore')")
            warnings.warn(
                f"choices {others!r} of parameter {param!r} are unknown to the selector "
                f"(fitted on {sorted(known_set)}); {what}.",
                UserWarning, stacklevel=3)
    return known, (others if unknown == "interleave" else [])


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
