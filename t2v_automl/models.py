"""Name schemes: a frozen backbone and its preprocessing from a model name.

Shared by the extractors (:mod:`t2v_automl.extractors`, a candidate named
``"timm:resnet50"``) and the probes (:mod:`t2v_automl.probes`). :func:`load_backbone`
turns a scheme name into a :class:`Backbone`: the network in eval mode with frozen
parameters, a module giving its pooled penultimate features, its source classifier where
it has one, and its :class:`Preprocessing` (input size, mean, std) as the model's own
library declares it.

Schemes
-------
``timm:<name>``
    A timm model (``timm.list_models('resnet*')`` lists them; a tag such as
    ``resnet50.a1_in1k`` picks a weight set). Preprocessing from timm's data config of
    the model's pretrained config. Weights from the Hugging Face cache or the torch hub
    cache (loaded by timm through ``pretrained_cfg_overlay=dict(file=...)``).
``timm:<name>@/path/file.pth`` (or ``.safetensors``)
    The same architecture with a local state dict (the classifier size is read from the
    file, so a fine-tuned checkpoint with 10 classes loads).
``torchvision:<name>[.<WEIGHTS_ENUM>]``
    A torchvision classification model (``torchvision.models.list_models()``); the
    weights enum defaults to ``DEFAULT``. Preprocessing from the weights' transforms;
    weights from the torch hub cache only. ``torchvision:<name>@/path.pth`` for a local
    state dict.
``hf:<repo-or-local-path>``
    A Hugging Face vision backbone: ``transformers.AutoModel`` and
    ``AutoImageProcessor`` (the optional extra ``pip install 't2v-automl[hf]'``), from a
    local folder written by ``save_pretrained`` or the Hugging Face cache. Features: the
    class token of ``last_hidden_state`` for ViT-like models (``vit``, ``deit``...),
    ``pooler_output`` (flattened) for the others, else the mean over tokens.
``<arch>@<path>``
    A checkpoint of a torchvision or timm architecture (torchvision first where both have
    the name and its keys fit, then timm).

No download at run time: a weight file that is not on the machine raises
:class:`~t2v_automl.exceptions.WeightsNotFoundError` saying where it was looked for, how to
give a file, and that ``allow_download=True`` or the environment variable
``T2V_AUTOML_ALLOW_DOWNLOAD=1`` lets the model's library download it. Files are read with
``weights_only=True`` (or by ``safetensors``): a file holding code is refused unread.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2v_automl._logging import logger
from t2v_automl._weights import load_state_dict, state_sha256, strict_load
from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidWeightsError,
    UnknownNameError,
    WeightsNotFoundError,
)

__all__ = [
    "ALLOW_DOWNLOAD_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SCHEMES",
    "Backbone",
    "Preprocessing",
    "load_backbone",
    "module_sha256",
    "model_preprocessing",
    "parse_model_name",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The name schemes :func:`load_backbone` resolves (the last is a pattern, not a prefix).
SCHEMES: tuple[str, ...] = ("timm", "torchvision", "hf", "<arch>@<path>")

#: Environment variable that, set to 1, lets a scheme download missing weights.
ALLOW_DOWNLOAD_ENV = "T2V_AUTOML_ALLOW_DOWNLOAD"

_SCHEME_HELP = (
    "Name a model as 'timm:<name>' (list them with timm.list_models('resnet*')), "
    "'torchvision:<name>[.<WEIGHTS_ENUM>]' (torchvision.models.list_models()), "
    "'hf:<repo-or-local-folder>' (a Hugging Face vision backbone), or '<arch>@<path>' for "
    "a checkpoint of a timm or torchvision architecture; add '@/path/file.pth' to a timm or "
    "torchvision name to use a local weight file."
)

#: Hugging Face model types whose classifier reads the class token (not ``pooler_output``).
_HF_CLS_TOKEN = frozenset({"vit", "deit", "vit_msn", "vit_mae", "dinov2", "beit",
                           "data2vec-vision"})


# ----------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How images in ``[0, 1]`` are prepared for a backbone: resize, then ``(x - mean) / std``.

    Attributes
    ----------
    input_size : int
        Native square input size in pixels.
    mean, std : tuple of 3 float, default=ImageNet's
        Per-channel normalisation of RGB images in ``[0, 1]``.
    resizable : bool, default=True
        Whether the network accepts other square sizes (global pooling).
    min_input_size : int, default=32
        Smallest size a resizable network accepts (the default becomes ``input_size``
        when that is smaller).
    """

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resizable: bool = True
    min_input_size: int = 32

    def __post_init__(self) -> None:
        for key in ("input_size", "min_input_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(
                    f"Preprocessing.{key} must be a positive integer number of pixels; got "
                    f"{value!r}. Pass e.g. {key}=224.")
        if self.min_input_size == 32 and self.input_size < 32:  # the default, for small nets
            object.__setattr__(self, "min_input_size", self.input_size)
        if self.min_input_size > self.input_size:
            raise InvalidParameterError(
                f"Preprocessing.min_input_size ({self.min_input_size}) is larger than "
                f"input_size ({self.input_size}); expected min_input_size <= input_size.")
        if not isinstance(self.resizable, bool):
            raise InvalidParameterError(
                f"Preprocessing.resizable must be True or False; got {self.resizable!r}.")
        for key in ("mean", "std"):
            value = getattr(self, key)
            try:
                vals = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                vals = ()
            if len(vals) != 3 or not all(math.isfinite(v) for v in vals) \
                    or (key == "std" and min(vals) <= 0):
                what = "positive finite" if key == "std" else "finite"
                raise InvalidParameterError(
                    f"Preprocessing.{key} must be 3 {what} numbers (one per RGB channel, for "
                    f"images in [0, 1]); got {value!r}. ImageNet's is "
                    f"{IMAGENET_MEAN if key == 'mean' else IMAGENET_STD}.")
            object.__setattr__(self, key, vals)

    @classmethod
    def coerce(cls, value: Preprocessing | Mapping[str, Any], what: str = "preprocessing"
               ) -> Preprocessing:
        """A :class:`Preprocessing` from itself or a mapping of its fields.

        Parameters
        ----------
        value : Preprocessing or mapping
            A mapping needs ``input_size``; ``mean``, ``std``, ``resizable`` and
            ``min_input_size`` are optional.
        what : str, default="preprocessing"
            What the value is, for messages (e.g. ``"preprocessing of extractor 'mine'"``).

        Returns
        -------
        Preprocessing

        Raises
        ------
        InvalidParameterError
            A field is missing, unknown or out of range.
        InvalidInputTypeError
            ``value`` is neither a Preprocessing nor a mapping.
        """
        if isinstance(value, Preprocessing):
            return value
        if not isinstance(value, Mapping):
            raise InvalidInputTypeError(
                f"{what} must be a t2v_automl.models.Preprocessing or a mapping with "
                f"input_size (and optionally mean, std, resizable, min_input_size); got "
                f"{type(value).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise InvalidParameterError(
                f"{what} has unknown field(s) {unknown}; expected fields: {known}.")
        if "input_size" not in value:
            raise InvalidParameterError(
                f"{what} is missing input_size (the native square input size in pixels); got "
                f"fields {sorted(value)}. Add e.g. input_size=224.")
        return cls(**dict(value))


