"""Embedding: a task's vector and where it came from.

Two embeddings can be compared only when they were made the same way: same probe (name
and weights digest), same method, same input size and same layer set. The number of
images and the task name are recorded but do not matter for comparability.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from t2v_automl.exceptions import IncompatibleEmbeddingError

__all__ = ["Embedding", "EmbeddingMeta", "check_compatible", "stack_embeddings"]

#: Metadata fields that must agree for two embeddings to be comparable.
COMPAT_FIELDS = ("probe", "weights_sha256", "method", "input_size", "layers", "dim")


@dataclass(frozen=True)
class EmbeddingMeta:
    """How an embedding was made.

    Attributes
    ----------
    probe : str
        Probe registry name.
    weights_sha256 : str
        sha256 of the probe's weight file.
    method : str
        ``"montecarlo"``, ``"empirical"``, ``"exact"``, ``"domain"``, ``"label_stat"``...
    input_size : int
        Resolution the images were resized to.
    layers : str
        Description of the layer set (e.g. ``"stages[4:19] conv (34 layers)"``).
    dim : int
        Length of the vector.
    n_images : int
        Number of images used (not part of comparability).
    settings : dict
        Other settings (label samples, head epochs, seed...), informative only.
    """

    probe: str
    weights_sha256: str
    method: str
    input_size: int
    layers: str
    dim: int
    n_images: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def compat_key(self) -> tuple[Any, ...]:
        """The tuple that must agree for two embeddings to be comparable."""
        return tuple(getattr(self, f) for f in COMPAT_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {"probe": self.probe, "weights_sha256": self.weights_sha256,
                "method": self.method, "input_size": int(self.input_size),
                "layers": self.layers, "dim": int(self.dim), "n_images": int(self.n_images),
                "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmbeddingMeta:
        """Inverse of :meth:`to_dict`."""
        return cls(probe=str(d["probe"]), weights_sha256=str(d["weights_sha256"]),
                   method=str(d["method"]), input_size=int(d["input_size"]),
                   layers=str(d["layers"]), dim=int(d["dim"]),
                   n_images=int(d.get("n_images", 0)), settings=dict(d.get("settings", {})))

    def describe_difference(self, other: EmbeddingMeta) -> str:
        """Human-readable list of the fields that differ."""
        diffs = []
        for f in COMPAT_FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            if a != b:
                if f == "weights_sha256":
                    a, b = str(a)[:12], str(b)[:12]
                diffs.append(f"{f}: {a!r} vs {b!r}")
        return "; ".join(diffs)


@dataclass(eq=False)
class Embedding:
    """A task embedding: ``values`` (1-D float64) plus :class:`EmbeddingMeta`."""

    values: np.ndarray
    meta: EmbeddingMeta
    task_name: str = "task"
    task_fingerprint: str = ""

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        if self.values.shape[0] != self.meta.dim:
            raise IncompatibleEmbeddingError(
                f"embedding has {self.values.shape[0]} values but its metadata says dim="
                f"{self.meta.dim}."
            )

    @property
    def dim(self) -> int:
        """Length of the vector."""
        return int(self.values.shape[0])

    def check_compatible(self, other: Embedding | EmbeddingMeta) -> None:
        """Raise :class:`IncompatibleEmbeddingError` unless ``other`` was made the same way."""
        om = other.meta if isinstance(other, Embedding) else other
        if self.meta.compat_key() != om.compat_key():
            raise IncompatibleEmbeddingError(
                "cannot compare embeddings made differently ("
                + self.meta.describe_difference(om)
                + "). Re-embed the tasks with one Task2VecEmbedder setting."
            )

    def __repr__(self) -> str:
        return (f"Embedding(task={self.task_name!r}, probe={self.meta.probe!r}, "
                f"method={self.meta.method!r}, dim={self.dim}, n_images={self.meta.n_images})")


def check_compatible(embeddings: Iterable[Embedding | EmbeddingMeta]) -> EmbeddingMeta | None:
    """Check that all embeddings (or metas) agree; return the common meta (None if empty)."""
    first: EmbeddingMeta | None = None
    for e in embeddings:
        m = e.meta if isinstance(e, Embedding) else e
        if first is None:
            first = m
        elif first.compat_key() != m.compat_key():
            raise IncompatibleEmbeddingError(
                "cannot mix embeddings made differently (" + first.describe_difference(m)
                + "). Re-embed the tasks with one Task2VecEmbedder setting."
            )
    return first


def stack_embeddings(embeddings: Sequence[Embedding]) -> np.ndarray:
    """Stack compatible embeddings into an ``(n, dim)`` array."""
    check_compatible(embeddings)
    if not embeddings:
        return np.empty((0, 0))
    return np.vstack([e.values for e in embeddings])
