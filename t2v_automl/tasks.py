"""Tasks: a labelled set of images, the unit that Task2Vec embeds.

A :class:`Task` holds its images as a ``float32`` array of shape ``(n, 3, H, W)`` with
values in ``[0, 1]`` (grey images are repeated on three channels, an alpha channel is
composited onto white), integer labels ``0..K-1``, the original label values
(``classes``), a name and free-form provenance. :func:`as_task` turns whatever a user
has (arrays, an ``(images, labels)`` pair, a torch ``Dataset``, an image folder) into one.

A task read from an image folder is *lazy*: its ``images`` is a :class:`LazyImages`, which
lists the files up front and decodes only the images that are indexed, so a folder larger
than memory can be embedded batch by batch (only the class-balanced subsample is ever
decoded).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from t2v_automl._logging import logger
from t2v_automl.exceptions import ImageFolderError, InvalidInputTypeError, InvalidTaskError

__all__ = ["Task", "LazyImages", "LazyDatasetImages", "as_task", "IMAGE_EXTENSIONS",
           "MAX_IMAGE_PIXELS", "read_image"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")
#: Images with more pixels than this are skipped with a warning (decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000


def _to_nchw(images: np.ndarray, layout: str = "auto") -> np.ndarray:
    """Return ``images`` as float32 ``(n, 3, H, W)`` in ``[0, 1]``, validating as it goes.

    ``layout`` is ``"auto"``, ``"nchw"`` or ``"nhwc"``. In ``"auto"`` mode a 4-D array is
    channels-last when its last axis has 1, 3 or 4 entries and axis 1 does not; when both
    could be the channel axis, the shorter one is (ties: channels-first).
    """
    if layout not in ("auto", "nchw", "nhwc"):
        raise InvalidTaskError(f"layout must be 'auto', 'nchw' or 'nhwc'; got {layout!r}.")
    arr = np.asarray(images)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidTaskError(
            f"images must be a numeric array; got dtype {arr.dtype}. Pass a uint8 array "
            "(0..255) or a float array with values in [0, 1]."
        )
    if arr.ndim not in (3, 4):
        raise InvalidTaskError(
            f"images must have 3 dimensions (n, H, W) or 4 ((n, H, W, C) or (n, C, H, W)); "
            f"got an array of shape {arr.shape} ({arr.ndim} dimensions)."
        )
    if arr.shape[0] == 0:
        raise InvalidTaskError("the task is empty: 0 images. A task needs images of >= 2 classes.")
    last_ok, first_ok = arr.shape[-1] in (1, 3, 4), arr.shape[1] in (1, 3, 4)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    elif layout == "nhwc" or (layout == "auto" and last_ok and (
            not first_ok or arr.shape[-1] < arr.shape[1])):
        arr = np.moveaxis(arr, -1, 1)
    elif not first_ok:
        raise InvalidTaskError(
            f"cannot tell the channel axis of images of shape {arr.shape}: expected 1, 3 or 4 "
            "channels on axis 1 (n, C, H, W) or on the last axis (n, H, W, C)."
        )
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    else:
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out)).any(axis=(1, 2, 3)).sum())
            raise InvalidTaskError(
                f"images contain NaN or infinite pixels ({bad} of {out.shape[0]} images); "
                "remove or repair those images."
            )
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidTaskError(
                f"float images must have values in [0, 1]; got values in [{lo:g}, {hi:g}]. "
                "Scale them (e.g. X / X.max()) or pass uint8 images in 0..255."
            )
    if out.shape[1] == 4:  # composite RGBA onto white
        alpha = out[:, 3:4]
        out = out[:, :3] * alpha + (1.0 - alpha)
    elif out.shape[1] == 1:
        out = np.repeat(out, 3, axis=1)
    return np.ascontiguousarray(out, dtype=np.float32)


def _encode_labels(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise InvalidTaskError(f"labels must be 1-D; got an array of shape {y.shape}.")
    if y.shape[0] != n:
        raise InvalidTaskError(
            f"images and labels have different lengths: {n} images but {y.shape[0]} labels."
        )
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise InvalidTaskError("labels contain NaN or infinite values.")
        if not np.all(y == np.round(y)):
            raise InvalidTaskError(
                "labels are non-integer floats; classification labels must be integers or "
                "strings."
            )
        y = y.astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        raise InvalidTaskError(
            f"a task needs at least 2 classes; all {n} labels are {classes.tolist()!r}."
        )
    counts = np.bincount(codes, minlength=classes.shape[0])
    if counts.min() < 2:
        few = [str(c) for c, k in zip(classes, counts, strict=True) if k < 2]
        raise InvalidTaskError(
            f"every class needs at least 2 images; class(es) {', '.join(few)} have fewer. "
            "Drop those classes or add images."
        )
    return codes.astype(np.int64), classes


#: Images decoded at a time when a :class:`LazyImages` is iterated or hashed as a whole.
_DECODE_CHUNK = 256


class LazyImages:
    """The images of an image folder, decoded only when they are indexed.

    It stands in for the ``(n, 3, H, W)`` float32 array of a :class:`Task`: it has
    ``shape``, ``dtype``, ``ndim`` and ``len``, and indexing it along the first axis (an
    integer, a slice, an integer array or a boolean mask, optionally followed by indices
    of the other axes) reads, converts and resizes just those files and returns a numpy
    array equal, bit for bit, to the same rows of the fully decoded array.
    ``np.asarray(images)`` decodes everything (use it only for folders that fit in
    memory).

    Parameters
    ----------
    files : sequence of path-like
        One image file per row, in row order.
    image_size : int
        Every image is resized to ``image_size`` x ``image_size``.

    Notes
    -----
    It pickles as its list of file names, so tasks shipped to joblib, dask or Ray
    workers carry no pixels; the workers must see the same files.
    """

    def __init__(self, files: Sequence[str | os.PathLike[str]], image_size: int) -> None:
        self.files = tuple(os.fspath(f) for f in files)
        self.image_size = int(image_size)
        self._digest: str | None = None

    # ------------------------------------------------------------------ array protocol
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n, 3, image_size, image_size)``."""
        return (len(self.files), 3, self.image_size, self.image_size)

    @property
    def dtype(self) -> np.dtype[Any]:
        """Always ``float32`` (values in [0, 1])."""
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        """Always 4."""
        return 4

    @property
    def nbytes(self) -> int:
        """Bytes the fully decoded array would take."""
        return int(np.prod(self.shape)) * 4

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            if not key:
                return self.take(np.arange(len(self)))
            if key[0] is Ellipsis or key[0] is None:
                return np.asarray(self)[key]
            rows = self[key[0]]
            rest = key[1:]
            return rows[rest] if rows.ndim == 3 else rows[(slice(None), *rest)]
        if key is Ellipsis:
            return self.take(np.arange(len(self)))
        if key is None:
            return self.take(np.arange(len(self)))[None]
        try:
            idx = np.arange(len(self))[key]
        except IndexError as exc:
            raise IndexError(f"{exc} (a LazyImages of {len(self)} images)") from exc
        if np.ndim(idx) == 0:
            return self.take(np.asarray([idx]))[0]
        return self.take(idx)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        logger.debug("decoding all %d images of a lazy image folder (%.1f MB)", len(self),
                      self.nbytes / 1e6)
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), _DECODE_CHUNK):
            yield from self.take(np.arange(start, min(len(self), start + _DECODE_CHUNK)))

    def __repr__(self) -> str:
        return f"LazyImages(n={len(self)}, image_size={self.image_size})"

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "image_size": self.image_size, "_digest": self._digest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.files = state["files"]
        self.image_size = state["image_size"]
        self._digest = state["_digest"]

    # ------------------------------------------------------------------ decoding
    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Decode the images at ``indices``.

        Parameters
        ----------
        indices : sequence of int
            Row numbers, in the order wanted (repeats allowed).

        Returns
        -------
        ndarray of shape (len(indices), 3, image_size, image_size), float32 in [0, 1]

        Raises
        ------
        ImageFolderError
            A file cannot be decoded any more (it passed the check made when the folder
            was listed, so it was changed, removed or is truncated after its header).
        """
        from PIL import Image

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        size = self.image_size
        if idx.size == 0:
            return np.empty((0, 3, size, size), dtype=np.float32)
        arrs = []
        for i in idx:
            f = self.files[int(i)]
            arr = read_image(Path(f), size, Image)
            if not isinstance(arr, np.ndarray):
                raise ImageFolderError(
                    f"cannot decode {f!r}: {arr}. It passed the check made when its folder "
                    "was listed, so it was changed or removed since, or it is truncated after "
                    "its header. Repair or delete the file and list the folder again, or use "
                    "Task.from_folder(..., lazy=False) to skip unreadable files with a warning."
                )
            arrs.append(arr)
        return _to_nchw(np.stack(arrs), "nhwc")

    def subset(self, indices: Sequence[int] | np.ndarray) -> LazyImages:
        """The lazy images at ``indices`` (nothing is decoded)."""
        idx = np.arange(len(self))[np.asarray(indices)]
        return LazyImages([self.files[int(i)] for i in np.atleast_1d(idx)], self.image_size)

    def digest(self) -> str:
        """A sha256 of the files' bytes (in row order) and the image size.

        Reads every file once (without decoding it) and remembers the result.
        """
        if self._digest is None:
            h = hashlib.sha256()
            h.update(repr(("LazyImages-v1", len(self), self.image_size)).encode())
            for f in self.files:
                with open(f, "rb") as fh:
                    h.update(hashlib.file_digest(fh, "sha256").digest())
            self._digest = h.hexdigest()
        return self._digest


def _dataset_item(dataset: Any, i: int) -> tuple[np.ndarray, Any]:
    """Item ``i`` of a map-style dataset as a raw ``(C, H, W)`` array and its label."""
    item = dataset[i]
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise InvalidInputTypeError(
            f"dataset items must be (image, label) pairs; item {i} is {type(item).__name__}."
        )
    img, lab = item[0], item[1]
    if hasattr(img, "detach"):  # torch tensors are (C, H, W) or (H, W)
        arr = img.detach().cpu().numpy()
    else:  # PIL images and arrays are (H, W, C) or (H, W)
        arr = np.asarray(img)
        arr = np.moveaxis(arr, -1, 0) if arr.ndim == 3 else arr
    arr = arr[None] if arr.ndim == 2 else arr
    return arr, (lab.item() if hasattr(lab, "item") else lab)


class LazyDatasetImages(LazyImages):
    """The images of a map-style dataset, read from it only when they are indexed.

    The :class:`LazyImages` array protocol over ``dataset[i][0]`` instead of files: rows
    equal, bit for bit, those of ``Task.from_dataset(dataset, lazy=False).images``.

    Parameters
    ----------
    dataset : map-style dataset
        ``dataset[i]`` is ``(image, label)``; it must return the same image for the same
        index every time (no random transforms) and, to be sent to worker processes, be
        picklable.
    rows : sequence of int
        The dataset indices of the rows, in row order.
    item_shape : (int, int, int)
        ``(C, H, W)`` of every raw image (C 1, 3 or 4).
    item_dtype : numpy dtype
        Their dtype (``uint8`` in 0..255 or float in [0, 1]).
    """

    def __init__(self, dataset: Any, rows: Sequence[int] | np.ndarray,
                 item_shape: tuple[int, int, int], item_dtype: Any) -> None:
        self.dataset = dataset
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        c, h, w = (int(v) for v in item_shape)
        self.item_shape: tuple[int, int, int] = (c, h, w)
        self.item_dtype = np.dtype(item_dtype)
        self.files = ()
        self.image_size = int(self.item_shape[1])
        self._digest = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n, 3, H, W)``."""
        return (len(self.rows), 3, self.item_shape[1], self.item_shape[2])

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"LazyDatasetImages(n={len(self)}, image_shape={self.shape[1:]})"

    # the file-list pickling of LazyImages does not apply: keep every attribute
    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Read the images at ``indices`` from the dataset.

        Raises
        ------
        InvalidTaskError
            An image whose shape or dtype differs from the first one's.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.empty((0, 3, *self.shape[2:]), dtype=np.float32)
        arrs = []
        for i in idx:
            arr, _ = _dataset_item(self.dataset, int(self.rows[int(i)]))
            if arr.shape != self.item_shape or arr.dtype != self.item_dtype:
                raise InvalidTaskError(
                    f"dataset item {int(self.rows[int(i)])} is {arr.dtype} {arr.shape}, the "
                    f"first one {self.item_dtype} {self.item_shape}; a lazy dataset task "
                    "needs one image size and type (add a torchvision Resize transform)."
                )
            arrs.append(arr)
        return _to_nchw(np.stack(arrs), "nchw")

    def subset(self, indices: Sequence[int] | np.ndarray) -> LazyDatasetImages:
        """The lazy images at ``indices`` (nothing is read)."""
        idx = np.arange(len(self))[np.asarray(indices)]
        return LazyDatasetImages(self.dataset, self.rows[np.atleast_1d(idx)],
                                 self.item_shape, self.item_dtype)

    def digest(self) -> str:
        """A sha256 of the decoded rows (reads every image once, keeps none)."""
        if self._digest is None:
            h = hashlib.sha256()
            h.update(repr(("LazyDatasetImages-v1", self.shape)).encode())
            for start in range(0, len(self), _DECODE_CHUNK):
                h.update(self.take(np.arange(start, min(len(self), start + _DECODE_CHUNK)))
                         .tobytes())
            self._digest = h.hexdigest()
        return self._digest