# ----------------------------------------------------------------------------- backbone
@dataclass(kw_only=True, eq=False)
class Backbone:
    """A frozen network resolved from a scheme name.

    Attributes
    ----------
    name : str
        The scheme name it was loaded from.
    module : nn.Module
        ``module(x) -> (n, d)`` pooled penultimate features of images ``x`` of shape
        ``(n, 3, H, W)`` already preprocessed. Eval mode, no gradients; it shares its
        parameters with ``network``.
    network : nn.Module
        The whole underlying model (the timm, torchvision or transformers object).
    classifier : nn.Module or None
        The source head (features -> logits), where the model has one.
    preprocessing : Preprocessing
    weights_sha256 : str
        sha256 of the weight file (of the weight files of a Hugging Face folder).
    weights_path : str or None
        Where the weights were read from.
    description : str
    trained_on : str
        What the weights were trained on, in words (``""`` when unknown).
    """

    name: str
    module: nn.Module
    network: nn.Module
    classifier: nn.Module | None
    preprocessing: Preprocessing
    weights_sha256: str
    weights_path: str | None
    description: str
    trained_on: str


# ----------------------------------------------------------------------------- names
def parse_model_name(name: str) -> tuple[str, str, str | None] | None:
    """Split a scheme name into ``(scheme, model, weights-or-path)``.

    Parameters
    ----------
    name : str
        ``"timm:<name>[@path]"``, ``"torchvision:<name>[.<ENUM>][@path]"``,
        ``"hf:<repo-or-path>"`` or ``"<arch>@<path>"``.

    Returns
    -------
    tuple of (str, str, str or None), or None
        ``("timm", model, path-or-None)``, ``("torchvision", model, enum-or-path-or-None)``
        (a weights enum name is upper case, e.g. ``"IMAGENET1K_V1"``),
        ``("hf", repo-or-path, None)``, ``("arch", arch, path)``; None for a plain
        registry name (no scheme prefix and no ``@``).

    Raises
    ------
    UnknownNameError
        An unknown scheme prefix, or an empty model or path (the message lists the schemes).
    """
    if not isinstance(name, str):
        raise UnknownNameError(
            f"a model is named by a string; got {type(name).__name__}. {_SCHEME_HELP}")
    prefix, colon, rest = name.partition(":")
    if not colon or "@" in prefix or "/" in prefix:
        if "@" not in name:
            return None
        arch, _, path = name.partition("@")
        if not arch or not path:
            raise UnknownNameError(
                f"model name {name!r} needs both an architecture and a path around '@'. "
                f"{_SCHEME_HELP}")
        return "arch", arch, path
    if prefix not in SCHEMES:
        raise UnknownNameError(
            f"unknown model scheme {prefix!r} in {name!r}; known schemes: "
            f"{', '.join(SCHEMES)}. {_SCHEME_HELP}")
    if prefix == "hf":
        if not rest:
            raise UnknownNameError(f"model name {name!r} has no repository or folder after "
                                   f"'hf:'. {_SCHEME_HELP}")
        return "hf", rest, None
    model, at, path = rest.partition("@")
    if at and not path:
        raise UnknownNameError(f"model name {name!r} has '@' but no weight file after it.")
    weights: str | None = path or None
    if prefix == "torchvision" and "." in model:
        model, _, enum = model.partition(".")
        if weights is not None:
            raise UnknownNameError(
                f"model name {name!r} gives both a weights enum ({enum!r}) and a file; give "
                "one of them.")
        weights = enum
    if not model:
        raise UnknownNameError(f"model name {name!r} has no model after {prefix + ':'!r}. "
                               f"{_SCHEME_HELP}")
    return prefix, model, weights


