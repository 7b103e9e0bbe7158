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

Image files are decoded by :func:`t2v_automl.images.read_image` (16-bit, 32-bit integer
and float images are scaled to [0, 1] by a documented rule, colour-key transparency is
composited onto white); images are resized to at most
:data:`~t2v_automl.images.MAX_IMAGE_SIZE` (1024) px.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t2v_automl._logging import logger
from t2v_automl.exceptions import ImageFolderError, InvalidInputTypeError, InvalidTaskError
from t2v_automl.images import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIZE,
    as_numpy,
    bad_image_policy,
    check_image_size,
    read_folder,
    read_image,
    to_nchw,
    warn_rescaled,
)

__all__ = ["Task", "LazyImages", "LazyDatasetImages", "TaskFolder", "as_task",
           "task_folders", "IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIZE",
           "read_image"]


def _encode_labels(labels: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(as_numpy(labels))
    if y.ndim != 1:
        raise InvalidTaskError(f"labels must be 1-D; got an array of shape {y.shape}.")
    if y.shape[0] != n:
        raise InvalidTaskError(
            f"images and labels have different lengths: {n} images but {y.shape[0]} labels."
        )
    if y.dtype == object:
        bad = [i for i, v in enumerate(y.tolist()) if v is None or (isinstance(v, float)
                                                                    and not np.isfinite(v))]
        if bad:
            raise InvalidTaskError(
                f"labels are missing (None or NaN) at position(s) {bad[:10]}"
                + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
                + "; every image needs a label (an integer or a string). Label those images "
                "or drop them."
            )
    if y.dtype.kind == "c":
        raise InvalidTaskError(f"labels are complex ({y.dtype}); use integers or strings.")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise InvalidTaskError("labels contain NaN or infinite values.")
        if not np.all(y == np.round(y)):
            raise InvalidTaskError(
                "labels are non-integer floats; classification labels must be integers or "
                "strings."
            )
        y = y.astype(np.int64)
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError as exc:  # e.g. integers mixed with strings
        kinds = sorted({type(v).__name__ for v in y.tolist()})
        raise InvalidTaskError(
            f"labels mix values that cannot be ordered ({', '.join(kinds)}); use all integers "
            "or all strings."
        ) from exc
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
        self.image_size = check_image_size(image_size, len(self.files), of="this lazy task")
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
            A file cannot be decoded any more: it passed the check made when the folder
            was listed (its header; a PNG's checksums), so it was changed or removed since,
            or it is damaged in a way only decoding finds (e.g. a JPEG truncated after its
            header). A listed row cannot be dropped (the labels and the rows are fixed),
            so this is an error whatever ``on_bad_image`` said; the message names the file
            and suggests ``lazy=False`` (which decodes, and skips bad files, up front).
        """
        from PIL import Image

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        size = self.image_size
        if idx.size == 0:
            return np.empty((0, 3, size, size), dtype=np.float32)
        arrs: list[np.ndarray] = []
        notes: list[str] = []
        for i in idx:
            f = self.files[int(i)]
            arr = read_image(Path(f), size, Image, True, notes)
            if not isinstance(arr, np.ndarray):
                raise ImageFolderError(
                    f"cannot decode {f!r}: {arr}. It passed the check made when its folder "
                    "was listed (header, PNG checksums), so it was changed or removed since, "
                    "or it is damaged after its header (e.g. a truncated JPEG). A lazy task "
                    "cannot drop a listed image: repair or delete the file and list the folder "
                    "again, or load it with Task.from_folder(..., lazy=False), which decodes "
                    "every image up front and skips bad ones (on_bad_image='skip')."
                )
            arrs.append(arr)
        if notes and not getattr(self, "_range_warned", False):
            self._range_warned = True
            warn_rescaled(notes, "(further ones in this lazy task are not reported)")
        return to_nchw(np.stack(arrs), "nhwc")

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
        return to_nchw(np.stack(arrs), "nchw")

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
            Axis order of 4-D ``images``; ``"auto"`` guesses (see
            :func:`~t2v_automl.images.to_nchw`).
        """
        x = to_nchw(images, layout)
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
                    name: str | None = None, on_bad_image: str = "skip",
                    provenance: Mapping[str, Any] | None = None, lazy: bool = True,
                    on_error: str | None = None) -> Task:
        """Load an image folder laid out as ``root/<class>/<image>`` (torchvision ImageFolder).

        Images are decoded by the rule of :mod:`t2v_automl.images` (16-bit, 32-bit integer
        and float images scaled to [0, 1]; alpha and colour-key transparency composited
        onto white) and resized to ``image_size`` x ``image_size`` when they are decoded,
        so a folder of large photos does not fill memory.

        Parameters
        ----------
        path : path-like
        image_size : int, default=224
            At most :data:`~t2v_automl.images.MAX_IMAGE_SIZE` (1024) px.
        name : str, optional
            Defaults to the folder's name.
        on_bad_image : {"skip", "fail"}, default="skip"
            What to do with an image file that cannot be used (unreadable, truncated,
            corrupt, more than ``MAX_IMAGE_PIXELS`` pixels, NaN pixels) and with a
            sub-folder that cannot be read: skip them, with one
            :class:`~t2v_automl.exceptions.ImageFolderWarning` giving the count and the
            first names, or raise :class:`ImageFolderError` naming the first one. Files
            without an image extension are always skipped (and named in that warning).
        provenance : mapping, optional
            Added to ``{"source": "folder", "path": ...}``.
        lazy : bool, default=True
            List the files and read only their headers now (and a PNG's checksums, which
            finds a truncated PNG); the task's ``images`` is then a :class:`LazyImages`
            that decodes an image when it is indexed, so memory does not grow with the
            folder. A file damaged in a way only decoding finds (a JPEG, GIF, BMP or
            TIFF truncated after its header) cannot be dropped from a listed task:
            decoding it raises :class:`ImageFolderError` naming it, whatever
            ``on_bad_image`` says. ``False`` decodes every image now into one array, so
            that ``on_bad_image`` applies to every kind of damage.
        on_error : {"warn", "raise"}, optional
            Deprecated alias of ``on_bad_image`` (``"warn"`` is ``"skip"``, ``"raise"``
            is ``"fail"``).

        Returns
        -------
        Task

        Raises
        ------
        ImageFolderError
            No such folder, no class sub-folders, no usable image, or (``"fail"``) a bad
            image file or an unreadable sub-folder.
        InvalidParameterError
            ``image_size`` above 1024 px (the message gives the memory the folder's
            images would take) or an unknown ``on_bad_image``.

        Notes
        -----
        Class folders that are symbolic links are followed, except those that resolve to
        the folder itself or a folder above it, or to, into or around another class
        folder (the same images again under a second class): those are skipped with an
        :class:`~t2v_automl.exceptions.ImageFolderWarning`, whatever ``on_bad_image``.
        """
        root = Path(path)
        policy = bad_image_policy(on_bad_image, on_error)
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) \
                or image_size < 1:
            raise InvalidTaskError(
                f"image_size must be a positive integer (pixels); got {image_size!r}.")
        if not root.is_dir():
            raise ImageFolderError(
                f"image folder {str(root)!r} does not exist or is not a directory."
            )
        files, labs, imgs = read_folder(root, int(image_size), on_bad_image=policy,
                                        decode=not lazy)
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


