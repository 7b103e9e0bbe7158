"""Task2VecEmbedder: the scikit-learn face of :mod:`t2v_automl.fisher`."""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from joblib import Memory, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from t2v_automl._logging import logger
from t2v_automl._parallel import check_allocator, run_jobs
from t2v_automl.embedding import Embedding, EmbeddingMeta
from t2v_automl.exceptions import (
    IncompatibleEmbeddingError,
    InvalidInputTypeError,
    InvalidParameterError,
    InvalidTaskError,
)
from t2v_automl.fisher import (
    AMP_MODES,
    METHODS,
    FisherConfig,
    compute_task2vec,
    fisher_layers,
    layer_filters,
    warn_slow_exact,
)
from t2v_automl.images import check_image_size
from t2v_automl.probes import get_probe, resolve_device
from t2v_automl.tasks import Task, as_task

__all__ = ["Task2VecEmbedder", "embedder_params_from_meta"]


def embedder_params_from_meta(meta: EmbeddingMeta) -> dict[str, Any]:
    """The :class:`Task2VecEmbedder` parameters that reproduce embeddings made like ``meta``.

    Parameters
    ----------
    meta : EmbeddingMeta
        E.g. a knowledge base's ``kb.meta``.

    Returns
    -------
    dict
        ``probe``, ``method``, ``image_size`` and, where the metadata records them,
        ``skip_layers``, ``label_samples``, ``max_images``, ``head_epochs`` and
        ``random_state``.
    """
    params: dict[str, Any] = {"probe": meta.probe, "method": meta.method,
                              "image_size": int(meta.input_size)}
    m = re.match(r"stages\[(\d+):", meta.layers)
    if m:
        params["skip_layers"] = int(m.group(1))
    s = dict(meta.settings)
    for key in ("label_samples", "max_images", "head_epochs"):
        if key in s:
            params[key] = s[key]
    if "seed" in s:
        params["random_state"] = int(s["seed"])
    return params


def _embed_one(task: Task, fingerprint: str, probe_name: str, weights_sha256: str,
               device: str, cfg: FisherConfig, verbose: int = 0,
               probe_module: nn.Module | None = None
               ) -> tuple[np.ndarray, int, dict[str, float]]:
    """Embed one task (module-level so that joblib can cache and ship it).

    ``fingerprint`` and ``weights_sha256`` are part of the cache key; ``task`` and
    ``probe_module`` (a module probe, shipped by value) are not (the fingerprint and the
    weights digest stand for them).
    """
    check_allocator()
    probe = get_probe(probe_name if probe_module is None else probe_module, device=device)
    res = compute_task2vec(probe, task.images, task.labels, task.n_classes, cfg,
                           verbose=verbose, warn_slow=False)  # embed() warned, in the caller
    return res.values, res.n_images, res.timings


