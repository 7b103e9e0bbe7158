"""Extractors named by scheme: ``timm:``, ``torchvision:``, ``hf:`` and ``<arch>@<path>``.

:func:`scheme_spec` makes the :class:`~t2v_automl.extractors.ExtractorSpec` of a scheme
name from the model's own preprocessing (:func:`t2v_automl.models.model_preprocessing`:
no weights are read); its build, a :class:`SchemeBuild`, loads the backbone with
:func:`t2v_automl.models.load_backbone` in the process that runs it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from t2v_automl.extractors._registry import ExtractorSpec
from t2v_automl.extractors._spec import Built
from t2v_automl.models import Preprocessing, load_backbone, model_preprocessing, parse_model_name

__all__ = ["SchemeBuild", "merge_preprocessing", "scheme_spec"]

_REQUIRES = {"timm": (("timm", "timm"),), "torchvision": (("torchvision", "torchvision"),),
             "hf": (("transformers", "transformers"),), "arch": ()}


class SchemeBuild:
    """``build(device)`` of a scheme name: loads the backbone where it is called.

    Pickles as the name alone, so a spec made from it travels to workers as a few bytes.

    Parameters
    ----------
    model : str
        The scheme name (``"timm:resnet18@/path/file.pth"``).
    """

    def __init__(self, model: str) -> None:
        self.model = model

    def __call__(self, device: torch.device) -> Built:
        bb = load_backbone(self.model, device=device)
        features, head = bb.module, bb.classifier
        n_classes = int(head.out_features) if isinstance(head, nn.Linear) else None
        logits = None if head is None else _Logits(features, head)
        return Built(features=features, source_logits=logits, weights_path=bb.weights_path,
                     weights_sha256=bb.weights_sha256, n_source_classes=n_classes,
                     trained_on=bb.trained_on)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SchemeBuild) and other.model == self.model

    def __hash__(self) -> int:
        return hash(("SchemeBuild", self.model))

    def __repr__(self) -> str:
        return f"SchemeBuild({self.model!r})"


class _Logits(nn.Module):
    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def merge_preprocessing(base: Preprocessing | None, given: Any, what: str) -> Preprocessing:
    """``given`` (a Preprocessing, a mapping of some fields, or None) over ``base``.

    Raises
    ------
    InvalidParameterError
        A field is missing (``input_size`` without a base), unknown or out of range.
    """
    if given is None:
        if base is None:
            raise AssertionError("merge_preprocessing needs a base or a value")
        return base
    if isinstance(given, Preprocessing) or base is None:
        return Preprocessing.coerce(given, what)
    if not hasattr(given, "keys"):
        return Preprocessing.coerce(given, what)  # raises the type error
    return Preprocessing.coerce({**asdict(base), **dict(given)}, what)


def scheme_spec(model: str, *, name: str | None = None, preprocessing: Any = None,
                trained_on: str = "", description: str = "") -> ExtractorSpec:
    """The spec of a scheme name (nothing is loaded).

    Parameters
    ----------
    model : str
        A scheme name (see :mod:`t2v_automl.models`).
    name : str, optional
        The extractor's name; default ``model``.
    preprocessing : Preprocessing or mapping, optional
        Fields that replace the model's own (``{"input_size": 96}``).
    trained_on, description : str, default=""
        Free text; by default what the weights say, and the scheme name.

    Returns
    -------
    ExtractorSpec

    Raises
    ------
    UnknownNameError
        Unknown scheme or model.
    """
    parsed = parse_model_name(model)
    assert parsed is not None, model
    what = f"preprocessing of extractor {name or model!r}"
    prep = merge_preprocessing(model_preprocessing(model), preprocessing, what)
    return ExtractorSpec(
        name=name or model, build=SchemeBuild(model), trained_on=trained_on,
        input_size=prep.input_size, mean=prep.mean, std=prep.std, resizable=prep.resizable,
        min_input_size=prep.min_input_size, has_source_head=parsed[0] != "hf",
        requires=_REQUIRES[parsed[0]], description=description or model)