def _task_from_npz(p: Path, name: str | None) -> Task:
    """The task held in an ``.npz`` file (never unpickled)."""
    import zipfile
    import zlib

    hint = ("Expected an .npz archive (numpy.savez) of numeric arrays 'images' and 'labels' "
            "(labels integers or strings), without pickled objects; re-save it with "
            "np.savez(path, images=X, labels=y).")
    if not p.is_file():
        raise InvalidTaskError(f"task file {str(p)!r} does not exist. {hint}")
    errors = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
    try:
        z = np.load(p, allow_pickle=False)
    except errors as exc:
        raise InvalidTaskError(
            f"cannot read the task file {str(p)!r}: {type(exc).__name__}: {exc}. {hint}"
        ) from exc
    if not hasattr(z, "files"):
        raise InvalidTaskError(f"{str(p)!r} holds a single array, not an .npz archive. {hint}")
    with z:
        if "images" not in z or "labels" not in z:
            raise InvalidTaskError(
                f"{str(p)!r} must hold arrays named 'images' and 'labels'; "
                f"it holds {sorted(z.files)}."
            )
        try:
            images, labels = z["images"], z["labels"]
        except errors as exc:
            raise InvalidTaskError(
                f"cannot read the task file {str(p)!r}: {type(exc).__name__}: {exc}. {hint}"
            ) from exc
    return Task.from_arrays(images, labels, name=name or p.stem,
                            provenance={"source": "npz", "path": str(p.resolve())})