@dataclass(eq=False)
class Task:
    """A labelled image dataset: the unit that is embedded and evaluated.

    Build one with :meth:`from_arrays`, :meth:`from_dataset`, :meth:`from_folder` or
    :func:`as_task`; the constructor expects already-validated data.

    Attributes
    ----------
    images : ndarray or LazyImages of shape (n, 3, H, W), float32 in [0, 1]
        A :class:`LazyImages` for tasks read from an image folder (decoded when
        indexed), else an array.
    labels : ndarray of shape (n,), int64 in ``0..n_classes-1``
    classes : ndarray of shape (n_classes,)
        The original label value of each code.
    name : str
    provenance : dict
        Free-form description of where the task came from (source dataset, image pool,
        label function, classes...). It does not enter the fingerprint.
    """

    images: np.ndarray | LazyImages
    labels: np.ndarray
    classes: np.ndarray
    name: str = "task"
    provenance: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(cls, images: Any, labels: Any, *, name: str = "task",
                    provenance: Mapping[str, Any] | None = None, layout: str = "auto") -> Task:
        """Build a task from an image array and labels.

        Parameters
        ----------
        images : array-like of shape (n, H, W), (n, H, W, C) or (n, C, H, W)
            ``uint8`` in 0..255 or float in [0, 1]; C is 1, 3 or 4 (alpha is composited
            onto white).
        labels : array-like of shape (n,)
            Integers (any values) or strings.
        name : str, default="task"
        provenance : mapping, optional
        layout : {"auto", "nchw", "nhwc"}, default="auto"
            Axis order of 4-D ``images``; ``"auto"`` guesses (see :func:`_to_nchw`).
        """
        x = _to_nchw(images, layout)
        codes, classes = _encode_labels(labels, x.shape[0])
        return cls(x, codes, classes, str(name), dict(provenance or {}))

    @classmethod
    def from_dataset(cls, dataset: Any, *, name: str = "task",
                     provenance: Mapping[str, Any] | None = None, lazy: bool = False) -> Task:
        """Build a task from a map-style torch ``Dataset`` yielding ``(image, label)``.

        Images may be tensors ``(C, H, W)`` in [0, 1], PIL images or numpy arrays; all must
        have the same size (use a torchvision ``Resize`` transform otherwise).

        Parameters
        ----------
        dataset : map-style dataset
        name : str, default="task"
        provenance : mapping, optional
        lazy : bool, default=False
            Keep the dataset and read an image only when it is used (a
            :class:`LazyDatasetImages`): memory stays bounded for large datasets. The
            labels come from ``dataset.targets`` when it has one entry per item
            (torchvision datasets), else from one pass over the items (each image read
            and dropped). The dataset must return the same image for the same index (no
            random augmentation); the fingerprint reads every image once more.

        Raises
        ------
        InvalidInputTypeError
            Not a map-style dataset, or items that are not ``(image, label)`` pairs.
        InvalidTaskError
            An empty dataset, or images of different shapes.
        """
        try:
            n = len(dataset)
        except TypeError as exc:
            raise InvalidInputTypeError(
                f"expected a map-style dataset with __len__; got {type(dataset).__name__}."
            ) from exc
        if n == 0:
            raise InvalidTaskError("the dataset is empty: 0 images.")
        if lazy:
            first, _ = _dataset_item(dataset, 0)
            targets = getattr(dataset, "targets", None)
            if targets is not None and len(targets) == n:
                labs = [t.item() if hasattr(t, "item") else t for t in targets]
            else:
                labs = [_dataset_item(dataset, i)[1] for i in range(n)]
            if first.ndim != 3:
                raise InvalidTaskError(
                    f"dataset images must be 2-D or 3-D; item 0 has shape {first.shape}.")
            images = LazyDatasetImages(dataset, np.arange(n),
                                       (first.shape[0], first.shape[1], first.shape[2]),
                                       first.dtype)
            images.take([0])  # validates the first image like the eager path would
            codes, classes = _encode_labels(labs, n)
            return cls(images, codes, classes, str(name), dict(provenance or {}))
        imgs, labs = [], []
        for i in range(n):
            arr, lab = _dataset_item(dataset, i)
            imgs.append(arr)
            labs.append(lab)
        shapes = {a.shape for a in imgs}
        if len(shapes) > 1:
            raise InvalidTaskError(
                f"dataset images have different shapes {sorted(shapes)[:3]}...; add a "
                "torchvision Resize transform so that all images have one size."
            )
        return cls.from_arrays(np.stack(imgs), np.asarray(labs), name=name,
                               provenance=provenance, layout="nchw")

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], *, image_size: int = 224,
                    name: str | None = None, on_error: str = "warn",
                    provenance: Mapping[str, Any] | None = None, lazy: bool = True) -> Task:
        """Load an image folder laid out as ``root/<class>/<image>`` (torchvision ImageFolder).

        Images are converted to RGB (alpha composited onto white) and resized to
        ``image_size`` x ``image_size`` when they are decoded, so a folder of large photos
        does not fill memory.

        Parameters
        ----------
        path : path-like
        image_size : int, default=224
        name : str, optional
            Defaults to the folder's name.
        on_error : {"warn", "raise"}, default="warn"
            What to do with an unreadable, non-image or oversized file: skip it with a
            warning that names it, or raise :class:`ImageFolderError` naming it.
        provenance : mapping, optional
            Added to ``{"source": "folder", "path": ...}``.
        lazy : bool, default=True
            List the files and read only their headers now (a file whose header cannot
            be read, or that is too large, is skipped or raises as ``on_error`` says);
            the task's ``images`` is then a :class:`LazyImages` that decodes an image
            when it is indexed, so memory does not grow with the folder. ``False``
            decodes every image now into one array (a file that fails to decode is then
            skipped too).

        Returns
        -------
        Task
        """
        from PIL import Image

        root = Path(path)
        if on_error not in ("warn", "raise"):
            raise InvalidTaskError(f"on_error must be 'warn' or 'raise'; got {on_error!r}.")
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) \
                or image_size < 1:
            raise InvalidTaskError(
                f"image_size must be a positive integer (pixels); got {image_size!r}.")
        if not root.is_dir():
            raise ImageFolderError(
                f"image folder {str(root)!r} does not exist or is not a directory."
            )
        class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_dirs:
            raise ImageFolderError(
                f"{str(root)!r} has no class sub-folders; expected the layout "
                "root/<class>/<image> (torchvision ImageFolder)."
            )
        imgs: list[np.ndarray] = []
        files: list[Path] = []
        labs: list[str] = []
        skipped: list[str] = []
        for cdir in class_dirs:
            for f in sorted(cdir.rglob("*")):
                if not f.is_file() or f.name.startswith("."):
                    continue
                arr = read_image(f, image_size, Image, decode=not lazy)
                if isinstance(arr, str):
                    if on_error == "raise":
                        raise ImageFolderError(f"cannot use {str(f)!r}: {arr}")
                    skipped.append(f"{f} ({arr})")
                    continue
                if arr is not None:
                    imgs.append(arr)
                files.append(f)
                labs.append(cdir.name)
        if skipped:
            warnings.warn(
                f"skipped {len(skipped)} unreadable or non-image file(s) in {str(root)!r}: "
                + "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""),
                UserWarning, stacklevel=2,
            )
        if not files:
            raise ImageFolderError(
                f"no readable images under {str(root)!r} (extensions "
                f"{', '.join(IMAGE_EXTENSIONS)})."
            )
        prov = {"source": "folder", "path": str(root.resolve()), **dict(provenance or {})}
        if not lazy:
            return cls.from_arrays(np.stack(imgs), np.asarray(labs), name=name or root.name,
                                   provenance=prov, layout="nhwc")
        codes, classes = _encode_labels(np.asarray(labs), len(files))
        logger.debug("listed %d images of %d classes in %s (decoded when used)", len(files),
                     classes.shape[0], root)
        return cls(LazyImages([os.path.abspath(f) for f in files], int(image_size)), codes, classes,
                   str(name or root.name), prov)

    # ------------------------------------------------------------------ properties
    @property
    def n_images(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return int(self.classes.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the stored images."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def is_lazy(self) -> bool:
        """Whether the images are decoded on demand (a task read from an image folder)."""
        return isinstance(self.images, LazyImages)

    @property
    def fingerprint(self) -> str:
        """A sha256 of the images and labels, stable across runs and machines.

        For a lazy folder task it hashes the image files' bytes, the image size and the
        labels (it reads every file once, decodes none), so it differs from the
        fingerprint of the same images held as an array.
        """
        h = hashlib.sha256()
        if isinstance(self.images, LazyImages):
            h.update(self.images.digest().encode())
        else:
            h.update(repr((self.images.shape, str(self.images.dtype))).encode())
            h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels.astype(np.int64)).tobytes())
        return h.hexdigest()

    def subset(self, indices: Sequence[int] | np.ndarray, *, name: str | None = None) -> Task:
        """Return the task restricted to ``indices`` (labels re-encoded, checks re-run).

        A lazy task gives a lazy task: nothing is decoded.
        """
        idx = np.asarray(indices)
        if isinstance(self.images, LazyImages):
            sub = self.images.subset(idx)
            codes, classes = _encode_labels(self.classes[self.labels[idx]], len(sub))
            return Task(sub, codes, classes, name or self.name, dict(self.provenance))
        return Task.from_arrays(self.images[idx], self.classes[self.labels[idx]],
                                name=name or self.name, provenance=self.provenance)

    def __repr__(self) -> str:
        c, h, w = self.image_shape
        return (f"Task(name={self.name!r}, n_images={self.n_images}, n_classes={self.n_classes}, "
                f"image_shape=({c}, {h}, {w}))")