def _downloads_allowed(allow_download: bool | None) -> bool:
    if allow_download is not None:
        return bool(allow_download)
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def _no_weights(name: str, looked: str, hint: str = "") -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"no weights for model {name!r} on this machine (looked in: {looked}). Give a local "
        f"file as '{name.split('@')[0]}@/path/to/weights.pth'{hint}, or let the model's "
        f"library download them: pass allow_download=True or set the environment variable "
        f"{ALLOW_DOWNLOAD_ENV}=1.")


def _file_digest(path: str | os.PathLike[str]) -> str:
    from t2v_automl.probes import file_sha256  # one file hash for the package

    return file_sha256(path)


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.save`` file (tensors only)."""
    if not Path(path).is_file():
        raise WeightsNotFoundError(f"weight file {path!r} does not exist; give the path of an "
                                   "existing state dict (.pth, .pt or .safetensors).")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise InvalidWeightsError(
                f"weight file {path!r} cannot be read as safetensors ({type(exc).__name__}: "
                f"{str(exc)[:200]}). Save it again with safetensors.torch.save_file("
                "model.state_dict(), path).") from None
    return load_state_dict(path)


def _freeze(module: nn.Module, device: torch.device) -> nn.Module:
    return module.eval().requires_grad_(False).to(device)


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent = root.get_submodule(path.rpartition(".")[0]) if "." in path else root
    setattr(parent, path.rpartition(".")[2], new)


def _without_head(network: nn.Module, path: str) -> nn.Module:
    """A view of ``network`` whose submodule at ``path`` is ``Identity`` (parameters shared)."""
    root = copy.copy(network)
    root._modules = root._modules.copy()
    parent = root
    parts = path.split(".")
    for part in parts[:-1]:
        child = copy.copy(parent._modules[part])
        assert child is not None
        child._modules = child._modules.copy()
        parent._modules[part] = child
        parent = child
    parent._modules[parts[-1]] = nn.Identity()
    return root


class _Flatten2d(nn.Module):
    """Runs ``inner`` and flattens what it returns to ``(n, d)``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return y.flatten(1) if isinstance(y, torch.Tensor) and y.ndim > 2 else y


