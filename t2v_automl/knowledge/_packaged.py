"""Where the knowledge bases shipped with the package live (``t2v_automl/data/``)."""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable

from t2v_automl.exceptions import KnowledgeBaseError, UnknownNameError
from t2v_automl.knowledge._io import DEFAULT_KNOWLEDGE_FILE, PACKAGED_KNOWLEDGE, default_resource

#: What to do when a packaged base is missing, by name.
_MISSING_FIX = {
    "default": "Build one with the benchmark scripts and load it with "
               "KnowledgeBase.load(path), or reinstall a t2v-automl release that ships it.",
    "experts": "It ships from the release that added the expert zoo on. Upgrade t2v-automl, "
               "or build it with `python benchmarks/build_knowledge_v2.py` from a source "
               "checkout.",
}


def _default_file() -> Traversable:
    """The packaged default file, looked up on the package at call time.

    Tests replace ``t2v_automl.knowledge.default_resource`` (or its former name
    ``_default_resource``) to point :meth:`KnowledgeBase.default` elsewhere.
    """
    import t2v_automl.knowledge as package

    legacy = getattr(package, "_default_resource", default_resource)
    if legacy is not default_resource:
        return legacy()
    return package.default_resource()


def packaged_file(name: str) -> Traversable:
    """The file of the packaged knowledge base ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`PACKAGED_KNOWLEDGE`.

    Returns
    -------
    importlib.resources.abc.Traversable

    Raises
    ------
    UnknownNameError
        Not a packaged base (the message lists them).
    KnowledgeBaseError
        This copy of t2v-automl does not ship it (the message says how to get or build it).
    """
    if name not in PACKAGED_KNOWLEDGE:
        raise UnknownNameError(
            f"no packaged knowledge base {name!r}; the packaged ones are "
            f"{', '.join(map(repr, PACKAGED_KNOWLEDGE))}. Load your own file with "
            f"KnowledgeBase.load(path).")
    if name == "default":
        resource = _default_file()
    else:
        resource = importlib.resources.files("t2v_automl").joinpath(
            "data", PACKAGED_KNOWLEDGE[name])
    if not resource.is_file():
        what = (f"the default knowledge base {DEFAULT_KNOWLEDGE_FILE!r}" if name == "default"
                else f"the {name!r} knowledge base ({PACKAGED_KNOWLEDGE[name]!r})")
        raise KnowledgeBaseError(
            f"{what} is not installed with this copy of t2v-automl (looked for "
            f"{str(resource)!r}). {_MISSING_FIX.get(name, '')}".rstrip())
    return resource