@overload
def read_image(f: Path, size: int, Image: Any) -> np.ndarray | str: ...


@overload
def read_image(f: Path, size: int, Image: Any, decode: bool) -> np.ndarray | str | None: ...


def read_image(f: Path, size: int, Image: Any, decode: bool = True) -> np.ndarray | str | None:
    """Read one image as uint8 ``(size, size, 3)``, or return why it cannot be used.

    With ``decode=False`` only the header is read (format, size) and None means usable.
    """
    if f.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image file extension"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    return f"{w}x{h} pixels is more than {MAX_IMAGE_PIXELS} (decompression bomb?)"
                if not decode:
                    return None
                im.draft("RGB", (size, size))
                if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    rgb = Image.alpha_composite(bg, rgba).convert("RGB")
                else:
                    rgb = im.convert("RGB")
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
                return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        return f"{type(exc).__name__}: {exc}"


def as_task(obj: Any, *, name: str | None = None, image_size: int = 224) -> Task:
    """Turn what a user has into a :class:`Task`.

    Accepts a :class:`Task` (returned as is), an ``(images, labels)`` pair, a torch
    ``Dataset`` of ``(image, label)`` items, a path to an image folder, or a path to an
    ``.npz`` file holding ``images`` and ``labels`` arrays.
    """
    if isinstance(obj, Task):
        return obj
    if isinstance(obj, str | os.PathLike):
        p = Path(obj)
        if p.suffix == ".npz" and p.is_file():
            with np.load(p, allow_pickle=False) as z:
                if "images" not in z or "labels" not in z:
                    raise InvalidTaskError(
                        f"{str(p)!r} must hold arrays named 'images' and 'labels'; "
                        f"it holds {sorted(z.files)}."
                    )
                return Task.from_arrays(z["images"], z["labels"], name=name or p.stem,
                                        provenance={"source": "npz", "path": str(p.resolve())})
        return Task.from_folder(p, image_size=image_size, name=name)
    if isinstance(obj, tuple | list) and len(obj) == 2 and not isinstance(obj[0], str):
        return Task.from_arrays(obj[0], obj[1], name=name or "task")
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, np.ndarray):
        return Task.from_dataset(obj, name=name or type(obj).__name__)
    raise InvalidInputTypeError(
        f"cannot make a task from {type(obj).__name__}; expected a Task, an (images, labels) "
        "pair, a torch Dataset of (image, label) items, an image-folder path or an .npz path."
    )
