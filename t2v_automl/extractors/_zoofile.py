"""A zoo file: your candidate extractors in a small TOML, JSON or YAML file.

:func:`read_zoo` reads one and returns the names to use everywhere (``evaluate_zoo``,
the selectors' ``extractors``, the CLI's ``--zoo``). Each entry is a scheme name, or a
table with a ``name`` and either a ``model`` (a scheme name, see :mod:`t2v_automl.models`)
or an ``arch`` and a ``checkpoint`` (a state dict of a timm or torchvision architecture;
a relative path is relative to the zoo file's folder). Optional: ``trained_on`` and
``description`` (free text), ``input_size``, ``mean``, ``std``, ``resizable`` and
``min_input_size`` (they replace the model's own preprocessing).

TOML (``zoo.toml``)::

    [[extractors]]
    name = "r18_xrays"
    arch = "resnet18"
    checkpoint = "weights/r18_xrays.pth"
    trained_on = "ImageNet-1k, then our chest X-rays"
    input_size = 160

    [[extractors]]
    name = "vit_small"
    model = "timm:vit_small_patch16_224.augreg_in21k"

    [[extractors]]
    name = "dinov2"
    model = "hf:facebook/dinov2-small"

JSON: ``{"extractors": [{"name": "r18", "model": "torchvision:resnet18"}, "timm:resnet50"]}``
(a bare list works too). YAML: the same under ``extractors:``.

Names must be unique in a file and must not be a built-in extractor's; a duplicate or a
syntax error is reported with its line number. Entries are registered in the process
that reads the file; the specs pickle by value, so workers need not read it again, and
reading the same file again (in a worker or after an edit) is harmless: unchanged entries
keep their loaded instances, changed ones replace them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from t2v_automl._logging import logger
from t2v_automl.exceptions import InvalidParameterError, T2VError, UnknownNameError
from t2v_automl.extractors._registry import ExtractorSpec, put_spec, registered, resolve_extractor
from t2v_automl.extractors._user import as_extractor

__all__ = ["read_zoo"]

_PREP = ("input_size", "mean", "std", "resizable", "min_input_size")
_KEYS = ("name", "model", "arch", "checkpoint", "trained_on", "description", *_PREP)


def _syntax_error(path: Path, exc: Exception) -> InvalidParameterError:
    line = getattr(exc, "lineno", None)
    mark = getattr(exc, "problem_mark", None)
    if line is None and mark is not None:
        line = mark.line + 1
    if line is None:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
    where = f"line {line}" if line else "an unknown line"
    return InvalidParameterError(
        f"zoo file {str(path)!r} has a syntax error at {where}: {str(exc).splitlines()[0]}. "
        "Fix it; the format is described in t2v_automl.extractors._zoofile (TOML "
        "[[extractors]] tables, or JSON/YAML with an 'extractors' list).")


def _parse(path: Path, text: str) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - each parser has its own error class
        raise _syntax_error(path, exc) from None
    raise InvalidParameterError(
        f"zoo file {str(path)!r} has the suffix {suffix!r}; expected .toml, .json, .yaml or "
        ".yml (the format is read from the suffix).")


def _line_of(text: str, value: str, occurrence: int = 0) -> int | None:
    """The line number of the ``occurrence``-th place ``value`` appears as a whole token."""
    pattern = re.compile(r"(?<![\w.:@/-])" + re.escape(value) + r"(?![\w.:@/-])")
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if pattern.search(line)]
    return hits[occurrence] if len(hits) > occurrence else None


def _entry_spec(entry: Any, folder: Path, where: str) -> ExtractorSpec:
    if isinstance(entry, str):
        return as_extractor(entry) if ":" in entry or "@" in entry else resolve_extractor(entry)
    if not isinstance(entry, dict):
        raise InvalidParameterError(
            f"{where}: an entry must be a scheme name or a table with name and model (or arch "
            f"and checkpoint); got {type(entry).__name__}.")
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise InvalidParameterError(f"{where}: unknown key(s) {unknown}; expected keys: "
                                    f"{', '.join(_KEYS)}.")
    if "model" in entry and ("arch" in entry or "checkpoint" in entry):
        raise InvalidParameterError(f"{where}: give either model or arch + checkpoint, not both.")
    if "model" in entry:
        model = entry["model"]
    elif "arch" in entry and "checkpoint" in entry:
        ckpt = Path(os.path.expanduser(str(entry["checkpoint"])))
        model = f"{entry['arch']}@{ckpt if ckpt.is_absolute() else (folder / ckpt).resolve()}"
    else:
        raise InvalidParameterError(
            f"{where}: the entry needs 'model' (a scheme name such as 'timm:resnet18') or "
            f"both 'arch' and 'checkpoint'; it has {sorted(entry)}.")
    if not isinstance(model, str) or not (":" in model or "@" in model):
        raise InvalidParameterError(
            f"{where}: model must be a scheme name ('timm:<name>', 'torchvision:<name>', "
            f"'hf:<repo>', '<arch>@<path>'); got {model!r}.")
    prep = {k: entry[k] for k in _PREP if k in entry} or None
    return as_extractor(model, name=entry.get("name") or model, preprocessing=prep,
                        trained_on=str(entry.get("trained_on", "")),
                        description=str(entry.get("description", "")))


def read_zoo(path: str | os.PathLike[str]) -> list[str]:
    """Read a zoo file and register its extractors in this process.

    Parameters
    ----------
    path : str or path-like
        A ``.toml``, ``.json``, ``.yaml`` or ``.yml`` file (format in this module's
        docstring).

    Returns
    -------
    list of str
        The extractor names, in file order; usable wherever an extractor name is.

    Raises
    ------
    FileNotFoundError
        No such file.
    InvalidParameterError
        A syntax error, an entry without a model, an unknown key, a duplicate name or a
        bad preprocessing field (the message gives the line number).
    UnknownNameError
        An unknown scheme or model, or a name taken by a built-in extractor (with the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"zoo file {str(path)!r} does not exist; give the path of a "
                                ".toml, .json or .yaml file listing your extractors.")
    text = path.read_text(encoding="utf-8")
    data = _parse(path, text)
    entries = data.get("extractors", data.get("extractor")) if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise InvalidParameterError(
            f"zoo file {str(path)!r} lists no extractors: expected a non-empty 'extractors' "
            f"list ([[extractors]] tables in TOML); got {type(entries).__name__}.")
    specs: list[ExtractorSpec] = []
    seen: dict[str, int | None] = {}
    for i, entry in enumerate(entries):
        label = entry.get("name") or entry.get("model") if isinstance(entry, dict) else entry
        line = _line_of(text, str(label)) if label else None
        where = f"zoo file {str(path)!r}, entry {i + 1}" + (f" (line {line})" if line else "")
        try:
            spec = _entry_spec(entry, path.parent, where)
        except T2VError as exc:
            if where in str(exc):
                raise
            raise type(exc)(f"{where}: {exc}") from None
        if spec.name in seen:
            dup = _line_of(text, spec.name, 1)
            raise InvalidParameterError(
                f"zoo file {str(path)!r}: extractor name {spec.name!r} appears twice (line "
                f"{seen[spec.name]} and line {dup}); names must be unique: rename one.")
        seen[spec.name] = line
        specs.append(spec)
    names = []
    for spec, line in zip(specs, seen.values(), strict=True):
        old = registered(spec.name)
        if old is not None and old is not spec and old == spec:
            names.append(old.name)  # re-read, unchanged: keep its loaded instances
            continue
        if old is not None and old is not spec and old._by_name:
            raise UnknownNameError(
                f"zoo file {str(path)!r} (line {line}): the name {spec.name!r} is a built-in "
                "extractor's; give your entry another name.")
        names.append(put_spec(spec, replace=True).name)
    logger.info("zoo file %s: %d extractors", path, len(names))
    return names