# ----------------------------------------------------------------------------- timm
class _TimmFeatures(nn.Module):
    """Pre-logits features of a timm model: ``forward_head(forward_features(x), pre_logits)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m: Any = self.model
        y = m.forward_head(m.forward_features(x), pre_logits=True)
        return y.flatten(1) if y.ndim > 2 else y


def _timm_cfg(model: str) -> Any:
    import timm

    if not timm.is_model(model):
        raise UnknownNameError(
            f"unknown timm model {model!r}; list them with timm.list_models('{model[:4]}*') "
            f"(pretrained ones: timm.list_models(pretrained=True)). {_SCHEME_HELP}")
    from timm.models import get_pretrained_cfg

    arch, _, tag = model.partition(".")
    cfg = get_pretrained_cfg(model) or get_pretrained_cfg(arch)
    return cfg


def _timm_preprocessing(model: str) -> Preprocessing:
    from timm.data import resolve_data_config

    cfg = _timm_cfg(model)
    data = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
    size = int(data["input_size"][-1])
    fixed = bool(getattr(cfg, "fixed_input_size", False))
    min_size = getattr(cfg, "min_input_size", None)
    min_px = int(min_size[-1]) if min_size else min(32, size)
    return Preprocessing(input_size=size, mean=tuple(data["mean"]), std=tuple(data["std"]),
                         resizable=not fixed, min_input_size=size if fixed else min(min_px, size))


def _timm_cached_file(cfg: Any) -> str | None:
    """A weight file of a timm pretrained config in the Hugging Face or torch hub cache."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        import importlib.util

        if importlib.util.find_spec("huggingface_hub") is not None:  # a dependency of timm
            from huggingface_hub import try_to_load_from_cache

            repo, _, revision = hub_id.partition("@")
            names = [getattr(cfg, "hf_hub_filename", None), "model.safetensors",
                     "pytorch_model.bin", "open_clip_pytorch_model.bin"]
            for fname in [n for n in names if n]:
                found = try_to_load_from_cache(repo, fname, revision=revision or None)
                if isinstance(found, str) and Path(found).is_file():
                    return found
    url = getattr(cfg, "url", None)
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if path.is_file():
            return str(path)
    return None


def _adapt_classes(model: Any, sd: Mapping[str, torch.Tensor], head: str | None,
                   reset: Any) -> None:
    """Resize the classifier at ``head`` to the class count a checkpoint has."""
    if not head:
        return
    key = f"{head}.weight"
    if key in sd and sd[key].ndim == 2:
        n = int(sd[key].shape[0])
        current = model.get_submodule(head)
        if not isinstance(current, nn.Linear) or current.out_features != n:
            reset(n)
    elif key not in sd and not any(k.startswith(f"{head}.") for k in sd):
        reset(0)


