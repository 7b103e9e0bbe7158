"""Transferability: how well a candidate extractor's features suit a task, from the task alone.

The scores themselves (LogME exact and as its authors' code computes it, LogME on
principal components, NCTI, ETran, LEEP, NCE, H-score, k-NN accuracy) are the numerics of
:mod:`t2v_automl.transfer_scores`, re-exported here. They are kept in one registry
(:func:`register_transferability`, :func:`get_transferability`,
:func:`list_transferability`): a user's own score registers
next to them and :class:`~t2v_automl.estimators.TransferabilitySelector` takes it by name.

The features come from :func:`task_features`, the one place where a task's images go
through a candidate for a transferability score: a class-stratified, seeded subsample
(:func:`subsample_task`), then the extractor's penultimate features (or source logits),
cached on disk when given a joblib ``Memory``. The cache key is the extractor's name and
weights digest, the task's content fingerprint, the input size, the subsample size and its
seed, and the kind of output: anything that changes the features changes the key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from t2v_automl.exceptions import (
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
    UnknownNameError,
)
from t2v_automl.transfer_scores import (
    etran,
    etran_components,
    h_score,
    knn_accuracy,
    leep,
    logme,
    logme_authors,
    logme_pca,
    minmax_combine,
    nce,
    ncti,
    ncti_components,
    pca_reduce,
    softmax,
)

if TYPE_CHECKING:
    from joblib import Memory

    from t2v_automl.tasks import Task

__all__ = [
    "TRANSFERABILITY_SCORES",
    "Transferability",
    "etran",
    "etran_components",
    "get_transferability",
    "h_score",
    "knn_accuracy",
    "leep",
    "list_transferability",
    "logme",
    "logme_authors",
    "logme_pca",
    "minmax_combine",
    "nce",
    "ncti",
    "ncti_components",
    "pca_reduce",
    "register_transferability",
    "softmax",
    "subsample_task",
    "task_features",
    "unregister_transferability",
]


# ----------------------------------------------------------------------------- registry
#: What a transferability function takes as its first argument.
INPUTS = ("features", "source_probs", "source_labels")


@dataclass(frozen=True, kw_only=True)
class Transferability:
    """A registered transferability score.

    Attributes
    ----------
    name : str
    fn : callable
        ``fn(x, labels)``, higher = better: a float, or, for a *relative* score (one with
        ``combine``), a 1-D array of components.
    needs : {"features", "source_probs", "source_labels"}
        What ``x`` is: the penultimate features ``(n, d)``, the source head's class
        probabilities ``(n, n_source_classes)`` or its hard labels ``(n,)``. Extractors
        without a source head get NaN for the last two.
    description : str
    combine : callable or None
        For a score that is only defined relative to the other candidates (NCTI, ETran):
        ``combine(components) -> scores`` maps the ``(n_candidates, n_components)``
        matrix of ``fn``'s outputs on one task to one score per candidate. None: ``fn``
        gives the score itself.
    """

    name: str
    fn: Callable[..., Any]
    needs: str = "features"
    description: str = ""
    combine: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def relative(self) -> bool:
        """Whether the score compares candidates (needs :attr:`combine`)."""
        return self.combine is not None

    def __call__(self, x: Any, labels: Any) -> Any:
        """The score (or, for a relative score, the components) of ``x`` for ``labels``."""
        out = self.fn(x, labels)
        return np.asarray(out, dtype=np.float64).ravel() if self.relative else float(out)

    def score_candidates(self, xs: Sequence[Any], labels: Any,
                         names: Sequence[str] | None = None) -> np.ndarray:
        """The score of several candidates on one task.

        Parameters
        ----------
        xs : sequence of array-like or None
            One input per candidate (None: the candidate cannot be scored, e.g. a
            source-head score for an extractor without one: NaN).
        labels : array-like of shape (n,)
        names : sequence of str, optional
            Candidate names for error messages.

        Returns
        -------
        ndarray of shape (n_candidates,)
            Higher = better; NaN for a candidate that could not be scored.

        Raises
        ------
        InvalidTaskError
            A candidate's input is unusable (NaN features...): the message names it.
        """
        names = list(names) if names is not None else [f"#{i}" for i in range(len(xs))]
        raw: list[Any] = []
        for name, x in zip(names, xs, strict=True):
            if x is None:
                raw.append(None)
                continue
            try:
                raw.append(self(x, labels))
            except (InvalidTaskError, InvalidInputTypeError) as exc:
                raise type(exc)(f"candidate {name!r}, score {self.name!r}: {exc}") from exc
        if not self.relative:
            return np.array([np.nan if r is None else r for r in raw], dtype=np.float64)
        width = max((len(r) for r in raw if r is not None), default=1)
        comp = np.array([np.full(width, np.nan) if r is None else r for r in raw])
        return np.asarray(self.combine(comp), dtype=np.float64)  # type: ignore[misc]


_REGISTRY: dict[str, Transferability] = {}


def register_transferability(name: str, fn: Callable[..., Any], *, needs: str = "features",
                             description: str = "", overwrite: bool = False,
                             combine: Callable[[np.ndarray], np.ndarray] | None = None
                             ) -> None:
    """Register a transferability score under ``name``.

    Parameters
    ----------
    name : str
    fn : callable
        ``fn(x, labels) -> float`` (higher = better), ``x`` as ``needs`` says.
    needs : {"features", "source_probs", "source_labels"}, default="features"
    description : str, optional
    overwrite : bool, default=False
        Replace an existing entry of that name.
    combine : callable, optional
        Makes the score *relative*: ``fn`` returns a 1-D array of components per
        candidate and ``combine`` maps the ``(n_candidates, n_components)`` matrix of one
        task to one score per candidate (e.g. :func:`minmax_combine`).

    Raises
    ------
    InvalidParameterError
        ``name`` taken (without ``overwrite``), ``fn`` not callable, unknown ``needs``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidParameterError(f"name must be a non-empty string; got {name!r}.")
    if not callable(fn):
        raise InvalidParameterError(
            f"fn must be callable as fn(x, labels) -> float; got {type(fn).__name__}.")
    if needs not in INPUTS:
        raise InvalidParameterError(f"needs must be one of {INPUTS}; got {needs!r}.")
    if combine is not None and not callable(combine):
        raise InvalidParameterError(
            f"combine must be callable as combine(components) -> scores; got "
            f"{type(combine).__name__}.")
    if name in _REGISTRY and not overwrite:
        raise InvalidParameterError(
            f"a transferability score named {name!r} is registered already; pass "
            f"overwrite=True to replace it, or pick another name.")
    _REGISTRY[name] = Transferability(name=name, fn=fn, needs=needs, description=description,
                                      combine=combine)


