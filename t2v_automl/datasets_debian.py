"""The emoji, Wesnoth and Oxygen pools: Debian packages rendered or decoded to pixels.

:func:`t2v_automl.datasets.load_pool` calls these loaders (``"emoji"``, ``"wesnoth"``,
``"oxygen"``); they share clip art's building blocks in :mod:`t2v_automl.datasets`
(option checks, folder scan, decoding with one warning for bad files, the atomic on-disk
cache). Each returns a :class:`~t2v_automl.datasets.Pool` of uint8 RGB images
``(n, S, S, 3)`` composited onto white.

- **emoji** (``fonts-noto-color-emoji``, ``unicode-data``): every fully-qualified emoji of
  ``emoji-test.txt`` that is one code point (optionally followed by U+FE0F) without a skin
  tone, drawn from the font's colour bitmaps at their only size (109 px) on a white canvas,
  cropped to the glyph, padded to a square on white and resized with Lanczos filtering.
  Class = subgroup (``"animal-mammal"``), super-class = group (``"Animals & Nature"``).
- **wesnoth** (``wesnoth-1.16-data``): the unit sprites of ``units/<race>/**/*.png``, the
  whole sprite resized (bilinear, :func:`t2v_automl.images.read_image`). Class =
  ``"<race>/<pose>"`` with the pose read from the file name (:func:`wesnoth_pose`),
  super-class = race.
- **oxygen** (``oxygen-icon-theme``): the 64 px icons of ``64x64/<category>/*.png``.
  Class = category.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from t2v_automl._logging import logger
from t2v_automl.datasets import (
    EMOJI_FONT,
    EMOJI_TEST,
    OXYGEN_ROOT,
    WESNOTH_ROOT,
    DatasetFormatError,
    DatasetNotFoundError,
    Pool,
    PoolItem,
    cache_key,
    cached_pool,
    check_pool_settings,
    decode_items,
    image_file_pool,
    scan_image_folders,
)

__all__ = ["EmojiEntry", "load_emoji", "load_oxygen", "load_wesnoth", "parse_emoji_test",
           "render_emoji", "wesnoth_pose", "WESNOTH_POSES", "EMOJI_FONT_SIZE"]

#: The Noto colour emoji font's only bitmap size (pixels per em).
EMOJI_FONT_SIZE = 109
#: The white canvas an emoji is drawn on, centred, before it is cropped to the glyph.
_EMOJI_CANVAS = 160
_SKIN_TONES = range(0x1F3FB, 0x1F3FF + 1)
#: Pose words of Wesnoth sprite names (digits stripped) and the pose each stands for.
WESNOTH_POSES = {
    "attack": "attack", "melee": "attack", "ranged": "ranged", "bow": "ranged",
    "defend": "defend", "die": "die", "death": "die", "idle": "idle", "fly": "fly",
    "takeoff": "fly", "magic": "magic", "bob": "bob", "stand": "bob",
}
#: Bump when what a cache file holds changes for the same files and settings.
#: 2: images with the same pixels as an earlier one are left out (all three pools).
_EMOJI_CACHE_VERSION = 2
_WESNOTH_CACHE_VERSION = 1
_OXYGEN_CACHE_VERSION = 1


def _not_installed(what: str, path: Path, expected: str, package: str, option: str) -> str:
    return (f"cannot find {what}: {str(path)!r} is missing (expected {expected} of the "
            f"Debian package {package}). Install it with `apt-get install -y {package}` "
            f"(as root), or pass {option}= {expected} elsewhere.")


def _folder_items(base: Path, what: str, package: str) -> dict[str, list[Path]]:
    """The image files under ``base`` by folder, each file once; raise when there are none."""
    if not base.is_dir():
        raise DatasetNotFoundError(_not_installed(what, base, "the folder", package, "root"))
    by_folder = scan_image_folders(base, unique=True)
    if not by_folder:
        raise DatasetNotFoundError(
            f"no image files under {str(base)!r}; expected the PNG files of the Debian "
            f"package {package} (`apt-get install -y {package}`)."
        )
    return by_folder


# ---------------------------------------------------------------------- emoji
class EmojiEntry(NamedTuple):
    """One emoji of ``emoji-test.txt``: code points (``"2764-FE0F"``), group, subgroup."""

    code: str
    group: str
    subgroup: str

    @property
    def text(self) -> str:
        """The emoji as a string."""
        return "".join(chr(int(c, 16)) for c in self.code.split("-"))


_EMOJI_LINE = re.compile(r"^([0-9A-Fa-f]{4,6}(?: [0-9A-Fa-f]{4,6})*)\s*;\s*([a-z-]+)\s*(?:#|$)")


def parse_emoji_test(path: str | os.PathLike[str]) -> list[EmojiEntry]:
    """The single emoji of a Unicode ``emoji-test.txt``, in file order.

    Kept: lines of status ``fully-qualified`` whose code points are one code point,
    optionally followed by U+FE0F, none of them a skin-tone modifier (U+1F3FB..U+1F3FF).

    Parameters
    ----------
    path : path-like
        The file (Debian's ``unicode-data``: ``/usr/share/unicode/emoji/emoji-test.txt``).

    Returns
    -------
    list of EmojiEntry

    Raises
    ------
    DatasetFormatError
        The file holds no such emoji under a ``# group:`` and ``# subgroup:`` line.
    """
    group = subgroup = None
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("# group:"):
                group, subgroup = line.split(":", 1)[1].strip(), None
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif (m := _EMOJI_LINE.match(line)) and m[2] == "fully-qualified":
                cps = [int(c, 16) for c in m[1].split()]
                if (len(cps) == 1 or (len(cps) == 2 and cps[1] == 0xFE0F)) \
                        and not any(c in _SKIN_TONES for c in cps) and group and subgroup:
                    out.append(EmojiEntry("-".join(f"{c:04X}" for c in cps), group, subgroup))
    if not out:
        raise DatasetFormatError(
            f"{str(path)!r} lists no fully-qualified single-code-point emoji under "
            "'# group:' and '# subgroup:' lines; expected Unicode's emoji-test.txt (Debian "
            "package unicode-data). Reinstall it or pass emoji_test= that file."
        )
    return out


def render_emoji(text: str, font: Any, size: int) -> np.ndarray | str:
    """Draw one emoji as uint8 ``(size, size, 3)`` RGB on white, or say why it cannot be.

    The glyph is drawn centred on a 160 px white canvas with its embedded colours,
    cropped to its non-white pixels, padded to a square on white and resized with
    Lanczos filtering.

    Parameters
    ----------
    text : str
        The emoji.
    font : PIL.ImageFont.FreeTypeFont
        The colour font at :data:`EMOJI_FONT_SIZE`.
    size : int
        The square side of the result.

    Returns
    -------
    ndarray of shape (size, size, 3), uint8, or str
        The pixels, or why the emoji cannot be used (it renders blank: the font lacks it).
    """
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (_EMOJI_CANVAS, _EMOJI_CANVAS), (255, 255, 255))
    try:
        ImageDraw.Draw(canvas).text((_EMOJI_CANVAS // 2, _EMOJI_CANVAS // 2), text,
                                    font=font, embedded_color=True, anchor="mm")
    except (OSError, ValueError) as exc:
        return f"cannot be drawn ({type(exc).__name__}: {exc})"
    ink = np.flatnonzero(np.asarray(canvas).min(axis=2).ravel() < 255)
    if ink.size == 0:
        return "renders blank (the font has no glyph for it)"
    rows, cols = np.divmod(ink, _EMOJI_CANVAS)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = max(bottom - top, right - left)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(canvas.crop((left, top, right, bottom)),
                 ((side - (right - left)) // 2, (side - (bottom - top)) // 2))
    small = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def load_emoji(root: str | os.PathLike[str] | None = None, *,
               emoji_test: str | os.PathLike[str] | None = None, image_size: int = 64,
               min_per_class: int = 12, cache: bool = True,
               cache_dir: str | os.PathLike[str] | None = None,
               verbose: int | bool = False) -> Pool:
    """The ``"emoji"`` pool (see :func:`t2v_automl.datasets.load_pool`).

    Parameters
    ----------
    root : path-like, optional
        The colour emoji font (default :data:`~t2v_automl.datasets.EMOJI_FONT`).
    emoji_test : path-like, optional
        Unicode's emoji list (default :data:`~t2v_automl.datasets.EMOJI_TEST`).
    image_size, min_per_class, cache, cache_dir, verbose
        As for clip art; subgroups with fewer than ``min_per_class`` drawable emoji are
        dropped.

    Returns
    -------
    Pool
        ``paths`` holds the code points (``"1F600"``, ``"2764-FE0F"``).
    """
    font_path = Path(root) if root is not None else EMOJI_FONT
    test_path = Path(emoji_test) if emoji_test is not None else EMOJI_TEST
    image_size, min_per_class = check_pool_settings(image_size, min_per_class)
    if not font_path.is_file():
        raise DatasetNotFoundError(_not_installed(
            "the colour emoji font", font_path, "NotoColorEmoji.ttf", "fonts-noto-color-emoji",
            "root"))
    if not test_path.is_file():
        raise DatasetNotFoundError(_not_installed(
            "the Unicode emoji list", test_path, "emoji-test.txt", "unicode-data",
            "emoji_test"))
    items = [PoolItem(e.subgroup, e.group, e.code, e.text)
             for e in parse_emoji_test(test_path)]
    key = cache_key([_EMOJI_CACHE_VERSION, str(font_path.resolve()), str(test_path.resolve()),
                     image_size, min_per_class, EMOJI_FONT_SIZE, _EMOJI_CANVAS],
                    [("font", font_path), ("emoji_test", test_path)]) if cache else None

    def build() -> dict[str, np.ndarray]:
        from PIL import ImageFont

        try:
            font = ImageFont.truetype(str(font_path), EMOJI_FONT_SIZE)
        except OSError as exc:
            raise DatasetFormatError(
                f"cannot open {str(font_path)!r} as a colour font at {EMOJI_FONT_SIZE} px "
                f"({exc}); expected Noto Color Emoji (Debian package fonts-noto-color-emoji, "
                "whose bitmaps exist at that size only). Reinstall it or pass root= that font."
            ) from exc
        return decode_items("emoji", str(test_path), items,
                            lambda text: render_emoji(text, font, image_size),
                            min_per_class=min_per_class, deduplicate=True, verbose=verbose)

    return cached_pool("emoji", "emoji", f"{font_path} + {test_path}", build, key=key,
                       image_size=image_size, cache_dir=cache_dir)


# ---------------------------------------------------------------------- wesnoth
def wesnoth_pose(stem: str) -> str | None:
    """The pose a Wesnoth unit sprite shows, from its file name without the extension.

    The name is split on ``-`` and trailing digits are stripped from each part; the first
    part after the first one that is a pose word (:data:`WESNOTH_POSES`) gives the pose. A
    one-part name (``"explorer"``) is the unit's ``"base"`` sprite.

    Parameters
    ----------
    stem : str
        E.g. ``"thunderer-ranged-2"``.

    Returns
    -------
    str or None
        E.g. ``"ranged"``; None when the name shows no known pose (``"bat-se-3"``).
    """
    parts = stem.split("-")
    if len(parts) == 1:
        return "base"
    for part in parts[1:]:
        pose = WESNOTH_POSES.get(part.rstrip("0123456789"))
        if pose is not None:
            return pose
    return None


def load_wesnoth(root: str | os.PathLike[str] | None = None, *, image_size: int = 64,
                 min_per_class: int = 20, cache: bool = True,
                 cache_dir: str | os.PathLike[str] | None = None,
                 verbose: int | bool = False) -> Pool:
    """The ``"wesnoth"`` pool (see :func:`t2v_automl.datasets.load_pool`).

    Parameters
    ----------
    root : path-like, optional
        The ``units`` folder (default :data:`~t2v_automl.datasets.WESNOTH_ROOT`).
    image_size, min_per_class, cache, cache_dir, verbose
        As for clip art.

    Returns
    -------
    Pool
        Classes ``"<race>/<pose>"``, super-classes the races, ``paths`` relative to root.
    """
    base = Path(root) if root is not None else WESNOTH_ROOT
    image_size, min_per_class = check_pool_settings(image_size, min_per_class)
    items, unused = [], []
    for folder, files in sorted(_folder_items(base, "the Wesnoth unit sprites",
                                              "wesnoth-1.16-data").items()):
        race = folder.split("/", 1)[0]
        for f in files:
            rel = f.relative_to(base).as_posix()
            pose = wesnoth_pose(f.stem) if folder != "uncategorised" else None
            if pose is None:
                unused.append(rel)
            else:
                items.append(PoolItem(f"{race}/{pose}", race, rel, f))
    if unused:
        logger.debug("%d Wesnoth sprite(s) show no known pose (or no race) and are not used, "
                     "e.g. %s", len(unused), ", ".join(unused[:5]))
    if not items:
        raise DatasetFormatError(
            f"no Wesnoth unit sprite under {str(base)!r} has a pose in its name; expected "
            "units/<race>/<unit>-<pose>.png files (Debian package wesnoth-1.16-data)."
        )
    return image_file_pool("wesnoth", "Wesnoth", base, items, _WESNOTH_CACHE_VERSION,
                           image_size=image_size, min_per_class=min_per_class, cache=cache,
                           deduplicate=True,
                           cache_dir=cache_dir, verbose=verbose)


# ---------------------------------------------------------------------- oxygen
def load_oxygen(root: str | os.PathLike[str] | None = None, *, image_size: int = 64,
                min_per_class: int = 10, cache: bool = True,
                cache_dir: str | os.PathLike[str] | None = None,
                verbose: int | bool = False) -> Pool:
    """The ``"oxygen"`` pool (see :func:`t2v_automl.datasets.load_pool`).

    Parameters
    ----------
    root : path-like, optional
        The ``64x64`` folder (default :data:`~t2v_automl.datasets.OXYGEN_ROOT`).
    image_size, min_per_class, cache, cache_dir, verbose
        As for clip art.

    Returns
    -------
    Pool
        Classes the category folders, no super-classes, ``paths`` relative to root.
    """
    base = Path(root) if root is not None else OXYGEN_ROOT
    image_size, min_per_class = check_pool_settings(image_size, min_per_class)
    by_folder = _folder_items(base, "the Oxygen icon theme", "oxygen-icon-theme")
    items = [PoolItem(c, None, f.relative_to(base).as_posix(), f)
             for c in sorted(by_folder) for f in by_folder[c]]
    return image_file_pool("oxygen", "Oxygen", base, items, _OXYGEN_CACHE_VERSION, deduplicate=True,
                           image_size=image_size, min_per_class=min_per_class, cache=cache,
                           cache_dir=cache_dir, verbose=verbose)