def _load_timm(name: str, model: str, path: str | None, allow: bool) -> Backbone:
    import timm

    cfg = _timm_cfg(model)
    prep = _timm_preprocessing(model)
    if path is not None:
        sd = _read_weights(path)
        net: Any = timm.create_model(model, pretrained=False)
        head = (cfg.classifier if cfg is not None else None) or None
        head = head[0] if isinstance(head, tuple | list) else head
        _adapt_classes(net, sd, head, net.reset_classifier)
        strict_load(net, sd, path)
        wpath: str | None = path
        digest = _file_digest(path)
    else:
        cached = _timm_cached_file(cfg) if cfg is not None else None
        if cached is not None:
            net = timm.create_model(model, pretrained=True,
                                    pretrained_cfg_overlay={"file": cached})
            wpath, digest = cached, _file_digest(cached)
        elif allow:
            net = timm.create_model(model, pretrained=True)
            wpath, digest = None, module_sha256(net)
        else:
            raise _no_weights(name, "the Hugging Face cache and the torch hub cache")
    classifier = net.get_classifier() if int(getattr(net, "num_classes", 0) or 0) > 0 else None
    trained = "" if path is not None else (getattr(cfg, "tag", None) or "")
    return Backbone(name=name, module=_TimmFeatures(net), network=net,
                    classifier=classifier if isinstance(classifier, nn.Module) else None,
                    preprocessing=prep, weights_sha256=digest, weights_path=wpath,
                    description=f"timm {model}", trained_on=str(trained))


# ----------------------------------------------------------------------------- torchvision
def _tv_check(model: str) -> None:
    from torchvision.models import list_models

    if model not in list_models():
        raise UnknownNameError(
            f"unknown torchvision model {model!r}; list them with "
            f"torchvision.models.list_models(). {_SCHEME_HELP}")


def _tv_weights(model: str, enum: str | None) -> Any:
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(model)
    except (ValueError, KeyError):
        return None
    if enum is None:
        return weights.DEFAULT
    try:
        return weights[enum]
    except KeyError:
        raise UnknownNameError(
            f"torchvision model {model!r} has no weights {enum!r}; it has: "
            f"{', '.join(w.name for w in weights)} (and DEFAULT).") from None


def _tv_preprocessing(model: str, weights: Any) -> Preprocessing:
    if weights is None:
        return Preprocessing(input_size=224)
    t = weights.transforms()
    size = int(t.crop_size[0])
    fixed = model.startswith(("vit_", "swin_v2", "maxvit"))
    min_size = max(32, int(weights.meta.get("min_size", (32, 32))[0]))
    return Preprocessing(input_size=size, mean=tuple(t.mean), std=tuple(t.std),
                         resizable=not fixed, min_input_size=size if fixed else min(min_size, size))


def _last_linear(net: nn.Module) -> str | None:
    last = None
    for qual, mod in net.named_modules():
        if isinstance(mod, nn.Linear):
            last = qual
    return last


def _tv_trained_on(weights: Any) -> str:
    if weights is None:
        return ""
    metrics = weights.meta.get("_metrics") or {}
    return ", ".join(metrics) if metrics else weights.name


def _load_torchvision(name: str, model: str, weights_or_path: str | None,
                      allow: bool) -> Backbone:
    from torchvision.models import get_model

    is_enum = weights_or_path is not None and re.fullmatch(r"[A-Z0-9_]+", weights_or_path)
    weights = _tv_weights(model, weights_or_path if is_enum else None)
    prep = _tv_preprocessing(model, weights)
    path = None if is_enum else weights_or_path
    net: Any = get_model(model, weights=None)
    head = _last_linear(net)

    def reset(n: int) -> None:
        assert head is not None
        old = net.get_submodule(head)
        _replace(net, head, nn.Linear(old.in_features, n) if n > 0 else nn.Identity())

    if path is None:
        if weights is None:
            raise _no_weights(name, "torchvision (this model has no weights enum)")
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if not cached.is_file():
            if not allow:
                raise _no_weights(name, f"the torch hub cache ({cached})",
                                  f" or copy {os.path.basename(weights.url)} there")
            weights.get_state_dict(progress=False)  # the download, into the hub cache
        path = str(cached)
    sd = _read_weights(path)
    _adapt_classes(net, sd, head, reset)
    strict_load(net, sd, path)
    head = _last_linear(net)
    classifier = net.get_submodule(head) if head is not None else None
    if head is None:
        if not hasattr(net, "features"):
            raise InvalidParameterError(
                f"torchvision model {model!r} has no Linear classifier and no 'features' "
                "stage, so its penultimate features are not defined; choose another model "
                "or wrap it yourself with t2v_automl.extractors.as_extractor.")
        module: nn.Module = nn.Sequential(net.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    else:
        module = _Flatten2d(_without_head(net, head))
    return Backbone(name=name, module=module, network=net, classifier=classifier,
                    preprocessing=prep, weights_sha256=_file_digest(path), weights_path=path,
                    description=f"torchvision {model}", trained_on=_tv_trained_on(weights)
                    if is_enum or weights_or_path is None else "")


# ----------------------------------------------------------------------------- hugging face
def _hf_import() -> Any:
    try:
        import transformers
    except ImportError:
        raise WeightsNotFoundError(
            "'hf:' models need the transformers package, which is not installed: "
            "`pip install 't2v-automl[hf]'` (or `pip install transformers`).") from None
    return transformers


def _hf_folder(repo: str, allow: bool) -> str:
    if Path(repo).is_dir():
        return repo
    if repo.startswith(("/", ".", "~")) or os.sep in repo.strip("/").replace("/", "", 1):
        raise WeightsNotFoundError(
            f"Hugging Face folder {repo!r} does not exist; give a folder written by "
            "save_pretrained, or a repository id such as 'facebook/dinov2-small'.")
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(repo, local_files_only=not allow))
    except Exception as exc:  # noqa: BLE001 - hub errors vary by version
        logger.debug("snapshot_download(%r) failed: %s", repo, exc)
        raise _no_weights(f"hf:{repo}", "the Hugging Face cache") from None