class Task2VecEmbedder(TransformerMixin, BaseEstimator):
    """Embed whole tasks (labelled image sets) as Task2Vec vectors.

    Each task's images go through a frozen pre-trained probe network; a linear head is
    fitted on the probe's penultimate features; the diagonal Fisher information of the
    probe's convolution weights, estimated per sample and averaged per filter, is the
    embedding. Its length depends on the probe and the layer set, not on the task.

    Parameters
    ----------
    probe : str or torch.nn.Module, default="mobilenet_v2"
        Probe registry name (see :func:`t2v_automl.probes.list_probes`),
        ``"<arch>@/path/to/weights.pth"``, ``"timm:<name>"``,
        ``"torchvision:<name>[.<WEIGHTS>]"``, or a module (a timm or torchvision classifier,
        or one returning ``(n, d)`` features; see :func:`t2v_automl.probes.get_probe`),
        which travels to joblib workers by value.
    method : {"montecarlo", "empirical", "exact", "domain", "label_stat"}, \
default="exact"
        Fisher estimator: labels drawn from the head's softmax (the paper's
        ``"montecarlo"``), the true labels (``"empirical"``), or the exact expectation
        over labels (``"exact"``: ``C - 1`` backward passes for ``C`` classes, the
        least noisy).
        ``"domain"`` (mean penultimate features) and ``"label_stat"`` (per feature, the
        share of its variance explained by the labels) are cheap forward-only baselines.
        ``"exact"`` on a task of more than 50 classes warns (a
        :class:`~t2v_automl.exceptions.SlowEmbeddingWarning` and the log, once per task,
        with the number of backward passes): use ``"montecarlo"`` there.
    label_samples : int, default=1
        Label draws per image for ``"montecarlo"`` (variance reduction).
    max_images : int or None, default=500
        At most this many images per task, class-balanced; None uses all.
    image_size : int, default=64
        Images are resized to this square size before the probe; 8 to
        :data:`~t2v_automl.images.MAX_IMAGE_SIZE` (1024) px (a task's images are held as
        float32: ``n x 3 x image_size² x 4`` bytes).
    batch_size : int, default=64
        Batch size of every pass. The embedding does not depend on it (the Fisher is
        computed per sample).
    head_epochs : int, default=10
        Epochs of the head fit (Adam, lr 4e-4, weight decay 1e-4, class-balanced).
    skip_layers : int or None, default=None
        Number of leading probe stages left out of the Fisher; their activations are
        computed once and never back-propagated through (faster). None uses the probe's
        default (8 of the 19 stages of ``mobilenet_v2``: 10x cheaper, as steady; see
        ``benchmarks/results/embedder.md``).
    device : str, default="auto"
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    amp : bool or {"bf16", "fp16"}, default=False
        Mixed precision on CUDA (``True``: bf16 autocast where the GPU supports it, else
        fp16); ignored on the CPU. The per-sample squares and sums stay in float32/64.
    channels_last : bool, default=False
        Feed the probe NHWC (channels-last) batches; faster convolutions on recent GPUs.
    n_jobs : int or None, default=None
        Tasks embedded in parallel with joblib. None means 1 unless inside a
        ``joblib.parallel_config`` context, whose backend (loky, threading, dask, Ray...)
        and ``n_jobs`` are then used; the embeddings do not depend on it.
    memory : str, path or joblib.Memory, default=None
        Cache embeddings by task fingerprint, probe weights and settings.
    verbose : int, default=0
        Progress bars when > 0.
    random_state : int, RandomState instance or None, default=0
        Seeds subsampling, the head fit and label sampling. With a fixed value, results
        on the CPU are bit-for-bit repeatable.

    Attributes
    ----------
    probe_ : Probe
        The loaded probe.
    embedding_meta_ : EmbeddingMeta
        Metadata shared by every embedding this estimator makes (``n_images`` = 0).
    n_features_out_ : int
        Embedding length.
    seed_ : int
        Seed drawn from ``random_state`` in :meth:`fit`.
    skip_layers_ : int
        The number of skipped stages actually used.

    Notes
    -----
    Each row of ``X`` is a whole *task* — a :class:`~t2v_automl.tasks.Task`, an
    ``(images, labels)`` pair, a torch ``Dataset`` or an image-folder path — not a
    sample: Task2Vec describes datasets, and everything downstream (selecting an
    extractor, warm-starting a study) reasons about datasets. Because of that, ``X`` is
    a sequence of tasks and ``y`` is ignored; a ``Pipeline`` passes ``y`` (e.g. the
    tasks' extractor scores) on to the next step. Cross-validation splits tasks, not
    images.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from t2v_automl import Task, Task2VecEmbedder
    >>> d = load_digits()
    >>> tasks = [Task.from_arrays(d.images[d.target < 2] / 16, d.target[d.target < 2]),
    ...          Task.from_arrays(d.images[d.target >= 8] / 16, d.target[d.target >= 8])]
    >>> E = Task2VecEmbedder(probe="tiny_random", max_images=60).fit_transform(tasks)
    >>> E.shape
    (2, 40)
    """

    def __init__(self, probe: str = "mobilenet_v2", method: str = "exact",
                 label_samples: int = 1, max_images: int | None = 500, image_size: int = 64,
                 batch_size: int = 64, head_epochs: int = 10, skip_layers: int | None = None,
                 device: str = "auto", amp: bool | str = False, channels_last: bool = False,
                 n_jobs: int | None = None,
                 memory: Any = None, verbose: int = 0, random_state: Any = 0) -> None:
        self.probe = probe
        self.method = method
        self.label_samples = label_samples
        self.max_images = max_images
        self.image_size = image_size
        self.batch_size = batch_size
        self.head_epochs = head_epochs
        self.skip_layers = skip_layers
        self.device = device
        self.amp = amp
        self.channels_last = channels_last
        self.n_jobs = n_jobs
        self.memory = memory
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _validate_params(self) -> None:  # type: ignore[override]
        def pos_int(name: str, minimum: int = 1, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v < minimum:
                raise InvalidTaskError(
                    f"{name} must be an integer >= {minimum}"
                    + (" or None" if allow_none else "") + f"; got {v!r}."
                )

        if self.method not in METHODS:
            raise InvalidTaskError(
                f"method must be one of {', '.join(METHODS)}; got {self.method!r}."
            )
        pos_int("label_samples")
        pos_int("max_images", 2, allow_none=True)
        pos_int("image_size", 8)
        check_image_size(self.image_size, self.max_images,
                         of=f"a task at max_images={self.max_images}")
        pos_int("batch_size")
        pos_int("head_epochs", 0)
        pos_int("skip_layers", 0, allow_none=True)
        if not any(self.amp is m or (isinstance(m, str) and self.amp == m)
                   for m in AMP_MODES):
            raise InvalidParameterError(
                f"amp must be False, True, 'bf16' or 'fp16'; got {self.amp!r}.")
        if not isinstance(self.channels_last, bool):
            raise InvalidParameterError(
                f"channels_last must be True or False; got {self.channels_last!r}.")
        if not isinstance(self.probe, str | nn.Module):
            raise InvalidInputTypeError(
                f"probe must be a probe name (str) or a torch.nn.Module; got "
                f"{type(self.probe).__name__}."
            )

    def _config(self) -> FisherConfig:
        return FisherConfig(method=self.method, label_samples=int(self.label_samples),
                            max_images=None if self.max_images is None else int(self.max_images),
                            image_size=int(self.image_size), batch_size=int(self.batch_size),
                            head_epochs=int(self.head_epochs), skip_layers=int(self.skip_layers_),
                            amp=self.amp, channels_last=self.channels_last,
                            seed=int(self.seed_))

    def _memory(self) -> Memory | None:
        if self.memory is None:
            return None
        if isinstance(self.memory, Memory):
            return self.memory
        if isinstance(self.memory, str | os.PathLike):
            return Memory(location=os.fspath(self.memory), verbose=0)
        raise InvalidInputTypeError(
            f"memory must be None, a path or a joblib.Memory; got {type(self.memory).__name__}."
        )

    @staticmethod
    def _tasks(X: Any, image_size: int) -> list[Task]:
        if isinstance(X, Task) or (isinstance(X, tuple) and len(X) == 2
                                   and isinstance(X[0], np.ndarray)):
            raise InvalidInputTypeError(
                "X must be a sequence of tasks (each row is a whole task); got a single task. "
                "Wrap it in a list: transform([task])."
            )
        if isinstance(X, str | os.PathLike):
            raise InvalidInputTypeError(
                "X must be a sequence of tasks; got a single path. Wrap it in a list."
            )
        if not isinstance(X, Sequence | np.ndarray) or isinstance(X, np.ndarray) and \
                X.dtype != object:
            raise InvalidInputTypeError(
                f"X must be a list of tasks (Task, (images, labels), Dataset or folder path); "
                f"got {type(X).__name__}"
                + (f" of dtype {X.dtype}" if isinstance(X, np.ndarray) else "") + "."
            )
        if len(X) == 0:
            raise InvalidTaskError("X holds no tasks; pass at least one task.")
        return [as_task(t, image_size=max(image_size, 32)) for t in X]

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Pickle the probe by name and weights digest, not its tensors.

        A fitted embedder travels to joblib workers and to disk as a few hundred bytes; the
        probe is loaded again where it is unpickled (once per process: :func:`get_probe`
        caches it), so that machine needs the same weights installed.
        """
        state = super().__getstate__()
        if "probe_" in state:
            state = dict(state)
            del state["probe_"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Reload the probe by name and check that its weights are the pickled ones.

        Raises
        ------
        IncompatibleEmbeddingError
            The probe installed here has other weights than the one the embedder was
            fitted with (its embeddings would not compare with the known ones).
        """
        super().__setstate__(state)
        meta = state.get("embedding_meta_")
        if meta is None or "probe_" in state:
            return
        probe = get_probe(self.probe, device=self.device_)
        if probe.weights_sha256 != meta.weights_sha256:
            raise IncompatibleEmbeddingError(
                f"the pickled Task2VecEmbedder was fitted with probe {self.probe!r} whose "
                f"weights have sha256 {meta.weights_sha256[:12]}…, but the probe installed "
                f"here has {probe.weights_sha256[:12]}…; install the same weights, or fit a "
                f"new embedder (and re-embed the known tasks)."
            )
        self.probe_ = probe

    # ------------------------------------------------------------------ API
    def fit(self, X: Any = None, y: Any = None) -> Task2VecEmbedder:
        """Load the probe and fix the settings. ``X`` and ``y`` are not used.

        Parameters
        ----------
        X : sequence of tasks, optional
            Ignored (present for the scikit-learn API).
        y : ignored

        Returns
        -------
        self
        """
        self._validate_params()
        self.seed_ = int(check_random_state(self.random_state).randint(0, 2**31 - 1)) \
            if not isinstance(self.random_state, numbers.Integral) else int(self.random_state)
        dev = resolve_device(self.device)
        self.device_ = str(dev)
        self.probe_ = get_probe(self.probe, device=dev)
        if self.image_size < self.probe_.min_input_size:
            raise InvalidTaskError(
                f"image_size={self.image_size} is too small for probe {self.probe!r}: it "
                f"needs at least {self.probe_.min_input_size} px. Raise image_size."
            )
        self.skip_layers_ = (self.probe_.default_skip_layers if self.skip_layers is None
                             else int(self.skip_layers))
        if self.skip_layers_ >= self.probe_.n_stages:
            raise InvalidTaskError(
                f"skip_layers={self.skip_layers_} is out of range for probe {self.probe!r} with "
                f"{self.probe_.n_stages} stages; expected 0 <= skip_layers < "
                f"{self.probe_.n_stages}."
            )
        if self.method in ("domain", "label_stat"):
            dim, layers = self.probe_.feature_dim, "penultimate"
        else:
            convs = fisher_layers(self.probe_, self.skip_layers_)
            dim = sum(layer_filters(m) for _, m in convs)
            kinds = "conv" if all(isinstance(m, nn.Conv2d) for _, m in convs) else "conv+linear"
            layers = f"stages[{self.skip_layers_}:] {kinds} ({len(convs)} layers)"
        cfg = self._config()
        self.embedding_meta_ = EmbeddingMeta(
            probe=self.probe_.name if isinstance(self.probe, nn.Module) else self.probe,
            weights_sha256=self.probe_.weights_sha256, method=self.method,
            input_size=int(self.image_size), layers=layers, dim=int(dim), n_images=0,
            settings={"label_samples": cfg.label_samples, "max_images": cfg.max_images,
                      "head_epochs": cfg.head_epochs, "seed": cfg.seed},
        )
        self.n_features_out_ = int(dim)
        return self

    def embed(self, X: Any) -> list[Embedding]:
        """Embed each task of ``X``; return :class:`Embedding` objects with metadata.

        Parameters
        ----------
        X : sequence of tasks

        Returns
        -------
        list of Embedding
        """
        check_is_fitted(self, "probe_")
        tasks = self._tasks(X, int(self.image_size))
        cfg = self._config()
        func = _embed_one
        mem = self._memory()
        if mem is not None:
            func = mem.cache(_embed_one, ignore=["task", "verbose", "probe_module"])
        serial = effective_n_jobs(self.n_jobs) == 1  # n_jobs=None defers to parallel_config
        inner_verbose = self.verbose if (serial and len(tasks) == 1) else 0
        if self.method == "exact":  # here, not in the workers, whose warnings are lost
            for t in tasks:
                n_used = t.n_images if cfg.max_images is None else min(t.n_images,
                                                                      cfg.max_images)
                warn_slow_exact(t.n_classes, n_used, cfg.batch_size, task_name=t.name)
        fps = [t.fingerprint for t in tasks]
        module = self.probe if isinstance(self.probe, nn.Module) else None
        name = self.embedding_meta_.probe
        args = [(t, fp, name, self.probe_.weights_sha256, self.device_, cfg, inner_verbose,
                 module) for t, fp in zip(tasks, fps, strict=True)]
        results = run_jobs([delayed(func)(*a) for a in args], self.n_jobs,
                           verbose=self.verbose and len(tasks) > 1, desc="embedding tasks")
        out = []
        for t, fp, (values, n_img, timings) in zip(tasks, fps, results, strict=True):
            meta = EmbeddingMeta(**{**self.embedding_meta_.to_dict(), "n_images": int(n_img),
                                    "settings": dict(self.embedding_meta_.settings)})
            out.append(Embedding(values, meta, task_name=t.name, task_fingerprint=fp))
            logger.info("embedded task %r (%d images) in %.2fs", t.name, n_img,
                        sum(timings.values()))
        return out

    def transform(self, X: Any) -> np.ndarray:
        """Embed each task of ``X``.

        Parameters
        ----------
        X : sequence of tasks

        Returns
        -------
        ndarray of shape (n_tasks, n_features_out_)
        """
        return np.vstack([e.values for e in self.embed(X)])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names ``task2vec0 .. task2vec{d-1}``."""
        check_is_fitted(self, "n_features_out_")
        return np.asarray([f"task2vec{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        tags.non_deterministic = False
        return tags