def get_transferability(name: str) -> Transferability:
    """The registered transferability score ``name``.

    Raises
    ------
    UnknownNameError
        No score of that name.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            f"unknown transferability score {name!r}; registered: "
            f"{', '.join(map(repr, _REGISTRY))}. Register yours with "
            f"register_transferability(name, fn)."
        ) from None


def unregister_transferability(name: str) -> None:
    """Remove a registered score (a no-op for an unknown name)."""
    _REGISTRY.pop(name, None)


def list_transferability() -> list[str]:
    """Names of the registered transferability scores, in registration order."""
    return list(_REGISTRY)


for _name, _fn, _needs, _doc in (
        ("logme", logme, "features", "LogME evidence on the penultimate features"),
        ("leep", leep, "source_probs",
         "LEEP from the extractor's own source head (NaN without one)"),
        ("nce", nce, "source_labels", "NCE of the source head's hard labels (NaN without one)"),
        ("h_score", h_score, "features", "H-score on the penultimate features"),
        ("knn_accuracy", knn_accuracy, "features",
         "leave-one-out 5-NN accuracy on standardised features"),
        ("logme_authors", logme_authors, "features",
         "LogME as thuml/LogME computes it (log|A| over min(n, d) eigenvalues)"),
        ("logme_pca", logme_pca, "features",
         "exact LogME on the first 64 principal components")):
    register_transferability(_name, _fn, needs=_needs, description=_doc)
register_transferability("ncti", ncti_components, combine=ncti,
                         description="NCTI: PCA-64, LDA, the three neural-collapse terms, "
                                     "min-max across candidates (relative)")
register_transferability("etran", etran_components, combine=etran,
                         description="ETran classification score: energy + LDA, min-max "
                                     "across candidates (relative)")

#: The built-in scores and what they compute (kept for compatibility: the registry is
#: :func:`list_transferability`).
TRANSFERABILITY_SCORES: dict[str, str] = {n: t.description for n, t in _REGISTRY.items()}


# ----------------------------------------------------------------------------- features
def subsample_task(task: Task, max_images: int | None, random_state: int = 0) -> Task:
    """At most ``max_images`` images of ``task``, class-stratified and seeded.

    Parameters
    ----------
    task : Task
    max_images : int or None
        None, or a task no larger: the task itself.
    random_state : int, default=0

    Returns
    -------
    Task
        Each class keeps ``round(share * its size)`` images (at least one), rows in their
        original order.
    """
    if max_images is None or task.n_images <= max_images:
        return task
    rng = np.random.default_rng(random_state)
    share = max_images / task.n_images
    idx = []
    for c in range(task.n_classes):
        members = np.flatnonzero(task.labels == c)
        take = max(1, int(round(share * len(members))))
        idx.append(rng.choice(members, min(take, len(members)), replace=False))
    return task.subset(np.sort(np.concatenate(idx)))


def _compute_features(extractor: str, digest: str, fingerprint: str, kind: str,
                      input_size: int | None, batch_size: int, device: str,
                      task: Task) -> tuple[np.ndarray, float]:
    """Features (``kind="features"``) or source logits of ``task``, and the seconds they took.

    The cached function: ``digest`` and ``fingerprint`` only key the cache (``task``,
    ``batch_size`` and ``device`` are left out of the hash).
    """
    from t2v_automl.extractors import get_extractor

    t0 = time.perf_counter()
    ext = get_extractor(extractor, device=device)
    if kind == "source_logits":
        out = ext.source_logits(task.images, batch_size=batch_size, input_size=input_size)
    else:
        out = ext.transform(task.images, batch_size=batch_size, input_size=input_size)
    return out, time.perf_counter() - t0


def _as_memory(memory: Any) -> Memory | None:
    from joblib import Memory

    if memory is None or isinstance(memory, Memory):
        return memory
    if isinstance(memory, str | os.PathLike):
        return Memory(location=os.fspath(memory), verbose=0)
    raise InvalidInputTypeError(
        f"memory must be None, a path or a joblib.Memory; got {type(memory).__name__}.")


def task_features(extractor: Any, task: Task, *, kind: str = "features",
                  input_size: int | None = None, batch_size: int = 128,
                  device: str = "cpu", memory: Any = None, return_seconds: bool = False
                  ) -> np.ndarray | tuple[np.ndarray, float]:
    """A task's images through one candidate extractor (cached when ``memory`` is given).

    Parameters
    ----------
    extractor : str, ExtractorSpec, nn.Module or callable
        An extractor name, a scheme name (``"timm:resnet18"``) or an object
        (:func:`t2v_automl.extractors.extractor_name` registers it; the cache is keyed by
        its name and weights digest).
    task : Task
        Already subsampled (:func:`subsample_task`) if it should be.
    kind : {"features", "source_logits"}, default="features"
        Penultimate features, or the extractor's source-head logits (check
        ``get_extractor(name).has_source_head`` first).
    input_size : int, optional
        For resizable extractors (their native size when None).
    batch_size : int, default=128
    device : str, default="cpu"
    memory : None, str, path or joblib.Memory
        Disk cache keyed by extractor name and weights digest, the task's fingerprint, the
        kind and the input size (the device and batch size do not change the features
        beyond float rounding and are not part of the key).
    return_seconds : bool, default=False
        Also return the seconds the features took to compute (when they come from the
        cache: the seconds of the run that computed them, i.e. their cost without a cache).

    Returns
    -------
    features : ndarray of shape (n_images, d)
    seconds : float
        Only with ``return_seconds``.
    """
    if kind not in ("features", "source_logits"):
        raise InvalidParameterError(
            f"kind must be 'features' or 'source_logits'; got {kind!r}.")
    from t2v_automl.extractors import extractor_name

    extractor = extractor_name(extractor)
    mem = _as_memory(memory)
    if mem is None:
        out, seconds = _compute_features(extractor, "", "", kind, input_size, batch_size,
                                         device, task)
    else:
        from t2v_automl.extractors import get_extractor

        digest = get_extractor(extractor, device="cpu").weights_sha256
        fn = mem.cache(_compute_features, ignore=["batch_size", "device", "task"])
        out, seconds = fn(extractor, digest, task.fingerprint, kind, input_size, batch_size,
                          device, task)
    return (out, float(seconds)) if return_seconds else out