def _hf_preprocessing(folder: str, config: Any) -> Preprocessing:
    transformers = _hf_import()
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - a folder without a processor file
        logger.info("no image processor in %r (%s); using the config's image_size and "
                    "ImageNet's mean and std", folder, type(exc).__name__)
        proc = None
    size = None
    if proc is not None:
        crop = getattr(proc, "crop_size", None) if getattr(proc, "do_center_crop", False) \
            else None
        dims = crop or getattr(proc, "size", None) or {}
        if isinstance(dims, Mapping):
            size = dims.get("height") or dims.get("shortest_edge")
        elif isinstance(dims, int):
            size = dims
    size = int(size or getattr(config, "image_size", 224) or 224)
    mean = tuple(getattr(proc, "image_mean", None) or IMAGENET_MEAN)
    std = tuple(getattr(proc, "image_std", None) or IMAGENET_STD)
    fixed = getattr(config, "model_type", "") in _HF_CLS_TOKEN
    return Preprocessing(input_size=size, mean=mean, std=std, resizable=not fixed,
                         min_input_size=size if fixed else min(32, size))


class _HFFeatures(nn.Module):
    """Pooled features of a ``transformers`` vision backbone (see the module docstring)."""

    def __init__(self, model: nn.Module, cls_token: bool) -> None:
        super().__init__()
        self.model = model
        self.cls_token = cls_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if self.cls_token and hidden.ndim == 3:
            return hidden[:, 0]
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        return hidden.flatten(2).mean(-1) if hidden.ndim == 4 else hidden.mean(1)


