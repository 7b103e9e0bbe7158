"""The extractor runtime class and what a build returns.

:class:`Built` is what an :class:`~t2v_automl.extractors.ExtractorSpec`'s ``build``
returns (it may return just a module or feature function, see :meth:`Built.coerce`);
:func:`~t2v_automl.extractors.get_extractor` turns the two into a shared, frozen
:class:`Extractor`, whose every batch of outputs is checked (:func:`check_output`).
"""

from __future__ import annotations

import hashlib
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
)
from t2v_automl.tasks import LazyImages

__all__ = ["SOURCES", "Built", "Extractor", "FeatureFn", "check_output", "object_sha256"]

#: What the built-in extractors were trained on (``trained_on`` is free text; ``"none"``
#: marks a control that carries no trained weights).
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
    trained_on : str or None, default=None
        What the weights were trained on, when the build learns it (a scheme's weight tag);
        replaces the spec's ``trained_on`` where that is empty.
    """

    features: FeatureFn
    weights_sha256: str
    source_logits: FeatureFn | None = None
    weights_path: str | None = None
    n_source_classes: int | None = None
    trained_on: str | None = None

    @classmethod
    def coerce(cls, built: Any, name: str) -> Built:
        """Accept a :class:`Built`, a module or feature function, or the old mapping.

        Parameters
        ----------
        built : Built, nn.Module, callable or mapping
            A module or callable is the feature function; its weights digest is that of
            its state dict (a module) or of its code (a function). A mapping has the keys
            ``features``, ``logits``, ``weights_path``, ``weights_sha256`` and
            ``n_source_classes`` (deprecated form).
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
        if callable(built) and not isinstance(built, type):
            return cls(features=built, weights_sha256=object_sha256(built))
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
            f"t2v_automl.extractors.Built, an nn.Module or a feature function; got "
            f"{type(built).__name__}. Return Built(features=fn, weights_sha256=digest, ...) "
            "or the module itself."
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
        What the network was trained on, free text (the spec's ``trained_on``; the
        built-in ones use :data:`SOURCES`).
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
    def trained_on(self) -> str:
        """What the network was trained on (the same as :attr:`source`)."""
        return self.source

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
                raw = fn(self.preprocess(batch, input_size))
                y = check_output(raw, self.name, batch.shape[0], what).float().cpu().numpy()
                if out is None:
                    out = np.empty((n, y.shape[1]), dtype=np.float32)
                elif y.shape[1] != out.shape[1]:
                    raise InvalidParameterError(
                        f"extractor {self.name!r} returned {y.shape[1]} {what} per image for "
                        f"images {start}-{start + y.shape[0] - 1} but {out.shape[1]} for the "
                        "first batch; expected the same width for every batch.")
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
            from t2v_automl.extractors._registry import extractor_spec, list_extractors

            with_head = [n for n in list_extractors(available_only=True)
                         if extractor_spec(n).has_source_head]
            raise UnknownNameError(
                f"extractor {self.name!r} has no source classifier, so it has no source "
                f"logits; extractors with one: {', '.join(with_head)}."
            )
        return self._run(self._logits, images, batch_size, input_size, "source logits")


def check_output(y: Any, name: str, n: int, what: str = "features") -> torch.Tensor:
    """Check what a feature function returned for a batch of ``n`` images: ``(n, d)``, finite.

    Raises
    ------
    InvalidInputTypeError
        Not a tensor.
    InvalidParameterError
        Another shape than ``(n, d)``, or NaN or infinite values.
    """
    if not isinstance(y, torch.Tensor):
        raise InvalidInputTypeError(
            f"extractor {name!r} returned a {type(y).__name__} for a batch of {n} images; "
            f"expected a torch.Tensor of shape ({n}, d) of {what}. Make its module or "
            "function return one tensor (e.g. pooled penultimate features).")
    if y.ndim != 2 or y.shape[0] != n or y.shape[1] < 1:
        hint = " (pool or flatten the spatial dimensions)" if y.ndim > 2 else ""
        raise InvalidParameterError(
            f"extractor {name!r} returned {what} of shape {tuple(y.shape)} for a batch of {n} "
            f"images; expected shape ({n}, d){hint}.")
    if y.is_floating_point() and not bool(torch.isfinite(y).all()):
        bad = int((~torch.isfinite(y)).any(dim=1).sum())
        raise InvalidParameterError(
            f"extractor {name!r} returned NaN or infinite {what} for {bad} of {n} images; "
            "expected finite values. Check its weights and its preprocessing (mean/std).")
    return y


def object_sha256(obj: Any) -> str:
    """A digest of a feature module (its state dict) or function (its code and name)."""
    if isinstance(obj, nn.Module):
        from t2v_automl.models import module_sha256

        return module_sha256(obj)
    h = hashlib.sha256(f"{type(obj).__module__}.{type(obj).__qualname__}".encode())
    fn = getattr(obj, "__func__", obj)
    code = getattr(fn, "__code__", None)
    if code is not None:
        h.update(getattr(fn, "__qualname__", "").encode())
        h.update(code.co_code)
        h.update(repr(code.co_consts).encode())
    else:
        import pickle

        try:
            h.update(pickle.dumps(obj))
        except Exception:  # noqa: BLE001 - any unpicklable object: its repr
            h.update(repr(obj).encode())
    return h.hexdigest()


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