def as_task(obj: Any, *, name: str | None = None, image_size: int = 224,
            on_bad_image: str = "skip") -> Task:
    """Turn what a user has into a :class:`Task`.

    Accepts a :class:`Task` (returned as is), an ``(images, labels)`` pair, a torch
    ``Dataset`` of ``(image, label)`` items, a path to an image folder, or a path to an
    ``.npz`` file (any case of the suffix) holding ``images`` and ``labels`` arrays.

    Parameters
    ----------
    obj : Task, tuple, Dataset or path-like
    name : str, optional
    image_size : int, default=224
        The square size images of a folder are resized to; at most
        :data:`~t2v_automl.images.MAX_IMAGE_SIZE` (1024) px.
    on_bad_image : {"skip", "fail"}, default="skip"
        For a folder: see :meth:`Task.from_folder`.

    Returns
    -------
    Task

    Raises
    ------
    InvalidTaskError
        Unusable images or labels, or an unreadable, truncated or pickled ``.npz``.
    InvalidParameterError
        ``image_size`` above 1024 px.
    """
    if isinstance(obj, Task):
        return obj
    if isinstance(obj, str | os.PathLike):
        p = Path(obj)
        if p.suffix.lower() == ".npz" and not p.is_dir():
            return _task_from_npz(p, name)
        return Task.from_folder(p, image_size=image_size, name=name, on_bad_image=on_bad_image)
    if isinstance(image_size, int | np.integer) and not isinstance(image_size, bool):
        check_image_size(image_size)
    if isinstance(obj, tuple | list) and len(obj) == 2 and not isinstance(obj[0], str):
        return Task.from_arrays(obj[0], obj[1], name=name or "task")
    if hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, np.ndarray):
        return Task.from_dataset(obj, name=name or type(obj).__name__)
    raise InvalidInputTypeError(
        f"cannot make a task from {type(obj).__name__}; expected a Task, an (images, labels) "
        "pair, a torch Dataset of (image, label) items, an image-folder path or an .npz path."
    )


# ---------------------------------------------------------------------- folders of tasks
def _subdirs(p: Path) -> list[Path]:
    try:
        return sorted(d for d in p.iterdir() if not d.name.startswith(".") and d.is_dir())
    except OSError as exc:
        raise ImageFolderError(f"cannot list the folder {str(p)!r}: {exc.strerror or exc}. "
                               "Check its permissions.") from exc


def _has_images(p: Path) -> bool:
    try:
        return any(f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() for f in p.iterdir())
    except OSError:
        return False


@dataclass(frozen=True)
class TaskFolder:
    """A task found on disk by :func:`task_folders`.

    Attributes
    ----------
    path : Path
        The task's folder; its name is the task's name.
    train : Path
        The folder holding the training split's class folders (``path`` when unsplit).
    test : Path or None
        The folder holding the test split's class folders; None when the task has no
        ``test`` folder.
    """

    path: Path
    train: Path
    test: Path | None = None

    @property
    def name(self) -> str:
        """The task's name: its folder's name."""
        return self.path.name


def _as_task_folder(p: Path) -> TaskFolder | None:
    """``p`` as a task (``p/train|test/<class>/<image>`` or ``p/<class>/<image>``), or None."""
    subdirs = _subdirs(p)
    split = {d.name.lower(): d for d in subdirs if d.name.lower() in ("train", "test")}
    if "train" in split:
        return TaskFolder(p, split["train"], split.get("test"))
    return TaskFolder(p, p) if any(_has_images(d) for d in subdirs) else None


def task_folders(path: str | os.PathLike[str]) -> list[TaskFolder]:
    """The tasks in a folder: the folder itself, or each of its sub-folders.

    A task is laid out as ``root/<class>/<image>`` (class folders holding image files) or
    ``root/train/<class>/<image>`` with an optional ``root/test/<class>/<image>``. A folder
    that is neither is a folder of tasks: each sub-folder must then be a task.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    list of TaskFolder
        Sorted by name.

    Raises
    ------
    ImageFolderError
        No such folder, a folder without image files in its class folders, or a
        sub-folder of a folder of tasks that is not a task; the message names the folder.
    """
    root = Path(path)
    layouts = ("root/<class>/<image>, root/train|test/<class>/<image>, or a folder of such "
               "tasks")
    if not root.is_dir():
        raise ImageFolderError(f"task folder {str(root)!r} does not exist or is not a "
                               f"directory; expected {layouts}.")
    own = _as_task_folder(root)
    if own is not None:
        return [own]
    children = _subdirs(root)
    if not children or not any(_subdirs(c) for c in children):
        raise ImageFolderError(
            f"no image files in the class folders of {str(root)!r} (extensions "
            f"{', '.join(IMAGE_EXTENSIONS)}); expected {layouts}.")
    out = []
    for child in children:
        task = _as_task_folder(child)
        if task is None:
            raise ImageFolderError(
                f"{str(child)!r}, in the folder of tasks {str(root)!r}, is not a task: no "
                f"image files in its class folders; expected {layouts}. Add images or move "
                "it out.")
        out.append(task)
    return out

