"""Image files: one decoding rule for every reader, and the listing of image folders.

:func:`read_image` is what :meth:`Task.from_folder <t2v_automl.tasks.Task.from_folder>`,
lazy folder tasks and the clip-art pool use to turn one file into ``uint8`` RGB pixels of
a fixed square size. The rule:

* **8-bit images** (modes ``1``, ``L``, ``P``, ``RGB``, ``CMYK``...) are converted to RGB
  as Pillow converts them. Transparency is composited onto white, whether it is an alpha
  channel (``RGBA``, ``LA``, ``PA``) or a colour key (the PNG ``tRNS`` chunk of palette,
  grey and RGB images, GIF transparency).
* **16-bit grey images** (modes ``I;16``, ``I;16B``...: 16-bit PNG and TIFF) are scaled by
  their bit depth, ``value / 65535``. (Pillow reads 16-bit RGB and RGBA PNGs as 8-bit
  RGB(A) by their high byte: the same scale.)
* **32-bit integer images** (mode ``I``) are read as 16-bit (``value / 65535``) when their
  values lie in ``0..65535``; any other range (negative values, above 65535) is scaled
  by the image's own minimum and maximum, with a
  :class:`~t2v_automl.exceptions.PixelRangeWarning`.
* **Float images** (mode ``F``: 32-bit float TIFF) with values in ``[0, 1]`` are taken as
  they are; any other range is scaled by the image's own minimum and maximum, with a
  :class:`~t2v_automl.exceptions.PixelRangeWarning` (a constant image becomes black).
  NaN or infinite pixels make the file a bad image.
* The image is then resized (bilinear; 16-bit and float images in float precision) to
  ``size`` x ``size`` and rounded to ``uint8``.

A file that cannot be used (unknown extension, unreadable, truncated, corrupt, more than
:data:`MAX_IMAGE_PIXELS` pixels, non-finite values) is not an error here: the reason is
returned, and the caller applies its policy (``on_bad_image`` of ``Task.from_folder``).

:data:`MAX_IMAGE_SIZE` bounds the square size tasks are resized to
(:func:`check_image_size`): a task holds its images as float32, ``n x 3 x size² x 4``
bytes.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from t2v_automl.exceptions import (
    ImageFolderError,
    ImageFolderWarning,
    InvalidParameterError,
    InvalidTaskError,
    PixelRangeWarning,
)

__all__ = ["IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "MAX_IMAGE_SIZE", "BAD_IMAGE_POLICIES",
           "read_image", "check_image_size", "list_class_folders", "list_files"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm")
#: Images with more pixels than this are bad images (decompression bombs).
MAX_IMAGE_PIXELS = 64_000_000
#: The largest square side (px) images are resized to: 1024 px is 12.6 MB per float32 image;
#: the probes and extractors work at 32-224 px.
MAX_IMAGE_SIZE = 1024
#: Values of ``on_bad_image``: skip bad image files with one warning, or fail on the first.
BAD_IMAGE_POLICIES = ("skip", "fail")

_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)


def _fmt_bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 1e3:,.1f} kB"


def check_image_size(image_size: int, n_images: int | None = None, *,
                     what: str = "image_size", of: str = "this task") -> int:
    """Refuse a square image size above :data:`MAX_IMAGE_SIZE` px, giving the memory it needs.

    Parameters
    ----------
    image_size : int
        A positive integer (the lower bound is the caller's to check).
    n_images : int, optional
        Images the task would hold, for the memory estimate (``n x 3 x size² x 4`` bytes).
    what : str, default="image_size"
        The parameter's name in the message.
    of : str, default="this task"
        What the images belong to, in the message.

    Returns
    -------
    int

    Raises
    ------
    InvalidParameterError
        ``image_size`` > :data:`MAX_IMAGE_SIZE`.
    """
    s = int(image_size)
    if s <= MAX_IMAGE_SIZE:
        return s
    per = 3 * s * s * 4
    est = (f"the {n_images:,} images of {of} would take {n_images:,} x 3 x {s}² x 4 bytes = "
           f"{_fmt_bytes(n_images * per)} as float32" if n_images is not None else
           f"each image would take 3 x {s}² x 4 bytes = {_fmt_bytes(per)} as float32")
    raise InvalidParameterError(
        f"{what}={s} is above the {MAX_IMAGE_SIZE} px bound: {est}. The probes and "
        f"extractors work at 32-224 px (the embedder's default is 64): pass {what} <= "
        f"{MAX_IMAGE_SIZE} (e.g. 224). Images of any size are resized to it as they are read."
    )


# ---------------------------------------------------------------------- decoding
def _read_8bit(im: Any, size: int, Image: Any) -> np.ndarray:
    """RGB (transparency composited onto white), resized, as uint8 ``(size, size, 3)``."""
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")  # a colour key (tRNS) becomes an alpha channel
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(bg, rgba).convert("RGB")
    else:
        rgb = im.convert("RGB")
    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _is_high_depth(mode: str) -> bool:
    return mode in ("I", "F") or mode.startswith("I;16")


def _read_high_depth(im: Any, size: int, Image: Any) -> tuple[np.ndarray | str, str | None]:
    """A 16-bit, 32-bit integer or float grey image scaled to [0, 1] (see the module's rule).

    Returns the uint8 ``(size, size, 3)`` pixels (or why the file is bad) and a note when
    the image was scaled by its own range.
    """
    a = np.asarray(im)
    if a.ndim != 2:
        return f"unsupported {im.mode} image of shape {a.shape}", None
    x = a.astype(np.float64)
    note = None
    if im.mode.startswith("I;16"):  # unsigned 16-bit: the bit depth fixes the scale
        x /= 65535.0
    elif not np.isfinite(x).all():
        return f"{int((~np.isfinite(x)).sum())} NaN or infinite pixel value(s)", None
    else:
        lo, hi = float(x.min()), float(x.max())
        top = 1.0 if im.mode == "F" else 65535.0
        if lo >= 0.0 and hi <= top:
            x /= top
        else:
            note = (f"mode {im.mode} values in [{lo:g}, {hi:g}], outside [0, {top:g}]: scaled by "
                    "the image's own minimum and maximum")
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    key = im.info.get("transparency")
    if isinstance(key, int | float) and not isinstance(key, bool):
        x[a == key] = 1.0  # a grey colour key (tRNS): composited onto white
    small = Image.fromarray(x.astype(np.float32)).resize((size, size),
                                                         Image.Resampling.BILINEAR)
    u8 = np.clip(np.rint(np.asarray(small, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(u8[:, :, None], 3, axis=2), note


@overload
def read_image(f: Path, size: int, Image: Any) -> np.ndarray | str: ...


@overload
def read_image(f: Path, size: int, Image: Any, decode: bool,
               notes: list[str] | None = None) -> np.ndarray | str | None: ...


def read_image(f: Path, size: int, Image: Any, decode: bool = True,
               notes: list[str] | None = None) -> np.ndarray | str | None:
    """Read one image as uint8 ``(size, size, 3)``, or return why it cannot be used.

    Parameters
    ----------
    f : Path
        The image file.
    size : int
        The square side it is resized to.
    Image : module
        ``PIL.Image`` (passed in, so that importing this module does not import Pillow).
    decode : bool, default=True
        False reads only the header (format, size) and, for a PNG, checks every chunk's
        checksum (which finds a truncated or corrupted PNG without decoding it); it
        returns None when the file looks usable.
    notes : list of str, optional
        Where a note is appended for an image scaled by its own range (see the module's
        rule); without it each such image gives a
        :class:`~t2v_automl.exceptions.PixelRangeWarning`.

    Returns
    -------
    ndarray of shape (size, size, 3), uint8, or None, or str
        The pixels; None when ``decode=False`` and the file looks usable; a reason when
        the file cannot be used.
    """
    if f.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image file extension"
    note = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    return f"{w}x{h} pixels is more than {MAX_IMAGE_PIXELS} (decompression bomb?)"
                if not decode:
                    if im.format == "PNG":
                        im.verify()
                    return None
                im.draft("RGB", (size, size))
                if not _is_high_depth(im.mode):
                    return _read_8bit(im, size, Image)
                out, note = _read_high_depth(im, size, Image)
    except (*_DECODE_ERRORS, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        return f"{type(exc).__name__}: {exc}"
    if note is not None and not isinstance(out, str):
        if notes is not None:
            notes.append(f"{f} ({note})")
        else:
            warnings.warn(f"{f}: {note}.", PixelRangeWarning, stacklevel=2)
    return out


# ---------------------------------------------------------------------- folders
def list_class_folders(root: Path) -> tuple[list[Path], list[str]]:
    """The class folders of ``root`` (sorted) and the skipped ones, each with its reason.

    Hidden entries (a leading ``.``) are ignored. A class folder that is a symbolic link
    is followed, except when it resolves to ``root`` itself or a folder above it, or to,
    into or around another class folder: its images would be counted again under a
    second class, so it is skipped (and reported).

    Parameters
    ----------
    root : Path

    Returns
    -------
    class_dirs : list of Path
    skipped : list of str
        Each skipped linked folder with its reason.

    Raises
    ------
    ImageFolderError
        ``root`` cannot be listed (permissions).
    """
    try:
        dirs = sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir())
    except OSError as exc:
        raise ImageFolderError(
            f"cannot list the image folder {str(root)!r}: {type(exc).__name__}: {exc}. "
            "Check its permissions (it must be readable and searchable)."
        ) from exc
    real_root = root.resolve()
    above = {real_root, *real_root.parents}
    kept = [p for p in dirs if not p.is_symlink()]
    taken = [p.resolve() for p in kept]
    skipped = []
    for p in (d for d in dirs if d.is_symlink()):
        target = p.resolve()
        if target in above:
            skipped.append(f"{p} (a link to {target}: the folder itself or one above it)")
        elif any(target == t or target.is_relative_to(t) or t.is_relative_to(target)
                 for t in taken):
            skipped.append(f"{p} (a link to {target}: another class folder's images again)")
        else:
            kept.append(p)
            taken.append(target)
    return sorted(kept), skipped


def list_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Every non-hidden file under ``folder`` (sorted; linked sub-folders not followed) and
    the sub-folders and entries that could not be read, each with its reason.

    Parameters
    ----------
    folder : Path

    Returns
    -------
    files : list of Path
    unreadable : list of str
        ``"folder <path> (<error>)"`` or ``"<path> (<error>)"``.
    """
    unreadable: list[str] = []

    def onerror(exc: OSError) -> None:
        unreadable.append(f"folder {exc.filename} ({type(exc).__name__}: {exc.strerror or exc})")

    found = sorted(Path(d) / n for d, _, names in os.walk(folder, onerror=onerror)
                   for n in names if not n.startswith("."))
    files = []
    for f in found:
        try:
            if f.is_file():
                files.append(f)
        except OSError as exc:  # e.g. a folder that can be listed but not searched
            unreadable.append(f"{f} ({type(exc).__name__}: {exc.strerror or exc})")
    return files, unreadable


# ---------------------------------------------------------------------- arrays
def as_numpy(x: Any) -> Any:
    """A torch tensor (or a list of them) as numpy, detached from autograd; anything else as is.

    Parameters
    ----------
    x : object

    Returns
    -------
    object
        ``x.detach().cpu().numpy()`` for a tensor (values unchanged, gradients dropped).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu().numpy()
    if isinstance(x, list | tuple) and x and all(hasattr(v, "detach") for v in x):
        return [v.detach().cpu().numpy() for v in x]
    return x


def _as_image_array(images: Any) -> np.ndarray:
    """``images`` as one numpy array; a list of images of different shapes is refused."""
    images = as_numpy(images)
    try:
        arr = np.asarray(images)
    except ValueError as exc:  # numpy refuses ragged nested sequences
        arr = None
        err: Exception | None = exc
    else:
        err = None
    if (arr is None or arr.dtype == object) and isinstance(images, Sequence) and images:
        shapes = [np.shape(v) for v in images]
        kinds = sorted(set(shapes), key=shapes.index)
        if len(kinds) > 1:
            first = {k: shapes.index(k) for k in kinds[:3]}
            raise InvalidTaskError(
                f"images have {len(kinds)} different shapes (e.g. "
                + ", ".join(f"item {i}: {k}" for k, i in first.items())
                + "); a task needs one image size. Resize them to one size first (e.g. PIL's "
                "Image.resize), or save them as root/<class>/<image> files and load them with "
                "Task.from_folder(root, image_size=...) or as_task(root, image_size=...), "
                "which resize every image as they read it."
            ) from err
    if arr is None:
        raise InvalidTaskError(f"images cannot be made into one numeric array: {err}") from err
    return arr


def to_nchw(images: Any, layout: str = "auto") -> np.ndarray:
    """Return ``images`` as float32 ``(n, 3, H, W)`` in ``[0, 1]``, validating as it goes.

    ``images`` is an array (``uint8`` in 0..255, or float in [0, 1]), a torch tensor
    (detached, even if it requires gradients) or a list of equally sized images; complex
    values, NaN, out-of-range floats and a list of differently sized images are refused
    with :class:`~t2v_automl.exceptions.InvalidTaskError`. Grey images are repeated on
    three channels, an alpha channel is composited onto white.

    ``layout`` is ``"auto"``, ``"nchw"`` or ``"nhwc"``. In ``"auto"`` mode a 4-D array is
    channels-last when its last axis has 1, 3 or 4 entries and axis 1 does not; when both
    could be the channel axis, the shorter one is (ties: channels-first).
    """
    if layout not in ("auto", "nchw", "nhwc"):
        raise InvalidTaskError(f"layout must be 'auto', 'nchw' or 'nhwc'; got {layout!r}.")
    arr = _as_image_array(images)
    if np.iscomplexobj(arr):
        raise InvalidTaskError(
            f"images are complex ({arr.dtype}); pixel values must be real. Pass the magnitude "
            "(np.abs(X)) or the real part (X.real) explicitly."
        )
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


# ---------------------------------------------------------------------- folder policy
def warn_rescaled(notes: list[str], tail: str = "", stacklevel: int = 3) -> None:
    """One :class:`PixelRangeWarning` for the images that :func:`read_image` scaled by their
    own range.

    Parameters
    ----------
    notes : list of str
        The notes :func:`read_image` appended (file and range); the first three are named.
    tail : str, default=""
        Added at the end of the message.
    stacklevel : int, default=3
        Passed to :func:`warnings.warn`.
    """
    warnings.warn(
        f"{len(notes)} image(s) had pixel values outside their type's range and were scaled "
        f"by their own minimum and maximum: {'; '.join(notes[:3])}"
        + (" ..." if len(notes) > 3 else "") + (f" {tail}" if tail else ""),
        PixelRangeWarning, stacklevel=stacklevel,
    )


def bad_image_policy(on_bad_image: str, on_error: str | None) -> str:
    """``on_bad_image`` checked, or the deprecated ``on_error`` of ``Task.from_folder`` mapped
    onto it (with a ``DeprecationWarning``).

    Parameters
    ----------
    on_bad_image : {"skip", "fail"}
    on_error : {"warn", "raise"} or None

    Returns
    -------
    str
        ``"skip"`` or ``"fail"``.

    Raises
    ------
    InvalidParameterError
        An unknown value, or the two disagree.
    """
    if on_error is not None:
        if on_error not in ("warn", "raise"):
            raise InvalidParameterError(f"on_error must be 'warn' or 'raise'; got {on_error!r}.")
        warnings.warn("Task.from_folder(on_error=...) is deprecated: use on_bad_image='skip' "
                      "(for 'warn') or on_bad_image='fail' (for 'raise').", DeprecationWarning,
                      stacklevel=3)
        mapped = {"warn": "skip", "raise": "fail"}[on_error]
        if on_bad_image not in ("skip", mapped):
            raise InvalidParameterError(
                f"on_error={on_error!r} and on_bad_image={on_bad_image!r} disagree; pass "
                "on_bad_image only.")
        return mapped
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise InvalidParameterError(
            f"on_bad_image must be 'skip' (leave bad image files out, with one warning) or "
            f"'fail' (raise on the first); got {on_bad_image!r}.")
    return on_bad_image


def _warn_skipped(root: Path, bad: list[str], others: list[str], links: list[str]) -> None:
    """One :class:`ImageFolderWarning` for everything a folder listing left out."""
    def first(items: list[str], sep: str = "; ") -> str:
        return sep.join(items[:5]) + (" ..." if len(items) > 5 else "")

    parts = []
    if bad:
        parts.append(f"{len(bad)} bad image file(s) or unreadable folder(s): {first(bad)}")
    if others:
        parts.append(f"{len(others)} file(s) without an image extension: {first(others, ', ')}")
    if links:
        parts.append(f"{len(links)} linked class folder(s): {first(links)}")
    if parts:
        warnings.warn(f"skipped in {str(root)!r}: " + " | ".join(parts), ImageFolderWarning,
                      stacklevel=4)


def read_folder(root: Path, image_size: int, *, on_bad_image: str = "skip",
                decode: bool = True) -> tuple[list[Path], list[str], list[np.ndarray]]:
    """List (and with ``decode`` read) the images of ``root/<class>/<image>``.

    Parameters
    ----------
    root : Path
        An existing folder.
    image_size : int
        A positive integer: the square size images are resized to.
    on_bad_image : {"skip", "fail"}, default="skip"
        See :meth:`Task.from_folder <t2v_automl.tasks.Task.from_folder>`.
    decode : bool, default=True
        Decode every image (False: read only the headers and a PNG's checksums).

    Returns
    -------
    files : list of Path
        The usable image files, in class then path order.
    labels : list of str
        The class folder's name of each file.
    images : list of ndarray
        With ``decode``, each file's uint8 ``(image_size, image_size, 3)`` pixels; else empty.

    Raises
    ------
    ImageFolderError
        No class sub-folders, no usable image, or (``"fail"``) a bad image file or an
        unreadable sub-folder.
    InvalidParameterError
        ``image_size`` above :data:`MAX_IMAGE_SIZE`.
    """
    from PIL import Image

    class_dirs, links = list_class_folders(root)
    if not class_dirs:
        raise ImageFolderError(
            f"{str(root)!r} has no class sub-folders; expected the layout "
            "root/<class>/<image> (torchvision ImageFolder)."
            + (f" Skipped linked folder(s): {'; '.join(links[:3])}." if links else "")
        )
    listed: list[tuple[Path, str]] = []
    bad: list[str] = []  # bad image files and unreadable folders, with the reason
    for cdir in class_dirs:
        found, unreadable = list_files(cdir)
        bad += unreadable
        listed += [(f, cdir.name) for f in found]
    if bad and on_bad_image == "fail":
        raise ImageFolderError(
            f"cannot read {bad[0]}: its images would be left out. Fix its permissions, or "
            "pass on_bad_image='skip' to leave it out with a warning."
        )
    check_image_size(image_size, sum(f.suffix.lower() in IMAGE_EXTENSIONS for f, _ in listed),
                     of=repr(str(root)))
    files: list[Path] = []
    labels: list[str] = []
    images: list[np.ndarray] = []
    others: list[str] = []
    notes: list[str] = []
    for f, lab in listed:
        arr = read_image(f, image_size, Image, decode, notes)
        if isinstance(arr, str):
            if f.suffix.lower() not in IMAGE_EXTENSIONS:
                others.append(str(f.relative_to(root)))
            elif on_bad_image == "fail":
                raise ImageFolderError(
                    f"cannot use {str(f)!r}: {arr}. Repair or delete it, or pass "
                    "on_bad_image='skip' to leave bad images out with a warning."
                )
            else:
                bad.append(f"{f} ({arr})")
            continue
        if arr is not None:
            images.append(arr)
        files.append(f)
        labels.append(lab)
    _warn_skipped(root, bad, others, links)
    if notes:
        warn_rescaled(notes, stacklevel=4)
    if not files:
        raise ImageFolderError(
            f"no readable images under {str(root)!r} (extensions {', '.join(IMAGE_EXTENSIONS)})."
        )
    return files, labels, images