def _load_hf(name: str, repo: str, allow: bool) -> Backbone:
    transformers = _hf_import()
    folder = _hf_folder(repo, allow)
    bars = transformers.utils.logging
    was_on = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # library code does not print
    try:
        net: Any = transformers.AutoModel.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
        raise InvalidWeightsError(
            f"Hugging Face folder {folder!r} of model {name!r} cannot be loaded with "
            f"transformers.AutoModel ({type(exc).__name__}: {str(exc)[:300]}). Give a folder "
            "written by model.save_pretrained(folder) of a vision backbone.") from None
    finally:
        if was_on:
            bars.enable_progress_bar()
    files = sorted(p for p in Path(folder).iterdir()
                   if p.suffix in (".safetensors", ".bin") and p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(_file_digest(p).encode())
    prep = _hf_preprocessing(folder, net.config)
    cls = getattr(net.config, "model_type", "") in _HF_CLS_TOKEN
    return Backbone(name=name, module=_HFFeatures(net, cls), network=net, classifier=None,
                    preprocessing=prep, weights_sha256=h.hexdigest(),
                    weights_path=str(files[0]) if files else folder,
                    description=f"Hugging Face {getattr(net.config, 'model_type', 'model')} "
                                f"from {repo}", trained_on="")


# ----------------------------------------------------------------------------- dispatch
def module_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict (keys and raw bytes, in order; any dtype).

    :func:`t2v_automl._weights.state_sha256`, the one implementation (also the probes').
    """
    return state_sha256(module)


def _arch_scheme(arch: str) -> str:
    from torchvision.models import list_models

    if arch in list_models():
        return "torchvision"
    import timm

    if timm.is_model(arch):
        return "timm"
    raise UnknownNameError(
        f"unknown architecture {arch!r} in '{arch}@<path>': neither a torchvision model "
        f"(torchvision.models.list_models()) nor a timm model (timm.list_models()). "
        f"{_SCHEME_HELP}")


def model_preprocessing(name: str) -> Preprocessing:
    """The preprocessing of a scheme name, without loading any weights.

    Parameters
    ----------
    name : str
        A scheme name (see :func:`parse_model_name`).

    Returns
    -------
    Preprocessing

    Raises
    ------
    UnknownNameError
        Not a scheme name, or an unknown scheme or model.
    WeightsNotFoundError
        An ``hf:`` folder is not on this machine, or transformers is not installed.
    """
    scheme, model, extra = _parse(name)
    if scheme == "arch":
        scheme = _arch_scheme(model)
        extra = None
    if scheme == "timm":
        return _timm_preprocessing(model)
    if scheme == "torchvision":
        _tv_check(model)
        enum = extra if extra and re.fullmatch(r"[A-Z0-9_]+", extra) else None
        return _tv_preprocessing(model, _tv_weights(model, enum))
    folder = _hf_folder(model, _downloads_allowed(None))
    transformers = _hf_import()
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    return _hf_preprocessing(folder, config)


def _parse(name: str) -> tuple[str, str, str | None]:
    parsed = parse_model_name(name)
    if parsed is None:
        raise UnknownNameError(f"{name!r} is not a model scheme name. {_SCHEME_HELP}")
    return parsed


def load_backbone(name: str, *, device: str | torch.device = "cpu",
                  allow_download: bool | None = None) -> Backbone:
    """Load the frozen backbone a scheme name names.

    Parameters
    ----------
    name : str
        ``"timm:<name>[@path]"``, ``"torchvision:<name>[.<ENUM>][@path]"``,
        ``"hf:<repo-or-folder>"`` or ``"<arch>@<path>"``.
    device : str or torch.device, default="cpu"
        ``"auto"`` picks CUDA when available.
    allow_download : bool or None, default=None
        Let the model's library download missing weights. None: only when the environment
        variable ``T2V_AUTOML_ALLOW_DOWNLOAD`` is ``1``.

    Returns
    -------
    Backbone
        In eval mode with ``requires_grad=False``, on ``device``; a new object per call.

    Raises
    ------
    UnknownNameError
        Unknown scheme, model or weights enum (the message lists the schemes and how to
        list models).
    WeightsNotFoundError
        The weights are not on this machine and downloads are not allowed (the message
        says how to give a file or allow the download), or ``transformers`` is missing.
    InvalidWeightsError
        The weight file is unreadable or does not fit the architecture (the message names
        the file and the differing keys).
    """
    from t2v_automl.probes import resolve_device  # one device rule for the package

    scheme, model, extra = _parse(name)
    allow = _downloads_allowed(allow_download)
    dev = resolve_device(device)
    if scheme == "arch":
        scheme = _arch_scheme(model)
        if scheme == "torchvision":
            try:
                bb = _load_torchvision(name, model, extra, allow)
            except InvalidWeightsError:
                import timm

                if not timm.is_model(model):
                    raise
                logger.debug("%r does not fit torchvision %s; trying timm", extra, model)
                bb = _load_timm(name, model, extra, allow)
        else:
            bb = _load_timm(name, model, extra, allow)
    elif scheme == "timm":
        bb = _load_timm(name, model, extra, allow)
    elif scheme == "torchvision":
        _tv_check(model)
        bb = _load_torchvision(name, model, extra, allow)
    else:
        bb = _load_hf(name, model, allow)
    _freeze(bb.network, dev)
    _freeze(bb.module, dev)
    if bb.classifier is not None:
        _freeze(bb.classifier, dev)
    logger.debug("loaded backbone %r (%s) on %s", name, bb.weights_path, dev)
    return bb
