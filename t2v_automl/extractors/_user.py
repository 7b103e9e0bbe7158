"""Your own extractors: a module, a feature function or a scheme name as an extractor.

:func:`as_extractor` makes the :class:`~t2v_automl.extractors.ExtractorSpec` that every
function taking an extractor name accepts; it pickles by value (the module or function
with it), so it travels to joblib and Dask workers.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from t2v_automl._logging import logger
from t2v_automl.exceptions import InvalidInputTypeError
from t2v_automl.extractors._registry import (
    ExtractorSpec,
    registered,
    resolve_extractor,
)
from t2v_automl.extractors._schemes import merge_preprocessing, scheme_spec
from t2v_automl.extractors._spec import Built, object_sha256
from t2v_automl.models import Preprocessing, parse_model_name

__all__ = ["ObjectBuild", "as_extractor"]


class ObjectBuild:
    """``build(device)`` of a user module or function (pickled with it, by value).

    A module is copied before it is frozen (eval mode, no gradients, moved to the
    device), so the caller's own module is never changed.

    Parameters
    ----------
    obj : nn.Module or callable
        Preprocessed images ``(n, 3, s, s)`` -> ``(n, d)`` features.
    digest : str
        Its :func:`~t2v_automl.extractors._spec.object_sha256`.
    head : nn.Module or callable, optional
        Features -> source logits.
    """

    def __init__(self, obj: Callable[..., Any], digest: str,
                 head: Callable[..., Any] | None = None) -> None:
        self.obj = obj
        self.digest = digest
        self.head = head

    def _key(self) -> tuple[str, str, str | None]:
        head = None if self.head is None else object_sha256(self.head)
        return (type(self.obj).__qualname__, self.digest, head)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectBuild) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @staticmethod
    def _ready(fn: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
        if isinstance(fn, nn.Module):
            return copy.deepcopy(fn).eval().requires_grad_(False).to(device)
        return fn

    def __call__(self, device: torch.device) -> Built:
        features = self._ready(self.obj, device)
        if self.head is None:
            return Built(features=features, weights_sha256=self.digest)
        head = self._ready(self.head, device)
        n = int(head.out_features) if isinstance(head, nn.Linear) else None
        return Built(features=features, source_logits=lambda x: head(features(x)),
                     weights_sha256=self.digest, n_source_classes=n)


def _default_name(obj: Any, digest: str) -> str:
    base = getattr(obj, "__qualname__", None) if not isinstance(obj, nn.Module) else None
    base = base or type(obj).__name__
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_") or "extractor"
    return f"{base}-{digest[:8]}"


def as_extractor(obj: Any, *, name: str | None = None, preprocessing: Any = None,
                 trained_on: str = "", description: str = "",
                 source_head: Callable[..., Any] | None = None) -> ExtractorSpec:
    """An extractor from a module, a feature function or a scheme name.

    What it returns is accepted wherever an extractor name is (``get_extractor``,
    ``evaluate_zoo``, the selectors' ``extractors``...), pickles by value and registers
    itself in the process that receives it (a joblib or Dask worker).

    Parameters
    ----------
    obj : nn.Module, callable or str
        A module or function mapping preprocessed images ``(n, 3, s, s)`` to ``(n, d)``
        features (checked on the first batch: shape, tensor type, finite values), or a
        scheme name (``"timm:resnet18@/path/r18.pth"``, see :mod:`t2v_automl.models`)
        whose preprocessing and name you want to change.
    name : str, optional
        Default: the scheme name; for an object its class or function name and the
        first 8 hex digits of its weights' (or code's) sha256, e.g.
        ``"MyNet-1a2b3c4d"`` (the same object gives the same name).
    preprocessing : Preprocessing or mapping, optional
        ``input_size`` (required in a mapping for an object), ``mean``, ``std`` (RGB, for
        images in ``[0, 1]``), ``resizable``, ``min_input_size``. For a scheme name the
        fields given replace the model's own. Default for an object: 224 px, ImageNet's
        mean and std, resizable.
    trained_on : str, default=""
        What the weights were trained on, free text.
    description : str, default=""
    source_head : nn.Module or callable, optional
        Features -> logits of the network's own classifier (for LEEP and NCE).

    Returns
    -------
    ExtractorSpec

    Raises
    ------
    InvalidInputTypeError
        ``obj`` is a class, or a string that is not a scheme name.
    InvalidParameterError
        A preprocessing field is missing or out of range (the message names the
        extractor and the field).
    UnknownNameError
        Unknown scheme or model.
    """
    if isinstance(obj, ExtractorSpec):
        return obj
    if isinstance(obj, str):
        if parse_model_name(obj) is None:
            raise InvalidInputTypeError(
                f"as_extractor takes a module, a function or a scheme name "
                f"('timm:<name>', 'torchvision:<name>', 'hf:<repo>', '<arch>@<path>'); got "
                f"the plain name {obj!r}: use it as it is wherever an extractor is asked for.")
        if name in (None, obj) and preprocessing is None and not (trained_on or description):
            return resolve_extractor(obj)  # the plain scheme name, as every process has it
        return scheme_spec(obj, name=name, preprocessing=preprocessing, trained_on=trained_on,
                           description=description)
    if isinstance(obj, type) or not callable(obj):
        hint = " (an instance, not the class)" if isinstance(obj, type) else ""
        raise InvalidInputTypeError(
            f"as_extractor expects an nn.Module or a function from images (n, 3, s, s) to "
            f"features (n, d){hint}, or a scheme name; got {obj!r:.80}.")
    digest = object_sha256(obj)
    label = name or _default_name(obj, digest)
    if preprocessing is None:
        logger.info("extractor %r: no preprocessing given; using 224 px, ImageNet's mean and "
                    "std, resizable", label)
        prep = Preprocessing(input_size=224)
    else:
        prep = merge_preprocessing(None, preprocessing, f"preprocessing of extractor {label!r}")
    return ExtractorSpec(
        name=label, build=ObjectBuild(obj, digest, source_head), trained_on=trained_on,
        input_size=prep.input_size, mean=prep.mean, std=prep.std, resizable=prep.resizable,
        min_input_size=prep.min_input_size, has_source_head=source_head is not None,
        description=description or f"user {type(obj).__name__}")


def object_extractor(obj: Any) -> ExtractorSpec:
    """The registered spec of a module or function given where a name is taken.

    The same object gives the same spec (and so the same loaded instance) at every call.
    """
    digest = object_sha256(obj)
    name = _default_name(obj, digest)
    existing = registered(name)
    build = getattr(existing, "build", None)
    if isinstance(build, ObjectBuild) and build.obj is obj and build.digest == digest:
        assert existing is not None
        return existing
    return resolve_extractor(as_extractor(obj, name=name))
